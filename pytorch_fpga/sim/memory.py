"""A memory model for the simulated accelerator: its input stream gets DDR bandwidth, not a free beat every cycle.

    from pytorch_fpga.sim.memory import MemoryModel
    mem = MemoryModel.at(400)                           # 400 MB/s at 100 MHz: 4 bytes a cycle, a beat every other
    mem.apply(sim)                                      # a VerilatedAccel; or pass it along:
    backends.get("verilator", "z1", memory=mem)         # VerilatorBackend(cfg, memory=mem)
    virtual_pynq.start("z1", memory=mem)                # jobs through the pynq driver and the AXI DMA model

What is modelled. On the PYNQ-Z1 the AXI DMA's MM2S channel reads the job's stream from DDR through a 64-bit
AXI_HP port and feeds conv_accel's s_axis. Here that becomes three things in the Verilator harness (harness.cpp):

* bandwidth: the input stream moves at most `bytes_per_cycle` on average, deterministically (no randomness):
  a periodic on/off pattern when the ratio beats-per-cycle = p/q has q <= MAX_PERIOD (400 MB/s at 100 MHz: on=1,
  off=1; 600 MB/s: on=3, off=1), else a token bucket ('credit', Q32 fixed point). Either way the pattern only
  advances on cycles where the source has a beat to present, so after the accelerator stalls the stream it
  resumes at the same average rate: the DMA's and the HP port's FIFOs, which on a board let it catch up for a
  few hundred bytes, are not modelled (pessimistic by at most their depth per stall).
* setup and latency: a transfer's first beat comes `setup_cycles + burst_latency_cycles` after the transfer
  starts (the push; in the virtual PYNQ the write of MM2S_LENGTH). That is the only latency paid in full:
  later bursts are pipelined (the DMA keeps up to `outstanding_bursts` reads in flight), which hides their
  latency as long as outstanding_bursts * burst_bytes >= burst_latency_cycles * bandwidth; when it does not,
  the sustained rate drops to outstanding_bursts * burst_bytes / burst_latency_cycles (Little's law), and
  `bytes_per_cycle` includes that bound.
* the output stream (S2MM): on a board it writes DDR through the same port (reads and writes have separate AXI
  channels, but one DDR controller). Here it is an optional, separate limit, `s2mm_bandwidth_mb_s` (None: the
  output stream is not limited; writes are posted, so no latency is charged). The two limits are independent,
  not one shared budget.

Defaults and their sources (MB = 10**6 bytes):

* clock_mhz = 100: FCLK_CLK0, which drives the DMA, conv_accel and HP0 (pytorch_fpga.contract.design).
* bandwidth_mb_s = 800: the Zynq-7000 AXI_HP port is 64 bits wide; at a 100 MHz fabric clock its theoretical
  peak is 8 B x 100 MHz = 800 MB/s per direction (UG585, AXI_HP interfaces). Measured PYNQ-Z1 DMA throughput
  is commonly quoted at ~400-600 MB/s (quoted, not measured here): use MemoryModel.at(600) or .at(400).
* burst_latency_cycles = 20: DDR3 read latency through the HP port is of order 100+ ns, ~10-30 fabric cycles at
  100 MHz; 20 cycles (200 ns) is an assumption, not a measurement.
* setup_cycles = 8: the DMA turning a LENGTH write (direct register mode) into its first read request; PG021
  gives no figure, 8 cycles is an assumption.
* burst_bytes = 128: the overlay's C_MM2S_BURST_SIZE (16 beats) x the 64-bit memory-mapped side (design.DMA_IP).
* outstanding_bursts = 8: an assumption; the AXI_HP ports queue several outstanding read commands (UG1085 gives
  8 for the UltraScale+ HP ports; UG585 describes a similar command FIFO for the Zynq-7000).

Presets: IDEAL (8 bytes a cycle, no latency: the harness's behaviour without a memory model) and
MemoryModel.at(mb_s). Torch-free; apply() needs only a VerilatedAccel-like object (set_idle, set_backpressure,
set_input_delay, cfg).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from pytorch_fpga.contract import design, regmap

if TYPE_CHECKING:  # pragma: no cover
    from pytorch_fpga.sim.verilated import VerilatedAccel

BEAT = regmap.BEAT_BYTES        # bytes per stream beat (and per cycle at most)
MAX_PERIOD = 16                 # the longest on/off period used; finer ratios use the credit pattern
_DMA = design.DMA_IP["parameters"]
_BURST_BYTES = int(_DMA["C_MM2S_BURST_SIZE"]) * int(_DMA["C_M_AXI_MM2S_DATA_WIDTH"]) // 8


def rate_pattern(bytes_per_cycle) -> tuple[str, dict]:
    """The harness pattern (kind, kwargs for set_idle / set_backpressure) limiting a stream to bytes_per_cycle
    on average, exactly: 'none' at >= 8, 'periodic' when beats/cycle = p/q with q <= MAX_PERIOD, else 'credit'."""
    beats = Fraction(bytes_per_cycle) / BEAT
    if beats <= 0:
        raise ValueError(f"a stream rate must be > 0 bytes a cycle, got {bytes_per_cycle}")
    if beats >= 1:
        return "none", {}
    if beats.denominator <= MAX_PERIOD:
        return "periodic", {"on": beats.numerator, "off": beats.denominator - beats.numerator}
    return "credit", {"bytes_per_cycle": float(bytes_per_cycle)}


def _positive(name: str, value, unit: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"MemoryModel: {name} must be a positive number of {unit}, got {value!r}")


def _count(name: str, value, least: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"MemoryModel: {name} must be an integer >= {least}, got {value!r}")


@dataclass(frozen=True)
class MemoryModel:
    """DDR behind the AXI DMA as the input stream sees it: bandwidth, first-read latency, set-up (module docstring)."""
    bandwidth_mb_s: float = 800.0                 # MM2S read bandwidth, MB/s (10**6 bytes/s)
    burst_latency_cycles: int = 20                # cycles from a burst's address to its first data (assumption)
    setup_cycles: int = 8                         # per transfer, before the first read request (assumption)
    burst_bytes: int = _BURST_BYTES               # bytes per read burst (16 beats of 64 bits)
    clock_mhz: float = design.CLOCK_MHZ           # the fabric clock the cycles count
    outstanding_bursts: int = 8                   # read bursts in flight at once (assumption)
    s2mm_bandwidth_mb_s: float | None = None      # optional limit on the output stream; None: unlimited

    def __post_init__(self):
        _positive("bandwidth_mb_s", self.bandwidth_mb_s, "MB/s")
        _positive("clock_mhz", self.clock_mhz, "MHz")
        _count("burst_latency_cycles", self.burst_latency_cycles)
        _count("setup_cycles", self.setup_cycles)
        _count("outstanding_bursts", self.outstanding_bursts, 1)
        _count("burst_bytes", self.burst_bytes, BEAT)
        if self.burst_bytes % BEAT:
            raise ValueError(f"MemoryModel: burst_bytes must be a multiple of the {BEAT}-byte beat, "
                             f"got {self.burst_bytes}")
        if self.s2mm_bandwidth_mb_s is not None:
            _positive("s2mm_bandwidth_mb_s", self.s2mm_bandwidth_mb_s, "MB/s (or None: unlimited)")

    # -- presets
    @classmethod
    def at(cls, mb_s: float, **kwargs) -> MemoryModel:
        """The default model (latency, set-up, bursts) with MM2S bandwidth mb_s MB/s; kwargs override fields."""
        return cls(bandwidth_mb_s=mb_s, **kwargs)

    @classmethod
    def ideal(cls, clock_mhz: float = design.CLOCK_MHZ) -> MemoryModel:
        """A beat every cycle, no latency and no set-up: the stream as it is without a memory model."""
        return cls(bandwidth_mb_s=BEAT * clock_mhz, burst_latency_cycles=0, setup_cycles=0, clock_mhz=clock_mhz)

    # -- derived numbers
    @property
    def bytes_per_cycle(self) -> Fraction:
        """The sustained MM2S rate in bytes per cycle: bandwidth / clock, at most a beat a cycle and at most
        outstanding_bursts * burst_bytes / burst_latency_cycles (the latency the pipelining can hide)."""
        rate = min(Fraction(BEAT), Fraction(self.bandwidth_mb_s) / Fraction(self.clock_mhz))
        if self.burst_latency_cycles:
            rate = min(rate, Fraction(self.outstanding_bursts * self.burst_bytes, self.burst_latency_cycles))
        return rate

    @property
    def s2mm_bytes_per_cycle(self) -> Fraction | None:
        """The output stream's limit in bytes per cycle (at most a beat a cycle), or None when unlimited."""
        if self.s2mm_bandwidth_mb_s is None:
            return None
        return min(Fraction(BEAT), Fraction(self.s2mm_bandwidth_mb_s) / Fraction(self.clock_mhz))

    @property
    def first_beat_cycles(self) -> int:
        """Cycles from a transfer's start to its first beat at the earliest: setup + first-read latency."""
        return self.setup_cycles + self.burst_latency_cycles

    @property
    def slowdown(self) -> Fraction:
        """How much slower than a beat a cycle the slower limited stream is (1 when neither is limited)."""
        rates = [r for r in (self.bytes_per_cycle, self.s2mm_bytes_per_cycle) if r is not None]
        return max(Fraction(1), *(BEAT / r for r in rates))

    def budget(self, cycles: int) -> int:
        """A cycle budget made for the ideal stream, stretched for this model (slowdown and first-beat delay)."""
        return math.ceil(cycles * self.slowdown) + self.first_beat_cycles

    @property
    def is_ideal(self) -> bool:
        """True when the model changes nothing (a beat every cycle, no delay, unlimited output)."""
        return self.bytes_per_cycle >= BEAT and not self.first_beat_cycles and self.s2mm_bandwidth_mb_s is None

    def input_pattern(self) -> tuple[str, dict]:
        """(kind, kwargs) for VerilatedAccel.set_idle that limits the input stream (see rate_pattern)."""
        return rate_pattern(self.bytes_per_cycle)

    def output_pattern(self) -> tuple[str, dict] | None:
        """(kind, kwargs) for VerilatedAccel.set_backpressure that limits the output stream, or None."""
        rate = self.s2mm_bytes_per_cycle
        return None if rate is None else rate_pattern(rate)

    def describe(self) -> str:
        """One line, e.g. '400 MB/s MM2S (4 B/cycle at 100 MHz), first beat after 28 cycles'."""
        s = (f"{self.bandwidth_mb_s:g} MB/s MM2S ({float(self.bytes_per_cycle):.3g} B/cycle at {self.clock_mhz:g} MHz)"
             f", first beat after {self.first_beat_cycles} cycles")
        if self.s2mm_bandwidth_mb_s is not None:
            s += f", S2MM {self.s2mm_bandwidth_mb_s:g} MB/s"
        return s

    def as_dict(self) -> dict:
        """The fields and the derived rate (for JSON)."""
        return {**asdict(self), "bytes_per_cycle": float(self.bytes_per_cycle),
                "first_beat_cycles": self.first_beat_cycles}

    # -- the harness
    def check_clock(self, cfg) -> None:
        """Raise when the accelerator build runs at another clock than this model counts cycles of."""
        if not math.isclose(cfg.clock_mhz, self.clock_mhz):
            raise ValueError(f"MemoryModel counts cycles at {self.clock_mhz:g} MHz but accelerator '{cfg.name}' runs "
                             f"at {cfg.clock_mhz:g} MHz: use MemoryModel.at(mb_s, clock_mhz={cfg.clock_mhz:g})")

    def apply(self, sim: VerilatedAccel, output: bool = True) -> None:
        """Configure a VerilatedAccel's harness: the input pattern and first-beat delay, and (output=True) the
        output stream's limit, or no backpressure when unlimited. Replaces the idle / backpressure set before;
        stays in force across resets and jobs until changed."""
        self.check_clock(sim.cfg)
        kind, kwargs = self.input_pattern()
        sim.set_idle(kind, **kwargs)
        sim.set_input_delay(self.first_beat_cycles)
        if output:
            kind, kwargs = self.output_pattern() or ("none", {})
            sim.set_backpressure(kind, **kwargs)


IDEAL = MemoryModel.ideal()


def check(memory) -> MemoryModel | None:
    """memory itself when it is a MemoryModel or None; else a clear TypeError."""
    if memory is None or isinstance(memory, MemoryModel):
        return memory
    raise TypeError(f"memory must be a pytorch_fpga.sim.memory.MemoryModel (e.g. MemoryModel.at(400)) or None, "
                    f"got {type(memory).__name__}")
