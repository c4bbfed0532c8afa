"""pf.dataflow: stepped ws/os/is models vs the golden GEMM, their closed forms, the RTL's ws_cycles, traces, counts."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytorch_fpga as pf
from pytorch_fpga.arch import dataflow as dfl
from pytorch_fpga.arch import systolic

DFS = dfl.DATAFLOWS


def operands(M, K, N, seed, extremes=True):
    """Random int8 X, W; with extremes, the first row/column hold -128 and 127."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-128, 128, (M, K)).astype(np.int8)
    W = rng.integers(-128, 128, (K, N)).astype(np.int8)
    if extremes:
        X[0, :] = -128
        W[:, 0] = -128
        X[-1, -1], W[-1, -1] = 127, 127
    return X, W


def check_run(X, W, rows, cols, df, trace=True):
    """Everything that must hold for one stepped run; returns the result."""
    M, K = X.shape
    N = W.shape[1]
    r = dfl.simulate(X, W, rows, cols, df, trace=trace)
    assert r.Y.dtype == np.int32
    np.testing.assert_array_equal(r.Y, pf.gemm_int8(X, W))
    assert r.cycles == dfl.cycles(M, K, N, rows, cols, df)
    assert r.utilization == pytest.approx(dfl.utilization_formula(M, K, N, rows, cols, df))
    assert r.access == dfl.access_counts(M, K, N, rows, cols, df)
    if df == "ws":
        assert r.cycles == systolic.ws_cycles(M, K, N, rows, cols)
        F = len(systolic.fold_plan(K, N, rows, cols))
        load, stream = systolic.ws_schedule([M] * F, rows, cols)
        assert (r.schedule["load"], r.schedule["stream"]) == (load, stream)
    if trace:
        t = r.trace
        assert t.active.shape == t.x.shape == t.w.shape == t.psum.shape == (r.cycles, rows, cols)
        assert int(t.active.sum()) == M * K * N
        prod = t.x.astype(np.int64) * t.w.astype(np.int64)
        assert int(prod[t.active].sum()) == int((X.astype(np.int64) @ W.astype(np.int64)).sum())
        assert (t.fold[t.active] >= 0).all()
    return r


# --- the three models over a grid: small M (streams wait), K = 1, non-multiples of the array ------------------
GRID = [(1, 1, 1), (1, 7, 3), (2, 1, 9), (3, 5, 7), (5, 17, 9), (9, 4, 2), (16, 16, 16), (17, 33, 5),
        (40, 3, 20), (6, 40, 6)]
ARRAYS = [(1, 1), (1, 4), (3, 1), (2, 3), (4, 4), (5, 3), (8, 8), (7, 12), (16, 16)]


@pytest.mark.parametrize("rows,cols", ARRAYS)
@pytest.mark.parametrize("df", DFS)
def test_stepped_models_over_a_grid(df, rows, cols):
    for i, (M, K, N) in enumerate(GRID):
        X, W = operands(M, K, N, seed=1000 * rows + 10 * cols + i)
        check_run(X, W, rows, cols, df, trace=(i % 2 == 0))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(M=st.integers(1, 24), K=st.integers(1, 24), N=st.integers(1, 24), rows=st.integers(1, 7),
       cols=st.integers(1, 7), df=st.sampled_from(DFS), seed=st.integers(0, 2**16))
def test_stepped_models_random_shapes(M, K, N, rows, cols, df, seed):
    X, W = operands(M, K, N, seed)
    check_run(X, W, rows, cols, df, trace=False)


def test_extreme_values_all_dataflows():
    for X, W in [(np.full((5, 9), -128, np.int8), np.full((9, 4), -128, np.int8)),
                 (np.full((5, 9), 127, np.int8), np.full((9, 4), -128, np.int8))]:
        for df in DFS:
            r = dfl.simulate(X, W, 4, 3, df, trace=False)
            np.testing.assert_array_equal(r.Y, pf.gemm_int8(X, W))


def test_ws_formula_equals_rtl_formula_over_many_shapes():
    # the closed form delegates to pf.systolic, and the steady-state closed form holds for large M
    for rows, cols in [(2, 2), (4, 8), (16, 16)]:
        for M in [1, 2, 3, rows, 2 * rows + cols - 4, 2 * rows + cols - 3, 100]:
            for K, N in [(1, 1), (rows + 1, cols * 2 + 1), (150, 16)]:
                c = dfl.cycles(M, K, N, rows, cols, "ws")
                assert c == systolic.ws_cycles(M, K, N, rows, cols)
                if M >= max(rows, 2 * rows + cols - 3):
                    assert c == systolic.ws_cycles_steady(M, K, N, rows, cols)


def test_os_and_is_closed_forms():
    assert dfl.os_cycles(64, 150, 16, 16, 16) == (4 - 1) * 150 + 150 + 32 + 16 - 2
    assert dfl.os_cycles(5, 2, 3, 4, 4) == (2 - 1) * 4 + 2 + 8 + 4 - 2       # K < rows: tiles 4 cycles apart
    assert dfl.is_cycles(64, 150, 16, 16, 16) == systolic.ws_cycles(16, 150, 64, 16, 16)


# --- traces ----------------------------------------------------------------------------------------------------
def test_ws_trace_holds_the_right_weights_and_banks():
    X, W = operands(6, 7, 5, seed=3)
    r = check_run(X, W, 3, 2, "ws")
    plan = systolic.fold_plan(7, 5, 3, 2)
    t, rr, cc = np.nonzero(r.trace.active)
    f = r.trace.fold[t, rr, cc]
    k0 = np.array([p.k0 for p in plan])[f]
    n0 = np.array([p.n0 for p in plan])[f]
    np.testing.assert_array_equal(r.trace.w[t, rr, cc], W[k0 + rr, n0 + cc])          # held weight
    assert r.trace.extra["load"].sum() == len(plan) * 3                                 # rows beats per tile
    assert r.trace.extra["accept"].sum() == len(plan) * 6
    assert r.trace.extra["emit"].sum() == len(plan) * 6
    assert r.trace.extra["bank0"].shape == r.trace.active.shape
    assert set(r.trace.frame(5)) >= {"active", "x", "w", "psum", "fold", "bank0", "bank1"}


def test_is_trace_holds_x():
    X, W = operands(5, 4, 6, seed=4)
    r = check_run(X, W, 2, 3, "is")
    plan = systolic.fold_plan(4, 5, 2, 3)                   # the ws array on W^T @ X^T: held tile is X^T
    t, rr, cc = np.nonzero(r.trace.active)
    f = r.trace.fold[t, rr, cc]
    k0 = np.array([p.k0 for p in plan])[f]
    m0 = np.array([p.n0 for p in plan])[f]
    np.testing.assert_array_equal(r.trace.x[t, rr, cc], X[m0 + cc, k0 + rr])


def test_os_trace_accumulates_in_place():
    X, W = operands(5, 6, 4, seed=5)
    r = check_run(X, W, 3, 3, "os")
    # each PE does K consecutive MACs per tile; its last accumulator value is the Y element
    tiles = [(m0, n0) for n0 in range(0, 4, 3) for m0 in range(0, 5, 3)]
    for q, (m0, n0) in enumerate(tiles):
        for i in range(3):
            for j in range(3):
                if m0 + i < 5 and n0 + j < 4:
                    ts = np.nonzero(r.trace.active[:, i, j] & (r.trace.fold[:, i, j] == q))[0]
                    assert len(ts) == 6 and np.all(np.diff(ts) == 1)
                    assert r.trace.psum[ts[-1], i, j] == r.Y[m0 + i, n0 + j]
    assert r.trace.extra["emit"].sum() == 5 * 4


def test_trace_on_and_off_on_lenet_conv2():
    X, W = operands(64, 150, 16, seed=6)
    for df in DFS:
        r = dfl.simulate(X, W, 16, 16, df, trace=True)
        assert isinstance(r.trace, dfl.ArrayTrace) and len(r.trace) == r.cycles
        np.testing.assert_array_equal(r.Y, pf.gemm_int8(X, W))
    assert dfl.simulate(X, W, 16, 16, "ws", trace=False).trace is None
    assert dfl.simulate(X, W, 16, 16, "ws").cycles == 687 == 10 * 64 + 2 * 16 + 16 - 1


@pytest.mark.parametrize("df", ["ws", "is"])
def test_timeline_marks_the_schedule(df):
    """ws/is timeline rows against pf.systolic's schedule: tile beats, stream beats, result rows, MAC counts."""
    M, K, N, R, C = 5, 6, 7, 2, 3                               # R * C <= 9: the MAC digits are not capped
    X, W = operands(M, K, N, seed=8)
    r = dfl.simulate(X, W, R, C, df)
    rows = [line[17:] for line in dfl.timeline(r).splitlines()]
    assert len(rows) == 5 and all(len(row) == r.cycles for row in rows)
    sM, sK, sN = (M, K, N) if df == "ws" else (N, K, M)          # is: the ws array on Y^T = W^T X^T
    folds = len(systolic.fold_plan(sK, sN, R, C))
    load, stream = systolic.ws_schedule([sM] * folds, R, C)
    assert rows[0] == "".join(str(t % 10) for t in range(r.cycles))
    assert [t for t, ch in enumerate(rows[1]) if ch == "L"] == [s + i for s in load for i in range(R)]
    assert [t for t, ch in enumerate(rows[2]) if ch != "."] == [s + i for s in stream for i in range(sM)]
    lat = systolic.latency(R, C)
    assert [t for t, ch in enumerate(rows[3]) if ch == "Y"] == [s + i + lat for s in stream for i in range(sM)]
    macs = [0 if ch == "." else int(ch) for ch in rows[4]]
    assert sum(macs) == M * K * N and max(macs) <= R * C             # every MAC exactly once


def test_timeline_os_and_untraced():
    X, W = operands(5, 4, 6, seed=9)
    r = dfl.simulate(X, W, 3, 3, "os")
    rows = [line[17:] for line in dfl.timeline(r).splitlines()]
    out = [0 if ch == "." else int(ch) for ch in rows[2]]
    assert sum(out) == 5 * 6 and rows[1].index("x") == 0          # every result drains once; operands enter at 0
    assert sum(0 if ch == "." else int(ch) for ch in rows[3]) == 5 * 4 * 6
    with pytest.raises(ValueError, match="trace"):
        dfl.timeline(dfl.simulate(X, W, 3, 3, "os", trace=False))


# --- access counts ---------------------------------------------------------------------------------------------
def test_access_counts_by_hand():
    # M=3, K=5, N=7 on 2x3: ws has ceil(5/2)=3 K-folds x ceil(7/3)=3 N-folds
    a = dfl.access_counts(3, 5, 7, 2, 3, "ws")
    assert (a["X"].buf_reads, a["W"].buf_reads, a["Y"].buf_writes, a["Y"].buf_reads) == (45, 35, 63, 42)
    assert (a["X"].dram_reads, a["W"].dram_reads, a["Y"].dram_writes, a["Y"].dram_reads) == (15, 35, 21, 0)
    assert a["X"].buf_writes == 15 and a["Y"].elem_bytes == 4 and a["Y"].dram_bytes == 84
    a = dfl.access_counts(3, 5, 7, 2, 3, "os")        # ceil(3/2)=2 M-tiles x 3 N-tiles, no partial sums
    assert (a["X"].buf_reads, a["W"].buf_reads, a["Y"].buf_writes, a["Y"].buf_reads) == (45, 70, 21, 0)
    a = dfl.access_counts(3, 5, 7, 2, 3, "is")        # X^T held: 3 K-folds x ceil(3/3)=1 M-fold
    assert (a["X"].buf_reads, a["W"].buf_reads, a["Y"].buf_writes, a["Y"].buf_reads) == (15, 35, 63, 42)
    # buffers too small: X refetched per fold, partial sums spill to DRAM and come back
    small = dfl.MemConfig(x_buf_bytes=14, w_buf_bytes=1024, y_buf_bytes=83)
    a = dfl.access_counts(3, 5, 7, 2, 3, "ws", small)
    assert (a["X"].dram_reads, a["W"].dram_reads, a["Y"].dram_writes, a["Y"].dram_reads) == (45, 35, 63, 42)
    X, W = operands(3, 5, 7, seed=7)
    assert dfl.simulate(X, W, 2, 3, "ws", trace=False, mem=small).access == a


# --- conv mapping, sweeps, errors -------------------------------------------------------------------------------
def test_conv_mapping():
    g = dfl.conv_gemm(1, 28, 28, 6, 5)
    assert (g.M, g.K, g.N, g.groups) == (576, 25, 6, 1)
    g = dfl.ConvLayer("c2", C=6, H=12, W=12, O=16, kh=5, kw=5).gemm
    assert (g.M, g.K, g.N) == (64, 150, 16)
    g = dfl.conv_gemm(32, 14, 14, 64, 3, stride=2, padding=1, groups=4, batch=2)
    assert (g.M, g.K, g.N, g.groups) == (2 * 7 * 7, 8 * 9, 16, 4)
    assert g.macs == pf.conv.conv2d_macs((2, 32, 14, 14), (64, 8, 3, 3), stride=2, padding=1, groups=4)
    dw = dfl.ConvLayer("dw", C=8, H=6, W=6, O=8, kh=3, kw=3, padding=1, groups=8)
    assert dfl.conv_cycles(dw, 4, 4, "os") == 8 * dfl.cycles(36, 9, 1, 4, 4, "os")
    assert 0 < dfl.conv_utilization(dw, 4, 4, "ws") < 1
    with pytest.raises(ValueError, match="groups"):
        dfl.conv_gemm(6, 8, 8, 4, 3, groups=4)


def test_conv_through_the_stepped_array():
    rng = np.random.default_rng(8)
    Xc = rng.integers(-128, 128, (3, 7, 7)).astype(np.int8)
    Wc = rng.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8)
    cols = pf.conv.im2col(Xc, 3, stride=2, padding=1)
    ref = pf.conv.conv2d(Xc, Wc, stride=2, padding=1)                              # (4, 4, 4)
    g = dfl.conv_gemm(3, 7, 7, 4, 3, stride=2, padding=1)
    assert cols.shape == (g.M, g.K)
    for df in DFS:
        r = dfl.simulate(cols, Wc.reshape(4, -1).T, 4, 4, df, trace=False)
        np.testing.assert_array_equal(r.Y.T.reshape(4, 4, 4), ref)


def test_utilization_sweep_and_layer_table():
    s = dfl.utilization_sweep([1, 16, 64, 256], dim="M", K=150, N=16, rows=16, cols=16)
    for df in DFS:
        assert s["cycles"][df].shape == (4,) and np.all((s["utilization"][df] > 0) & (s["utilization"][df] <= 1))
    assert s["utilization"]["ws"][-1] > s["utilization"]["ws"][0]          # larger M amortises fill/drain
    assert s["cycles"]["ws"][2] == systolic.ws_cycles(64, 150, 16, 16, 16)
    tab = dfl.layer_table([dfl.ConvLayer("c1", 1, 28, 28, 6, 5, 5)], 16, 16)
    assert tab[0]["ws_cycles"] == 1199 and tab[0]["M"] == 576
    assert dfl.num_folds(576, 25, 6, 16, 16, "os") == 36


def test_errors():
    X, W = operands(3, 4, 5, seed=9)
    with pytest.raises(ValueError, match="dataflow"):
        dfl.simulate(X, W, 4, 4, "rs")
    with pytest.raises(ValueError, match="matching K"):
        dfl.simulate(X, W[:3], 4, 4)
    with pytest.raises(ValueError, match="int8"):
        dfl.simulate(X.astype(np.int32) * 300, W, 4, 4)
    with pytest.raises(ValueError, match="rows"):
        dfl.cycles(3, 4, 5, 0, 4)
    with pytest.raises(ValueError, match="dim"):
        dfl.utilization_sweep([1], dim="Q")
    assert math.isclose(dfl.utilization_formula(16, 16, 16, 16, 16, "ws"),
                        16 ** 3 / (256 * systolic.ws_cycles(16, 16, 16, 16, 16)))
