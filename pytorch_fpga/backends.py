"""Backends that run conv_accel jobs: `model` (numpy, bit-exact), `verilator` (the RTL), `pynq` (board).

Pick one by name, or with the PYTORCH_FPGA_BACKEND environment variable. Torch-free.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import accel

ENV = "PYTORCH_FPGA_BACKEND"
NAMES = ("model", "verilator", "pynq")


@dataclass
class JobReport:
    """What one job cost: MACs, cycles, PE utilization, bytes streamed in and out."""
    M: int
    K: int
    N: int
    macs: int
    cycles: int
    utilization: float
    bytes_in: int
    bytes_out: int
    backend: str

    @classmethod
    def make(cls, job: accel.Job, cycles: int, backend: str) -> "JobReport":
        macs = job.M * job.K * job.N
        pes = job.cfg.rows * job.cfg.cols
        return cls(job.M, job.K, job.N, macs, int(cycles), macs / (pes * cycles) if cycles else 0.0,
                   int(job.stream.size), int(job.out_bytes), backend)


class Backend:
    """Runs packed jobs; subclasses implement `_run` returning the (M x N) output and the cycle count."""
    name = "?"

    def __init__(self, cfg="z1"):
        self.cfg = accel.config(cfg)

    def run(self, job: accel.Job) -> tuple[np.ndarray, JobReport]:
        """Run one job: its output matrix (int8 or int32) and a JobReport."""
        if job.cfg != self.cfg:
            raise ValueError(f"job was packed for config '{job.cfg.name}', this backend runs '{self.cfg.name}'")
        Y, cycles = self._run(job)
        return Y, JobReport.make(job, cycles, self.name)

    def _run(self, job):  # pragma: no cover - abstract
        raise NotImplementedError


class ModelBackend(Backend):
    """The numpy golden model: bit-exact with the RTL, cycles from pf.accel.cycle_model."""
    name = "model"

    def _run(self, job):
        return accel.job_golden(job), accel.cycle_model(job)["cycles"]


class VerilatorBackend(Backend):
    """rtl/conv_accel.v compiled with Verilator (pf.hw.vsim), fed whole buffers."""
    name = "verilator"

    def __init__(self, cfg="z1"):
        super().__init__(cfg)
        from .hw import vsim
        self.sim = vsim.VerilatedAccel(self.cfg)

    def _run(self, job):
        out, status, counters = self.sim.run_job(job)
        return accel.unpack_output(out, job), counters["CYCLES"]


class PynqBackend(Backend):
    """The overlay through the real pynq driver stack: a PYNQ-Z1, or off-board the virtual PYNQ (pf.pynq_sim)."""
    name = "pynq"

    def __init__(self, cfg="z1", overlay=None, virtual: bool | None = None):
        super().__init__(cfg)
        from . import pynq_driver
        if virtual is None:
            virtual = not board_present()
        self.virtual = virtual
        if virtual:                                  # reuse an active virtual PYNQ of this build, else make one
            import pynq
            from . import pynq_sim
            dev = getattr(pynq.Device, "_active_device", None)
            if not (isinstance(dev, pynq_sim.VirtualDevice) and dev.cfg == self.cfg):
                pynq_sim.virtual_pynq(self.cfg)
        self.overlay = overlay or pynq_driver.ConvAccelOverlay()
        hw = self.overlay.accel.config()
        if (hw.rows, hw.cols, hw.x_depth, hw.w_depth, hw.acc_depth, hw.n_max) != (
                self.cfg.rows, self.cfg.cols, self.cfg.x_depth, self.cfg.w_depth, self.cfg.acc_depth, self.cfg.n_max):
            raise RuntimeError(f"the loaded overlay is built as {hw}, not as config '{self.cfg.name}'")

    def _run(self, job):
        out, status, counters = self.overlay.run_job(job)
        return accel.unpack_output(out, job), counters["CYCLES"]


def board_present() -> bool:
    """True on a PYNQ board (pynq installed and it finds a device)."""
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # pynq warns "No devices found" off-board
            import pynq
            return bool(pynq.Device.devices)
    except Exception:                                # no pynq, or pynq without a device
        return False


_announced = set()


def auto() -> str:
    """What backend 'auto' means here: 'pynq' on a board, else 'pynq' on the virtual PYNQ (pynq installed and
    Verilator can build), else 'verilator', else 'model'. Says which it picked, once per process (on stderr).
    """
    import importlib.util
    import shutil
    import sys
    from .hw import tools
    name, why = "model", "the numpy golden model; no Verilator or C++ compiler found"
    if board_present():
        name, why = "pynq", "a PYNQ board"
    elif tools.available("verilator") and (shutil.which("g++") or shutil.which("c++")):
        if importlib.util.find_spec("pynq") is not None:
            name, why = "pynq", "the virtual PYNQ: pynq's driver stack on the Verilated RTL"
        else:
            name, why = "verilator", "the Verilated RTL; install pynq for the virtual PYNQ"
    if name not in _announced:
        print(f"pytorch_fpga: backend 'auto' picked '{name}' ({why})", file=sys.stderr)
        _announced.add(name)
    return name


def get(name: str | None = None, cfg="z1") -> Backend:
    """A backend by name ('model', 'verilator', 'pynq'); default: $PYTORCH_FPGA_BACKEND, else 'model'."""
    name = name or os.environ.get(ENV) or "model"
    if name == "model":
        return ModelBackend(cfg)
    if name == "verilator":
        return VerilatorBackend(cfg)
    if name == "pynq":
        return PynqBackend(cfg)
    if name == "auto":
        return get(auto(), cfg)
    raise ValueError(f"unknown backend {name!r} (from the argument or ${ENV}); choose one of {NAMES}")
