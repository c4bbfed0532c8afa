"""2-D convolution with torch.nn.functional.conv2d's semantics: a loop nest to read, im2col + GEMM to run.

Shapes follow PyTorch: input X is (N, C, H, W) or unbatched (C, H, W), weight W is (O, C/groups, kh, kw),
bias is (O,), output is (N, O, Ho, Wo) or (O, Ho, Wo). Output channel o of group g = o // (O/groups) sees
input channels g*C/groups ... (g+1)*C/groups - 1. (The code calls O `Co`.)

dtypes: integer (and bool) inputs accumulate exactly in int64 and return int64; if anything is floating,
the sums run in float64 and the result is cast to the promoted float dtype of the inputs (float32 in,
float32 out).

Padding: an int, an (ph, pw) pair, 'valid' (no padding) or 'same' (stride 1 only; total padding
dilation*(k-1) per axis, split like torch: total//2 on the top/left, the rest, one more when the total is
odd, on the bottom/right). padding_mode 'reflect', 'replicate' or 'circular' pads the input on the host with
pad2d and then convolves with padding 0, exactly what nn.Conv2d does.
"""
from __future__ import annotations

import numbers

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


# --- argument checking -------------------------------------------------------------------------------------
def _pair(name: str, v, minimum: int) -> tuple[int, int]:
    """An int or a 2-sequence of ints, each >= minimum, as a 2-tuple."""
    vals = (v, v) if isinstance(v, numbers.Integral) else v
    try:
        vals = tuple(vals)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    if len(vals) != 2 or not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in vals):
        raise TypeError(f"{name} must be an int or a pair of ints (h, w), got {v!r}")
    if min(vals) < minimum:
        raise ValueError(f"{name} must be >= {minimum} in both dimensions, got {v!r}")
    return int(vals[0]), int(vals[1])


def _pads(padding, kernel_size, stride, dilation) -> tuple[int, int, int, int]:
    """Resolve a conv padding argument to explicit (top, bottom, left, right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride}; torch.nn.functional.conv2d "
                                 "has the same rule. Pass explicit padding, e.g. padding=(kh // 2, kw // 2)")
            th, tw = dilation[0] * (kernel_size[0] - 1), dilation[1] * (kernel_size[1] - 1)
            return th // 2, th - th // 2, tw // 2, tw - tw // 2
        raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid'; got {padding!r}")
    ph, pw = _pair("padding", padding, 0)
    return ph, ph, pw, pw


def _geometry(in_shape, W_shape, stride, padding, dilation, groups):
    """Validate a conv configuration; return (N or None, C, H, W, O, kh, kw, pads, stride, dilation, Ho, Wo)."""
    in_shape, W_shape = tuple(int(s) for s in in_shape), tuple(int(s) for s in W_shape)
    if len(in_shape) not in (3, 4):
        raise ValueError(f"input must be (N, C, H, W) or unbatched (C, H, W), got shape {in_shape}")
    if len(W_shape) != 4:
        raise ValueError(f"weight must be (out_channels, in_channels/groups, kh, kw), got shape {W_shape}")
    N = in_shape[0] if len(in_shape) == 4 else None
    C, H, Wd = in_shape[-3:]
    Co, Cg, kh, kw = W_shape
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if C % groups:
        raise ValueError(f"input channels ({C}) must be divisible by groups ({groups})")
    if Co % groups:
        raise ValueError(f"output channels ({Co}) must be divisible by groups ({groups})")
    if Cg != C // groups:
        raise ValueError(f"weight has {Cg} input channels per group but the input has {C} channels / {groups} "
                         f"groups = {C // groups}; weight must be (O, C/groups, kh, kw)")
    if kh < 1 or kw < 1:
        raise ValueError(f"kernel size must be >= 1, got {(kh, kw)}")
    stride, dilation = _pair("stride", stride, 1), _pair("dilation", dilation, 1)
    pads = _pads(padding, (kh, kw), stride, dilation)
    Ho, Wo = _out_size(H, Wd, (kh, kw), stride, pads, dilation)
    return N, C, H, Wd, Co, kh, kw, pads, stride, dilation, Ho, Wo


def _out_size(H, W, kernel_size, stride, pads, dilation) -> tuple[int, int]:
    pt, pb, pl, pr = pads
    Hp, Wp = H + pt + pb, W + pl + pr
    eh, ew = dilation[0] * (kernel_size[0] - 1) + 1, dilation[1] * (kernel_size[1] - 1) + 1
    if Hp < eh or Wp < ew:
        raise ValueError(f"padded input is {Hp}x{Wp} but the (dilated) kernel is {eh}x{ew}: the output would be "
                         "empty; use a larger input, more padding, or a smaller kernel/dilation")
    return (Hp - eh) // stride[0] + 1, (Wp - ew) // stride[1] + 1


def _operands(X, W, bias):
    """X, W, bias as arrays, plus the accumulation dtype (int64 or float64) and the result dtype."""
    X, W = np.asarray(X), np.asarray(W)
    arrs = [X, W] if bias is None else [X, W, np.asarray(bias)]
    for name, a in zip(("input", "weight", "bias"), arrs, strict=False):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.issubdtype(a.dtype, np.complexfloating):
            raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    res = np.result_type(*arrs)
    if np.issubdtype(res, np.floating):
        acc = np.float64
    else:
        acc = res = np.dtype(np.int64)
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (W.shape[0],):
            raise ValueError(f"bias must have shape ({W.shape[0]},) (one per output channel), got {bias.shape}")
        bias = bias.astype(acc)
    return X, W, bias, np.dtype(acc), np.dtype(res)


# --- public helpers ----------------------------------------------------------------------------------------
def conv_output_size(H: int, W: int, kernel_size, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """(Ho, Wo) = floor((H + pad_total - dilation*(k-1) - 1) / stride) + 1 per axis; raises if it is < 1."""
    kernel_size, stride, dilation = _pair("kernel_size", kernel_size, 1), _pair("stride", stride, 1), \
        _pair("dilation", dilation, 1)
    return _out_size(int(H), int(W), kernel_size, stride, _pads(padding, kernel_size, stride, dilation), dilation)


def pad2d(X, padding, mode: str = "zeros", value=0) -> np.ndarray:
    """Pad the last two axes like torch.nn.functional.pad: padding is an int or (left, right, top, bottom).

    mode: 'zeros' (alias 'constant', fills `value`), 'reflect' (mirror without repeating the edge; each pad
    must be < that axis' size), 'replicate' (repeat the edge) or 'circular' (wrap around; each pad <= size).
    """
    X = np.asarray(X)
    if X.ndim < 2:
        raise ValueError(f"pad2d pads the last two axes (H, W); got an array of shape {X.shape}")
    if isinstance(padding, numbers.Integral):
        padding = (padding,) * 4
    padding = tuple(padding)
    if len(padding) != 4 or not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in padding):
        raise ValueError(f"pad2d takes an int or torch.nn.functional.pad's 4-tuple (left, right, top, bottom), got "
                         f"{padding!r}; for conv-style (ph, pw) pass (pw, pw, ph, ph)")
    if min(padding) < 0:
        raise ValueError(f"pad2d padding must be >= 0 (negative padding is cropping: slice instead), got {padding}")
    pl, pr, pt, pb = (int(p) for p in padding)
    H, W = X.shape[-2:]
    widths = [(0, 0)] * (X.ndim - 2) + [(pt, pb), (pl, pr)]
    if mode in ("zeros", "constant"):
        return np.pad(X, widths, mode="constant", constant_values=value)
    if value != 0:
        raise ValueError(f"padding mode {mode!r} takes no fill value (got value={value}); use mode='zeros'")
    if mode == "reflect":
        if max(pt, pb) >= max(H, 1) or max(pl, pr) >= max(W, 1):
            raise ValueError(f"reflect padding {padding} needs every pad < the padded axis size (input is {H}x{W})")
        return np.pad(X, widths, mode="reflect")
    if mode == "replicate":
        if (pt or pb) and H == 0 or (pl or pr) and W == 0:
            raise ValueError(f"replicate padding needs a non-empty axis to copy from (input is {H}x{W})")
        return np.pad(X, widths, mode="edge")
    if mode == "circular":
        if max(pt, pb) > H or max(pl, pr) > W:
            raise ValueError(f"circular padding {padding} would wrap around more than once: every pad must be <= "
                             f"the axis size (input is {H}x{W})")
        return np.pad(X, widths, mode="wrap")
    raise ValueError(f"padding mode must be one of {PADDING_MODES}, got {mode!r}")


def _prepad(X, W_shape, stride, padding, dilation, groups, padding_mode):
    """Apply a non-zeros padding_mode on the host (nn.Conv2d style): returns (X padded, padding for the conv)."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    N, C, H, Wd, Co, kh, kw, (pt, pb, pl, pr), *_ = _geometry(X.shape, W_shape, stride, padding, dilation, groups)
    if padding_mode == "zeros":
        return X, padding
    return pad2d(X, (pl, pr, pt, pb), padding_mode), 0


def im2col(X, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Lower an (N, C, H, W) or (C, H, W) input to the im2col matrix, zero-padded, in X's dtype.

    Rows are output positions in (n, ho, wo) order: N*Ho*Wo rows (Ho*Wo when unbatched). Columns are
    (c, i, j) with c slowest, j fastest: C*kh*kw columns, the same order as W.reshape(O, -1), so a groups=1
    convolution is im2col(X) @ W.reshape(O, -1).T. Column block g*(C/groups)*kh*kw ... belongs to group g.
    """
    X = np.asarray(X)
    kernel_size = _pair("kernel_size", kernel_size, 1)
    if X.ndim not in (3, 4):
        raise ValueError(f"input must be (N, C, H, W) or unbatched (C, H, W), got shape {X.shape}")
    Xb = X if X.ndim == 4 else X[None]
    N, C, H, Wd = Xb.shape
    _, _, _, _, _, kh, kw, (pt, pb, pl, pr), (sh, sw), (dh, dw), Ho, Wo = _geometry(
        Xb.shape, (1, C, *kernel_size), stride, padding, dilation, 1)
    Xp = np.pad(Xb, [(0, 0), (0, 0), (pt, pb), (pl, pr)])
    win = np.lib.stride_tricks.sliding_window_view(Xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :Ho, :Wo]            # (N, C, Ho, Wo, kh, kw)
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(N * Ho * Wo, C * kh * kw)


# --- the convolution, twice --------------------------------------------------------------------------------
def conv2d_loops(X, W, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") -> np.ndarray:
    """The textbook 7-deep loop nest (n, o, y, x, c, i, j): slow and obviously correct; use on small sizes."""
    X, W, bias, acc_t, res_t = _operands(X, W, bias)
    X, padding = _prepad(X, W.shape, stride, padding, dilation, groups, padding_mode)
    N, C, H, Wd, Co, kh, kw, (pt, _, pl, _), (sh, sw), (dh, dw), Ho, Wo = _geometry(
        X.shape, W.shape, stride, padding, dilation, groups)
    Xb = (X if N is not None else X[None]).astype(acc_t)
    Wt = W.astype(acc_t)
    Cg, Og = C // groups, Co // groups
    Y = np.zeros((Xb.shape[0], Co, Ho, Wo), acc_t)
    for n in range(Xb.shape[0]):
        for o in range(Co):
            g = o // Og                                     # the group this output channel belongs to
            for y in range(Ho):
                for x in range(Wo):
                    acc = acc_t.type(0)
                    for c in range(Cg):
                        for i in range(kh):
                            for j in range(kw):
                                h, w = y * sh - pt + i * dh, x * sw - pl + j * dw
                                if 0 <= h < H and 0 <= w < Wd:        # outside = zero padding
                                    acc += Xb[n, g * Cg + c, h, w] * Wt[o, c, i, j]
                    Y[n, o, y, x] = acc if bias is None else acc + bias[o]
    return (Y if N is not None else Y[0]).astype(res_t)


def conv2d(X, W, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") -> np.ndarray:
    """torch.nn.functional.conv2d (plus nn.Conv2d's padding_mode) as im2col + one GEMM per group."""
    X, W, bias, acc_t, res_t = _operands(X, W, bias)
    X, padding = _prepad(X, W.shape, stride, padding, dilation, groups, padding_mode)
    N, C, H, Wd, Co, kh, kw, pads, stride, dilation, Ho, Wo = _geometry(
        X.shape, W.shape, stride, padding, dilation, groups)
    Nb = N if N is not None else 1
    cols = im2col(X.astype(acc_t), (kh, kw), stride, padding, dilation)            # (Nb*Ho*Wo, C*kh*kw)
    G, Og, K = groups, Co // groups, (C // groups) * kh * kw
    # Group g: cols[:, g*K:(g+1)*K] @ W[g*Og:(g+1)*Og].reshape(Og, K).T, batched over g.
    Y = cols.reshape(Nb * Ho * Wo, G, K).transpose(1, 0, 2) @ W.astype(acc_t).reshape(G, Og, K).transpose(0, 2, 1)
    Y = Y.transpose(1, 0, 2).reshape(Nb, Ho, Wo, Co).transpose(0, 3, 1, 2)
    if bias is not None:
        Y = Y + bias[:, None, None]
    Y = np.ascontiguousarray(Y).astype(res_t, copy=False)
    return Y if N is not None else Y[0]


# --- counters ----------------------------------------------------------------------------------------------
def conv2d_macs(in_shape, W_shape, stride=1, padding=0, dilation=1, groups=1) -> int:
    """Multiply-accumulates N * O * Ho * Wo * (C/groups) * kh * kw: taps on zero padding count, bias adds don't."""
    N, C, H, Wd, Co, kh, kw, _, _, _, Ho, Wo = _geometry(in_shape, W_shape, stride, padding, dilation, groups)
    return (1 if N is None else N) * Co * Ho * Wo * (C // groups) * kh * kw


def conv2d_params(W_shape, bias: bool = True) -> int:
    """Learned parameters: O * (C/groups) * kh * kw weights, plus O biases if bias."""
    W_shape = tuple(int(s) for s in W_shape)
    if len(W_shape) != 4:
        raise ValueError(f"weight must be (out_channels, in_channels/groups, kh, kw), got shape {W_shape}")
    return int(np.prod(W_shape)) + (W_shape[0] if bias else 0)


def conv2d_bytes(in_shape, W_shape, stride=1, padding=0, dilation=1, groups=1,
                 act_bytes=1, w_bytes=1, out_bytes=1, bias_bytes=0) -> dict:
    """Bytes of each tensor one conv touches once: {'input', 'weight', 'bias', 'output', 'total'}.

    input is the unpadded input, bias counts O * bias_bytes (0 by default; 4 for an int32 bias).
    """
    N, C, H, Wd, Co, kh, kw, _, _, _, Ho, Wo = _geometry(in_shape, W_shape, stride, padding, dilation, groups)
    N = 1 if N is None else N
    d = {"input": N * C * H * Wd * act_bytes, "weight": Co * (C // groups) * kh * kw * w_bytes,
         "bias": Co * bias_bytes, "output": N * Co * Ho * Wo * out_bytes}
    d["total"] = sum(d.values())
    return d


def im2col_bytes(in_shape, kernel_size, stride=1, padding=0, dilation=1, elem_bytes=1) -> int:
    """Bytes of the im2col matrix, N*Ho*Wo x C*kh*kw elements; divide by the input's bytes for the blow-up."""
    kernel_size = _pair("kernel_size", kernel_size, 1)
    in_shape = tuple(int(s) for s in in_shape)
    C = in_shape[-3] if len(in_shape) in (3, 4) else 0
    N, C, H, Wd, Co, kh, kw, _, _, _, Ho, Wo = _geometry(in_shape, (1, C, *kernel_size), stride, padding,
                                                       dilation, 1)
    return (1 if N is None else N) * Ho * Wo * C * kh * kw * elem_bytes


def lower(X, W_shape, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Host-side lowering for an accelerator: (cols (N*Ho*Wo, C*kh*kw), (N or None, Ho, Wo)).

    Applies padding_mode on the host, then im2col with zero padding; column block g belongs to group g.
    """
    X = np.asarray(X)
    X, padding = _prepad(X, tuple(W_shape), stride, padding, dilation, groups, padding_mode)
    N, C, H, Wd, Co, kh, kw, pads, stride, dilation, Ho, Wo = _geometry(
        X.shape, tuple(W_shape), stride, padding, dilation, groups)
    return im2col(X, (kh, kw), stride, padding, dilation), (N, Ho, Wo)


# --- shape tables --------------------------------------------------------------------------------------------
def layer_shapes(layers, bias: bool = True) -> list[tuple]:
    """(name, input, weight, output, params, MACs) per layer (name, (C, H, W), weight shape, stride, padding)."""
    rows = []
    for name, in_shape, w_shape, stride, padding in layers:
        Ho, Wo = conv_output_size(in_shape[1], in_shape[2], w_shape[2:], stride, padding)
        rows.append((name, tuple(in_shape), tuple(w_shape), (w_shape[0], Ho, Wo), conv2d_params(w_shape, bias=bias),
                     conv2d_macs((1, *in_shape), w_shape, stride, padding)))
    return rows


def format_layer_shapes(rows) -> str:
    """layer_shapes' rows as a fixed-width text table, with a line of parameter and MAC totals."""
    lines = [f"{'layer':22} {'input':15} {'weight':18} {'output':15} {'params':>10} {'MACs':>13}"]
    for name, i_, w_, o_, prm, mac in rows:
        lines.append(f"{name:22} {str(i_):15} {str(w_):18} {str(o_):15} {prm:>10,} {mac:>13,}")
    lines.append(f"{'total':73} {sum(r[4] for r in rows):>10,} {sum(r[5] for r in rows):>13,}")
    return "\n".join(lines)
