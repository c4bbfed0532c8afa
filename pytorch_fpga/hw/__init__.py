"""Hardware side of the library: simulator discovery, RTL drivers and runners, synthesis, the overlay design.

Submodules load on first use (pf.hw.synth, pf.hw.waves, ...); the cocotb drivers (array_driver, accel_driver,
array_job) import cocotb and run only inside a simulation.
"""
import importlib

_SUBMODULES = ("tools", "lint", "cocotb_run", "array_sim", "synth", "waves", "regmap", "design", "vsim")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pytorch_fpga.hw' has no attribute {name!r}")
