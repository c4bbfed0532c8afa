"""pf.offload: pf.compile under its first name, for code written before the model compiler existed."""
from __future__ import annotations

from torch import nn

from pytorch_fpga.graph.quantize import CalibrationWarning  # noqa: F401 - pf.nn.CalibrationWarning
from pytorch_fpga.nn.compiled_model import CompiledModel, compile
from pytorch_fpga.runtime import backends


def choose_backend(backend: str = "auto") -> str:
    """pf.backends.auto() for 'auto' (says which backend it picked, once); other names pass through."""
    return backends.auto() if backend == "auto" else backend


def offload(model: nn.Module, calibration_data, backend: str = "auto", config="z1", calibration: str = "minmax",
            batch_size: int = 256) -> CompiledModel:
    """The model compiled for the accelerator (pf.compile): its convolutions and linear layers run as int8 jobs,
    everything else as int8 host kernels, with activations staying int8 from end to end."""
    return compile(model, calibration_data, backend, config, batch_size, calibration=calibration)


def fpga_layers(model: CompiledModel) -> list:
    """The graph nodes of a compiled model that run on the accelerator, in order."""
    return [n for n in model.graph if n.placement == "accelerator"]
