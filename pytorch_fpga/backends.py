"""Backends that run conv_accel jobs: `model` (numpy, bit-exact), `verilator` (the RTL), `pynq` (board).

Pick one by name, or with the PYTORCH_FPGA_BACKEND environment variable. Torch-free.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import accel

ENV = "PYTORCH_FPGA_BACKEND"
NAMES = ("model", "verilator")


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


def get(name: str | None = None, cfg="z1") -> Backend:
    """A backend by name ('model', 'verilator'); default: $PYTORCH_FPGA_BACKEND, else 'model'."""
    name = name or os.environ.get(ENV) or "model"
    if name == "model":
        return ModelBackend(cfg)
    if name == "verilator":
        return VerilatorBackend(cfg)
    raise ValueError(f"unknown backend {name!r} (from the argument or ${ENV}); choose one of {NAMES}")
