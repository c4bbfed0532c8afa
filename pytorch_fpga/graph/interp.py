"""The float reference interpreter of the graph IR: every op of pytorch_fpga.graph.ir.OPS in float32 numpy.

    values = run(graph, X)        # {node name: float32 array} for every node, 'output' included
    y = outputs(graph, X)         # just what the graph returns

Semantics follow torch.nn.functional (conv2d, max_pool2d / avg_pool2d with ceil_mode, batch_norm in eval
mode, ...), generalised to the IR's asymmetric (top, bottom, left, right) padding. Convolutions are im2col
plus one batched float32 matmul over the groups. Torch-free.
"""
from __future__ import annotations

import numpy as np

from pytorch_fpga.graph.ir import Graph, Node, pads4, pair

_AS_STRIDED = np.lib.stride_tricks.as_strided


def run(graph: Graph, X, keep: bool = True) -> dict[str, np.ndarray]:
    """Run every node on float input X (NCHW); {node name: float32 output}, only the output's when keep=False."""
    graph.check()
    last_use = {}
    for i, n in enumerate(graph.nodes):
        for name in n.inputs:
            last_use[name] = i
    out_node = graph.output
    vals: dict = {}
    for i, n in enumerate(graph.nodes):
        args = [vals[name] for name in n.inputs]
        try:
            vals[n.name] = _eval(n, args, X)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise type(e)(f"node '{n.name}' ({n.op}{', ' + n.source if n.source else ''}): {msg}") from e
        if not keep:
            for name in set(n.inputs):
                if last_use.get(name) == i and name not in out_node.inputs:
                    del vals[name]
    if not keep:
        vals = {name: vals[name] for name in out_node.inputs} | {out_node.name: vals[out_node.name]}
    vals["output"] = vals[out_node.name]
    return vals


def outputs(graph: Graph, X):
    """The graph's output for input X: one float32 array (a tuple when the output node has several inputs)."""
    return run(graph, X, keep=False)["output"]


# --- one node ----------------------------------------------------------------------------------------------
def _eval(n: Node, args: list, X):
    op, a = n.op, n.attrs
    if op == "input":
        return _input(n, X)
    if op == "output":
        if not args:
            raise ValueError("the output node has no inputs")
        return args[0] if len(args) == 1 else tuple(args)
    if op == "host_op":
        fn = a.get("fn")
        if not callable(fn):
            raise ValueError(f"host_op '{a.get('target', '?')}' has no callable attrs['fn'] (a loaded graph loses "
                             "it); re-capture the model or replace the node")
        return _host_result(fn(*args))
    _arity(n, args, {"add": 2, "cat": None}.get(op, 1))
    x = args[0]
    if op == "conv2d":
        return _act(_conv2d(x, _param(n, "W"), n.params.get("b"), a), a.get("act"))
    if op == "linear":
        W, b = _param(n, "W"), n.params.get("b")
        if x.ndim < 1 or x.shape[-1] != W.shape[1]:
            raise ValueError(f"linear input has shape {x.shape} but W is {W.shape}: needs (N, {W.shape[1]})")
        y = x @ W.astype(np.float32).T
        return _act(y + b.astype(np.float32) if b is not None else y, a.get("act"))
    if op == "batchnorm":
        return _batchnorm(n, x)
    if op == "relu":
        return np.maximum(x, np.float32(0))
    if op == "clamp":
        return np.clip(x, np.float32(a["lo"]), np.float32(a["hi"]))
    if op == "add":
        if args[0].shape != args[1].shape:
            raise ValueError(f"add needs two inputs of one shape, got {args[0].shape} and {args[1].shape}")
        return _act(args[0] + args[1], a.get("act"))
    if op == "cat":
        return np.concatenate(args, axis=int(a.get("axis", 1)))
    if op == "maxpool":
        return _pool(x, a, "max")
    if op == "avgpool":
        return _pool(x, a, "avg")
    if op == "global_avgpool":
        _rank(x, 4, "global_avgpool")
        return x.mean(axis=(2, 3), keepdims=True, dtype=np.float32)
    if op == "flatten":
        start = int(a.get("start", 1))
        if a.get("order") == "nhwc" and x.ndim == 4:        # passes.native_layout: (H, W, C) order
            x = x.transpose(0, 2, 3, 1)
        return x.reshape(x.shape[:start] + (-1,))
    if op == "identity":
        return x
    raise ValueError(f"the interpreter has no rule for op {op!r}")


def _input(n: Node, X):
    X = np.asarray(X, dtype=np.float32)
    if n.shape is not None and (X.ndim != len(n.shape) or any(
            d is not None and d != x for x, d in zip(X.shape[1:], n.shape[1:], strict=True))):
        raise ValueError(f"the input has shape {X.shape} but the graph was captured for {tuple(n.shape)} "
                         "(any batch size); pass an array of that shape")
    return X


def _host_result(r):
    if isinstance(r, (tuple, list)):
        return tuple(_host_result(v) for v in r)
    r = np.asarray(r)
    return r.astype(np.float32, copy=False) if np.issubdtype(r.dtype, np.floating) else r


def _arity(n: Node, args, k):
    if (k is None and not args) or (k is not None and len(args) != k):
        raise ValueError(f"{n.op} takes {k or 'one or more'} input(s), got {len(args)}: {n.inputs}")


def _param(n: Node, key: str) -> np.ndarray:
    if key not in n.params:
        raise ValueError(f"{n.op} needs params[{key!r}], the node has {sorted(n.params)}")
    return n.params[key]


def _rank(x, r, what):
    if x.ndim != r:
        raise ValueError(f"{what} needs a rank-{r} (N, C, H, W) input, got shape {x.shape}")


def _act(y, act):
    """Apply a fused activation: None, 'relu' or ('clamp', lo, hi)."""
    if act is None:
        return y
    if act == "relu":
        return np.maximum(y, np.float32(0))
    if isinstance(act, (tuple, list)) and len(act) == 3 and act[0] == "clamp":
        return np.clip(y, np.float32(act[1]), np.float32(act[2]))
    raise ValueError(f"unknown fused activation {act!r}; the IR has None, 'relu' or ('clamp', lo, hi)")


def _batchnorm(n: Node, x):
    if x.ndim < 2:
        raise ValueError(f"batchnorm needs (N, C, ...) input, got shape {x.shape}")
    p = {k: _param(n, k).astype(np.float32) for k in ("mean", "var", "gamma", "beta")}
    if any(v.shape != (x.shape[1],) for v in p.values()):
        raise ValueError(f"batchnorm statistics must be ({x.shape[1]},) for input {x.shape}, got "
                         f"{ {k: v.shape for k, v in p.items()} }")
    scale = p["gamma"] / np.sqrt(p["var"] + np.float32(n.attrs.get("eps", 1e-5)))
    shift = p["beta"] - p["mean"] * scale
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    return x * scale.reshape(bshape) + shift.reshape(bshape)


# --- convolution and pooling -------------------------------------------------------------------------------
def _windows(Xp, k, s, d, out):
    """A strided view (N, C, Ho, Wo, kh, kw) of the padded input: window (y, x) starts at (y*sh, x*sw)."""
    N, C, H, W = Xp.shape
    sN, sC, sH, sW = Xp.strides
    return _AS_STRIDED(Xp, (N, C, out[0], out[1], k[0], k[1]),
                       (sN, sC, sH * s[0], sW * s[1], sH * d[0], sW * d[1]), writeable=False)


def _conv2d(x, W, b, a):
    _rank(x, 4, "conv2d")
    W = np.asarray(W, dtype=np.float32)
    if W.ndim != 4:
        raise ValueError(f"conv2d weight must be (Co, C/groups, kh, kw), got {W.shape}")
    (sh, sw), (dh, dw), groups = pair(a.get("stride", 1)), pair(a.get("dilation", 1)), int(a.get("groups", 1))
    pt, pb, pl, pr = pads4(a.get("padding", 0))
    N, C, H, Wd = x.shape
    Co, Cg, kh, kw = W.shape
    if C % groups or Co % groups or Cg * groups != C:
        raise ValueError(f"conv2d input has {C} channels, groups={groups}, weight {W.shape}: the weight needs "
                         f"C/groups = {C // max(groups, 1)} input channels and Co divisible by groups")
    Ho = (H + pt + pb - dh * (kh - 1) - 1) // sh + 1
    Wo = (Wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d on {H}x{Wd} with kernel {kh}x{kw}, padding {(pt, pb, pl, pr)}, dilation "
                         f"{(dh, dw)} gives an empty output")
    Xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if (pt or pb or pl or pr) else np.ascontiguousarray(x)
    win = _windows(Xp, (kh, kw), (sh, sw), (dh, dw), (Ho, Wo))                  # (N, C, Ho, Wo, kh, kw)
    K, Og = Cg * kh * kw, Co // groups
    cols = win.reshape(N, groups, Cg, Ho * Wo, kh, kw).transpose(0, 1, 3, 2, 4, 5).reshape(N, groups, Ho * Wo, K)
    Y = cols @ W.reshape(groups, Og, K).transpose(0, 2, 1)                       # (N, G, Ho*Wo, Og)
    Y = Y.transpose(0, 1, 3, 2).reshape(N, Co, Ho, Wo)
    if b is not None:
        Y = Y + np.asarray(b, dtype=np.float32).reshape(1, Co, 1, 1)
    return np.ascontiguousarray(Y, dtype=np.float32)


def _pool_out(n, k, s, d, p0, p1, ceil_mode):
    span = n + p0 + p1 - d * (k - 1) - 1
    o = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (o - 1) * s >= n + p0:        # torch: the last window must start inside input or left pad
        o -= 1
    return o


def _pool(x, a, kind):
    _rank(x, 4, f"{kind}pool")
    (kh, kw) = pair(a["kernel"])
    (sh, sw) = pair(a.get("stride") or a["kernel"])
    (dh, dw) = pair(a.get("dilation", 1)) if kind == "max" else (1, 1)
    pt, pb, pl, pr = pads4(a.get("padding", 0))
    ceil = bool(a.get("ceil_mode", False))
    N, C, H, W = x.shape
    Ho, Wo = _pool_out(H, kh, sh, dh, pt, pb, ceil), _pool_out(W, kw, sw, dw, pl, pr, ceil)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"{kind}pool kernel {(kh, kw)} does not fit the {H}x{W} input with padding {(pt, pb, pl, pr)}")
    # extra bottom/right padding so that ceil_mode windows are complete views
    eb = max(0, (Ho - 1) * sh + dh * (kh - 1) + 1 - (H + pt + pb))
    er = max(0, (Wo - 1) * sw + dw * (kw - 1) + 1 - (W + pl + pr))
    widths = ((0, 0), (0, 0), (pt, pb + eb), (pl, pr + er))
    if kind == "max":
        Xp = np.pad(x, widths, constant_values=-np.inf)
        return _windows(Xp, (kh, kw), (sh, sw), (dh, dw), (Ho, Wo)).max(axis=(4, 5))
    Xp = np.pad(x, widths)
    sums = _windows(Xp, (kh, kw), (sh, sw), (1, 1), (Ho, Wo)).sum(axis=(4, 5), dtype=np.float32)
    # the divisor: window cells inside the padded input (count_include_pad) or inside the input only
    mask = np.zeros((1, 1) + Xp.shape[2:], np.float32)
    if a.get("count_include_pad", True):
        mask[..., :H + pt + pb, :W + pl + pr] = 1
    else:
        mask[..., pt:pt + H, pl:pl + W] = 1
    count = _windows(mask, (kh, kw), (sh, sw), (1, 1), (Ho, Wo)).sum(axis=(4, 5), dtype=np.float32)
    return (sums / count).astype(np.float32)
