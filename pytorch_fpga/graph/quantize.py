"""Quantize an optimized float graph to int8 from calibration ranges: scales, int8 weights, requantization.

Every tensor is symmetric int8 (real = q * scale, zero point 0). What each node computes in integers, exactly
(pytorch_fpga.runtime.kernels implements it, pf.accel.golden for the accelerator's layers):
    input            q = clip(rint(x / s), -128, 127)                            (x in float64)
    conv2d, linear   requant(X @ W + bias) on the accelerator; a fused ReLU / clamp(0, hi) is its ReLU flag and
                     int8 saturation at s_out = hi / 127; the last linear before the output keeps int32
    add              clip((qa * ma + qb * mb + 2**(S-1)) >> S, 0 with an activation else -128, 127)
    cat              inputs at the cat's scale: accelerator producers requantize to it themselves, the rest
                     are rescaled like one side of an add
    maxpool, relu, flatten   on int8 directly (they commute with a positive scale); clamp clips at rint(lo / s)
    avgpool, global_avgpool  requant(sum of the window, s_in / (count * s_out))
    host_op          float on the host: dequantize, run, quantize
    output           q * s (int8) or acc * s_in * s_w (int32), as float32
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from pytorch_fpga.contract import accel
from pytorch_fpga.core import quant
from pytorch_fpga.graph.ir import Graph, Node

FIXED_BITS = 15          # add / cat rescale multipliers stay below 2**15, so int32 arithmetic cannot overflow


class CalibrationWarning(UserWarning):
    """Calibration data that gives a tensor a useless scale (zeros only, a dead ReLU, constant data)."""


def tensor_of(n: Node) -> str:
    """The float tensor (a node name of the captured graph) this node's output stands for."""
    return n.attrs.get("tensor") or n.name


def fixed_multiplier(ratios) -> tuple[np.ndarray, int]:
    """(multipliers, S): round(r * 2**S) < 2**FIXED_BITS for the largest ratio r, with S in [0, 24]."""
    r = np.asarray(ratios, np.float64)
    S = int(np.clip(FIXED_BITS - 1 - math.ceil(math.log2(max(float(r.max()), 2.0**-24))), 0, 24))
    return np.rint(r * 2.0**S).astype(np.int64), S


def _scale(name: str, amax: dict, key: str) -> float:
    if key not in amax:
        raise ValueError(f"node '{name}': no calibration range for tensor '{key}' (was it run on the calibration "
                         "data?)")
    a = float(amax[key])
    if a == 0.0:
        warnings.warn(f"node '{name}': its output was 0 for every calibration sample (a dead ReLU, or inputs that "
                      "never reach it), so its scale is a placeholder (1.0); calibrate with representative data",
                      CalibrationWarning, stacklevel=4)
    return quant.scale_from_amax(a)


def _forced_scales(g: Graph, amax: dict) -> dict:
    """Scales fixed by a reader: an accelerator layer read only by a cat produces the cat's scale (not a clamp's,
    whose scale is its upper bound / 127)."""
    forced = {}
    for n in g.nodes:
        if n.op == "cat":
            s = _scale(n.name, amax, tensor_of(n))
            for i in n.inputs:
                src = g[i]
                if src.op in ("conv2d", "linear") and len(g.users(i)) == 1 and src.attrs.get("act") in (None, "relu"):
                    forced[i] = s
    return forced


def quantize(g: Graph, amax: dict, cfg="z1") -> Graph:
    """An int8 copy of the optimized, partitioned float graph g, from amax = {tensor name: max |value|}."""
    cfg = accel.config(cfg)
    g = g.copy()
    forced = _forced_scales(g, amax)
    out_src = g.output.inputs
    for n in g.nodes:
        ins = [g[i] for i in n.inputs]
        act = n.attrs.get("act")
        if n.op == "input":
            n.scale, n.dtype = _scale(n.name, amax, tensor_of(n)), "int8"
        elif n.op in ("conv2d", "linear"):
            _quantize_layer(g, n, ins[0], amax, forced, last=n.op == "linear" and act is None and n.name in out_src)
        elif n.op in ("maxpool", "relu", "clamp", "flatten", "identity"):
            n.scale, n.dtype = ins[0].scale, ins[0].dtype
            if ins[0].dtype != "int8":
                raise ValueError(f"node '{n.name}' ({n.op}) reads int32 '{ins[0].name}'; only the graph output can")
            if n.op == "clamp":
                lo, hi = n.attrs["lo"], n.attrs["hi"]
                n.attrs["qlo"] = -128 if lo is None else int(np.clip(np.rint(lo / n.scale), -128, 127))
                n.attrs["qhi"] = 127 if hi is None else int(np.clip(np.rint(hi / n.scale), -128, 127))
        elif n.op in ("add", "cat"):
            s = _clamp_scale(act) or _scale(n.name, amax, tensor_of(n))
            n.scale, n.dtype = s, "int8"
            n.params["mult"], n.attrs["S"] = fixed_multiplier([i.scale / s for i in ins])
        elif n.op in ("avgpool", "global_avgpool"):
            n.scale, n.dtype = _scale(n.name, amax, tensor_of(n)), "int8"
            n.attrs["ratio"] = ins[0].scale / n.scale                   # s_in / s_out; the count comes per window
        elif n.op == "host_op":
            n.scale, n.dtype = _scale(n.name, amax, tensor_of(n)), "int8"
        elif n.op == "output":
            n.dtype = "float32"
        else:
            raise ValueError(f"node '{n.name}': op {n.op!r} left in the graph after the passes cannot be quantized")
    return g.check()


def _clamp_scale(act):
    return act[2] / quant.QMAX if isinstance(act, tuple) else None


def _quantize_layer(g: Graph, n: Node, src: Node, amax: dict, forced: dict, last: bool) -> None:
    """int8 weights, int32 bias, requantization to the output scale (or int32 output for the last layer)."""
    if src.dtype != "int8":
        raise ValueError(f"node '{n.name}' reads '{src.name}', which is not int8 ({src.dtype})")
    act = n.attrs.get("act")
    s_out = 1.0 if last else (_clamp_scale(act) or forced.get(n.name) or _scale(n.name, amax, tensor_of(n)))
    q = quant.quantize_layer(n.params["W"], n.params.get("b"), src.scale, s_out, relu=act is not None)
    W2 = q.w_int8.reshape(q.w_int8.shape[0], -1).T
    accel.check_accumulator(W2, q.bias_int32, f"layer '{n.name}'")
    n.params = {"w_int8": q.w_int8, "bias_int32": q.bias_int32.astype(np.int32), "m": q.m, "shift": q.shift,
                "s_w": q.s_w}
    n.attrs["relu"] = act is not None
    if last:
        n.dtype, n.scale = "int32", None
        n.params["s_acc"] = src.scale * q.s_w                    # per output channel: real = acc * s_acc
        n.attrs["out_int32"] = True
    else:
        n.dtype, n.scale = "int8", s_out
        n.attrs["out_int32"] = False
