"""pytorch_fpga: a course and a compact library, from convolution theory to PyTorch Conv2d on a PYNQ-Z1.

Submodules load on first use, so `import pytorch_fpga as pf` needs only numpy: no torch, no simulator,
no pynq, no board.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Topic modules, imported lazily: pf.conv, pf.quant, ...
_SUBMODULES = ("gemm", "systolic", "conv", "quant", "dataflow", "viz", "viz_array", "scalesim_ref", "datasets", "nn",
               "accel", "compiler", "backends", "runtime", "pynq_sim", "pynq_driver", "bench", "viz_accel", "exercises",
               "hw", "cli")
# Shortcuts: pf.<name> -> pf.<module>.<name>
_SHORTCUTS = {"gemm_int8": "gemm", "wrap_int32": "gemm", "Accelerator": "runtime", "offload": "nn",
              "profile": "nn"}

__all__ = list(_SUBMODULES) + list(_SHORTCUTS)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _SHORTCUTS:
        return getattr(importlib.import_module(f".{_SHORTCUTS[name]}", __name__), name)
    raise AttributeError(f"module 'pytorch_fpga' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
