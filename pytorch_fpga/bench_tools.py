"""How fast the course's simulators and models run here (wall-clock, measured on this machine): the figures
that used to be asserted in tests, reported by `python -m pytorch_fpga bench` instead."""
from __future__ import annotations

import time

import numpy as np

from pytorch_fpga.contract import accel


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def verilated_throughput(config="z1", M=2048, K=256, N=256) -> dict:
    """Simulated cycles per second of the Verilated accelerator on one large job (bit-exact checked)."""
    from pytorch_fpga.sim import verilated
    sim = verilated.VerilatedAccel(config, quiet=True)
    job = accel.random_job(np.random.default_rng(13), M, K, N, cfg=config, relu=True)
    c0 = sim.cycles
    dt, (out, _, _) = _timed(lambda: sim.run_job(job))
    ok = bool(np.array_equal(accel.unpack_output(out, job), accel.job_golden(job)))
    lookup_s, _ = _timed(lambda: verilated.build(config, quiet=True))
    return {"job": f"{M}x{K}x{N} on {accel.config(config).name}", "cycles": sim.cycles - c0, "wall_s": dt,
            "cycles_per_s": (sim.cycles - c0) / dt, "bit_exact": ok, "cached_build_lookup_s": lookup_s}


def dataflow_stepping(M=64, K=150, N=16) -> dict:
    """Wall time of the stepped WS/OS/IS array models with traces (LeNet conv2's GEMM on a 16x16 array)."""
    from pytorch_fpga.arch import dataflow
    rng = np.random.default_rng(6)
    X = rng.integers(-128, 128, (M, K)).astype(np.int8)
    W = rng.integers(-128, 128, (K, N)).astype(np.int8)
    return {df: _timed(lambda df=df: dataflow.simulate(X, W, 16, 16, df, trace=True))[0]
            for df in dataflow.DATAFLOWS}


def virtual_pynq_watchdog(budget_cycles: int = 3000) -> dict:
    """Wall time until the virtual PYNQ's DMA watchdog ends a transfer that can never finish."""
    from pytorch_fpga import virtual_pynq
    from pytorch_fpga.runtime import pynq_driver
    with virtual_pynq.start("sim8", budget_cycles=budget_cycles, quiet=True):
        ol = pynq_driver.ConvAccelOverlay()
        job = accel.random_job(np.random.default_rng(0), 4, 4, 4, cfg="sim8", out_int32=True)
        job.stream = job.stream[:-8]                              # one beat short: S2MM never sees tlast
        t0 = time.perf_counter()
        try:
            ol.run_job(job, timeout_s=60)
            raised = None
        except (RuntimeError, TimeoutError) as e:
            raised = type(e).__name__
        return {"budget_cycles": budget_cycles, "wall_s": time.perf_counter() - t0, "raised": raised}


def run() -> dict:
    """Every measurement above; each says what it measured."""
    return {"measured_here": True, "verilated": verilated_throughput(), "dataflow_seconds": dataflow_stepping(),
            "virtual_pynq_watchdog": virtual_pynq_watchdog()}


def table(rec: dict) -> str:
    """The measurements as text."""
    v, w = rec["verilated"], rec["virtual_pynq_watchdog"]
    lines = [f"Verilator: {v['job']}: {v['cycles']:,} cycles in {v['wall_s']:.2f} s = "
             f"{v['cycles_per_s'] / 1e3:.0f}k simulated cycles/s (measured here; bit-exact: {v['bit_exact']}); "
             f"cached build lookup {v['cached_build_lookup_s'] * 1e3:.0f} ms",
             "stepped dataflow models with traces, LeNet conv2 GEMM on 16x16: " +
             ", ".join(f"{df} {s:.2f} s" for df, s in rec["dataflow_seconds"].items()) + " (measured here)",
             f"virtual PYNQ watchdog ({w['budget_cycles']} cycles): a stuck transfer raised {w['raised']} after "
             f"{w['wall_s']:.2f} s (measured here)"]
    return "\n".join(lines)
