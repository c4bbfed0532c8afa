"""The golden integer GEMM: int8 x int8 -> int32, exactly as the hardware computes it."""
from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def wrap_int32(x) -> np.ndarray:
    """Two's-complement wrap of integers to int32 (what a 32-bit hardware accumulator does on overflow)."""
    x = np.asarray(x, dtype=np.int64)
    return (((x + 2**31) & 0xFFFFFFFF) - 2**31).astype(np.int32)


def check_int8(name: str, a) -> np.ndarray:
    """Return `a` as an int8 array, or raise a clear error if it holds values outside [-128, 127]."""
    arr = np.asarray(a)
    if arr.dtype == np.int8:
        return arr
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers in [-128, 127] (got dtype {arr.dtype}); "
                        "quantize it first, e.g. with pf.quant")
    if arr.size and (arr.min() < INT8_MIN or arr.max() > INT8_MAX):
        raise ValueError(f"{name} has values in [{arr.min()}, {arr.max()}], outside int8 [-128, 127]; "
                         "clip or requantize it first")
    return arr.astype(np.int8)


def mac(psum, a, w) -> np.ndarray:
    """One processing element step: psum + a * w with a 32-bit wrapping accumulator."""
    return wrap_int32(np.asarray(psum, np.int64) + np.asarray(a, np.int64) * np.asarray(w, np.int64))


def gemm_int8(X, W, bias=None) -> np.ndarray:
    """Y = X @ W (+ bias) for int8 X (M x K) and W (K x N), accumulated exactly and wrapped to int32."""
    X, W = check_int8("X", X), check_int8("W", W)
    if X.ndim != 2 or W.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ValueError(f"gemm_int8 needs X (M x K) and W (K x N) with matching K; got {X.shape} and {W.shape}")
    # int64 products and sums are exact for any K < 2**49; the accumulator then wraps like 32-bit hardware.
    Y = X.astype(np.int64) @ W.astype(np.int64)
    if bias is not None:
        Y = Y + np.asarray(bias, np.int64)
    return wrap_int32(Y)


def random_int8(rng: np.random.Generator, shape) -> np.ndarray:
    """Uniform random int8 values over the full range [-128, 127] from `rng` (operands that exercise int32 sums)."""
    return rng.integers(INT8_MIN, INT8_MAX + 1, shape).astype(np.int8)


def blocked_gemm(A, B, Tm: int, Tn: int, Tk: int):
    """Y = A @ B tile by tile (Tm x Tk tiles of A, Tk x Tn of B) on gemm_int8; returns (Y, elements moved).

    The loops run m, n outer and k inner, so each Tm x Tn output tile stays on chip until it is finished;
    moved = {"A": elements of A loaded, "B": of B loaded, "Y": of Y stored} (blocked_traffic in closed form).
    """
    A, B = check_int8("A", A), check_int8("B", B)
    M, K = A.shape
    N = B.shape[1]
    Y = np.zeros((M, N), np.int32)
    moved = {"A": 0, "B": 0, "Y": 0}
    for m0 in range(0, M, Tm):
        for n0 in range(0, N, Tn):
            acc = np.zeros((min(Tm, M - m0), min(Tn, N - n0)), np.int64)    # the output tile, on chip
            for k0 in range(0, K, Tk):
                a, b = A[m0:m0 + Tm, k0:k0 + Tk], B[k0:k0 + Tk, n0:n0 + Tn]  # load one tile of each
                moved["A"] += a.size
                moved["B"] += b.size
                acc += gemm_int8(a, b)
            Y[m0:m0 + Tm, n0:n0 + Tn] = wrap_int32(acc)                     # store the finished tile
            moved["Y"] += acc.size
    return Y, moved


def blocked_traffic(M: int, K: int, N: int, Tm: int, Tn: int) -> dict:
    """Elements blocked_gemm moves for an (M x K) @ (K x N) GEMM: A once per column of output tiles, B once per row."""
    return {"A": M * K * math.ceil(N / Tn), "B": K * N * math.ceil(M / Tm), "Y": M * N}
