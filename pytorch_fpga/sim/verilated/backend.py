"""The `verilator` backend: jobs run on rtl/conv_accel.v compiled with Verilator, fed whole buffers."""
from __future__ import annotations

from pytorch_fpga.contract import accel
from pytorch_fpga.runtime.backends import Backend


class VerilatorBackend(Backend):
    """rtl/conv_accel.v compiled with Verilator (pf.sim.verilated), fed whole buffers."""
    name = "verilator"

    def __init__(self, cfg="z1"):
        super().__init__(cfg)
        from pytorch_fpga.sim import verilated
        self.sim = verilated.VerilatedAccel(self.cfg)

    def _run(self, job):
        out, status, counters = self.sim.run_job(job)
        return accel.unpack_output(out, job), counters["CYCLES"]

    def _run_bytes(self, job):
        out, status, counters = self.sim.run_job(job)
        return out, counters["CYCLES"]
