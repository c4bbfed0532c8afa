"""The weight-stationary systolic array's contract: stream packing, fold plan and exact cycle formula.

Y (M x N) = X (M x K) @ W (K x N) runs on a ROWS x COLS array as folds: each fold holds a ROWS x COLS tile
of W (rows = reduction index k, columns = output index n) in the PEs, streams the M matching activation
vectors X[m, k-tile] through it, and gets M partial-sum rows back. K-folds of one N-tile are summed.
rtl/systolic_array.v implements exactly this; tb/systolic_array tests it against pf.gemm.gemm_int8.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pytorch_fpga.core.gemm import check_int8, wrap_int32


@dataclass(frozen=True)
class Fold:
    """One weight tile on the array: W[k0:k0+k, n0:n0+n] times X[:, k0:k0+k]."""
    k0: int
    k: int
    n0: int
    n: int


def fold_plan(K: int, N: int, rows: int, cols: int) -> list[Fold]:
    """Folds in execution order: N-tiles outer, K-tiles inner (so K-partials of one N-tile are adjacent)."""
    if min(K, N) < 1 or min(rows, cols) < 1:
        raise ValueError(f"need K, N, rows, cols >= 1; got K={K}, N={N}, rows={rows}, cols={cols}")
    return [Fold(k0, min(rows, K - k0), n0, min(cols, N - n0))
            for n0 in range(0, N, cols) for k0 in range(0, K, rows)]


def pack_weights(Wt, rows: int, cols: int) -> np.ndarray:
    """Weight-stream beats (rows x cols int8) for a tile Wt (k <= rows, n <= cols), zero-padded.

    Weights shift into the array from the top, one row of the tile a beat, so the first beat ends up in the
    bottom PE row: beat i carries tile row rows-1-i.
    """
    Wt = check_int8("weight tile", Wt)
    k, n = Wt.shape
    if k > rows or n > cols:
        raise ValueError(f"weight tile {Wt.shape} is larger than the {rows}x{cols} array")
    tile = np.zeros((rows, cols), np.int8)
    tile[:k, :n] = Wt
    return tile[::-1].copy()


def pack_activations(Xt, rows: int) -> np.ndarray:
    """Activation-stream beats (M x rows int8): beat m carries X[m, k-tile], zero-padded to the array height."""
    Xt = check_int8("activation tile", Xt)
    M, k = Xt.shape
    if k > rows:
        raise ValueError(f"activation tile has {k} columns, more than the array's {rows} rows")
    beats = np.zeros((M, rows), np.int8)
    beats[:, :k] = Xt
    return beats


def ws_streams(X, W, rows: int, cols: int):
    """Yield (fold, weight_beats, activation_beats) for every fold of X @ W on a rows x cols array."""
    X, W = check_int8("X", X), check_int8("W", W)
    if X.ndim != 2 or W.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ValueError(f"need X (M x K) and W (K x N) with matching K; got {X.shape} and {W.shape}")
    if X.shape[0] < 1:
        raise ValueError("the array needs at least one activation vector (M >= 1)")
    for f in fold_plan(X.shape[1], W.shape[1], rows, cols):
        yield (f, pack_weights(W[f.k0:f.k0 + f.k, f.n0:f.n0 + f.n], rows, cols),
               pack_activations(X[:, f.k0:f.k0 + f.k], rows))


def ws_assemble(fold_outputs, M: int, K: int, N: int, rows: int, cols: int) -> np.ndarray:
    """Sum the K-fold partial sums (each M x cols int32) and place the N-tiles: the full int32 Y (M x N)."""
    plan = fold_plan(K, N, rows, cols)
    if len(fold_outputs) != len(plan):
        raise ValueError(f"expected {len(plan)} fold outputs, got {len(fold_outputs)}")
    Y = np.zeros((M, N), np.int64)
    for f, out in zip(plan, fold_outputs, strict=True):
        out = np.asarray(out, np.int64)
        if out.shape != (M, cols):
            raise ValueError(f"fold output has shape {out.shape}, expected {(M, cols)}")
        Y[:, f.n0:f.n0 + f.n] += out[:, :f.n]
    return wrap_int32(Y)


def latency(rows: int, cols: int) -> int:
    """Cycles from accepting an activation beat to its result row being valid: rows + cols - 1."""
    return rows + cols - 1


def drain(rows: int, cols: int) -> int:
    """Extra cycles a weight bank stays in use after a fold's last beat: max(0, rows + cols - 3)."""
    return max(0, rows + cols - 3)


def ws_schedule(fold_ms, rows: int, cols: int) -> tuple[list[int], list[int]]:
    """Start cycles of each fold's weight load and activation stream when both streams run at full rate.

    fold_ms[f] is the number of activation vectors of fold f. Two weight banks: a fold's weights (rows beats)
    load into one bank while the previous fold streams from the other; a bank is reloaded only after the
    fold two back has drained out of the array:
        load_f   = max(load_{f-1} + rows, stream_{f-2} + M_{f-2} + drain)
        stream_f = max(load_f + rows, stream_{f-1} + M_{f-1})
    """
    R, D = rows, drain(rows, cols)
    load, stream = [], []
    for f, _ in enumerate(fold_ms):
        ld = 0 if f == 0 else load[-1] + R
        if f >= 2:
            ld = max(ld, stream[f - 2] + fold_ms[f - 2] + D)
        s = ld + R if f == 0 else max(ld + R, stream[-1] + fold_ms[f - 1])
        load.append(ld)
        stream.append(s)
    return load, stream


def ws_cycles_for_folds(fold_ms, rows: int, cols: int) -> int:
    """Exact cycles for a sequence of folds (fold_ms[f] vectors each) streamed back to back."""
    if not len(fold_ms) or min(fold_ms) < 1:
        raise ValueError("need at least one fold, each with M >= 1 vectors")
    _, stream = ws_schedule(fold_ms, rows, cols)
    return stream[-1] + fold_ms[-1] + latency(rows, cols)


def ws_cycles(M: int, K: int, N: int, rows: int, cols: int) -> int:
    """Exact cycles for Y = X @ W on the RTL array, from the first weight beat to the last result row.

    In steady state (M >= 2*rows + cols - 3) the streams never wait and this is the closed form
        F * M + 2 * rows + cols - 1,  F = ceil(K / rows) * ceil(N / cols):
    rows cycles to load the first tile, F * M activation beats, rows + cols - 1 to drain the last result.
    """
    F = math.ceil(K / rows) * math.ceil(N / cols)
    return ws_cycles_for_folds([M] * F, rows, cols)


def ws_cycles_steady(M: int, K: int, N: int, rows: int, cols: int) -> int:
    """The closed form F*M + 2*rows + cols - 1, exact when M >= max(rows, 2*rows + cols - 3)."""
    F = math.ceil(K / rows) * math.ceil(N / cols)
    return F * M + 2 * rows + cols - 1
