"""`python -m pytorch_fpga demo`: a random int8 GEMM on the Verilated systolic array, checked against numpy."""
from __future__ import annotations

import time

import numpy as np

from . import gemm, systolic


def main(args) -> int:
    """Run the demo GEMM; print the check and the cycle count; return 0 when the RTL matches numpy."""
    from .hw import array_sim, tools

    rng = np.random.default_rng(args.seed)
    M, K, N, R, C = args.M, args.K, args.N, args.rows, args.cols
    X = rng.integers(-128, 128, (M, K)).astype(np.int8)
    W = rng.integers(-128, 128, (K, N)).astype(np.int8)
    X[0, :], W[:, 0] = -128, -128                      # include the extremes
    print(f"pytorch_fpga demo: Y = X @ W, X {M}x{K} int8, W {K}x{N} int8 -> int32, "
          f"on a {R}x{C} weight-stationary systolic array ({args.sim})")
    try:
        tools.require(args.sim)
    except tools.ToolNotFoundError as e:
        print(f"error: {e}")
        return 2
    t0 = time.perf_counter()
    print("building and simulating the RTL (first run compiles it, ~20-40 s)...", flush=True)
    Y, cycles = array_sim.gemm(X, W, R, C, sim=args.sim)
    wall = time.perf_counter() - t0
    ref = gemm.gemm_int8(X, W)
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
