"""conv_accel compiled with Verilator: a cached, checked build (builder.py) of a C++ stream harness (harness.cpp),
driven through ctypes (model.py), and the `verilator` backend (backend.py)."""
from pytorch_fpga.sim.verilated.builder import (  # noqa: F401
    BUILDS,
    CACHE_DIR,
    HARNESS,
    KEEP,
    _prune,
    build,
    cache_key,
    discard,
    library_path,
    sources,
    verilator_version,
)
from pytorch_fpga.sim.verilated.model import (  # noqa: F401
    COND_IN_EMPTY,
    COND_OUT_LAST,
    COND_STATUS,
    COUNTERS,
    JobError,
    VerilatedAccel,
    VsimError,
    _load,
    status_bits,
)
