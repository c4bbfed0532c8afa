"""A compiled model without torch: an int8 graph, its programs per batch size, save() and load() (numpy + pynq).

    prog = pf.runtime.load("digits.npz", backend="pynq")     # on a PYNQ-Z1 image: no torch needed
    logits = prog.run(images)                                 # float32 NCHW in, float32 out
"""
from __future__ import annotations

import json
import os
import platform
import warnings

import numpy as np

from pytorch_fpga.contract import accel
from pytorch_fpga.graph import lower as lowering
from pytorch_fpga.graph.ir import Graph, Node
from pytorch_fpga.runtime import backends, report
from pytorch_fpga.runtime.program import Program

FORMAT = "pytorch_fpga.program/1"
DIMS = {4: ("N", "C", "H", "W"), 2: ("N", "F")}


class Compiled:
    """An int8 graph compiled for one accelerator build; run() lowers it once per batch size, then replays."""

    def __init__(self, graph: Graph, cfg="z1", backend: str | backends.Backend = "model"):
        self.graph, self.cfg = graph, accel.config(cfg)
        self._backend = backend if isinstance(backend, backends.Backend) else None
        self.backend_name = backend.name if isinstance(backend, backends.Backend) else backend
        self.programs: dict[int, Program] = {}
        self._range_warned = False

    def __getstate__(self):
        """Pickled without the backend and programs (a simulator handle, DMA buffers): rebuilt on first use."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_backend", "programs")}

    def __setstate__(self, state):
        self.__dict__.update(state, _backend=None, programs={})

    @property
    def backend(self) -> backends.Backend:
        if self._backend is None:
            self._backend = backends.get(self.backend_name, self.cfg)
        return self._backend

    def __repr__(self):
        acc = sum(n.placement == "accelerator" for n in self.graph)
        return (f"Compiled({self.graph.name!r}: {len(self.graph)} nodes, {acc} on the accelerator, "
                f"config={self.cfg.name!r}, backend={self.backend_name!r})")

    def check_input(self, X) -> np.ndarray:
        """X as float, or a ValueError naming the dimension the program cannot replay."""
        X = np.asarray(X)
        want = self.graph.input.shape
        if X.ndim != len(want):
            raise ValueError(f"input has {X.ndim} dimensions {X.shape}, the program was compiled for "
                             f"{len(want)}: {DIMS.get(len(want), ())} = {tuple(want)}")
        for i, (got, exp) in enumerate(zip(X.shape[1:], want[1:], strict=True), start=1):
            if got != exp:
                name = DIMS.get(len(want), [f"dim {k}" for k in range(len(want))])[i]
                raise ValueError(f"input dimension {name} is {got}, the program was compiled for {name}={exp}: "
                                 f"its jobs and buffers are fixed to that size; compile again with inputs of the new "
                                 "size (only the batch size N may change)")
        if not np.issubdtype(X.dtype, np.floating):
            raise TypeError(f"input must be float (what the float model sees), got {X.dtype}")
        return X

    def program(self, batch: int) -> Program:
        """The program for `batch` images: lowered (jobs packed, buffers allocated) on first use, then reused."""
        if batch not in self.programs:
            self.programs[batch] = Program(lowering.lower(self.graph, batch, self.cfg), self.backend)
        return self.programs[batch]

    def run(self, X) -> np.ndarray:
        """The float output for a float NCHW input batch."""
        X = self.check_input(X)
        if len(X) == 0:
            raise ValueError("the input batch is empty: pass at least one image")
        if not self._range_warned:
            s = self.graph.input.scale
            peak = float(np.abs(X).max())
            if peak > 2 * 127 * s:
                self._range_warned = True
                warnings.warn(f"inputs reach {peak / (127 * s):.1f}x the calibrated range (|x| up to {peak:.4g}, "
                              f"calibrated {127 * s:.4g}): values beyond it are clipped to int8. Calibrate with "
                              "data like these inputs (pf.compile(model, data))", RuntimeWarning, stacklevel=2)
        return self.program(len(X)).run(X)

    __call__ = run

    def macs(self, batch: int) -> dict:
        """Useful MACs of each accelerator node at this batch size."""
        out = {}
        for n in self.graph:
            if n.op == "conv2d":
                out[n.name] = _conv_macs(n, batch)
            elif n.op == "linear":
                out[n.name] = batch * int(np.prod(n.params["w_int8"].shape))
        return out

    def profile(self, X) -> report.ProgramProfile:
        """Run once and report every step: projected accelerator time, estimated set-up, host time measured here."""
        self.run(X)
        prog = self.program(len(X))
        rep = report.make(prog, {n.name: n.placement for n in self.graph}, self.macs(len(X)), self.backend_name,
                          platform.machine() or "this machine")
        s = self.graph.input.scale
        clipped = int(np.count_nonzero(np.abs(np.asarray(X, np.float64) / s) > 127.5))
        for r in rep.rows:                    # saturation, counted on this run's tensors (not in run())
            t = prog.t.get(r["step"])
            sat = int(np.count_nonzero((t == 127) | (t == -128))) if t is not None and t.dtype == np.int8 else 0
            r["outputs_at_limit"], r["outputs"] = sat, (int(t.size) if t is not None and t.dtype == np.int8 else 0)
            r["inputs_clipped"] = clipped if r["op"] == "quantize" else 0
        return rep

    def jobs(self, batch: int = 1) -> str:
        """The accelerator jobs of the program for `batch` images."""
        return lowering.summary(self.program(batch).plan)

    def save(self, path) -> str:
        """Write the int8 graph (weights, scales, placements) to an .npz that pf.runtime.load reads without torch."""
        arrays, nodes = {}, []
        for n in self.graph:
            if n.op == "host_op":
                raise ValueError(f"node '{n.name}' ({n.attrs.get('target')}{' at ' + n.source if n.source else ''}) "
                                 "runs through torch on the host, so this program cannot run without torch; "
                                 "replace that op in the model (or keep using the in-memory compiled model)")
            attrs = {k: v for k, v in n.attrs.items() if k != "fn"}
            nodes.append({"name": n.name, "op": n.op, "inputs": n.inputs, "attrs": attrs, "shape": n.shape,
                          "source": n.source, "dtype": n.dtype, "scale": n.scale, "placement": n.placement,
                          "fused": n.fused, "params": list(n.params)})
            for k, v in n.params.items():
                arrays[f"{len(nodes) - 1}/{k}"] = np.asarray(v)
        meta = {"format": FORMAT, "name": self.graph.name, "config": self.cfg.name, "nodes": nodes}
        arrays["meta"] = np.frombuffer(json.dumps(meta, default=_jsonable).encode(), np.uint8)
        path = os.fspath(path)
        np.savez_compressed(path, **arrays)
        return path if path.endswith(".npz") else path + ".npz"


def _conv_macs(n: Node, batch: int) -> int:
    """MACs of a conv: output positions x (kh kw C/groups) x Co."""
    Co, Cg, kh, kw = n.params["w_int8"].shape
    return batch * int(np.prod(n.shape[2:])) * Co * Cg * kh * kw


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"cannot save attribute value {v!r}")


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def load(path, backend: str = "auto") -> Compiled:
    """A program saved by CompiledModel.save / Compiled.save, on a backend ('auto': the board if there is one).
    Imports numpy (and pynq for the pynq backend) only."""
    with np.load(os.fspath(path), allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a pytorch_fpga program (format {meta.get('format')!r}, "
                             f"expected {FORMAT!r})")
        nodes = []
        for i, d in enumerate(meta["nodes"]):
            attrs = {k: _tuples(v) for k, v in d["attrs"].items()}
            nodes.append(Node(d["name"], d["op"], d["inputs"], attrs, {k: z[f"{i}/{k}"] for k in d["params"]},
                              _tuples(d["shape"]), d["source"], d["dtype"], d["scale"], d["placement"], d["fused"]))
    name = backends.auto() if backend == "auto" else backend
    return Compiled(Graph(nodes, meta["name"]), meta["config"], name)
