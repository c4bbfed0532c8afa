"""Layer 8, pictures: convolution (conv), the systolic array animator (array), the dataflow charts
(dataflow_charts), the accelerator (accel), waveforms (waves) and the compiler (compiler: pass diffs, the host vs
accelerator timeline). Submodules load on first use: pf.viz.conv, ..."""
import importlib

_SUBMODULES = ("conv", "array", "dataflow_charts", "accel", "waves", "compiler")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pytorch_fpga.viz' has no attribute {name!r}")
