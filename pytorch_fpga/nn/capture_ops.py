"""The op table of pytorch_fpga.nn.capture: which torch calls become which IR ops, with which attributes.

Arguments arrive by ATen schema name (torch.export's ATen ops, normalised) or, for the torch.fx fallback, from
the small signature table below (torch functions, Tensor methods, nn modules). `to_ir` returns IR node specs, or
None when the call is not one of the IR's ops and must run on the host through torch.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pytorch_fpga.graph.ir import pads4, pair


class Act(str):
    """An argument that is an activation: the name of the IR node holding it."""


PREV = Act("<the previous spec's node>")      # an input that is the node made by the spec before


# positional parameter names of torch functions / Tensor methods the fx fallback maps (ATen names)
_SIGS = {
    "conv2d": "input weight bias stride padding dilation groups",
    "linear": "input weight bias",
    "batch_norm": "input running_mean running_var weight bias training momentum eps",
    "relu": "input inplace", "relu6": "input inplace", "relu_": "input",
    "hardtanh": "input min_val max_val inplace", "hardtanh_": "input min_val max_val",
    "clamp": "input min max", "clip": "input min max", "clamp_": "input min max",
    "add": "input other alpha", "add_": "input other alpha",
    "cat": "tensors dim", "concat": "tensors dim",
    "max_pool2d": "input kernel_size stride padding dilation ceil_mode return_indices",
    "avg_pool2d": "input kernel_size stride padding ceil_mode count_include_pad divisor_override",
    "adaptive_avg_pool2d": "input output_size",
    "mean": "input dim keepdim",
    "flatten": "input start_dim end_dim",
    "reshape": "input shape", "view": "input shape",
    "dropout": "input p training inplace",
    "contiguous": "input", "clone": "input", "detach": "input",
}
_IDENTITY = {"clone", "contiguous", "alias", "detach", "identity", "lift_fresh_copy"}


def by_signature(name: str, args: tuple, kwargs: dict):
    """(kind, {ATen argument name: value}) for a torch function or Tensor method call; kw None if not mapped."""
    if name not in _SIGS:
        return name, None
    names = _SIGS[name].split()
    if name in ("view", "reshape") and len(args) != 2 or name in ("view", "reshape") and isinstance(args[1], int):
        args = (args[0], tuple(args[1:]))
    if len(args) > len(names) or any(k not in names for k in kwargs):
        return name, None
    return name.rstrip("_"), dict(zip(names, args, strict=False)) | dict(kwargs)


def module_call(m: nn.Module, args: tuple, kwargs: dict):
    """(kind, arguments by ATen name) for a call of an nn module kept whole by torch.fx; kw None if not mapped."""
    if len(args) != 1 or kwargs:
        return type(m).__name__, None
    x = args[0]
    if type(m) is nn.Conv2d and m.padding_mode == "zeros":
        return "conv2d", dict(input=x, weight=m.weight, bias=m.bias, stride=m.stride, padding=m.padding,
                              dilation=m.dilation, groups=m.groups)
    if type(m) is nn.Linear:
        return "linear", dict(input=x, weight=m.weight, bias=m.bias)
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
        return "batch_norm", dict(input=x, weight=m.weight, bias=m.bias, running_mean=m.running_mean,
                                  running_var=m.running_var, training=m.training, eps=m.eps)
    if type(m) is nn.ReLU:
        return "relu", dict(input=x)
    if isinstance(m, nn.Hardtanh):                                           # ReLU6 is a Hardtanh(0, 6)
        return "hardtanh", dict(input=x, min_val=m.min_val, max_val=m.max_val)
    if type(m) is nn.MaxPool2d and not m.return_indices:
        return "max_pool2d", dict(input=x, kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                                  dilation=m.dilation, ceil_mode=m.ceil_mode)
    if type(m) is nn.AvgPool2d:
        return "avg_pool2d", dict(input=x, kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                                  ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                                  divisor_override=m.divisor_override)
    if type(m) is nn.AdaptiveAvgPool2d:
        return "adaptive_avg_pool2d", dict(input=x, output_size=m.output_size)
    if type(m) is nn.Flatten:
        return "flatten", dict(input=x, start_dim=m.start_dim, end_dim=m.end_dim)
    if isinstance(m, (nn.Dropout, nn.Dropout2d, nn.Identity)):
        return "dropout", dict(input=x, training=m.training and not isinstance(m, nn.Identity))
    return type(m).__name__, None


def _np(t) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _const(v) -> bool:
    return isinstance(v, torch.Tensor) and not isinstance(v, Act)


def to_ir(kind: str, kw: dict, shape_in: dict, shape_out) -> list | None:
    """IR specs [(op, inputs, attrs, params, shape, transform)] for one call, or None to run it on the host.

    transform maps the torch call's value to the IR node's (None: the same value)."""
    x = kw.get("input")
    rank = len(shape_in[x]) if isinstance(x, Act) else None

    def node(op, ins, attrs=None, params=None, shape=shape_out, tf=None):
        return [(op, ins, attrs or {}, params or {}, shape, tf)]

    if kind == "cat":
        ts = kw.get("tensors")
        if not ts or not all(isinstance(t, Act) for t in ts):
            return None
        dim = int(kw.get("dim", 0))
        return node("cat", list(ts), {"axis": dim % len(shape_out)})
    if not isinstance(x, Act):
        return None
    if kind in ("conv2d", "convolution"):
        W, b = kw.get("weight"), kw.get("bias")
        if rank != 4 or not _const(W) or W.dim() != 4 or (b is not None and not _const(b)) or kw.get("transposed"):
            return None
        stride, dilation = pair(kw.get("stride", 1)), pair(kw.get("dilation", 1))
        pad = kw.get("padding", 0)
        if isinstance(pad, str):
            if pad == "same":
                th, tw = (d * (k - 1) for d, k in zip(dilation, W.shape[2:], strict=True))
                pad = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
            else:
                pad = 0
        params = {"W": _np(W)} | ({"b": _np(b)} if b is not None else {})
        return node("conv2d", [x], dict(stride=stride, padding=pads4(pad), dilation=dilation,
                                        groups=int(kw.get("groups", 1)), act=None), params)
    if kind == "linear":
        W, b = kw.get("weight"), kw.get("bias")
        if rank != 2 or not _const(W) or W.dim() != 2 or (b is not None and not _const(b)):
            return None
        return node("linear", [x], {"act": None}, {"W": _np(W)} | ({"b": _np(b)} if b is not None else {}))
    if kind in ("batch_norm", "_native_batch_norm_legit_no_training"):
        mean, var, w, b = (kw.get(k) for k in ("running_mean", "running_var", "weight", "bias"))
        if kw.get("training") or not (_const(mean) and _const(var)) or any(v is not None and not _const(v)
                                                                           for v in (w, b)):
            return None
        C = mean.shape[0]
        params = {"mean": _np(mean), "var": _np(var),
                  "gamma": _np(w) if w is not None else np.ones(C, np.float32),
                  "beta": _np(b) if b is not None else np.zeros(C, np.float32)}
        if isinstance(shape_out, list):                                 # (out, mean, rstd): the IR keeps out
            return node("batchnorm", [x], {"eps": float(kw["eps"])}, params, shape_out[0], lambda v: v[0])
        return node("batchnorm", [x], {"eps": float(kw["eps"])}, params)
    if kind == "relu":
        return node("relu", [x])
    if kind in ("hardtanh", "relu6", "clamp", "clip"):
        lo, hi = {"relu6": (0.0, 6.0), "hardtanh": (kw.get("min_val", -1.0), kw.get("max_val", 1.0))}.get(
            kind, (kw.get("min"), kw.get("max")))
        if not all(v is None or isinstance(v, (int, float)) for v in (lo, hi)) or (lo is None and hi is None):
            return None
        if lo == 0 and hi is None:
            return node("relu", [x])
        lo, hi = (float("-inf") if lo is None else float(lo)), (float("inf") if hi is None else float(hi))
        return node("clamp", [x], {"lo": lo, "hi": hi})
    if kind == "add":
        y = kw.get("other")
        if not isinstance(y, Act) or kw.get("alpha", 1) != 1 or shape_in[x] != shape_in[y]:
            return None
        return node("add", [x, y], {"act": None})
    if kind in ("max_pool2d", "avg_pool2d"):
        if rank != 4 or kw.get("return_indices") or kw.get("divisor_override") is not None:
            return None
        k = pair(kw["kernel_size"])
        s = pair(kw.get("stride") or k)
        attrs = dict(kernel=k, stride=s, padding=pads4(kw.get("padding", 0)), ceil_mode=bool(kw.get("ceil_mode")))
        if kind == "max_pool2d":
            return node("maxpool", [x], attrs | {"dilation": pair(kw.get("dilation", 1))})
        return node("avgpool", [x], attrs | {"count_include_pad": bool(kw.get("count_include_pad", True))})
    if kind == "adaptive_avg_pool2d":
        size = kw.get("output_size")
        return node("global_avgpool", [x]) if rank == 4 and tuple(pair(size)) == (1, 1) else None
    if kind == "mean":
        dims = kw.get("dim")
        if rank != 4 or dims is None or kw.get("dtype") is not None or {int(d) % 4 for d in dims} != {2, 3} \
                or len(dims) != 2:
            return None
        if kw.get("keepdim"):
            return node("global_avgpool", [x])
        return (node("global_avgpool", [x], shape=tuple(shape_out) + (1, 1), tf=lambda v: v[:, :, None, None])
                + node("flatten", [PREV], {"start": 1}))
    if kind == "flatten":
        start, end = int(kw.get("start_dim", 0)), int(kw.get("end_dim", -1))
        return node("flatten", [x], {"start": 1}) if rank >= 2 and start % rank == 1 and end % rank == rank - 1 \
            else None
    if kind in ("view", "reshape", "_unsafe_view"):
        si = shape_in[x]
        flat = len(shape_out) == 2 and rank >= 2 and shape_out[0] == si[0] and shape_out[1] == int(np.prod(si[1:]))
        return node("flatten", [x], {"start": 1}) if flat else None
    if kind == "dropout":
        return node("identity", [x]) if not (kw.get("train") or kw.get("training")) else None
    if kind in _IDENTITY:
        return node("identity", [x])
    return None
