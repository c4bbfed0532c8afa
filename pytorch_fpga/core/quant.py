"""int8 quantization exactly as the integer hardware does it: symmetric scales, int32 bias, one requant rule.

The scheme (zero points are always 0):
    x_real ~= s_x * q_x          q_x int8, one scale s_x per activation tensor
    w_real ~= s_w[o] * q_w       q_w int8 in [-127, 127], one scale per output channel o
    acc     = sum(q_x * q_w) + bias_int32[o],   bias_int32[o] = round_half_even(bias[o] / (s_x * s_w[o]))
    q_y     = requantize(acc, m[o], shift[o]) ~= acc * s_x * s_w[o] / s_y

Requantization, the one rule the RTL implements bit for bit (all integers, arithmetic right shift):
    q_y = clamp((acc * m + (1 << (shift - 1))) >> shift, -128, 127)     (lower bound 0 with ReLU)
acc is int32, m is an unsigned 31-bit multiplier (0 <= m < 2**31, normally 2**30 <= m < 2**31) and
1 <= shift <= 62. Widths: acc * m is a signed 63-bit product (|acc * m| <= 2**62 - 2**31); adding the rounding
constant 2**(shift-1) <= 2**61 needs a signed 64-bit adder; nothing can overflow int64.
Adding half and shifting right (floor) rounds to nearest with ties toward +infinity: 2.5 -> 3, -2.5 -> -2.

Float -> int8 quantization (quantize) rounds half to even, like torch.quantize_per_tensor/_per_channel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pytorch_fpga.core.gemm import INT8_MAX, INT8_MIN, INT32_MAX, INT32_MIN

QMAX = 127                                   # symmetric: |q| <= 127 maps to the scale's full range
MULT_BITS = 31                               # m < 2**31: fits an int32 / unsigned 31-bit register
SHIFT_MIN, SHIFT_MAX = 1, 62                 # keeps acc*m + 2**(shift-1) inside int64


def _per_axis(v, ndim: int, axis):
    """v as an array; with an axis, a 1-D v is reshaped to lie along that axis of an ndim-array."""
    v = np.asarray(v)
    if axis is None or v.ndim == 0:
        return v
    if v.ndim != 1:
        raise ValueError(f"a per-channel parameter must be 1-D when axis is given, got shape {v.shape}")
    axis = axis % ndim if ndim else 0
    return v.reshape((1,) * axis + (-1,) + (1,) * (ndim - axis - 1))


def _float_array(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.issubdtype(x.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinity; clean it before quantizing")
    return x


def _check_scale(scale) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"scales must be positive and finite, got {scale!r}")
    return s


# --- calibration -------------------------------------------------------------------------------------------
def scale_from_amax(amax):
    """Symmetric scale amax / 127 (so +-amax -> +-127); an all-zero range gets scale 1.0 (any scale is exact).

    torch's observers divide by 127.5 instead and let -amax reach -128; dividing by 127 keeps quantized
    weights in [-127, 127], symmetric, so negating one never overflows.
    """
    a = np.asarray(amax, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"amax must be finite and >= 0, got {amax!r}")
    s = np.where(a > 0, a / QMAX, 1.0)
    return float(s) if s.ndim == 0 else s


def calibrate_minmax(x) -> float:
    """Per-tensor activation scale max|x| / 127 (1.0 for an empty or all-zero x)."""
    x = _float_array("x", x)
    return scale_from_amax(np.max(np.abs(x), initial=0.0))


def calibrate_percentile(x, pct: float = 99.99) -> float:
    """Per-tensor scale percentile(|x|, pct) / 127: clips rare outliers to buy resolution for the rest."""
    if not (0 < pct <= 100):
        raise ValueError(f"pct must be in (0, 100], got {pct}")
    x = _float_array("x", x)
    return scale_from_amax(np.percentile(np.abs(x), pct) if x.size else 0.0)


def calibrate_per_channel(w, axis: int = 0) -> np.ndarray:
    """Per-channel symmetric scales max|w| / 127 over every axis but `axis` (weights: output channels)."""
    w = _float_array("w", w)
    if w.ndim == 0:
        raise ValueError("per-channel calibration needs at least a 1-D array")
    axis = axis % w.ndim
    amax = np.max(np.abs(w), axis=tuple(i for i in range(w.ndim) if i != axis), initial=0.0)
    return np.atleast_1d(scale_from_amax(amax))


# --- float <-> int8 ----------------------------------------------------------------------------------------
def quantize(x, scale, axis=None) -> np.ndarray:
    """int8 q = clamp(round_half_even(x / scale), -128, 127); scale is a scalar, or 1-D along `axis`."""
    x = _float_array("x", x)
    s = _per_axis(_check_scale(scale), x.ndim, axis)
    return np.clip(np.rint(x / s), INT8_MIN, INT8_MAX).astype(np.int8)


def dequantize(q, scale, axis=None) -> np.ndarray:
    """float64 q * scale; scale is a scalar, or 1-D along `axis`."""
    q = np.asarray(q)
    return q.astype(np.float64) * _per_axis(_check_scale(scale), q.ndim, axis)


# --- requantization ----------------------------------------------------------------------------------------
def quantize_multiplier(real_multiplier):
    """(m, shift), m / 2**shift ~= M: 2**30 <= m < 2**31, relative error <= 2**-31, for 2**-32 <= M < 2**30 - 1/4.

    Smaller M > 0 keep shift = 62 and a smaller m = round(M * 2**62) (possibly 0): there |acc * M| < 0.5 for
    every int32 acc, so every output is 0 either way. M >= 2**30 - 1/4 (m would round up to 2**31 at shift 1)
    would need shift < 1: raise.
    Works elementwise on arrays (then returns int64 arrays).
    """
    M = np.asarray(real_multiplier, dtype=np.float64)
    if M.ndim:
        pairs = [quantize_multiplier(float(v)) for v in M.ravel()]
        m = np.array([p[0] for p in pairs], np.int64).reshape(M.shape)
        return m, np.array([p[1] for p in pairs], np.int64).reshape(M.shape)
    M = float(M)
    if not math.isfinite(M) or M <= 0:
        raise ValueError(f"the requantization multiplier s_in * s_w / s_out must be positive and finite, got {M}")
    f, e = math.frexp(M)                                  # M = f * 2**e, 0.5 <= f < 1
    m, shift = round(f * 2**MULT_BITS), MULT_BITS - e     # exact scaling; one rounding to nearest
    if m == 2**MULT_BITS:                                 # f rounded up to 1.0
        m, shift = m // 2, shift - 1
    if shift < SHIFT_MIN:
        raise ValueError(f"requantization multiplier {M} is too large (must be < 2**30): the output scale is "
                         "far too small for this layer; calibrate s_out on the layer's real outputs")
    if shift > SHIFT_MAX:
        m, shift = round(math.ldexp(M, SHIFT_MAX)), SHIFT_MAX
    return int(m), int(shift)


def requantize(acc, m, shift, relu: bool = False, axis=None) -> np.ndarray:
    """int8 clamp((acc * m + (1 << (shift-1))) >> shift, -128 or 0 with relu, 127): ties round toward +inf.

    acc must be integers in int32 range (the hardware accumulator); m and shift are scalars or per-channel
    1-D arrays along `axis` of acc (axis=None: plain numpy broadcasting).
    """
    acc = np.asarray(acc)
    if not np.issubdtype(acc.dtype, np.integer):
        raise TypeError(f"acc must be an integer accumulator array, got dtype {acc.dtype}")
    acc = acc.astype(np.int64)
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise ValueError(f"acc has values in [{acc.min()}, {acc.max()}], outside int32: the 32-bit hardware "
                         "accumulator would have overflowed; use smaller scales/operands or wrap with pf.wrap_int32")
    m = np.asarray(m)
    shift = np.asarray(shift)
    if not (np.issubdtype(m.dtype, np.integer) and np.issubdtype(shift.dtype, np.integer)):
        raise TypeError("m and shift must be integers; get them from quantize_multiplier")
    if m.size and (m.min() < 0 or m.max() >= 2**MULT_BITS):
        raise ValueError(f"m must be in [0, 2**31), got values in [{m.min()}, {m.max()}]")
    if shift.size and (shift.min() < SHIFT_MIN or shift.max() > SHIFT_MAX):
        raise ValueError(f"shift must be in [{SHIFT_MIN}, {SHIFT_MAX}], got values in [{shift.min()}, {shift.max()}]")
    m = _per_axis(m.astype(np.int64), acc.ndim, axis)
    shift = _per_axis(shift.astype(np.int64), acc.ndim, axis)
    y = (acc * m + np.left_shift(np.int64(1), shift - 1)) >> shift       # numpy >> on int64 is arithmetic
    return np.clip(y, 0 if relu else INT8_MIN, INT8_MAX).astype(np.int8)


# --- layers ------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class QuantLayer:
    """A conv (weight O x C/g x kh x kw) or linear (O x K) layer in integers, with its scales."""
    w_int8: np.ndarray          # int8 weights, same shape as the float weight, values in [-127, 127]
    bias_int32: np.ndarray      # (O,) int32, in units of s_in * s_w[o]
    m: np.ndarray               # (O,) int64 requant multipliers
    shift: np.ndarray           # (O,) int64 requant right shifts
    s_in: float                 # input activation scale
    s_w: np.ndarray             # (O,) float64 weight scales
    s_out: float                # output activation scale
    relu: bool = False

    @property
    def channel_axis(self) -> int:
        """Output-channel axis of this layer's accumulator: -3 for conv ((N,) O, H, W), -1 for linear (.., O)."""
        return -3 if self.w_int8.ndim == 4 else -1

    def requant(self, acc, axis=None) -> np.ndarray:
        """int8 outputs from int32 accumulators (bias already added) of this layer, per output channel."""
        acc = np.asarray(acc)
        return requantize(acc, self.m, self.shift, self.relu, self.channel_axis if axis is None else axis)


def quantize_layer(weight, bias, s_in: float, s_out: float, relu: bool = False) -> QuantLayer:
    """Quantize a float conv/linear layer: per-output-channel int8 weights, int32 bias, (m, shift) per channel."""
    weight = _float_array("weight", weight)
    if weight.ndim not in (2, 4):
        raise ValueError(f"weight must be a conv (O, C/g, kh, kw) or linear (O, K) weight, got shape {weight.shape}")
    s_in, s_out = float(_check_scale(s_in)), float(_check_scale(s_out))
    Co = weight.shape[0]
    bias = np.zeros(Co) if bias is None else _float_array("bias", bias)
    if bias.shape != (Co,):
        raise ValueError(f"bias must have shape ({Co},), got {bias.shape}")
    s_w = calibrate_per_channel(weight, axis=0)
    w_int8 = quantize(weight, s_w, axis=0)
    b = np.rint(bias / (s_in * s_w))
    if b.size and (b.min() < INT32_MIN or b.max() > INT32_MAX):
        raise ValueError("a quantized bias does not fit int32 (bias / (s_in * s_w) is too large); "
                         "the input or weight scale is far too small for this bias")
    m, shift = quantize_multiplier(s_in * s_w / s_out)
    return QuantLayer(w_int8, b.astype(np.int32), m, shift, s_in, s_w, s_out, bool(relu))


def sqnr(ref, approx, axis=None):
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum ref**2 / sum (approx - ref)**2), over `axis`."""
    ref, approx = (a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)
                   for a in (np.asarray(ref), np.asarray(approx)))
    return 10 * np.log10(np.sum(ref**2, axis=axis) / np.sum((approx - ref) ** 2, axis=axis))
