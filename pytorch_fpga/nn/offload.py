"""pf.offload: a copy of an eval-mode PyTorch model with its Conv2d and Linear layers on the accelerator."""
from __future__ import annotations

import copy
import warnings
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from pytorch_fpga.core import quant
from pytorch_fpga.nn.modules import FPGAConv2d, FPGALinear, Int8Through
from pytorch_fpga.runtime import accelerator as runtime
from pytorch_fpga.runtime import backends

# Modules that work on int8 (torch qint8) tensors unchanged, so int8 can flow through them between layers.
INT8_SAFE = (nn.MaxPool2d, nn.Flatten, nn.ReLU, nn.Identity, nn.Dropout)
UNSUPPORTED = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def choose_backend(backend: str = "auto") -> str:
    """pf.backends.auto() for 'auto' (says which backend it picked, once); other names pass through."""
    return backends.auto() if backend == "auto" else backend


class _Site:
    """A Conv2d/Linear to replace: where it lives and what is fused into it."""

    def __init__(self, name, parent, key, module, bn=None, bn_key=None, relu_key=None):
        self.name, self.parent, self.key, self.module = name, parent, key, module
        self.bn, self.bn_key, self.relu_key = bn, bn_key, relu_key
        self.prev = None           # the site whose int8 output reaches this one through INT8_SAFE modules
        self.next = None
        self.between = []          # keys of those modules (they get wrapped to run on int8)

    @property
    def last(self):
        """The module whose output is this site's (fused) output."""
        if self.relu_key is not None:
            return self.parent._modules[self.relu_key]
        return self.bn if self.bn is not None else self.module


def _find_sites(module: nn.Module, prefix: str = "") -> list[_Site]:
    sites = []
    children = list(module.named_children())
    i = 0
    while i < len(children):
        key, m = children[i]
        name = f"{prefix}{key}"
        if isinstance(m, UNSUPPORTED):
            raise NotImplementedError(f"layer '{name}' is a {type(m).__name__}: pf.offload runs nn.Conv2d and "
                                      "nn.Linear on the accelerator (2-D convolutions only)")
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            site = _Site(name, module, key, m)
            if isinstance(module, nn.Sequential):          # fuse a following BatchNorm2d and ReLU
                j = i + 1
                if isinstance(m, nn.Conv2d) and j < len(children) and isinstance(children[j][1], nn.BatchNorm2d) \
                        and children[j][1].running_mean is not None:     # batch statistics don't fold: CPU
                    site.bn, site.bn_key, j = children[j][1], children[j][0], j + 1
                if j < len(children) and type(children[j][1]) is nn.ReLU:
                    site.relu_key, j = children[j][0], j + 1
                i = j - 1
            sites.append(site)
        elif len(list(m.children())):
            sites += _find_sites(m, name + ".")
        i += 1
    return sites


def _link(sites: list[_Site]) -> None:
    """Mark pairs of sites in one Sequential joined only by INT8_SAFE modules: int8 flows between them."""
    for a, b in zip(sites, sites[1:], strict=False):
        if a.parent is not b.parent or not isinstance(a.parent, nn.Sequential):
            continue
        keys = list(a.parent._modules)
        start = keys.index(a.relu_key or a.bn_key or a.key) + 1
        between = [a.parent._modules[k] for k in keys[start:keys.index(b.key)]]
        if all(isinstance(m, INT8_SAFE) for m in between):
            a.next, b.prev = b, a
            a.between = [k for k in keys[start:keys.index(b.key)]]


class CalibrationWarning(UserWarning):
    """Calibration data that gives a layer a useless scale (zeros only, a dead ReLU, constant data)."""


def _check_data(data: torch.Tensor, batch_size) -> None:
    """Raise on calibration data or batch sizes that cannot calibrate; warn on constant data."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer (images per calibration forward pass), "
                         f"got {batch_size!r}")
    bad = ~torch.isfinite(data)
    if bad.any():
        idx = sorted({int(i) for i in bad.reshape(len(data), -1).any(dim=1).nonzero().flatten()[:5]})
        raise ValueError(f"calibration_data has NaN or inf values (in samples {idx}"
                         f"{' ...' if int(bad.reshape(len(data), -1).any(dim=1).sum()) > 5 else ''}): "
                         "remove or repair those samples before pf.offload")
    if data.numel() > 1 and float(data.max()) == float(data.min()):
        warnings.warn(f"calibration_data is constant (every value is {float(data.min()):g}): each layer's "
                      "scales fit that one input only; calibrate with representative inputs (e.g. 100 images)",
                      CalibrationWarning, stacklevel=4)


def _calibrate(model, sites, data, method: str, batch_size: int):
    """Per site: activation scales of its input and (fused) output from the float model on `data`."""
    if method not in ("minmax", "percentile"):
        raise ValueError(f"calibration must be 'minmax' or 'percentile', got {method!r}")
    _check_data(data, batch_size)
    pct = method == "percentile"
    amax = {"in": {}, "out": {}}
    samples = {"in": {}, "out": {}}          # percentile: the |values| of each site's input and output
    hooks, batch = [], [0, 0]                # the batch being run: first and last sample

    def rec(side, key, t):
        t = t.detach().float()
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"layer '{key}': its {side}put has NaN or inf on calibration samples "
                             f"{batch[0]}..{batch[1]} (batch_size {batch_size}): the float model itself produces "
                             "them there; check those inputs and the layers before it")
        t = t.abs()
        d = amax[side]
        d[key] = max(d.get(key, 0.0), float(t.max())) if t.numel() else d.get(key, 0.0)
        if pct:
            samples[side].setdefault(key, []).append(t.flatten().numpy())

    for s in sites:
        hooks.append(s.module.register_forward_hook(lambda m, i, o, s=s: rec("in", s.name, i[0])))
        last = s.last if s.last is not None else s.module
        hooks.append(last.register_forward_hook(lambda m, i, o, s=s: rec("out", s.name, o)))
    try:
        with torch.no_grad():
            for i in range(0, len(data), batch_size):
                batch[:] = [i, min(len(data), i + batch_size) - 1]
                model(data[i:i + batch_size])
    finally:
        for h in hooks:
            h.remove()

    for s in sites:
        if s.name not in amax["in"]:
            raise ValueError(f"layer '{s.name}' never ran on the calibration data, so it has no scales: is it "
                             "called in the model's forward()? Offload a model whose layers all run")
        if amax["in"][s.name] == 0.0:
            warnings.warn(f"layer '{s.name}': its input was 0 for every calibration sample, so its input scale is "
                          "a placeholder (1.0); calibrate with inputs that reach this layer", CalibrationWarning,
                          stacklevel=3)
        elif amax["out"][s.name] == 0.0:
            what = "its fused ReLU output" if s.relu_key is not None else "its output"
            warnings.warn(f"layer '{s.name}': {what} was 0 for every calibration sample (a dead ReLU?), so its "
                          "output scale is a placeholder (1.0) and later layers will see only zeros; calibrate "
                          "with representative data or check the layer's weights and bias", CalibrationWarning,
                          stacklevel=3)

    def scale_of(side, name):
        if pct:
            return quant.calibrate_percentile(np.concatenate(samples[side].get(name, [np.zeros(0)])))
        return quant.scale_from_amax(amax[side].get(name, 0.0))

    scale = {s.name: [scale_of("in", s.name), scale_of("out", s.name)] for s in sites}
    for s in sites:                                     # int8 passes through: input scale = producer's
        if s.prev is not None:
            scale[s.name][0] = scale[s.prev.name][1]
    return scale


def offload(model: nn.Module, calibration_data, backend: str = "auto", config="z1", calibration: str = "minmax",
            batch_size: int = 256, accelerator: runtime.Accelerator | None = None) -> nn.Module:
    """A copy of `model` with every nn.Conv2d (+BatchNorm2d, +ReLU) and nn.Linear (+ReLU) on the accelerator.

    Scales come from running the float model on `calibration_data`; int8 flows directly between offloaded
    layers joined only by pooling/flatten/ReLU in a Sequential; other ops run on the CPU in float.
    backend: 'auto' (board, else Verilator, else model), 'pynq', 'verilator' or 'model'.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"pf.offload takes a torch.nn.Module, got {type(model).__name__}")
    data = torch.as_tensor(calibration_data)
    if not data.is_floating_point():
        raise TypeError(f"calibration_data must be float (what the model sees), got {data.dtype}")
    if len(data) == 0:
        raise ValueError("calibration_data is empty: pass a few representative inputs (e.g. 100 images)")
    model = copy.deepcopy(model)
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is not None:
        data = data.to(param.dtype)                     # e.g. float64 numpy images for a float32 model
    if model.training:
        warnings.warn("pf.offload: the model was in training mode; the offloaded copy is switched to eval()",
                      stacklevel=2)
    model.eval()
    model.requires_grad_(False)                         # an inference copy: CPU layers need no gradients either
    single = isinstance(model, (nn.Conv2d, nn.Linear) + UNSUPPORTED)   # a bare layer: offload it alone
    if single:
        model = nn.Sequential(OrderedDict([(type(model).__name__.lower(), model)]))
    sites = _find_sites(model)
    if not sites:
        raise ValueError("the model has no nn.Conv2d or nn.Linear layer to offload")
    _link(sites)
    scales = _calibrate(model, sites, data, calibration, batch_size)
    acc = accelerator or runtime.Accelerator(choose_backend(backend), config)
    for s in sites:
        s_in, s_out = scales[s.name]
        if s.next is not None:
            out = "int8"
        elif isinstance(s.module, nn.Linear) and s.relu_key is None:
            out = "acc"                                 # e.g. the logits: int32 accumulators, no requant
        else:
            out = "float"
        if isinstance(s.module, nn.Conv2d):
            new = FPGAConv2d.from_float(s.module, s_in, s_out, s.bn, s.relu_key is not None, acc, out, s.name)
        else:
            new = FPGALinear.from_float(s.module, s_in, s_out, s.relu_key is not None, acc, out, s.name)
        setattr(s.parent, s.key, new)
        for k in (s.bn_key, s.relu_key):
            if k is not None:
                setattr(s.parent, k, nn.Identity())
        for k in s.between:
            setattr(s.parent, k, Int8Through(s.parent._modules[k]))
    model.eval()                                        # the new Identity / Int8Through modules too
    if single:
        model = model[0]
    model.fpga_accelerator = acc
    return model


def fpga_layers(model: nn.Module) -> list:
    """The offloaded layers of a model, in order."""
    return [m for m in model.modules() if isinstance(m, (FPGAConv2d, FPGALinear))]
