"""Optimizer passes on the float graph: each a small function that rewrites a Graph in place and returns it.

    remove_identity -> fold_batchnorm -> fuse_activations -> native_layout -> partition
(requantizing adds and concatenations happens when the graph is quantized: pytorch_fpga.graph.quantize).
"""
from __future__ import annotations

import numpy as np

from pytorch_fpga.contract import accel
from pytorch_fpga.graph.ir import Graph, Node

ACCEL_OPS = ("conv2d", "linear")
HOST_INT8_OPS = ("input", "add", "cat", "maxpool", "avgpool", "global_avgpool", "relu", "clamp", "flatten",
                 "identity", "output", "batchnorm")


def _sole_user(g: Graph, n: Node) -> Node | None:
    users = g.users(n.name)
    return users[0] if len(users) == 1 and users[0].op != "output" else None


def remove_identity(g: Graph) -> Graph:
    """Drop identity nodes (eval-mode dropout, no-op reshapes): their readers read their input."""
    for n in [n for n in g.nodes if n.op == "identity"]:
        g.remove(n.name)
    return g


def fold_batchnorm(g: Graph) -> Graph:
    """Fold an eval-mode BatchNorm into the conv2d/linear before it (W' = W k, b' = (b - mean) k + beta), and turn
    a BatchNorm that follows anything else into a depthwise 1x1 conv2d the accelerator runs."""
    for bn in [n for n in g.nodes if n.op == "batchnorm"]:
        p = bn.params
        k = p["gamma"].astype(np.float64) / np.sqrt(p["var"].astype(np.float64) + bn.attrs.get("eps", 1e-5))
        shift = p["beta"].astype(np.float64) - p["mean"].astype(np.float64) * k
        prev = g[bn.inputs[0]]
        if prev.op in ACCEL_OPS and _sole_user(g, prev) is bn and prev.attrs.get("act") is None:
            W = prev.params["W"].astype(np.float64)
            b = prev.params.get("b", np.zeros(W.shape[0])).astype(np.float64)
            prev.params["W"] = (W * k.reshape((-1,) + (1,) * (W.ndim - 1))).astype(np.float32)
            prev.params["b"] = (b * k + shift).astype(np.float32)
            prev.fused.append(bn.name)
            prev.attrs["tensor"] = bn.name        # the float tensor its output now stands for (calibration)
            g.remove(bn.name)
        else:                                     # y = x k + shift per channel: a depthwise 1x1 convolution
            C = k.size
            bn.op = "conv2d"
            bn.attrs = {"stride": (1, 1), "padding": (0, 0, 0, 0), "dilation": (1, 1), "groups": C, "act": None}
            bn.params = {"W": k.reshape(C, 1, 1, 1).astype(np.float32), "b": shift.astype(np.float32)}
            bn.fused.append("batchnorm as a depthwise 1x1 conv")
    return g


def _act_of(n: Node):
    if n.op == "relu":
        return "relu"
    lo, hi = n.attrs.get("lo"), n.attrs.get("hi")
    if lo == 0 and hi is not None and hi > 0:
        return ("clamp", 0.0, float(hi))       # ReLU6-like: ReLU plus saturation at an output scale of hi / 127
    return None


def fuse_activations(g: Graph) -> Graph:
    """Fuse ReLU, ReLU6 and clamp(0, hi) into the conv2d, linear or add they follow (the accelerator's ReLU and
    int8 saturation do them); another clamp stays a host int8 node."""
    for a in [n for n in g.nodes if n.op in ("relu", "clamp")]:
        prev = g[a.inputs[0]]
        act = _act_of(a)
        if act is None or prev.op not in ACCEL_OPS + ("add",) or _sole_user(g, prev) is not a \
                or prev.attrs.get("act") is not None:
            continue
        prev.attrs["act"] = act
        prev.fused.append(a.name)
        prev.attrs["tensor"] = a.name
        g.remove(a.name)
    return g


def native_layout(g: Graph) -> Graph:
    """Keep activations NHWC (the accelerator's rows of channels) from layer to layer: a flatten of a feature map
    reads it in (H, W, C) order, and the linear layers after it get their weight columns permuted to match."""
    for f in [n for n in g.nodes if n.op == "flatten"]:
        src = g[f.inputs[0]]
        if src.shape is None or len(src.shape) != 4 or f.attrs.get("order") == "nhwc":
            continue
        _, C, H, W = src.shape
        readers = g.users(f.name)
        if not readers or any(r.op != "linear" for r in readers):
            continue                               # torch's (C, H, W) order is needed elsewhere: copy it then
        perm = np.arange(C * H * W).reshape(C, H, W).transpose(1, 2, 0).ravel()
        for r in readers:
            r.params["W"] = np.ascontiguousarray(r.params["W"][:, perm])
            r.fused.append("weights permuted for NHWC input")
        f.attrs["order"] = "nhwc"
    return g


def _accel_fits(n: Node, cfg: accel.AccelConfig) -> str:
    """'' when the accelerator takes the layer, else why not."""
    W = n.params["W"]
    K = int(np.prod(W.shape[1:]))
    kmax = min(cfg.x_depth, cfg.w_depth // cfg.rows) * cfg.rows
    if K > kmax:
        return f"reduction K={K} is longer than build '{cfg.name}' takes ({kmax})"
    return ""


def partition(g: Graph, cfg="z1") -> Graph:
    """Place each node: 'accelerator' (conv2d, linear), 'host int8' (adds, pooling, concatenation, layout, and
    layers the build cannot take, run by the numpy golden model), or 'host float' (ops with no int8 kernel)."""
    cfg = accel.config(cfg)
    for n in g.nodes:
        if n.op in ACCEL_OPS:
            why = _accel_fits(n, cfg)
            n.placement = "host int8" if why else "accelerator"
            n.attrs["why"] = why or None
        elif n.op in HOST_INT8_OPS:
            n.placement = "host int8"
        else:
            n.placement = "host float"
            n.attrs["why"] = f"no int8 kernel for {n.attrs.get('target', n.op)}"
    return g


PIPELINE = (remove_identity, fold_batchnorm, fuse_activations, native_layout)


def optimize(g: Graph, cfg="z1", trace: list | None = None) -> Graph:
    """Run every pass on a copy of g (then partition); with `trace`, append (pass name, graph text) after each."""
    g = g.copy()
    for p in PIPELINE:
        p(g)
        if trace is not None:
            trace.append((p.__name__, str(g)))
    partition(g, cfg)
    if trace is not None:
        trace.append(("partition", str(g)))
    return g.check()


def placement_table(g: Graph) -> str:
    """Where each op runs and why, one row a node."""
    rows = [f"{'node':28s} {'op':15s} {'where':12s} note"]
    for n in g.nodes:
        note = n.attrs.get("why") or ""
        if n.placement != "accelerator" and n.op not in ("input", "output") and n.source:
            note += f" ({n.source})" if note else n.source
        if n.fused:
            note = (note + "; " if note else "") + "fused: " + ", ".join(n.fused)
        rows.append(f"{n.name[:28]:28s} {n.op:15s} {n.placement or '-':12s} {note}")
    return "\n".join(rows)
