"""The `verilator` backend: jobs run on rtl/conv_accel.v compiled with Verilator, fed whole buffers."""
from __future__ import annotations

from pytorch_fpga.contract import accel
from pytorch_fpga.runtime.backends import Backend


class VerilatorBackend(Backend):
    """rtl/conv_accel.v compiled with Verilator (pf.sim.verilated), fed whole buffers.

    memory: a pytorch_fpga.sim.memory.MemoryModel the input stream goes through (DDR bandwidth, first-read
    latency, DMA set-up; optionally an output-stream limit), applied to the harness once and kept for every job.
    None: the ideal stream, a beat every cycle (as MemoryModel.IDEAL).
    """
    name = "verilator"

    def __init__(self, cfg="z1", memory=None):
        super().__init__(cfg)
        from pytorch_fpga.sim import memory as mem
        from pytorch_fpga.sim import verilated
        self.memory = mem.check(memory)
        if memory is not None:
            memory.check_clock(self.cfg)          # before the (possibly long) build
        self.sim = verilated.VerilatedAccel(self.cfg)
        if memory is not None:
            memory.apply(self.sim)

    def _budget(self, job) -> int:
        """run_job's default cycle budget, stretched for a slow memory model."""
        budget = self.sim.default_budget(job)
        return budget if self.memory is None else self.memory.budget(budget)

    def _run(self, job):
        out, cycles = self._run_bytes(job)
        return accel.unpack_output(out, job), cycles

    def _run_bytes(self, job):
        out, status, counters = self.sim.run_job(job, self._budget(job))
        return out, counters["CYCLES"]
