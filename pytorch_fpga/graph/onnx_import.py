"""Import an ONNX model into the float graph IR (pytorch_fpga.graph.ir). Torch-free; onnx is imported lazily.

    graph = import_onnx("model.onnx")            # or an onnx.ModelProto

Conv, Gemm, MatMul (+ Add: linear), BatchNormalization, Relu, Clip, Add, Concat, MaxPool, AveragePool,
GlobalAveragePool, ReduceMean over H and W, Flatten, Reshape to (N, -1), Dropout and Identity become IR ops.
Nodes whose inputs are all constants (Constant, shape arithmetic) are folded into constants; Shape of a tensor
of known shape too. Any other op becomes a host_op whose fn evaluates that one node with
onnx.reference.ReferenceEvaluator. Shapes come from onnx.shape_inference; unknown dimensions are None.
"""
from __future__ import annotations

import os

import numpy as np

from pytorch_fpga.graph.ir import Graph, Node

_RANDOM = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


def import_onnx(model_or_path, name: str | None = None) -> Graph:
    """The float IR Graph of an ONNX model (a path or an onnx.ModelProto) with one input."""
    import onnx
    from onnx import shape_inference

    if isinstance(model_or_path, (str, os.PathLike)):
        model = onnx.load(os.fspath(model_or_path))
        default = os.path.splitext(os.path.basename(os.fspath(model_or_path)))[0]
    elif isinstance(model_or_path, onnx.ModelProto):
        model, default = model_or_path, model_or_path.graph.name or "onnx"
    else:
        raise TypeError(f"import_onnx takes a path or an onnx.ModelProto, got {type(model_or_path).__name__}")
    if model.functions:
        import onnx.inliner
        model = onnx.inliner.inline_local_functions(model)
    model = shape_inference.infer_shapes(model, data_prop=True)
    return Graph(_live(_Importer(model).run()), name or default)


def _live(nodes: list) -> list:
    """The nodes the output depends on (shape arithmetic left behind by a mapped Reshape is dropped)."""
    need = {n.name for n in nodes if n.op in ("output", "input")}
    for n in reversed(nodes):
        if n.name in need:
            need |= set(n.inputs)
    return [n for n in nodes if n.name in need]


def _shape(value_info):
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)


class _Importer:
    """Walks the ONNX graph once, in order, emitting IR nodes."""

    def __init__(self, model):
        from onnx import numpy_helper
        g = model.graph
        self.graph = g
        self.opsets = {o.domain: o.version for o in model.opset_import}
        self.opset = self.opsets.get("", self.opsets.get("ai.onnx", 1))
        self.consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.shapes = {vi.name: _shape(vi) for vi in [*g.input, *g.value_info, *g.output]}
        self.act: dict[str, str] = {}              # ONNX tensor name -> IR node name
        self.users: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                self.users.setdefault(i, []).append(n)
        self.outputs = [o.name for o in g.output]
        self.used = {"input", "output"}
        self.skip: set[int] = set()
        self.nodes: list[Node] = []

    def run(self) -> list:
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise ValueError(f"the ONNX model has {len(inputs)} inputs ({[i.name for i in inputs]}); the IR takes "
                             "models with one input tensor")
        x = inputs[0]
        self.act[x.name] = "input"
        self.nodes.append(Node("input", "input", shape=self.shapes.get(x.name), source=x.name))
        for n in self.graph.node:
            if id(n) not in self.skip:
                self._node(n)
        missing = [o for o in self.outputs if o not in self.act]
        if missing:
            raise ValueError(f"ONNX outputs {missing} do not depend on the input (constants); the IR cannot return "
                             "them")
        last = self.outputs[0]
        self.nodes.append(Node("output", "output", [self.act[o] for o in self.outputs],
                               shape=self.shapes.get(last) if len(self.outputs) == 1 else None))
        return self.nodes

    # --- helpers ---------------------------------------------------------------------------------------------
    def _unique(self, name: str) -> str:
        base, k = name or "node", 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def _emit(self, n, op, ins, attrs=None, params=None, out=None):
        out = out or n.output[0]
        name = self._unique(out)
        src = f"{n.name} ({n.op_type})" if n.name else n.op_type
        self.nodes.append(Node(name, op, [self.act[i] for i in ins], attrs or {}, params or {},
                               shape=self.shapes.get(out), source=src))
        self.act[out] = name

    def _attrs(self, n) -> dict:
        from onnx import helper
        return {a.name: helper.get_attribute_value(a) for a in n.attribute}

    def _const(self, name):
        return self.consts.get(name) if name else None

    def _rank(self, name):
        s = self.shapes.get(name)
        return len(s) if s is not None else None

    # --- one node --------------------------------------------------------------------------------------------
    def _node(self, n):
        ins = [i for i in n.input if i]
        if n.op_type not in _RANDOM and all(i in self.consts for i in ins):
            return self._fold(n)
        if n.op_type == "Shape":
            s = self.shapes.get(n.input[0])
            if s is not None and None not in s:
                a = self._attrs(n)
                self.consts[n.output[0]] = np.array(s[a.get("start", 0):a.get("end", len(s))], np.int64)
                return None
        handler = getattr(self, "_op_" + n.op_type, None) if n.domain in ("", "ai.onnx") else None
        if handler is None or handler(n, self._attrs(n)) is False:
            self._host(n)
        return None

    def _fold(self, n):
        from onnx.reference import ReferenceEvaluator
        feeds = {i: self.consts[i] for i in n.input if i}
        outs = ReferenceEvaluator(n, opsets=dict(self.opsets)).run(None, feeds)
        for name, v in zip(n.output, outs, strict=False):
            if name:
                self.consts[name] = np.asarray(v)

    def _host(self, n):
        from onnx.reference import ReferenceEvaluator
        ev = ReferenceEvaluator(n, opsets=dict(self.opsets))
        acts = list(dict.fromkeys(i for i in n.input if i and i not in self.consts))
        missing = [i for i in acts if i not in self.act]
        if missing:
            raise ValueError(f"ONNX node {n.name} ({n.op_type}) reads {missing}, which nothing computes")
        consts = {i: self.consts[i] for i in n.input if i in self.consts}
        used = [k for k, o in enumerate(n.output) if o and (o in self.users or o in self.outputs)] or [0]
        for k in used:
            self._emit(n, "host_op", acts, {"target": n.op_type, "fn": _host_fn(ev, acts, consts, k, n.op_type)},
                       out=n.output[k])

    def _only_first_output_used(self, n) -> bool:
        return all(not o or (o not in self.users and o not in self.outputs) for o in n.output[1:])

    def _acts(self, n, k=None) -> bool:
        names = [i for i in n.input if i][:k]
        return all(i in self.act for i in names)

    # --- the IR's ops -----------------------------------------------------------------------------------------
    def _op_Conv(self, n, a):
        W, b = self._const(n.input[1]), self._const(n.input[2] if len(n.input) > 2 else "")
        if not self._acts(n, 1) or W is None or W.ndim != 4 or self._rank(n.input[0]) != 4 \
                or (len(n.input) > 2 and n.input[2] and b is None):
            return False
        k = tuple(a.get("kernel_shape", W.shape[2:]))
        s, d = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
        pads = self._pads(n, a, k, s, d, False)
        params = {"W": W.astype(np.float32)} | ({"b": b.astype(np.float32)} if b is not None else {})
        self._emit(n, "conv2d", [n.input[0]], dict(stride=s, padding=pads, dilation=d, groups=int(a.get("group", 1)),
                                                   act=None), params)

    def _pads(self, n, a, k, s, d, ceil_mode):
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            p = tuple(a.get("pads", (0, 0, 0, 0)))
            return (p[0], p[2], p[1], p[3])                        # ONNX: (h_begin, w_begin, h_end, w_end)
        if auto == "VALID":
            return (0, 0, 0, 0)
        shape = self.shapes.get(n.input[0])
        if auto not in ("SAME_UPPER", "SAME_LOWER") or shape is None or None in shape[2:]:
            raise ValueError(f"ONNX node {n.name} ({n.op_type}): auto_pad={auto} needs a known input size "
                             f"(got shape {shape}); re-export the model with explicit pads")
        out = []
        for size, kk, ss, dd in zip(shape[2:], k, s, d, strict=True):
            total = max(0, (-(-size // ss) - 1) * ss + (kk - 1) * dd + 1 - size)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return (out[0][0], out[0][1], out[1][0], out[1][1])

    def _op_Gemm(self, n, a):
        if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise ValueError(f"ONNX Gemm {n.name}: alpha={a.get('alpha', 1.0)}, beta={a.get('beta', 1.0)}; only "
                             "alpha = beta = 1 maps to a linear layer (fold the factors into B and C)")
        B, C = self._const(n.input[1]), self._const(n.input[2] if len(n.input) > 2 else "")
        if a.get("transA", 0) or not self._acts(n, 1) or B is None or self._rank(n.input[0]) != 2:
            return False
        W = B if a.get("transB", 0) else B.T
        return self._linear(n, W, C, n.input[2] if len(n.input) > 2 else "", n.output[0])

    def _linear(self, n, W, C, c_name, out):
        if c_name and C is None or C is not None and C.size not in (1, W.shape[0]):
            return False
        params = {"W": np.ascontiguousarray(W, dtype=np.float32)}
        if C is not None:
            params["b"] = np.broadcast_to(C.reshape(-1).astype(np.float32), (W.shape[0],)).copy()
        self._emit(n, "linear", [n.input[0]], {"act": None}, params, out=out)

    def _op_MatMul(self, n, a):
        B = self._const(n.input[1])
        if not self._acts(n, 1) or B is None or B.ndim != 2 or self._rank(n.input[0]) != 2:
            return False
        users = self.users.get(n.output[0], [])
        if len(users) == 1 and users[0].op_type == "Add" and n.output[0] not in self.outputs:
            add = users[0]
            other = [i for i in add.input if i != n.output[0]]
            C = self._const(other[0]) if len(other) == 1 else None
            if C is not None and C.size == B.shape[1] and C.ndim <= 2:
                self.skip.add(id(add))
                return self._linear(n, B.T, C, other[0], add.output[0])
        return self._linear(n, B.T, None, "", n.output[0])

    def _op_BatchNormalization(self, n, a):
        stats = [self._const(i) for i in n.input[1:5]]
        if not self._acts(n, 1) or any(s is None for s in stats) or a.get("training_mode", 0) \
                or not self._only_first_output_used(n):
            return False
        gamma, beta, mean, var = (s.astype(np.float32) for s in stats)
        self._emit(n, "batchnorm", [n.input[0]], {"eps": float(a.get("epsilon", 1e-5))},
                   dict(mean=mean, var=var, gamma=gamma, beta=beta))

    def _op_Relu(self, n, a):
        self._emit(n, "relu", [n.input[0]])

    def _op_Clip(self, n, a):
        if self.opset < 11:
            lo, hi = a.get("min"), a.get("max")
        else:
            bounds = [n.input[k] if len(n.input) > k else "" for k in (1, 2)]
            if any(b and b not in self.consts for b in bounds):
                return False
            lo, hi = (float(self.consts[b]) if b else None for b in bounds)
        if lo == 0 and hi is None:
            return self._emit(n, "relu", [n.input[0]])
        lo, hi = (float("-inf") if lo is None else float(lo)), (float("inf") if hi is None else float(hi))
        self._emit(n, "clamp", [n.input[0]], {"lo": lo, "hi": hi})

    def _op_Add(self, n, a):
        s = [self.shapes.get(i) for i in n.input]
        if len(n.input) != 2 or not self._acts(n) or s[0] is None or s[1] is None or len(s[0]) != len(s[1]) \
                or s[0][1:] != s[1][1:] or None in s[0][1:]:            # the batch may be symbolic (None)
            return False
        self._emit(n, "add", list(n.input), {"act": None})

    def _op_Concat(self, n, a):
        rank = self._rank(n.output[0])
        if not self._acts(n) or rank is None:
            return False
        self._emit(n, "cat", list(n.input), {"axis": int(a["axis"]) % rank})

    def _op_MaxPool(self, n, a):
        return self._pool(n, a, "maxpool")

    def _op_AveragePool(self, n, a):
        return self._pool(n, a, "avgpool")

    def _pool(self, n, a, op):
        if self._rank(n.input[0]) != 4 or not self._only_first_output_used(n):
            return False
        k = tuple(a["kernel_shape"])
        s, d = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
        attrs = dict(kernel=k, stride=s, padding=self._pads(n, a, k, s, d, a.get("ceil_mode", 0)),
                     ceil_mode=bool(a.get("ceil_mode", 0)))
        if op == "maxpool":
            attrs["dilation"] = d
        elif d != (1, 1):
            return False
        else:
            attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
        self._emit(n, op, [n.input[0]], attrs)

    def _op_GlobalAveragePool(self, n, a):
        if self._rank(n.input[0]) != 4:
            return False
        self._emit(n, "global_avgpool", [n.input[0]])

    def _op_ReduceMean(self, n, a):
        axes = a.get("axes") if self.opset < 18 else self._const(n.input[1] if len(n.input) > 1 else "")
        if self._rank(n.input[0]) != 4 or axes is None or sorted(int(x) % 4 for x in np.ravel(axes)) != [2, 3]:
            return False
        if a.get("keepdims", 1):
            return self._emit(n, "global_avgpool", [n.input[0]])
        gap = n.output[0] + "_gap"
        s = self.shapes.get(n.output[0])
        self.shapes[gap] = tuple(s) + (1, 1) if s is not None else None
        self._emit(n, "global_avgpool", [n.input[0]], out=gap)
        self._emit(n, "flatten", [gap], {"start": 1})

    def _op_Flatten(self, n, a):
        rank = self._rank(n.input[0])
        if rank is None or a.get("axis", 1) % max(rank, 1) != 1 or rank < 2:
            return False
        self._emit(n, "flatten", [n.input[0]], {"start": 1})

    def _op_Reshape(self, n, a):
        si, spec, so = self.shapes.get(n.input[0]), self._const(n.input[1]), self.shapes.get(n.output[0])
        if spec is None and si is not None and so is not None and len(si) >= 2 and len(so) == 2 \
                and None not in si[1:] and so[1] == int(np.prod(si[1:])):
            return self._emit(n, "flatten", [n.input[0]], {"start": 1})     # a computed (N, -1) shape
        if si is None or spec is None or len(si) < 2 or spec.size != 2:
            return False
        spec = [int(v) for v in spec]
        rest = int(np.prod(si[1:])) if None not in si[1:] else None
        batch_kept = (spec[0] == 0 and not a.get("allowzero", 0)) or (si[0] is not None and spec[0] == si[0]) \
            or (spec[0] == -1 and rest is not None and spec[1] == rest)
        if not (batch_kept and (spec[1] == -1 or (rest is not None and spec[1] == rest))):
            return False
        self._emit(n, "flatten", [n.input[0]], {"start": 1})

    def _op_Dropout(self, n, a):
        train = self._const(n.input[2] if len(n.input) > 2 else "")
        if (train is not None and bool(train)) or not self._only_first_output_used(n):
            return False
        self._emit(n, "identity", [n.input[0]])

    def _op_Identity(self, n, a):
        self._emit(n, "identity", [n.input[0]])


def _host_fn(ev, acts, consts, k, op_type):
    """A callable on numpy arrays (one per activation input) evaluating one ONNX node's output k."""
    def fn(*arrays):
        feeds = dict(consts) | {name: np.asarray(v) for name, v in zip(acts, arrays, strict=True)}
        out = np.asarray(ev.run(None, feeds)[k])
        return out.astype(np.float32) if np.issubdtype(out.dtype, np.floating) else out
    fn.__qualname__ = f"host_op[onnx {op_type}]"
    return fn
