"""pf.quant: the integer requantization rule bit-exactly (Python big ints as oracle), torch's quantizers as
oracle for float -> int8, and a whole quantized conv within its worst-case error bound."""
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pytorch_fpga as pf
from pytorch_fpga.core import quant as pq
from pytorch_fpga.core.conv import conv2d

# torch 2.13 deprecates its quantized tensors; they are still the reference for what int8 quantization means.
pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def ref_requant(acc: int, m: int, shift: int, relu=False) -> int:
    """The documented rule in Python's unbounded ints (>> on negative ints floors, like an arithmetic shift)."""
    y = (acc * m + (1 << (shift - 1))) >> shift
    return min(max(y, 0 if relu else -128), 127)


# --- requantize: rounding, extremes, width -----------------------------------------------------------------
def test_ties_round_toward_plus_infinity():
    m, shift = pq.quantize_multiplier(0.5)
    assert (m, shift) == (2**30, 31)
    acc = np.array([5, -5, 3, -3, 1, -1, 0, 4, -4])           # x 0.5 = 2.5, -2.5, 1.5, -1.5, .5, -.5, 0, 2, -2
    np.testing.assert_array_equal(pq.requantize(acc, m, shift), [3, -2, 2, -1, 1, 0, 0, 2, -2])
    m, shift = pq.quantize_multiplier(0.25)
    acc = np.array([2, -2, 6, -6, 10, -10, 1, -1, 3, -3])   # .5 -.5 1.5 -1.5 2.5 -2.5 .25 -.25 .75 -.75
    np.testing.assert_array_equal(pq.requantize(acc, m, shift), [1, 0, 2, -1, 3, -2, 0, 0, 1, -1])
    # One LSB of m off the tie: plain round-to-nearest.
    m, shift = pq.quantize_multiplier(0.5)
    np.testing.assert_array_equal(pq.requantize(np.array([-5, 5]), m + 1, shift), [-3, 3])   # -+2.5000000023
    np.testing.assert_array_equal(pq.requantize(np.array([-5, 5]), m - 1, shift), [-2, 2])   # -+2.4999999977


def test_ties_exactly_vs_fraction():
    """For every acc in a range and a few multipliers, the result is floor(acc * m / 2**shift + 1/2)."""
    for M in (0.5, 0.25, 0.125, 0.75, 1.5, 3.0, 1 / 3, 0.0123):
        m, shift = pq.quantize_multiplier(M)
        acc = np.arange(-300, 301)
        want = [min(max(math.floor(Fraction(int(a) * m, 2**shift) + Fraction(1, 2)), -128), 127) for a in acc]
        np.testing.assert_array_equal(pq.requantize(acc, m, shift), want)


def test_extremes_are_exact_in_int64():
    """Worst-case |acc| * max m at every shift: numpy int64 agrees with Python's unbounded ints."""
    accs = [I32_MIN, I32_MIN + 1, -(2**30), -12345, -1, 0, 1, 12345, 2**30, I32_MAX]
    ms = [0, 1, 2**30, 2**30 + 1, 2**31 - 2, 2**31 - 1]
    for shift in range(pq.SHIFT_MIN, pq.SHIFT_MAX + 1):
        for m in ms:
            for relu in (False, True):
                got = pq.requantize(np.array(accs, np.int32), m, shift, relu)
                assert got.dtype == np.int8
                assert got.tolist() == [ref_requant(a, m, shift, relu) for a in accs], (m, shift)
    # The intermediate the hardware must hold: acc * m + 2**(shift-1) needs 63 bits + sign at most.
    worst = max(abs(a * m) + (1 << (s - 1)) for a in (I32_MIN, I32_MAX) for m in (2**31 - 1,) for s in (62,))
    assert worst < 2**63 and worst.bit_length() == 63


def test_extremes_unsaturated_outputs():
    """Shifts near 62 bring int32-extreme accumulators back into int8 range: checks the multiply, not the clamp."""
    m = 2**31 - 1
    for shift, acc in itertools.product(range(56, 63), [I32_MIN, I32_MIN + 1, I32_MAX, -(2**31 - 7), 2**31 - 7]):
        want = ref_requant(acc, m, shift)
        assert -128 < want < 127                                  # |acc * m| / 2**shift <= 64: no clamping
        assert int(pq.requantize(np.int64(acc), m, shift)) == want
    # acc * m / 2**62 = -1 + 2**-31 and 1 - 2**-30 + 2**-62: both round to +-1.
    assert pq.requantize(np.array([I32_MIN, I32_MAX], np.int32), m, 62).tolist() == [-1, 1]
    assert pq.requantize(np.array([I32_MIN, I32_MAX], np.int32), m, 56).tolist() == [-64, 64]
    assert pq.requantize(np.array([I32_MIN, I32_MAX], np.int32), m, 55).tolist() == [-128, 127]   # 128 clamps


def test_random_against_bigint():
    rng = np.random.default_rng(5)
    acc = rng.integers(I32_MIN, I32_MAX, 4000, endpoint=True)
    m = rng.integers(0, 2**31, 4000)
    shift = rng.integers(pq.SHIFT_MIN, pq.SHIFT_MAX + 1, 4000)
    got = pq.requantize(acc, m, shift)
    assert got.tolist() == [ref_requant(int(a), int(b), int(s)) for a, b, s in zip(acc, m, shift, strict=True)]
    got = pq.requantize(acc, m, shift, relu=True)
    assert got.tolist() == [ref_requant(int(a), int(b), int(s), True) for a, b, s in zip(acc, m, shift, strict=True)]


def test_saturation_and_relu():
    m, shift = pq.quantize_multiplier(1.0)
    acc = np.array([-1000, -129, -128, -127, -1, 0, 1, 126, 127, 128, 1000, I32_MAX, I32_MIN])
    np.testing.assert_array_equal(pq.requantize(acc, m, shift),
                                  [-128, -128, -128, -127, -1, 0, 1, 126, 127, 127, 127, 127, -128])
    np.testing.assert_array_equal(pq.requantize(acc, m, shift, relu=True),
                                  [0, 0, 0, 0, 0, 0, 1, 126, 127, 127, 127, 127, 0])


def test_per_channel_axis():
    rng = np.random.default_rng(6)
    acc = rng.integers(-5000, 5000, (2, 3, 4, 5))
    M = np.array([0.01, 0.02, 0.003])
    m, shift = pq.quantize_multiplier(M)
    got = pq.requantize(acc, m, shift, axis=1)
    for o in range(3):
        np.testing.assert_array_equal(got[:, o], pq.requantize(acc[:, o], m[o], shift[o]))
    np.testing.assert_array_equal(got, pq.requantize(acc, m[:, None, None], shift[:, None, None]))
    np.testing.assert_array_equal(pq.requantize(acc[0], m, shift, axis=0), got[0])
    np.testing.assert_array_equal(pq.requantize(acc.transpose(0, 2, 3, 1), m, shift).transpose(0, 3, 1, 2), got)


def test_requantize_errors():
    with pytest.raises(TypeError, match="integer accumulator"):
        pq.requantize(np.array([1.0]), 2**30, 31)
    with pytest.raises(ValueError, match="outside int32"):
        pq.requantize(np.array([2**31]), 2**30, 31)
    with pytest.raises(ValueError, match="m must be in"):
        pq.requantize(np.array([1]), 2**31, 31)
    with pytest.raises(ValueError, match="m must be in"):
        pq.requantize(np.array([1]), -1, 31)
    with pytest.raises(ValueError, match="shift must be in"):
        pq.requantize(np.array([1]), 2**30, 0)
    with pytest.raises(ValueError, match="shift must be in"):
        pq.requantize(np.array([1]), 2**30, 63)
    with pytest.raises(TypeError, match="quantize_multiplier"):
        pq.requantize(np.array([1]), 0.5, 31)


# --- quantize_multiplier -----------------------------------------------------------------------------------
def test_quantize_multiplier_accuracy():
    rng = np.random.default_rng(7)
    Ms = np.concatenate([2.0 ** rng.uniform(-32, 29.9, 3000),
                         [1.0, 0.5, 2**-32, 2**29, 1 - 2**-53, 1e-5, 2.0**30 - 0.26, np.nextafter(1.0, 0),
                          0.999999999]])
    for M in Ms:
        m, shift = pq.quantize_multiplier(float(M))
        assert isinstance(m, int) and isinstance(shift, int)
        assert 2**30 <= m < 2**31 and pq.SHIFT_MIN <= shift <= pq.SHIFT_MAX, M
        rel = abs(Fraction(m, 2**shift) - Fraction(float(M))) / Fraction(float(M))
        assert rel <= Fraction(1, 2**31), M
    assert pq.quantize_multiplier(1.0) == (2**30, 30)
    assert pq.quantize_multiplier(1 - 2**-40) == (2**30, 30)          # rounds up to 1.0: renormalised
    assert pq.quantize_multiplier(3.0) == (3 * 2**29, 29)
    m, shift = pq.quantize_multiplier(np.array([[0.5, 0.25]]))
    assert m.dtype == np.int64 and m.tolist() == [[2**30, 2**30]] and shift.tolist() == [[31, 32]]
    m, shift = pq.quantize_multiplier(np.array([]))
    assert m.shape == shift.shape == (0,)


def test_quantize_multiplier_tiny():
    """Below 2**-32, shift stays 62 and m shrinks; every int32 accumulator still gives the right answer, 0."""
    for M in (2**-33, 2**-40, 1e-15, 1e-300, 5e-324):
        m, shift = pq.quantize_multiplier(M)
        assert shift == 62 and 0 <= m < 2**30
        assert abs(Fraction(m, 2**62) - Fraction(M)) <= Fraction(1, 2**63)
        acc = np.array([I32_MIN, -1, 0, 1, I32_MAX])
        assert pq.requantize(acc, m, shift).tolist() == [0] * 5
    assert pq.quantize_multiplier(2**-40) == (2**22, 62)


def test_quantize_multiplier_errors():
    for bad in (0.0, -0.5, float("inf"), float("nan"), -float("inf")):
        with pytest.raises(ValueError, match="positive and finite"):
            pq.quantize_multiplier(bad)
    for big in (2.0**30, 2.0**30 - 0.25, 1e12):
        with pytest.raises(ValueError, match="too large"):
            pq.quantize_multiplier(big)
    assert pq.quantize_multiplier(2.0**30 - 0.5) == (2**31 - 1, 1)
    with pytest.raises(ValueError, match="positive and finite"):
        pq.quantize_multiplier(np.array([0.5, 0.0]))


# --- float <-> int8 against torch --------------------------------------------------------------------------
def test_quantize_ties_half_even_like_torch():
    s = 2.0**-3
    x = np.array([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, -3.5, 126.5, 127.5, -127.5, -128.5, 200, -200]) * s
    want = [0, 2, 2, 4, 0, -2, -2, -4, 126, 127, -128, -128, 127, -128]
    np.testing.assert_array_equal(pq.quantize(x, s), want)
    tq = torch.quantize_per_tensor(torch.tensor(x, dtype=torch.float32), s, 0, torch.qint8).int_repr().numpy()
    np.testing.assert_array_equal(tq, want)


def _near_tie(v, eps=1e-4):
    return np.abs(np.abs(v - np.floor(v)) - 0.5) < eps


def test_per_tensor_matches_torch():
    rng = np.random.default_rng(8)
    x = (rng.standard_normal(20000) * 3).astype(np.float32)
    for s in (pq.calibrate_minmax(x), pq.calibrate_percentile(x, 99.0), 2.0**-5, 0.0371):
        ours = pq.quantize(x, s)
        theirs = torch.quantize_per_tensor(torch.tensor(x), s, 0, torch.qint8).int_repr().numpy()
        diff = ours != theirs
        # torch computes x * (1/s) in float32; only values within float32 noise of a .5 tie may differ, by 1.
        assert np.all(_near_tie(x[diff].astype(np.float64) / s)) and np.all(np.abs(ours - theirs.astype(int)) <= 1)
        assert diff.mean() < 1e-3
        if s == 2.0**-5:
            assert not diff.any()


def test_per_channel_matches_torch():
    rng = np.random.default_rng(9)
    w = (rng.standard_normal((16, 8, 3, 3)) * rng.uniform(0.01, 2, (16, 1, 1, 1))).astype(np.float32)
    w[3] = 0.0                                                   # an all-zero channel gets scale 1.0
    s = pq.calibrate_per_channel(w)
    assert s.shape == (16,) and s[3] == 1.0
    np.testing.assert_allclose(s[np.arange(16) != 3], np.abs(w).reshape(16, -1).max(1)[np.arange(16) != 3] / 127)
    ours = pq.quantize(w, s, axis=0)
    theirs = torch.quantize_per_channel(torch.tensor(w), torch.tensor(s), torch.zeros(16, dtype=torch.long), 0,
                                        torch.qint8).int_repr().numpy()
    diff = ours != theirs
    assert np.all(_near_tie(w[diff] / s[np.nonzero(diff)[0]])) and diff.mean() < 1e-3
    assert ours.min() >= -127 and ours.max() <= 127 and (np.abs(ours).reshape(16, -1).max(1)[[0, 1, 15]] == 127).all()
    # Power-of-two scales: bit-exact, including ties and saturation.
    s2 = 2.0 ** -rng.integers(3, 8, 16)
    w2 = (rng.integers(-600, 600, w.shape) / 2.0 * s2[:, None, None, None]).astype(np.float32)   # many .5 ties
    theirs = torch.quantize_per_channel(torch.tensor(w2), torch.tensor(s2), torch.zeros(16, dtype=torch.long), 0,
                                        torch.qint8).int_repr().numpy()
    np.testing.assert_array_equal(pq.quantize(w2, s2, axis=0), theirs)
    # axis=1 too.
    theirs = torch.quantize_per_channel(torch.tensor(w2[:4, :5]), torch.tensor(s2[:5]),
                                        torch.zeros(5, dtype=torch.long),
                                        1, torch.qint8).int_repr().numpy()
    np.testing.assert_array_equal(pq.quantize(w2[:4, :5], s2[:5], axis=1), theirs)


def test_dequantize_and_calibration():
    q = np.array([[-128, 0, 127], [1, 2, 3]], np.int8)
    np.testing.assert_array_equal(pq.dequantize(q, 0.5), q * 0.5)
    np.testing.assert_array_equal(pq.dequantize(q, [0.5, 2.0], axis=0), q * np.array([[0.5], [2.0]]))
    np.testing.assert_array_equal(pq.dequantize(q, [1.0, 2.0, 4.0]), q * np.array([1.0, 2.0, 4.0]))
    x = np.array([-3.0, 1.0, 2.54])
    assert pq.calibrate_minmax(x) == 3.0 / 127
    assert pq.calibrate_minmax(np.zeros(5)) == 1.0
    x = np.concatenate([np.linspace(-1, 1, 100001), [1000.0]])
    assert pq.calibrate_percentile(x, 99.9) < 1.01 / 127 < pq.calibrate_minmax(x)
    assert pq.calibrate_percentile(x, 100) == pq.calibrate_minmax(x)
    rt = pq.dequantize(pq.quantize(x[:-1], pq.calibrate_minmax(x[:-1])), pq.calibrate_minmax(x[:-1]))
    assert np.abs(rt - x[:-1]).max() <= 0.5 / 127 + 1e-12
    with pytest.raises(ValueError, match="pct"):
        pq.calibrate_percentile(x, 0)
    with pytest.raises(ValueError, match="NaN or infinity"):
        pq.calibrate_minmax(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="NaN or infinity"):
        pq.quantize(np.array([np.inf]), 1.0)
    with pytest.raises(ValueError, match="positive and finite"):
        pq.quantize(np.array([1.0]), 0.0)
    with pytest.raises(ValueError, match="positive and finite"):
        pq.dequantize(np.array([1]), [1.0, -1.0], axis=0)


def test_zero_size_everywhere():
    e = np.zeros((0, 3))
    assert pq.calibrate_minmax(e) == 1.0 and pq.calibrate_percentile(e) == 1.0
    assert pq.quantize(e, 0.1).shape == (0, 3) and pq.quantize(e, 0.1).dtype == np.int8
    assert pq.quantize(e, [0.1, 0.2, 0.3], axis=1).shape == (0, 3)
    assert pq.dequantize(e.astype(np.int8), 0.1).shape == (0, 3)
    assert pq.requantize(np.zeros((0, 3), np.int32), 2**30, 31).shape == (0, 3)
    assert pq.requantize(np.zeros((2, 0), np.int32), np.zeros(0, np.int64), np.ones(0, np.int64)).shape == (2, 0)
    layer = pq.quantize_layer(np.zeros((0, 2, 3, 3)), np.zeros(0), 0.1, 0.2)
    assert layer.w_int8.shape == (0, 2, 3, 3) and layer.m.shape == layer.shift.shape == layer.bias_int32.shape == (0,)
    assert layer.requant(np.zeros((1, 0, 4, 4), np.int64)).shape == (1, 0, 4, 4)
    layer = pq.quantize_layer(np.zeros((4, 0)), None, 0.1, 0.2)         # no inputs: every accumulator is the bias
    assert layer.requant(np.zeros((5, 4), np.int32)).tolist() == [[0] * 4] * 5
    assert pq.calibrate_per_channel(np.zeros((0, 4))).shape == (0,)


# --- layers ------------------------------------------------------------------------------------------------
def test_quantize_layer_fields():
    rng = np.random.default_rng(10)
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    L = pq.quantize_layer(w, b, 0.02, 0.05, relu=True)
    assert L.w_int8.dtype == np.int8 and L.bias_int32.dtype == np.int32 and L.m.dtype == np.int64
    np.testing.assert_allclose(L.s_w, np.abs(w).reshape(4, -1).max(1) / 127)
    np.testing.assert_array_equal(L.bias_int32, np.rint(b / (0.02 * L.s_w)))
    np.testing.assert_allclose(L.m / 2.0**L.shift, 0.02 * L.s_w / 0.05, rtol=2**-30)
    assert L.relu and L.channel_axis == -3 and L.s_in == 0.02 and L.s_out == 0.05
    with pytest.raises(ValueError, match="bias must have shape"):
        pq.quantize_layer(w, b[:3], 0.02, 0.05)
    with pytest.raises(ValueError, match="conv .* or linear"):
        pq.quantize_layer(w[0], b, 0.02, 0.05)
    with pytest.raises(ValueError, match="does not fit int32"):
        pq.quantize_layer(w, b * 1e9, 1e-6, 0.05)
    with pytest.raises(ValueError, match="too large"):
        pq.quantize_layer(w, b, 1.0, 1e-12)
    with pytest.raises(ValueError, match="positive and finite"):
        pq.quantize_layer(w, b, 0.0, 1.0)


def _error_bound(x, w, s_x, s_w, s_y, acc, M, **conv):
    """Worst case |s_y * q_y - y| per output: input/weight/bias rounding through the conv, then requant rounding."""
    t = torch.tensor
    ones_w, mask = np.ones_like(w), np.ones_like(x)
    sw = t(s_w)[None, :, None, None]
    e = (F.conv2d(t(np.abs(x)), t(ones_w), **conv) * sw / 2                # |x| * |e_w|
         + F.conv2d(t(mask), t(np.abs(w)), **conv) * s_x / 2             # |w| * |e_x|
         + F.conv2d(t(mask), t(ones_w), **conv) * sw * s_x / 4            # |e_x| * |e_w|
         + sw * s_x / 2).numpy()                                          # bias rounding
    return e + s_y * (0.5 + np.abs(acc) * M[None, :, None, None] * 2.0**-30) + 1e-9


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("conv", [dict(stride=1, padding=1), dict(stride=2, padding=2, dilation=2)])
def test_quantized_conv_vs_float_torch(relu, conv):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 8, 12, 12))
    w = rng.standard_normal((16, 8, 3, 3)) * rng.uniform(0.05, 0.5, (16, 1, 1, 1))
    b = rng.standard_normal(16) * 0.5
    y = F.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), **conv).numpy()
    s_x, s_y = pq.calibrate_minmax(x), pq.calibrate_minmax(y)
    L = pq.quantize_layer(w, b, s_x, s_y, relu=relu)
    qx = pq.quantize(x, s_x)
    acc = conv2d(qx, L.w_int8, L.bias_int32, **conv)                     # int64, exact
    assert acc.dtype == np.int64 and np.abs(acc).max() < 2**31
    np.testing.assert_array_equal(pf.wrap_int32(acc), acc)              # fits the 32-bit accumulator
    qy = L.requant(acc)
    assert qy.dtype == np.int8 and qy.shape == y.shape
    ref = np.maximum(y, 0) if relu else y
    err = np.abs(pq.dequantize(qy, s_y) - ref)
    bound = _error_bound(x, w, s_x, L.s_w, s_y, acc, s_x * L.s_w / s_y, **conv)
    assert np.all(err <= bound)
    assert err.mean() < 0.6 * s_y and err.max() < 3 * s_y                 # and it is typically ~1/2 LSB or less
    if relu:
        assert qy.min() == 0


def test_quantized_linear_with_gemm_int8():
    rng = np.random.default_rng(12)
    x, w, b = rng.standard_normal((32, 40)), rng.standard_normal((10, 40)) * 0.2, rng.standard_normal(10)
    y = F.linear(torch.tensor(x), torch.tensor(w), torch.tensor(b)).numpy()
    s_x, s_y = pq.calibrate_minmax(x), pq.calibrate_minmax(y)
    L = pq.quantize_layer(w, b, s_x, s_y)
    assert L.channel_axis == -1
    acc = pf.gemm_int8(pq.quantize(x, s_x), L.w_int8.T, L.bias_int32)  # the golden int32 GEMM
    qy = L.requant(acc)
    err = np.abs(pq.dequantize(qy, s_y) - y)
    e_in = (np.abs(x) @ np.ones_like(w).T * L.s_w / 2 + np.ones_like(x) @ np.abs(w).T * s_x / 2
            + x.shape[1] * s_x * L.s_w / 4 + s_x * L.s_w / 2)
    assert np.all(err <= e_in + s_y * (0.5 + 1e-6) + 1e-9)
    np.testing.assert_array_equal(qy, pq.requantize(acc, L.m, L.shift))   # per-channel on the last axis


def test_sqnr_by_hand_and_per_axis():
    # signal power 3**2 + 4**2 = 25, noise power 1**2 = 1: 10 log10(25) dB
    assert math.isclose(pf.quant.sqnr([3.0, 4.0], [3.0, 3.0]), 10 * math.log10(25))
    ref = np.array([[1.0, 2.0], [10.0, 0.0]])
    approx = np.array([[1.5, 2.0], [10.0, 1.0]])
    np.testing.assert_allclose(pf.quant.sqnr(ref, approx, axis=1), [10 * math.log10(5 / 0.25), 20.0])
    s = 0.05
    x = np.linspace(-1, 1, 1001)
    noisy = pf.quant.dequantize(pf.quant.quantize(x, s), s)       # uniform rounding noise: about s**2 / 12
    assert abs(pf.quant.sqnr(x, noisy) - 10 * math.log10(np.mean(x**2) / (s**2 / 12))) < 0.5
