"""The array contract: packing, fold plan and cycle formula (the RTL itself is tested in tb/systolic_array)."""
import numpy as np
import pytest
import torch

import pytorch_fpga as pf
from pytorch_fpga.arch import systolic


def fold_model(X, W, rows, cols):
    """What the array computes fold by fold: each packed tile's GEMM, then the library's assembly."""
    outs = []
    for _, wbeats, xbeats in systolic.ws_streams(X, W, rows, cols):
        tile = wbeats[::-1]               # beat i sits in PE row rows-1-i
        outs.append(pf.gemm_int8(xbeats, tile))
    return systolic.ws_assemble(outs, X.shape[0], X.shape[1], W.shape[1], rows, cols)


@pytest.mark.parametrize("rows,cols", [(2, 2), (4, 3), (8, 8), (16, 16)])
@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (5, 17, 9), (33, 64, 40)])
def test_folds_reassemble_to_the_full_gemm(rows, cols, M, K, N):
    rng = np.random.default_rng(M * K * N)
    X = rng.integers(-128, 128, (M, K)).astype(np.int8)
    W = rng.integers(-128, 128, (K, N)).astype(np.int8)
    ref = (torch.from_numpy(X.astype(np.int64)) @ torch.from_numpy(W.astype(np.int64))).numpy()
    np.testing.assert_array_equal(fold_model(X, W, rows, cols), ref)


def test_fold_plan_covers_k_and_n_once():
    plan = systolic.fold_plan(K=20, N=10, rows=8, cols=4)
    assert [(f.k0, f.k, f.n0, f.n) for f in plan[:4]] == [(0, 8, 0, 4), (8, 8, 0, 4), (16, 4, 0, 4), (0, 8, 4, 4)]
    cover = np.zeros((20, 10), int)
    for f in plan:
        cover[f.k0:f.k0 + f.k, f.n0:f.n0 + f.n] += 1
    assert (cover == 1).all()


def test_pack_weights_puts_first_beat_at_the_bottom():
    Wt = np.arange(6, dtype=np.int8).reshape(2, 3)
    beats = systolic.pack_weights(Wt, rows=3, cols=4)
    np.testing.assert_array_equal(beats[0], [0, 0, 0, 0])        # row 2 (padding) enters first
    np.testing.assert_array_equal(beats[2], [0, 1, 2, 0])        # row 0 enters last
    with pytest.raises(ValueError, match="larger than"):
        systolic.pack_weights(np.zeros((4, 1), np.int8), rows=3, cols=4)


def step_schedule(fold_ms, rows, cols):
    """An independent cycle-by-cycle replay of the array's handshakes (bank flags, drain counters)."""
    D = systolic.drain(rows, cols)
    full, drain, wb, xb, wrow = [False, False], [0, 0], 0, 0, 0
    loaded, f, m, cycle, last_x = 0, 0, 0, 0, None
    while f < len(fold_ms):
        w_ok = loaded < len(fold_ms) and not full[wb] and drain[wb] == 0
        x_ok = full[xb]
        nxt_full, nxt_drain = list(full), [max(0, d - 1) for d in drain]
        if w_ok:
            wrow += 1
            if wrow == rows:
                wrow, nxt_full[wb], wb, loaded = 0, True, 1 - wb, loaded + 1
        if x_ok:
            m += 1
            if m == fold_ms[f]:
                nxt_full[xb], nxt_drain[xb], xb, m, f, last_x = False, D, 1 - xb, 0, f + 1, cycle
        full, drain, cycle = nxt_full, nxt_drain, cycle + 1
    return last_x + systolic.latency(rows, cols) + 1


@pytest.mark.parametrize("rows,cols", [(1, 2), (2, 2), (3, 5), (8, 8), (16, 16)])
def test_cycle_formula_matches_a_stepped_replay(rows, cols):
    rng = np.random.default_rng(rows * cols)
    for _ in range(30):
        fold_ms = list(rng.integers(1, 3 * (rows + cols), rng.integers(1, 7)))
        assert systolic.ws_cycles_for_folds(fold_ms, rows, cols) == step_schedule(fold_ms, rows, cols)


def test_closed_form_in_steady_state():
    for rows, cols in [(4, 4), (8, 8), (16, 16), (16, 12)]:
        for M in [max(rows, 2 * rows + cols - 3), 100, 784]:
            for K, N in [(1, 1), (rows * 3 + 1, cols * 2), (576, 64)]:
                assert systolic.ws_cycles(M, K, N, rows, cols) == systolic.ws_cycles_steady(M, K, N, rows, cols)
    # below the threshold the streams wait for weight banks and the closed form under-counts
    assert systolic.ws_cycles(1, 64, 16, 16, 16) > systolic.ws_cycles_steady(1, 64, 16, 16, 16)
