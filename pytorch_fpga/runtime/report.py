"""What a compiled program's inference costs, step by step, with every number labelled by where it comes from.

    sat        int8 outputs at -128 or 127 (saturated), counted on the profiled run
    accel us   projected: the backend's cycle count (RTL counters, or pf.accel.cycle_model) at the clock
    setup us   estimated: driver work per job on the board (SETUP_US_PER_JOB each), not measured here
    host us    measured here: the step's host work (im2col into the streams, int8 kernels, copies)
The end-to-end projection adds the three, shown side by side; nothing is headlined from the accelerator alone.
"""
from __future__ import annotations

from dataclasses import dataclass

# Estimated, not measured (no board here): per job, pynq's DMA transfer() calls and ~10 AXI-Lite register accesses
# from Python on the PYNQ-Z1's 650 MHz Cortex-A9, at ~5-10 us each.
SETUP_US_PER_JOB = 100.0


@dataclass
class ProgramProfile:
    """Per-step rows and totals of one inference of a compiled program."""
    rows: list
    batch: int
    clock_mhz: float
    backend: str
    host_cpu: str = "this machine"

    def total(self, key: str) -> float:
        return float(sum(r[key] for r in self.rows))

    @property
    def accel_us(self) -> float:
        """Projected accelerator time at the clock."""
        return self.total("accel_us")

    @property
    def setup_us(self) -> float:
        """Estimated driver set-up time for every job."""
        return self.total("setup_us")

    @property
    def host_us(self) -> float:
        """Host time measured here (outside the backend's job execution)."""
        return self.total("host_us")

    @property
    def end_to_end_us(self) -> float:
        """Projected end to end: accelerator + set-up (estimated) + host (measured here), per batch."""
        return self.accel_us + self.setup_us + self.host_us

    @property
    def host_ratio(self) -> float:
        """Host time measured here / projected accelerator time."""
        return self.host_us / self.accel_us if self.accel_us else float("inf")

    def as_dict(self) -> dict:
        return {"batch": self.batch, "clock_mhz": self.clock_mhz, "backend": self.backend,
                "accel_us_projected": self.accel_us, "setup_us_estimated": self.setup_us,
                "host_us_measured_here": self.host_us, "end_to_end_us_projected": self.end_to_end_us,
                "images_per_s_projected_end_to_end": self.batch / self.end_to_end_us * 1e6
                if self.end_to_end_us else None,
                "host_over_accel": self.host_ratio, "rows": self.rows}

    def table(self, top: int | None = None) -> str:
        """A text table; the time columns are labelled: projected, estimated, measured here."""
        rows = self.rows if top is None else sorted(self.rows, key=lambda r: -(r["accel_us"] + r["host_us"]))[:top]
        head = (f"{'step':26s} {'op':14s} {'where':11s} {'jobs':>4s} {'cycles':>10s} {'util':>6s} {'sat':>6s} "
                f"{'accel us':>10s} {'setup us':>9s} {'host us':>9s}")
        sub = f"{'':26s} {'':14s} {'':11s} {'':>4s} {'':>10s} {'':>6s} {'':>6s} {'projected':>10s} " \
              f"{'estimated':>9s} {'measured':>9s}"
        lines = [head, sub]
        for r in rows:
            util = f"{r['utilization']:6.1%}" if r["jobs"] else f"{'':6s}"
            n = r.get("outputs", 0)
            sat = f"{r['outputs_at_limit'] / n:6.1%}" if n else f"{'':6s}"
            lines.append(f"{r['step'][:26]:26s} {r['op'][:14]:14s} {r['where'][:11]:11s} {r['jobs']:4d} "
                         f"{r['cycles']:10,d} {util} {sat} {r['accel_us']:10.1f} {r['setup_us']:9.1f} "
                         f"{r['host_us']:9.1f}")
        e2e = self.end_to_end_us
        lines.append(f"batch {self.batch}: accelerator {self.accel_us:,.1f} us projected at {self.clock_mhz:g} MHz + "
                     f"set-up {self.setup_us:,.1f} us estimated ({SETUP_US_PER_JOB:g} us/job) + host "
                     f"{self.host_us:,.1f} us measured on {self.host_cpu} = {e2e:,.1f} us projected end to end "
                     f"({self.batch / e2e * 1e6:,.0f} images/s); host / accelerator = {self.host_ratio:.1%}")
        return "\n".join(lines)


def make(program, placements: dict, macs: dict, backend: str, host_cpu: str = "this machine") -> ProgramProfile:
    """A profile from a Program's last run (program.times)."""
    cfg = program.cfg
    pes = cfg.rows * cfg.cols
    rows = []
    for t in program.times:
        cyc = t.cycles
        rows.append({"step": t.node, "op": t.kind, "where": placements.get(t.node, "host int8"), "jobs": t.jobs,
                     "macs": macs.get(t.node, 0), "cycles": cyc,
                     "utilization": macs.get(t.node, 0) / (pes * cyc) if cyc else 0.0,
                     "accel_us": cyc / cfg.clock_mhz, "setup_us": t.jobs * SETUP_US_PER_JOB,
                     "host_us": t.host_s * 1e6, "backend_wall_us": t.backend_s * 1e6})
    return ProgramProfile(rows, program.plan.batch, cfg.clock_mhz, backend, host_cpu)
