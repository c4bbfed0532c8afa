"""Capture a PyTorch model into the float graph IR (pytorch_fpga.graph.ir) with torch.export.

    graph, observe = capture(model, example)       # example: one input batch (N, C, H, W)
    values = observe(x)                             # {IR node name: float32 output} computed by torch

torch.export.export's training IR (ATen ops, not decomposed) is walked node by node: convolutions, linears,
batch norms, activations, adds, concatenations, pools and flattens become IR ops; every other op becomes a
`host_op` that runs the ATen op through torch (nothing is dropped). When export fails, the model is traced with
torch.fx.symbolic_trace instead (with a warning naming the export error). Node names are torch module paths
("layer1.0.conv1") for module calls, else the fx node name; Node.source is the user's "file.py:LINE".
"""
from __future__ import annotations

import inspect
import operator
import os
import re
import warnings

import numpy as np
import torch
from torch import fx, nn
from torch.fx.node import _get_qualified_name, map_arg
from torch.fx.operator_schemas import normalize_function
from torch.utils import _pytree as pytree

from pytorch_fpga.graph.ir import Graph, Node
from pytorch_fpga.nn.capture_ops import PREV, Act, by_signature, module_call, to_ir

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
# ops on the input that yield sizes/shapes (no tensor): their example values become constants of later ops
_SHAPE_OPS = {"size", "sym_size", "dim", "numel", "sym_numel", "stride", "sym_stride", "getattr", "len",
              "_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size"}


def capture(model: nn.Module, example: torch.Tensor, name: str | None = None):
    """(float IR Graph, observe) for `model` on input batch `example`; observe(x) gives every IR node's value."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"capture takes an nn.Module, got {type(model).__name__}")
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"capture takes one example input tensor, got {type(example).__name__}; models with "
                        "several inputs are not supported (wrap the model so that forward takes one tensor)")
    _check_one_input(model)
    model = model.eval()
    gm, consts, user = _trace(model, example)
    walker = _Walker(model, gm, consts, user)
    walker.record(example)
    graph = Graph(walker.build(), name or type(model).__name__)
    return graph, walker.observe


def _check_one_input(model: nn.Module) -> None:
    params = [p for p in inspect.signature(model.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    if len(params) > 1:
        raise ValueError(f"{type(model).__name__}.forward takes {len(params)} inputs "
                         f"({', '.join(p.name for p in params)}); capture handles models with one tensor input. "
                         "Wrap the model in a module whose forward takes one tensor")


def _trace(model: nn.Module, example: torch.Tensor):
    """(GraphModule, {placeholder or get_attr node: constant}, the user-input placeholder)."""
    try:
        ep = torch.export.export(model, (example,), strict=False)
    except Exception as e:                                  # noqa: BLE001  (any export failure -> fx)
        warnings.warn(f"torch.export.export failed ({_brief(e)}); capturing with "
                      "torch.fx.symbolic_trace instead (no shape specialisation, module calls kept)",
                      stacklevel=3)
        return _trace_fx(model, e)
    gm, sig = ep.graph_module, ep.graph_signature
    by_name = {n.name: n for n in gm.graph.nodes if n.op == "placeholder"}
    consts, users = {}, []
    tables = (ep.state_dict, ep.constants)
    for spec in sig.input_specs:
        node = by_name[spec.arg.name]
        if spec.kind.name == "USER_INPUT":
            users.append(node)
        elif spec.target is not None and any(spec.target in t for t in tables):
            consts[node] = next(t[spec.target] for t in tables if spec.target in t)
        else:
            raise ValueError(f"exported program input {spec.arg.name} ({spec.kind.name}) is not supported")
    outs = [s for s in sig.output_specs if s.kind.name == "USER_OUTPUT"]
    if len(outs) != 1:
        raise ValueError(f"the model returns {len(outs)} values; capture handles one output tensor "
                         "(wrap the model so that forward returns one tensor)")
    if len(users) != 1:
        raise ValueError(f"the model takes {len(users)} tensor inputs; capture handles one")
    return gm, consts, users[0]


def _trace_fx(model: nn.Module, export_error: Exception):
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    sig = list(inspect.signature(model.forward).parameters.values())
    concrete = {p.name: p.default for p in sig[1:] if p.default is not p.empty}
    try:
        gm = fx.GraphModule(model, tracer.trace(model, concrete_args=concrete or None))
    except Exception as e:
        raise RuntimeError(f"cannot capture {type(model).__name__}: torch.export failed ({_brief(export_error)}) "
                           f"and torch.fx.symbolic_trace failed too ({_brief(e)}); make forward traceable (no "
                           "Python control flow on tensor values)") from e
    users = [n for n in gm.graph.nodes if n.op == "placeholder" and not n.args]
    if len(users) != 1:
        raise ValueError(f"the model takes {len(users)} tensor inputs; capture handles one")
    consts = {n: _fetch_attr(gm, n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    return gm, consts, users[0]


def _brief(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


def _fetch_attr(gm, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


class _Runner(fx.Interpreter):
    """Runs the captured module; `hook(node, value)` sees each value when produced, `overrides` replace ops."""

    def __init__(self, gm, hook, overrides):
        super().__init__(gm)
        self.hook, self.overrides = hook, overrides

    def run_node(self, n):
        if n in self.overrides:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            value = self.overrides[n](*args, **kwargs)
        else:
            value = super().run_node(n)
        self.hook(n, value)
        return value


class _Walker:
    """Turns the fx graph into IR nodes and remembers how to read each IR node's value back from torch."""

    def __init__(self, model, gm, consts, user):
        self.model, self.gm, self.consts, self.user = model, gm, consts, user
        self.nodes = list(gm.graph.nodes)
        self.dependent = {user}
        for n in self.nodes:
            if any(m in self.dependent for m in n.all_input_nodes):
                self.dependent.add(n)
        self.values, self.shapes = {}, {}
        self.ir_of: dict = {}             # fx node -> IR node name holding its (tensor) value
        self.reads: dict = {}             # fx node -> [(IR name, transform)] for observe()
        self.overrides: dict = {}         # fx node -> replacement callable when observing other batch sizes
        self.first_of: set = set()        # tuple-valued fx nodes whose IR node holds output 0
        self.used = {"input", "output"}

    # --- the example run -------------------------------------------------------------------------------------
    def record(self, example):
        def hook(n, v):
            if n in self.consts or n not in self.dependent:
                self.values[n] = v
            elif isinstance(v, torch.Tensor):
                self.shapes[n] = tuple(v.shape)
            elif isinstance(v, (tuple, list)) and _has_tensor(v):
                self.shapes[n] = [tuple(x.shape) if isinstance(x, torch.Tensor) else None for x in v]
            elif _has_tensor(v):
                self.shapes[n] = None
            else:
                self.values[n] = v
        with torch.no_grad():
            _Runner(self.gm, hook, {}).run(*self._args(example))

    def _args(self, x):
        return [x if p is self.user else self.consts[p] for p in self.nodes if p.op == "placeholder"]

    # --- building the IR -------------------------------------------------------------------------------------
    def build(self) -> list:
        out = [Node("input", "input", shape=tuple(self.shapes[self.user]))]
        self.ir_of[self.user] = "input"
        for n in self.nodes:
            if n.op in ("placeholder", "output", "get_attr") or n not in self.dependent:
                continue
            if n in self.values:              # a size/shape value: becomes a constant of the ops that use it
                self._check_shape_op(n)
                continue
            out += self._translate(n)
        out.append(self._output())
        return out

    def _output(self):
        res = next(n for n in self.nodes if n.op == "output")
        leaves = [m for m in pytree.tree_leaves(res.args[0]) if isinstance(m, fx.Node) and m in self.shapes]
        if len(leaves) != 1 or leaves[0] not in self.ir_of:
            raise ValueError(f"the model returns {len(leaves)} tensors computed from its input; capture handles "
                             "exactly one output tensor (wrap the model so that forward returns one tensor)")
        self.reads.setdefault(leaves[0], []).append(("output", None))
        return Node("output", "output", [self.ir_of[leaves[0]]], shape=self.shapes[leaves[0]])

    def _check_shape_op(self, n):
        kind = _kind(n)[0]
        from_tensor = any(m in self.shapes for m in n.all_input_nodes)
        if from_tensor and kind not in _SHAPE_OPS:
            raise ValueError(f"op {n.name} ({_label(n)}, {_source(n) or 'unknown line'}) turns a tensor into a "
                             f"Python value ({type(self.values[n]).__name__}): the graph would depend on the data. "
                             "Keep the computation in tensors or move it out of the model")

    def _arg(self, m):
        if m in self.ir_of:
            return Act(self.ir_of[m])
        if m in self.shapes:
            raise ValueError(f"node {m.name} has no IR value")
        return self.values[m] if m in self.values else self.consts[m]

    def _translate(self, n) -> list:
        kind, kw = _kind(n, self.gm)
        if kind == "getitem" and n.args[0] in self.first_of:          # output 0 of a tuple-valued IR op
            if n.args[1] != 0:
                raise ValueError(f"{n.name} reads output {n.args[1]} of {n.args[0].name}; only output 0 is supported")
            self.ir_of[n] = self.ir_of[n.args[0]]
            return []
        name, src, specs = self._unique(self._name(n)), _source(n), None
        if kw is not None and self.shapes.get(n) is not None:
            kw = {k: map_arg(v, self._arg) for k, v in kw.items()}
            shape_in = {self.ir_of[m]: self.shapes[m] for m in n.all_input_nodes if m in self.ir_of}
            specs = to_ir(kind, kw, shape_in, self.shapes[n])
        if specs is None:
            return [self._host(n, name, src)]
        nodes = []
        for i, (op, ins, attrs, params, shape, tf) in enumerate(specs):
            nm = name if i == len(specs) - 1 else self._unique(f"{name}_{op}")
            ins = [nodes[-1].name if v is PREV else v for v in ins]
            nodes.append(Node(nm, op, ins, attrs, params, shape=shape, source=src))
            self.reads.setdefault(n, []).append((nm, tf))
        self.ir_of[n] = name
        if isinstance(self.shapes[n], list):
            self.first_of.add(n)
        if kind in ("view", "reshape", "_unsafe_view") and nodes[-1].op == "flatten":
            self.overrides[n] = lambda x, *a, **k: torch.flatten(x, 1)       # any batch size, not the example's
        self._alias_inplace(n)
        return nodes

    def _host(self, n, name, src) -> Node:
        acts = [m for m in n.all_input_nodes if m in self.shapes]
        missing = [m.name for m in acts if m not in self.ir_of]
        if missing:
            raise ValueError(f"{n.name} reads {missing}, which have no IR value")
        consts = {m: self._arg(m) for m in n.all_input_nodes if m not in self.shapes}
        fn = _host_fn(n, self.gm, acts, consts)
        shape = self.shapes[n] if isinstance(self.shapes[n], tuple) else None
        node = Node(name, "host_op", [self.ir_of[m] for m in acts], {"target": _label(n), "fn": fn},
                    shape=shape, source=src)
        self.ir_of[n] = name
        self.reads.setdefault(n, []).append((name, None))
        self._alias_inplace(n)
        return node

    def _alias_inplace(self, n):
        """After an in-place op on an activation, later readers of that activation read the op's result."""
        if _mutates_first_arg(n, self.gm) and isinstance(n.args[0], fx.Node) and n.args[0] in self.ir_of:
            self.ir_of[n.args[0]] = self.ir_of[n]

    def _name(self, n) -> str:
        stack = n.meta.get("nn_module_stack")
        if stack:
            path = list(stack.values())[-1][0]
            try:
                mod = self.model.get_submodule(path) if path else None
            except AttributeError:
                mod = None
            if mod is not None and next(mod.children(), None) is None:
                return path
        elif n.op == "call_module":
            return n.target
        return n.name

    def _unique(self, name: str) -> str:
        base, k = name, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    # --- observing ---------------------------------------------------------------------------------------------
    def observe(self, x: torch.Tensor) -> dict:
        """Run the captured program with torch on batch x; {IR node name: float32 numpy value} for every node."""
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        out = {"input": x.detach().cpu().numpy().astype(np.float32)}

        def hook(n, v):
            for nm, tf in self.reads.get(n, ()):
                out[nm] = _to_numpy(tf(v) if tf else v)
        with torch.no_grad():
            _Runner(self.gm, hook, self.overrides).run(*self._args(x.clone()))
        return out


def _kind(n, gm=None):
    """(op kind, arguments by ATen schema name or None) for an fx node of either tracer."""
    t = n.target
    if n.op == "call_function" and isinstance(t, torch._ops.OpOverload):
        r = normalize_function(t, n.args, n.kwargs, normalize_to_only_use_kwargs=True)
        return t._schema.name.split("::")[-1].rstrip("_"), (r.kwargs if r else None)
    if n.op == "call_function":
        if t in (operator.add, operator.iadd):
            return "add", {"input": n.args[0], "other": n.args[1]}
        if t is operator.getitem:
            return "getitem", None
        return by_signature(getattr(t, "__name__", ""), n.args, n.kwargs)
    if n.op == "call_method":
        return by_signature(t, n.args, n.kwargs)
    if n.op == "call_module" and gm is not None:
        return module_call(gm.get_submodule(t), n.args, n.kwargs)
    return n.op, None


def _mutates_first_arg(n, gm) -> bool:
    t = n.target
    if n.op == "call_function" and isinstance(t, torch._ops.OpOverload):
        args = t._schema.arguments
        return bool(args) and args[0].alias_info is not None and args[0].alias_info.is_write
    if n.op == "call_method":
        return t.endswith("_") and not t.endswith("__")
    if n.op == "call_module":
        return bool(getattr(gm.get_submodule(t), "inplace", False))
    name = getattr(t, "__name__", "")
    return n.op == "call_function" and (bool(n.kwargs.get("inplace")) or name.endswith("_") and not
                                        name.endswith("__") or t is operator.iadd)


def _label(n) -> str:
    if n.op == "call_function":
        return str(n.target) if isinstance(n.target, torch._ops.OpOverload) else _get_qualified_name(n.target)
    if n.op == "call_method":
        return f"Tensor.{n.target}"
    if n.op == "call_module":
        return f"module {n.target}"
    return n.op


def _source(n) -> str:
    """'file.py:LINE' of the last stack frame outside torch, '' if unknown."""
    frames = [(f, ln) for f, ln in _FRAME.findall(n.meta.get("stack_trace") or "")
              if not os.path.abspath(f).startswith(_TORCH_DIR)]
    return f"{os.path.basename(frames[-1][0])}:{frames[-1][1]}" if frames else ""


def _has_tensor(v) -> bool:
    return any(isinstance(x, torch.Tensor) for x in pytree.tree_leaves(v))


def _to_numpy(v):
    if isinstance(v, (tuple, list)):
        return tuple(_to_numpy(x) for x in v)
    if isinstance(v, torch.Tensor):
        a = v.detach().cpu()
        return a.float().numpy().copy() if a.is_floating_point() else a.numpy().copy()
    return np.asarray(v)


def _host_fn(n, gm, acts, consts):
    """A callable on float numpy arrays (one per activation input) that runs fx node n through torch."""
    if n.op == "call_module":
        call = gm.get_submodule(n.target)
    elif n.op == "call_method":
        def call(self, *a, **k):
            return getattr(self, n.target)(*a, **k)
    else:
        call = n.target

    def fn(*arrays):
        env = {m: torch.as_tensor(np.asarray(a)).clone() for m, a in zip(acts, arrays, strict=True)}
        args, kwargs = (map_arg(v, lambda m: env[m] if m in env else consts[m]) for v in (n.args, n.kwargs))
        with torch.no_grad():
            return _to_numpy(call(*args, **kwargs))
    fn.__qualname__ = f"host_op[{_label(n)}]"
    return fn
