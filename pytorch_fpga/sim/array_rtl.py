"""Run an int8 GEMM on the simulated systolic array (cocotb + Icarus or Verilator) from plain Python."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from pytorch_fpga.arch import systolic
from pytorch_fpga.core.gemm import check_int8, gemm_int8
from pytorch_fpga.sim import cocotb_runner


def gemm(X, W, rows: int = 8, cols: int = 8, sim: str = "verilator", quiet: bool = True, waves: bool = False,
         name: str | None = None):
    """Y = X @ W on a rows x cols rtl/systolic_array.v in `sim`; returns (Y int32, cycles).

    waves=True (Verilator) also dumps the run's waveform and returns (Y, cycles, path of the VCD), named
    <name>.vcd (default waves_array_job) in the --trace build's directory; read it with pf.viz.waves.load_vcd.
    """
    X, W = check_int8("X", X), check_int8("W", W)
    with tempfile.TemporaryDirectory(prefix="pf_job_") as tmp:
        job, result = Path(tmp) / "job.npz", Path(tmp) / "result.npz"
        np.savez(job, X=X, W=W)
        args = dict(parameters={"ROWS": rows, "COLS": cols}, quiet=quiet,
                    extra_env={"PF_JOB": str(job), "PF_RESULT": str(result)})
        modules = ["systolic_array", "pe"]
        if waves:
            vcd = cocotb_runner.run_with_waves("systolic_array", modules, "tb.common.array_job", sim,
                                               name=name or "waves_array_job", **args)
        else:
            cocotb_runner.run("systolic_array", modules, "tb.common.array_job", sim, **args)
        out = np.load(result)
        Y, cycles = out["Y"], int(out["cycles"])
    return (Y, cycles, vcd) if waves else (Y, cycles)


def main(args) -> int:
    """`python -m pytorch_fpga array-demo`: a random GEMM on the array; 0 when RTL == numpy and the cycle formula."""
    from pytorch_fpga.sim import tools

    rng = np.random.default_rng(args.seed)
    M, K, N, R, C = args.M, args.K, args.N, args.rows, args.cols
    X = rng.integers(-128, 128, (M, K)).astype(np.int8)
    W = rng.integers(-128, 128, (K, N)).astype(np.int8)
    X[0, :], W[:, 0] = -128, -128                      # include the extremes
    print(f"pytorch_fpga array demo: Y = X @ W, X {M}x{K} int8, W {K}x{N} int8 -> int32, "
          f"on a {R}x{C} weight-stationary systolic array ({args.sim})")
    try:
        tools.require(args.sim)
    except tools.ToolNotFoundError as e:
        print(f"error: {e}")
        return 2
    t0 = time.perf_counter()
    print("building and simulating the RTL (first run compiles it, ~20-40 s)...", flush=True)
    Y, cycles = gemm(X, W, R, C, sim=args.sim)
    wall = time.perf_counter() - t0
    ref = gemm_int8(X, W)
    ok = np.array_equal(Y, ref)
    expect = systolic.ws_cycles(M, K, N, R, C)
    folds = len(systolic.fold_plan(K, N, R, C))
    print(f"result check vs numpy (pf.gemm_int8): {'PASS' if ok else 'FAIL'} "
          f"({np.count_nonzero(Y == ref)}/{Y.size} int32 outputs equal)")
    print(f"Y[0, :4] = {Y[0, :4].tolist()}  (numpy: {ref[0, :4].tolist()})")
    print(f"cycles: RTL {cycles}, formula pf.systolic.ws_cycles {expect} "
          f"({'exact' if cycles == expect else 'MISMATCH'}); {folds} folds of {M} vectors")
    macs = M * K * N
    print(f"PE utilization: {macs} MACs / ({R * C} PEs x {cycles} cycles) = {macs / (R * C * cycles):.1%}; "
          f"at 100 MHz: {cycles / 100:.2f} us")
    print(f"wall time: {wall:.1f} s (build + simulation)")
    return 0 if ok and cycles == expect else 1
