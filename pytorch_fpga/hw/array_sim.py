"""Run an int8 GEMM on the simulated systolic array (cocotb + Icarus or Verilator) from plain Python."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from . import cocotb_run
from ..gemm import check_int8


def gemm(X, W, rows: int = 8, cols: int = 8, sim: str = "verilator", quiet: bool = True):
    """Y = X @ W on a rows x cols rtl/systolic_array.v in `sim`; returns (Y int32, cycles)."""
    X, W = check_int8("X", X), check_int8("W", W)
    with tempfile.TemporaryDirectory(prefix="pf_job_") as tmp:
        job, result = Path(tmp) / "job.npz", Path(tmp) / "result.npz"
        np.savez(job, X=X, W=W)
        cocotb_run.run("systolic_array", ["systolic_array", "pe"], "pytorch_fpga.hw.array_job", sim,
                       parameters={"ROWS": rows, "COLS": cols}, quiet=quiet,
                       extra_env={"PF_JOB": str(job), "PF_RESULT": str(result)})
        out = np.load(result)
        return out["Y"], int(out["cycles"])
