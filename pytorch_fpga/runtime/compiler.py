"""Compile quantized conv2d and linear layers into conv_accel jobs, and reassemble their outputs (numpy only).

A 3x3 depthwise convolution runs on the depthwise unit when the build has one that takes it and the cycle model
predicts no more cycles than the alternatives (pf.contract.dwunit.choose). A convolution runs in window mode when
the engine takes it and the cycle model does not prefer a GEMM (pf.contract.window.choose): the job streams the
NHWC feature map and the accelerator forms the windows. Otherwise it is lowered on the host (padding modes,
im2col) to one GEMM per group; small groups are packed side by side with a block-diagonal weight matrix. Output
channels are split into several jobs when W does not fit the weight buffer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pytorch_fpga.contract import accel, dwunit, window
from pytorch_fpga.contract.accel import INT32_MAX, check_accumulator, n_chunk  # noqa: F401 - re-exported
from pytorch_fpga.core import conv
from pytorch_fpga.core.gemm import check_int8


@dataclass
class GemmPart:
    """One accelerator job of a layer and where its output columns go."""
    job: accel.Job
    out_cols: np.ndarray        # the layer's output channels, in the job's column order


def _params(bias, m, shift, N):
    if bias is not None and not np.issubdtype(np.asarray(bias).dtype, np.integer):
        raise TypeError(f"bias must be integers in int32 accumulator units (X scale x W scale), got "
                        f"{np.asarray(bias).dtype}: quantize it first (pf.quant.quantize_layer gives bias_int32)")
    bias = np.zeros(N, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(N)
    m = np.broadcast_to(np.asarray(0 if m is None else m, np.int64), (N,))
    shift = np.broadcast_to(np.asarray(1 if shift is None else shift, np.int64), (N,))
    return bias, m, shift


def gemm_parts(X, W, bias=None, m=None, shift=None, relu=False, out_int32=False, cfg="z1",
               name: str = "the job") -> list[GemmPart]:
    """Jobs for Y = requant(X @ W + bias), splitting N when W does not fit one job."""
    cfg = accel.config(cfg)
    X, W = check_int8("X", X), check_int8("W", W)
    K, N = W.shape
    bias, m, shift = _params(bias, m, shift, N)
    check_accumulator(W, bias, name)
    if not out_int32 and not m.any():
        raise ValueError("int8 outputs need requantization multipliers m (see pf.quant.quantize_layer)")
    step = n_chunk(K, cfg)
    return [GemmPart(accel.pack_job(X, W[:, n0:n0 + step], bias[n0:n0 + step], m[n0:n0 + step],
                                    shift[n0:n0 + step], relu, out_int32, cfg), np.arange(n0, min(N, n0 + step)))
            for n0 in range(0, N, step)]


def conv2d_parts(X, W, bias=None, m=None, shift=None, relu=False, out_int32=False, stride=1, padding=0,
                 dilation=1, groups=1, padding_mode="zeros", cfg="z1", mode: str = "auto"):
    """Jobs for a quantized conv2d (int8 X (N,C,H,W) or (C,H,W), int8 W (Co, C/g, kh, kw)); returns
    (parts, (N or None, Co, Ho, Wo)). mode: 'auto' (the depthwise unit where dwunit.choose takes it, else window
    mode where window.choose takes it, else GEMM), 'dw' (the depthwise unit), 'window', 'gemm'."""
    if mode not in ("auto", "dw", "window", "gemm"):
        raise ValueError(f"mode must be 'auto', 'dw', 'window' or 'gemm', not {mode!r}")
    cfg = accel.config(cfg)
    X, W = check_int8("X", X), check_int8("W", W)
    if W.ndim != 4:
        raise ValueError(f"conv2d weights must be (Co, C/groups, kh, kw), got shape {W.shape}")
    Co, Cg, kh, kw = W.shape
    win = _window(X, W.shape, stride, padding, dilation, groups, padding_mode) if mode != "gemm" else None
    if mode == "window" and (win is None or window.unsupported(win, cfg, Co) is not None):
        why = "padding mode, unequal strides or dilations, or groups" if win is None else \
            window.unsupported(win, cfg, Co)
        raise ValueError(f"mode='window': the engine cannot take this conv2d ({why}); use mode='auto'")
    if mode == "dw" and (win is None or dwunit.unsupported(win, cfg, split=True) is not None):
        why = "padding mode, unequal strides or dilations, or groups" if win is None else \
            dwunit.unsupported(win, cfg, split=True)
        raise ValueError(f"mode='dw': the depthwise unit cannot take this conv2d ({why}); use mode='auto'")
    if win is not None:
        shape = (X.shape[0] if X.ndim == 4 else None, Co, win.OH, win.OW)
        if mode == "dw" or mode == "auto" and dwunit.choose(win, Co, cfg, out_int32):
            return window_parts(X, W, win, bias, m, shift, relu, out_int32, cfg, dw=True), shape
        if mode == "window" or window.choose(win, Co, cfg, out_int32):
            return window_parts(X, W, win, bias, m, shift, relu, out_int32, cfg), shape
    cols, (Nb, Ho, Wo) = conv.lower(X, W.shape, stride, padding, dilation, groups, padding_mode)
    G, Og, Kg = groups, Co // groups, Cg * kh * kw
    bias, m, shift = _params(bias, m, shift, Co)
    check_accumulator(W.reshape(Co, -1).T, bias, "the conv2d")
    Wg = W.reshape(G, Og, Kg)
    pack = max(1, cfg.cols // Og) if G > 1 and Og < cfg.cols else 1     # groups side by side in one job
    parts = []
    for g0 in range(0, G, pack):
        gs = range(g0, min(G, g0 + pack))
        Xj = cols[:, g0 * Kg:(gs[-1] + 1) * Kg]                        # the packed groups' columns
        Wj = np.zeros((len(gs) * Kg, len(gs) * Og), np.int8)           # block-diagonal weights
        for i, g in enumerate(gs):
            Wj[i * Kg:(i + 1) * Kg, i * Og:(i + 1) * Og] = Wg[g].T
        chans = np.arange(g0 * Og, (gs[-1] + 1) * Og)
        for p in gemm_parts(Xj, Wj, bias[chans], m[chans], shift[chans], relu, out_int32, cfg):
            parts.append(GemmPart(p.job, chans[p.out_cols]))
    return parts, (Nb, Co, Ho, Wo)


def _pair(v) -> tuple:
    return (v, v) if isinstance(v, int) else tuple(v)


def _window(X, wshape, stride, padding, dilation, groups, padding_mode) -> window.Window | None:
    """The conv's window-mode geometry, or None when the engine cannot express it (padding modes, unequal strides
    or dilations, groups other than 1 or depthwise)."""
    Co, Cg, kh, kw = wshape
    Nb, C, H, Wd = X.shape if X.ndim == 4 else (1, *X.shape)
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    if padding_mode != "zeros" or isinstance(padding, str) or sh != sw or dh != dw:
        return None
    ph, pw = _pair(padding)
    depthwise = groups > 1 and groups == C == Co and Cg == 1
    if groups != 1 and not depthwise:
        return None
    return window.Window(Nb, H, Wd, C, kh, kw, sh, dh, (ph, ph, pw, pw), depthwise)


def window_parts(X, W, win: window.Window, bias, m, shift, relu, out_int32, cfg, dw: bool = False) -> list[GemmPart]:
    """Window-mode jobs of a conv2d (dw: depthwise-unit jobs): the NHWC map streams as it is; output channels split
    by what W's buffer holds (depthwise: channels split with their inputs; dw: by dwunit.chunks)."""
    Xh = np.ascontiguousarray((X if X.ndim == 4 else X[None]).transpose(0, 2, 3, 1))
    Co = W.shape[0]
    Wt = window.conv_weights(W, win)                                                  # (kh, kw, C[, Co])
    bias, m, shift = _params(bias, m, shift, Co)
    check_accumulator(window.dense_weights(Wt, win), bias, "the conv2d")
    if not out_int32 and not m.any():
        raise ValueError("int8 outputs need requantization multipliers m (see pf.quant.quantize_layer)")
    parts = []
    pack = dwunit.pack_dw_job if dw else window.pack_window_job
    for o, wj in dwunit.chunks(win, cfg) if dw else window.chunks(win, Co, cfg):
        Xj = Xh[..., o] if win.depthwise else Xh
        job = pack(Xj, Wt[..., o], bias[o], m[o], shift[o], relu, out_int32, cfg, win=wj)
        parts.append(GemmPart(job, np.arange(o.start, o.stop)))
    return parts


def assemble(parts, outputs, M: int, N: int, dtype) -> np.ndarray:
    """Scatter the jobs' (M x n) outputs into the layer's (M x N) matrix."""
    Y = np.zeros((M, N), dtype)
    for p, out in zip(parts, outputs, strict=True):
        Y[:, p.out_cols] = out
    return Y


def to_nchw(Y, shape) -> np.ndarray:
    """(N*Ho*Wo x Co) GEMM output back to (N, Co, Ho, Wo), or (Co, Ho, Wo) when the input was unbatched."""
    Nb, Co, Ho, Wo = shape
    out = Y.reshape(Nb or 1, Ho, Wo, Co).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out if Nb is not None else out[0])
