"""A cocotb test that runs one GEMM from a .npz file on rtl/systolic_array.v (used by pf.sim.array_rtl)."""
import os

import cocotb
import numpy as np

from tb.common.array_driver import ArrayDriver


@cocotb.test()
async def run_job(dut):
    """Load X, W from $PF_JOB, run them through the array, save Y and the cycle count to $PF_RESULT."""
    job = np.load(os.environ["PF_JOB"])
    drv = ArrayDriver(dut)
    await drv.reset()
    Y, cycles = await drv.gemm(job["X"], job["W"])
    np.savez(os.environ["PF_RESULT"], Y=Y, cycles=cycles)
