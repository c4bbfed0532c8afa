"""The golden GEMM against torch (exact int64) and Python integers (for the int32 wrap)."""
import numpy as np
import pytest
import torch

import pytorch_fpga as pf


def test_gemm_matches_torch_random_and_extremes():
    rng = np.random.default_rng(0)
    for M, K, N in [(1, 1, 1), (7, 13, 5), (64, 300, 17)]:
        X = rng.integers(-128, 128, (M, K)).astype(np.int8)
        W = rng.integers(-128, 128, (K, N)).astype(np.int8)
        X[0], W[:, 0] = -128, -128
        ref = torch.from_numpy(X.astype(np.int64)) @ torch.from_numpy(W.astype(np.int64))
        Y = pf.gemm_int8(X, W)
        assert Y.dtype == np.int32
        np.testing.assert_array_equal(Y, ref.numpy())


def test_gemm_bias_and_wraparound_like_a_32bit_accumulator():
    K = 131_073  # K * (-128)^2 = 2^31 + 2^14 > int32 max: the hardware accumulator wraps
    X = np.full((1, K), -128, np.int8)
    W = np.full((K, 2), -128, np.int8)
    exact = K * 16384 + 5
    wrapped = (exact + 2**31) % 2**32 - 2**31
    np.testing.assert_array_equal(pf.gemm_int8(X, W, bias=[5, 5]), [[wrapped, wrapped]])
    assert wrapped < 0


def test_mac_wraps_at_int32_limits():
    assert pf.gemm.mac(2**31 - 1, 1, 1) == -(2**31)
    assert pf.gemm.mac(-(2**31), -128, 127) == 2**31 - 128 * 127
    assert pf.gemm.mac(0, -128, -128) == 16384


@pytest.mark.parametrize("X,W,err", [
    (np.zeros((2, 3), np.int16) + 200, np.zeros((3, 2), np.int8), "outside int8"),
    (np.zeros((2, 3), np.float32), np.zeros((3, 2), np.int8), "quantize it first"),
    (np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int8), "matching K"),
])
def test_gemm_errors_name_the_problem(X, W, err):
    with pytest.raises((ValueError, TypeError), match=err):
        pf.gemm_int8(X, W)


def test_random_int8_covers_the_full_range_reproducibly():
    X = pf.gemm.random_int8(np.random.default_rng(3), (64, 64))
    assert X.dtype == np.int8 and X.shape == (64, 64)
    assert X.min() == -128 and X.max() == 127                       # 4096 draws hit both ends
    again = np.random.default_rng(3).integers(-128, 128, (64, 64))  # the same draws as numpy's own call
    np.testing.assert_array_equal(X, again)


@pytest.mark.parametrize("tiles", [(48, 16, 72), (16, 16, 16), (5, 3, 7), (64, 64, 64)])
def test_blocked_gemm_equals_torch_and_counts_its_loads(tiles):
    rng = np.random.default_rng(1)
    A = rng.integers(-128, 128, (37, 50)).astype(np.int8)
    B = rng.integers(-128, 128, (50, 19)).astype(np.int8)
    Y, moved = pf.gemm.blocked_gemm(A, B, *tiles)
    np.testing.assert_array_equal(Y, (torch.from_numpy(A).long() @ torch.from_numpy(B).long()).numpy())
    Tm, Tn, Tk = tiles
    # count the tile loads one by one: every (m-tile, n-tile, k-tile) triple loads one A and one B tile
    a = sum(min(Tm, 37 - m) * min(Tk, 50 - k) for m in range(0, 37, Tm) for _ in range(0, 19, Tn)
            for k in range(0, 50, Tk))
    b = sum(min(Tk, 50 - k) * min(Tn, 19 - n) for _ in range(0, 37, Tm) for n in range(0, 19, Tn)
            for k in range(0, 50, Tk))
    assert moved == {"A": a, "B": b, "Y": 37 * 19} == pf.gemm.blocked_traffic(37, 50, 19, Tm, Tn)
