"""pytorch_fpga: a course and a compact library, from convolution theory to PyTorch Conv2d on a PYNQ-Z1.

One folder per layer; imports run one way, from the top of this list to the bottom:
pf.core (math) <- pf.arch (array models) <- pf.contract (hardware contract) <- pf.graph (model compiler)
<- pf.runtime (board-side runtime)
<- pf.sim (simulators, virtual PYNQ) <- pf.nn (torch front end) <- pf.viz (pictures) <- cli, demo, bench.

Everything loads on first use, so `import pytorch_fpga as pf` needs only numpy: no torch, no simulator, no pynq.
The topic shortcuts (pf.conv, pf.quant, pf.accel, ...) name the module where each topic lives.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Layers, and top-level modules: pf.core, pf.sim, pf.bench, ...
_SUBMODULES = ("core", "arch", "contract", "graph", "runtime", "sim", "nn", "viz", "bench", "demo", "cli",
               "exercises")
# Topic shortcuts: pf.<topic> -> the module in its layer
_TOPICS = {
    "gemm": "core.gemm", "conv": "core.conv", "quant": "core.quant", "datasets": "core.datasets",
    "systolic": "arch.systolic", "dataflow": "arch.dataflow", "scalesim_ref": "arch.scalesim_ref",
    "accel": "contract.accel", "regmap": "contract.regmap", "design": "contract.design",
    "axi_dma": "contract.axi_dma", "rtl": "contract.rtl",
    "compiler": "runtime.compiler", "backends": "runtime.backends", "pynq_driver": "runtime.pynq_driver",
    "tools": "sim.tools", "synth": "sim.synth", "virtual_pynq": "sim.virtual_pynq",
}
# Shortcuts: pf.<name> -> an object of a module
_SHORTCUTS = {"gemm_int8": "core.gemm", "wrap_int32": "core.gemm", "Accelerator": "runtime.accelerator",
              "offload": "nn", "profile": "nn", "compile": "nn.compiled_model", "from_onnx": "nn.compiled_model"}

__all__ = list(_SUBMODULES) + list(_TOPICS) + list(_SHORTCUTS)


def _register_torch_compile_backend() -> None:
    """torch.compile(model, backend="pytorch_fpga"): registered now if torch is already imported (else torch finds
    it through the torch_dynamo_backends entry point in pyproject.toml), without importing torch ourselves."""
    import sys
    if "torch" in sys.modules:
        try:
            from pytorch_fpga.nn.compiled_model import register
            register()
        except Exception:                  # a torch without dynamo: torch.compile is unavailable anyway
            pass


_register_torch_compile_backend()


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _TOPICS:
        return importlib.import_module(f".{_TOPICS[name]}", __name__)
    if name in _SHORTCUTS:
        return getattr(importlib.import_module(f".{_SHORTCUTS[name]}", __name__), name)
    raise AttributeError(f"module 'pytorch_fpga' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
