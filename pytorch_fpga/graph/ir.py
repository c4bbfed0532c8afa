"""The compiler's graph IR: nodes in topological order, one output tensor each, with shapes, scales and placements.

A graph starts in float (from pf.compile's torch.export capture or pf.from_onnx), goes through the passes of
pytorch_fpga.graph.passes, is quantized to int8 (pytorch_fpga.graph.quantize) and is lowered to a program
(pytorch_fpga.graph.lower). Shapes are logical NCHW (or (N, F) for vectors); the batch dimension is whatever
was captured. Torch-free.

Ops and their attributes (params are numpy arrays):
    input                                             the graph's input
    conv2d    stride (sh, sw), padding (top, bottom, left, right), dilation (dh, dw), groups, act
              params W (Co, C/groups, kh, kw) float, b (Co,) or absent
    linear    act; params W (out, in), b (out,) or absent
    batchnorm eps; params mean, var, gamma, beta (C,)
    relu | clamp lo, hi (ReLU6 is clamp 0..6)
    add       act                                      elementwise, two inputs of one shape
    cat       axis (1: channels)
    maxpool   kernel (kh, kw), stride, padding (top, bottom, left, right), dilation, ceil_mode
    avgpool   kernel, stride, padding, ceil_mode, count_include_pad
    global_avgpool                                    mean over H and W, keeps (N, C, 1, 1)
    flatten   start (1)                                (N, C, H, W) -> (N, C*H*W), torch's order
    identity                                          dropout in eval mode, a no-op reshape
    host_op   target (its name), fn (a callable on float numpy arrays; not saveable)
    output                                            the graph's outputs (its inputs)
act is None, "relu" or ("clamp", lo, hi) once an activation is fused into the node.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OPS = ("input", "conv2d", "linear", "batchnorm", "relu", "clamp", "add", "cat", "maxpool", "avgpool",
       "global_avgpool", "flatten", "identity", "host_op", "output")


@dataclass
class Node:
    """One op and the tensor it produces."""
    name: str                                         # unique; the torch module path where there is one
    op: str                                           # one of OPS
    inputs: list = field(default_factory=list)        # names of the nodes it reads, in order
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)        # numpy arrays (weights, statistics, int8 parameters)
    shape: tuple | None = None                        # output shape, NCHW or (N, F)
    source: str = ""                                  # where it came from: "file.py:12" or an ONNX node name
    dtype: str = "float32"                            # "float32", "int8" (real = q * scale) or "int32"
    scale: float | None = None                        # int8 (or int32) output's scale
    placement: str = ""                               # "accelerator", "host int8" or "host float"
    fused: list = field(default_factory=list)         # what the passes folded into this node (names and ops)

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"node '{self.name}': unknown op {self.op!r}; the IR has {OPS}")

    def line(self) -> str:
        """One line of the printable graph."""
        attrs = ", ".join(f"{k}={_short(v)}" for k, v in self.attrs.items() if k != "fn" and v is not None)
        params = " ".join(f"{k}{list(v.shape)}:{v.dtype}" for k, v in self.params.items())
        ty = f"{self.dtype}{list(self.shape) if self.shape is not None else ''}"
        sc = f" s={self.scale:.4g}" if self.scale is not None else ""
        where = f" @{self.placement}" if self.placement else ""
        fused = f" +[{', '.join(self.fused)}]" if self.fused else ""
        args = ", ".join(f"%{i}" for i in self.inputs)
        return (f"%{self.name} = {self.op}({args}{', ' if args and attrs else ''}{attrs}) -> {ty}{sc}{where}"
                f"{fused}{'  ' + params if params else ''}")


def _short(v):
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple) and len(set(v)) == 1 and len(v) > 1:
        return f"{_short(v[0])}"
    return str(v)


@dataclass
class Graph:
    """Nodes in topological order; the first `input` node is the graph's input, the `output` node its end."""
    nodes: list = field(default_factory=list)
    name: str = "graph"

    def __post_init__(self):
        self.check()

    def __getitem__(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r} in {self.name}")

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self.nodes)

    @property
    def input(self) -> Node:
        return next(n for n in self.nodes if n.op == "input")

    @property
    def output(self) -> Node:
        return next(n for n in self.nodes if n.op == "output")

    def users(self, name: str) -> list[Node]:
        """The nodes that read `name`'s output."""
        return [n for n in self.nodes if name in n.inputs]

    def check(self) -> Graph:
        """Raise unless names are unique, every input is defined before use, and there is one input and output."""
        seen = set()
        for n in self.nodes:
            if n.name in seen:
                raise ValueError(f"{self.name}: two nodes are named {n.name!r}")
            missing = [i for i in n.inputs if i not in seen]
            if missing:
                raise ValueError(f"{self.name}: node '{n.name}' reads {missing}, not defined before it")
            seen.add(n.name)
        for op in ("input", "output"):
            k = sum(n.op == op for n in self.nodes)
            if self.nodes and k != 1:
                raise ValueError(f"{self.name}: needs exactly one '{op}' node, has {k}")
        return self

    def replace_uses(self, old: str, new: str) -> None:
        """Make every reader of `old` read `new` instead."""
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]

    def remove(self, name: str) -> None:
        """Drop a node whose readers now read its input (a fused or no-op node)."""
        node = self[name]
        self.replace_uses(name, node.inputs[0])
        self.nodes = [n for n in self.nodes if n.name != name]

    def copy(self) -> Graph:
        """A copy whose nodes, attributes and parameter dicts can change without touching this graph."""
        return Graph([Node(n.name, n.op, list(n.inputs), dict(n.attrs), dict(n.params), n.shape, n.source,
                           n.dtype, n.scale, n.placement, list(n.fused)) for n in self.nodes], self.name)

    def ops(self) -> dict:
        """How many nodes of each op."""
        out = {}
        for n in self.nodes:
            out[n.op] = out.get(n.op, 0) + 1
        return out

    def __str__(self):
        return f"graph {self.name} ({len(self.nodes)} nodes)\n" + "\n".join("  " + n.line() for n in self.nodes)


def pads4(padding) -> tuple:
    """(top, bottom, left, right) from an int, (ph, pw) or a 4-tuple."""
    p = tuple(int(v) for v in np.atleast_1d(padding))
    if len(p) == 1:
        return p * 4
    if len(p) == 2:
        return (p[0], p[0], p[1], p[1])
    if len(p) == 4:
        return p
    raise ValueError(f"padding must be an int, (ph, pw) or (top, bottom, left, right), got {padding!r}")


def pair(v) -> tuple:
    """(a, b) from an int or a pair."""
    p = tuple(int(x) for x in np.atleast_1d(v))
    return p * 2 if len(p) == 1 else p
