"""pf.compile: a PyTorch model (or pf.from_onnx: an ONNX file) to an int8 program for conv_accel, compiled once.

    cm = pf.compile(model, calibration_images, backend="auto", config="z1")
    logits = cm(images)                 # a torch tensor in, a torch tensor out (cm.run for numpy)
    print(cm.graph); print(cm.placement()); print(cm.profile(images).table())
    cm.save("model.npz")                # pf.runtime.load("model.npz") runs it without torch (on a PYNQ image)

Capture (torch.export) -> float graph -> passes -> calibration on the float graph -> int8 graph -> a program per
batch size (jobs packed once, buffers allocated once) on a backend.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from pytorch_fpga.graph import interp, passes, quantize
from pytorch_fpga.graph.ir import Graph
from pytorch_fpga.runtime import backends
from pytorch_fpga.runtime.compiled import Compiled


def _backend_name(backend) -> str | backends.Backend:
    return backends.auto() if backend == "auto" else backend


SAMPLES = 200_000       # percentile calibration keeps up to this many |values| per tensor


def _amax(observations, amax: dict, samples: dict | None, rng, where: str = "") -> None:
    for k, v in observations.items():
        if isinstance(v, np.ndarray) and v.size:
            if not np.all(np.isfinite(v)):
                raise ValueError(f"node '{k}' produced NaN or inf on the calibration data{where}: the float model "
                                 "itself produces them there; check those inputs and the layers before it")
            a = np.abs(v.astype(np.float32, copy=False)).ravel()
            amax[k] = max(amax.get(k, 0.0), float(a.max()))
            if samples is not None:
                keep = a if a.size <= SAMPLES else rng.choice(a, SAMPLES, replace=False)
                samples.setdefault(k, []).append(keep)
        else:
            amax.setdefault(k, 0.0)


def _ranges(observe, data, batch_size: int, calibration: str) -> dict:
    """{tensor: range}: the max |value| ('minmax'), or the 99.99th percentile of |values| ('percentile')."""
    if calibration not in ("minmax", "percentile"):
        raise ValueError(f"calibration must be 'minmax' or 'percentile', got {calibration!r}")
    amax, samples = {}, ({} if calibration == "percentile" else None)
    rng = np.random.default_rng(0)
    for i in range(0, len(data), batch_size):
        _amax(observe(data[i:i + batch_size]), amax, samples, rng,
              f" (samples {i}..{min(len(data), i + batch_size) - 1}, batch_size {batch_size})")
    if samples is not None:
        for k, parts in samples.items():
            amax[k] = float(np.percentile(np.concatenate(parts), 99.99))
    return amax


def _check_calibration(data) -> np.ndarray:
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    data = np.asarray(data)
    if data.size == 0 or len(data) == 0:
        raise ValueError("calibration_data is empty: pass a few representative inputs (e.g. 100 images)")
    if not np.issubdtype(data.dtype, np.floating):
        raise TypeError(f"calibration_data must be float (what the model sees), got {data.dtype}")
    bad = ~np.isfinite(data.reshape(len(data), -1)).all(axis=1)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(f"calibration_data has NaN or inf values in samples {idx[:5].tolist()}"
                         f"{' ...' if idx.size > 5 else ''}: remove or repair those samples")
    if data.size > 1 and float(data.max()) == float(data.min()):
        warnings.warn(f"calibration_data is constant (every value is {float(data.min()):g}): the scales fit that "
                      "one input only; calibrate with representative inputs", quantize.CalibrationWarning,
                      stacklevel=3)
    return data.astype(np.float32, copy=False)


class CompiledModel(nn.Module):
    """A compiled int8 program as a torch module (inference only): call it on float tensors."""

    def __init__(self, compiled: Compiled, float_graph: Graph, trace: list):
        super().__init__()
        self.compiled, self.float_graph, self.trace = compiled, float_graph, trace
        self.train(False)

    @property
    def graph(self) -> Graph:
        """The int8 graph: every node with its scale, placement and what was fused into it."""
        return self.compiled.graph

    @property
    def cfg(self):
        return self.compiled.cfg

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("a compiled model runs inference only: train the float model, then pf.compile it again")
        return super().train(False)

    def forward(self, x) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            if x.requires_grad and torch.is_grad_enabled():
                raise RuntimeError("no backward pass through the accelerator: run under torch.no_grad()")
            x = x.detach().cpu().numpy()
        return torch.from_numpy(self.compiled.run(x))

    def run(self, X: np.ndarray) -> np.ndarray:
        """numpy in, numpy out."""
        return self.compiled.run(X)

    def profile(self, x):
        """Run once; per step: accelerator time projected at the clock, set-up estimated, host time measured here."""
        return self.compiled.profile(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)

    def placement(self) -> str:
        """Where each op runs (accelerator, host int8, host float) and why."""
        return passes.placement_table(self.compiled.graph)

    def jobs(self, batch: int = 1) -> str:
        """The program's accelerator jobs for `batch` images."""
        return self.compiled.jobs(batch)

    def save(self, path) -> str:
        """Save the int8 program for pf.runtime.load (torch-free)."""
        return self.compiled.save(path)

    def extra_repr(self) -> str:
        return repr(self.compiled)


def _check_host_ops(g: Graph, values: dict, batch: int) -> None:
    """Refuse a host op that computes something other than an activation of its captured shape (shape arithmetic
    left in an exported graph), which a program cannot replay."""
    for n in g:
        v = values.get(n.name)
        if n.op == "host_op" and n.shape is not None and (
                not isinstance(v, np.ndarray) or v.ndim != len(n.shape) or v.shape[0] != batch
                or any(a is not None and a != b for a, b in zip(n.shape[1:], v.shape[1:], strict=True))):
            got = getattr(v, "shape", type(v).__name__)
            raise ValueError(f"node '{n.name}' ({n.attrs.get('target')}{' at ' + n.source if n.source else ''}) "
                             f"returns shape {got} for a batch of {batch}, not an activation of shape "
                             f"{('N',) + tuple(n.shape[1:])}: the graph does shape "
                             "arithmetic at run time (an ONNX export from a strided example input does this; export "
                             "with torch.zeros(...) as the example, or with static shapes)")


def compile_graph(g: Graph, observe, data: np.ndarray, backend="auto", config="z1", batch_size: int = 256,
                  calibration: str = "minmax"):
    """Optimize g, calibrate it with observe(batch) -> {node: float values} over data, quantize; a Compiled and
    the pass trace."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (images per calibration pass), got {batch_size!r}")
    amax = _ranges(observe, data, batch_size, calibration)
    if len(data) >= 2:
        _check_host_ops(g, observe(data[:2]), 2)
    trace = [("captured", str(g))]
    opt = passes.optimize(g, config, trace)
    for n in opt:
        if n.placement == "host float":
            warnings.warn(f"node '{n.name}' ({n.attrs.get('target', n.op)}{' at ' + n.source if n.source else ''}) "
                          "has no int8 kernel: it runs on the host in float (dequantize, run, quantize)",
                          stacklevel=3)
    q = quantize.quantize(opt, amax, config)
    trace.append(("quantize", str(q)))
    return Compiled(q, config, _backend_name(backend)), trace


def compile(model: nn.Module, calibration_data, backend: str = "auto", config="z1", batch_size: int = 256,
            calibration: str = "minmax") -> CompiledModel:
    """Compile an eval-mode PyTorch model for conv_accel: capture, optimize, calibrate on `calibration_data`
    (float inputs like the model's; ranges by 'minmax' or 'percentile'), quantize to int8, and run it on `backend`
    ('auto': a board, else the virtual PYNQ, else Verilator, else the numpy model; or 'pynq', 'verilator',
    'model')."""
    from pytorch_fpga.nn.capture import capture
    if not isinstance(model, nn.Module):
        raise TypeError(f"pf.compile takes a torch.nn.Module, got {type(model).__name__}")
    data = _check_calibration(calibration_data)
    if model.training:
        warnings.warn("pf.compile: the model was in training mode; it is compiled as in eval()", stacklevel=2)
    was_training = model.training
    model.eval()
    try:                                            # the caller's model goes back to its mode afterwards
        g, observe = capture(model, torch.from_numpy(data[:1]), name=type(model).__name__)

        def run(batch):
            with torch.no_grad():
                return observe(torch.from_numpy(np.ascontiguousarray(batch)))
        compiled, trace = compile_graph(g, run, data, backend, config, batch_size, calibration)
    finally:
        model.train(was_training)
    return CompiledModel(compiled, g, trace)


def from_onnx(path, calibration_data, backend: str = "auto", config="z1", batch_size: int = 64,
              calibration: str = "minmax") -> CompiledModel:
    """Compile an ONNX model: import, calibrate with the numpy float interpreter, quantize, as pf.compile."""
    from pytorch_fpga.graph.onnx_import import import_onnx
    data = _check_calibration(calibration_data)
    g = import_onnx(path)
    compiled, trace = compile_graph(g, lambda b: interp.run(g, b), data, backend, config, batch_size, calibration)
    return CompiledModel(compiled, g, trace)


def dynamo_backend(gm: torch.fx.GraphModule, example_inputs, options: dict | None = None, **kwargs):
    """torch.compile(model, backend="pytorch_fpga", options={"calibration_data": X, "backend": "model"}).

    Dynamo hands over the graph with the model's parameters and buffers as inputs: they are bound as constants
    (weights are compiled in; changing them later needs a new compile), and the one remaining float tensor is the
    input. Without calibration_data it calibrates on the first inputs it sees (and warns). A graph piece without
    exactly one such input (after a graph break) runs unchanged in PyTorch.
    """
    opts = dict(options or {}, **kwargs)
    names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    data = [i for i, (name, x) in enumerate(zip(names, example_inputs, strict=False))
            if isinstance(x, torch.Tensor) and not isinstance(x, nn.Parameter)
            and "_parameters_" not in name and "_buffers_" not in name]
    if len(data) != 1 or not example_inputs[data[0]].is_floating_point():
        warnings.warn("pytorch_fpga torch.compile backend: a graph piece whose inputs are not one float tensor "
                      "runs unchanged in PyTorch", stacklevel=2)
        return gm.forward
    calib = opts.get("calibration_data")
    if calib is None:
        warnings.warn("pytorch_fpga torch.compile backend: no options={'calibration_data': ...}; calibrating on "
                      "the first inputs only", quantize.CalibrationWarning, stacklevel=2)
        calib = example_inputs[data[0]]
    model = _GraphModel(gm, example_inputs, data[0]).eval()
    cm = compile(model, calib, opts.get("backend", "auto"), opts.get("config", "z1"))
    tuple_out = _returns_tuple(gm)

    def run(*args):
        y = cm(args[data[0]])
        return (y,) if tuple_out else y
    run.compiled_model = cm
    return run


class _GraphModel(nn.Module):
    """A dynamo graph piece as a one-input module: its parameter and buffer inputs bound as buffers."""

    def __init__(self, gm, example_inputs, data: int):
        super().__init__()
        self.gm, self.data, self.n = gm, data, len(example_inputs)
        for i, x in enumerate(example_inputs):
            if i != data:
                self.register_buffer(f"const{i}", x.detach())

    def forward(self, x):
        args = [x if i == self.data else getattr(self, f"const{i}") for i in range(self.n)]
        out = self.gm(*args)
        return out[0] if isinstance(out, (tuple, list)) and len(out) == 1 else out


def _returns_tuple(gm) -> bool:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    return isinstance(out.args[0], (tuple, list))


def register() -> None:
    """Register "pytorch_fpga" as a torch.compile backend (also declared as a torch_dynamo_backends entry point)."""
    from torch._dynamo.backends.registry import _BACKENDS, register_backend
    if "pytorch_fpga" not in _BACKENDS:
        register_backend(name="pytorch_fpga")(dynamo_backend)
