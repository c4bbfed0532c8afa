"""pf.viz.waves: VCD loading (vcdvcd), per-cycle sampling and drawing; a PE run's VCD against pf.gemm.mac;
pf.sim.cocotb_runner's VCD runs and results tables; pf.sim.array_rtl.gemm with waves.

Oracles: a hand-written VCD whose values are known, the library's PE model pf.gemm.mac applied to the
sampled inputs of the Verilated rtl/pe.v, cycle by cycle, cocotb's own get_results, and pf.systolic's timing.
"""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import pytorch_fpga as pf  # noqa: E402
from pytorch_fpga.sim import cocotb_runner, tools
from pytorch_fpga.viz import waves  # noqa: E402

pytest.importorskip("vcdvcd")

# An Icarus-style VCD: 10 ns clock (rising edges at 5, 15, 25, 35), a 4-bit register q <= d, an enable that
# is x until t = 20, a nested scope that also has a `q`, and a vector change written with its leading zeros
# dropped (b1 == 0001).
VCD = """$timescale 1ns $end
$scope module top $end
$var wire 1 ! clk $end
$var wire 4 " d [3:0] $end
$var reg 4 # q [3:0] $end
$var wire 1 % en $end
$var wire 70 & wide [69:0] $end
$scope module u $end
$var reg 4 $ q [3:0] $end
$upscope $end
$upscope $end
$enddefinitions $end
#0
0!
b0111 "
bx #
x%
b0 $
b1000000000000000000000000000000000000000000000000000000000000000000000 &
#5
1!
b0111 #
#10
0!
b1000 "
#15
1!
b1000 #
#20
0!
b1 "
1%
#25
1!
b1 #
b1111 $
#30
0!
#35
1!
#40
0!
"""


@pytest.fixture
def vcd_file(tmp_path):
    p = tmp_path / "t.vcd"
    p.write_text(VCD)
    return p


def test_load_vcd_names_values_and_unknowns(vcd_file):
    w = waves.load_vcd(vcd_file, ["d", "q", "u.q", "en"])
    assert list(w) == ["clk", "d", "q", "u.q", "en"]          # the clock is loaded first
    assert w["q"].ref == "top.q[3:0]" and w["u.q"].ref == "top.u.q[3:0]" and w["q"].width == 4
    assert w.timescale == "1ns"
    assert w["q"].times.tolist() == [0, 5, 15, 25] and w["q"].values == [None, 7, 8, 1]
    assert w["d"].values == [7, 8, 1]                          # "b1" is 0001
    assert w["q"].at(15) == 8 and w["q"].before(15) == 7 and w["q"].before(5) is None
    assert w["u.q"].signed(w["u.q"].at(30)) == -1
    assert w.edges().tolist() == [5, 15, 25, 35] and w.period() == 10 and w.unit_s == pytest.approx(1e-9)


def test_cycles_sample_at_the_end_of_each_clock_period(vcd_file):
    w = waves.load_vcd(vcd_file, ["d", "q", "en"])
    with pytest.raises(ValueError, match="x/z"):
        w.cycles()                                             # en is x in cycle 0 (edge 5 to edge 15)
    s = w.cycles(unknown=-99)                                  # cycle k: the value just before edge k + 1
    assert s["d"].tolist() == [8, 1, 1] and s["q"].tolist() == [7, 8, 1] and s["en"].tolist() == [-99, 1, 1]
    # a register: q sampled in cycle k + 1 is d sampled in cycle k
    assert np.array_equal(s["q"][1:], s["d"][:-1])
    assert w.cycles(["d"], signed=True)["d"].tolist() == [-8, 1, 1]


def test_fields_names_and_errors(vcd_file):
    w = waves.load_vcd(vcd_file, ["d"])
    hi = w.field("d", 2, 2, "d_hi")
    assert hi.values == [1, 2, 0] and w["d_hi"] is hi
    with pytest.raises(ValueError):
        w["d"].field(3, 2)
    with pytest.raises(KeyError, match="no signal"):
        waves.load_vcd(vcd_file, ["nope"])
    wide = waves.load_vcd(vcd_file, ["wide"]).cycles()["wide"]      # 70 bits: Python ints, not int64
    assert wide.dtype == object and wide.tolist() == [2**69] * 3
    all_sigs = waves.load_vcd(vcd_file)                        # every signal, under its full reference
    assert "top.u.q[3:0]" in all_sigs and all_sigs.clock == "clk"


def test_plot_waves_draws_clock_bits_and_labelled_buses(vcd_file):
    w = waves.load_vcd(vcd_file, ["d", "q", "en"])
    ax = waves.plot_waves(w, start=0, stop=3, signed=["d"], labels={"q": "q (reg)"})
    assert [t.get_text() for t in ax.get_yticklabels()] == ["clk", "d", "q (reg)", "en"]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["7", "-8", "1", "7", "8", "1"]          # d in two's complement, q unsigned
    assert ax.get_xlim() == (0.0, 3.0)
    assert [t.get_text() for t in ax.get_xticklabels(minor=True)] == ["0", "1", "2"]   # cycles between edges
    assert "10 ns" in ax.get_xlabel()
    with pytest.raises(ValueError):
        waves.plot_waves(w, start=3, stop=3)


def test_icarus_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="FST"):
        cocotb_runner.run_with_waves("pe", ["pe"], "test_pe", sim="icarus")


RESULTS_XML = """<testsuites>
  <testsuite name="all" package="all" tests="3" failures="1" errors="1">
    <testcase classname="test_x" name="one" time="0.1"/>
    <testcase classname="test_x" name="two" time="0.1"><failure message="boom"/></testcase>
    <testcase classname="test_y" name="three" time="0.1"><error message="oops"/></testcase>
  </testsuite>
</testsuites>
"""


def test_results_table_against_cocotbs_counts(tmp_path):
    from cocotb_tools.runner import get_results

    xml = tmp_path / "results.xml"
    xml.write_text(RESULTS_XML)
    ntests, nfailed = get_results(xml)
    assert cocotb_runner.results_table(xml).splitlines() == [
        "PASS  test_x.one", "FAIL  test_x.two", "FAIL  test_y.three",
        f"TESTS={ntests} PASS={ntests - nfailed} FAIL={nfailed}"]
    assert cocotb_runner.repo_relative(tools.TB_DIR / "pe" / "test_pe.py") == "tb/pe/test_pe.py"


@pytest.mark.slow
def test_pe_vcd_matches_gemm_mac_cycle_by_cycle():
    """Verilated pe.v with a VCD: psum_out at cycle k+1 == pf.gemm.mac(psum_in, a_in, w[a_sel_in]) at cycle k."""
    if not tools.available("verilator"):
        pytest.skip("verilator is not installed")
    vcd = cocotb_runner.run_with_waves("pe", ["pe"], "test_pe", "verilator", parameters={"USE_DSP": 1},
                                       test_dir=tools.TB_DIR / "pe", testcase="mac_random_and_extremes")
    assert vcd.parent == cocotb_runner.build_dir("pe", "verilator", {"USE_DSP": 1}, waves=True)
    assert vcd.parent != cocotb_runner.build_dir("pe", "verilator", {"USE_DSP": 1})
    w = waves.load_vcd(vcd, ["ce", "a_in", "a_sel_in", "psum_in", "psum_out", "w0", "w1", "a_out"])
    s = w.cycles(signed=["a_in", "psum_in", "psum_out", "w0", "w1", "a_out"])
    w_use = np.where(s["a_sel_in"] == 1, s["w1"], s["w0"])
    enabled = s["ce"][:-1] == 1
    expect = pf.gemm.mac(s["psum_in"][:-1], s["a_in"][:-1], w_use[:-1])
    np.testing.assert_array_equal(s["psum_out"][1:][enabled], expect[enabled])
    np.testing.assert_array_equal(s["a_out"][1:][enabled], s["a_in"][:-1][enabled])
    assert enabled.sum() >= 400                                  # the test's 400 MACs and its weight loads
    exact = s["psum_in"] + s["a_in"] * w_use
    assert np.sum((exact < pf.gemm.INT32_MIN) | (exact > pf.gemm.INT32_MAX)) > 0   # some of them wrapped


@pytest.mark.slow
def test_array_gemm_with_waves_matches_numpy_and_the_latency():
    """array_rtl.gemm(waves=True): the result is numpy's, and in the VCD every Y row leaves LAT cycles after its x."""
    if not tools.available("verilator"):
        pytest.skip("verilator is not installed")
    from pytorch_fpga.sim import array_rtl

    rng = np.random.default_rng(4)
    X, W = pf.gemm.random_int8(rng, (5, 4)), pf.gemm.random_int8(rng, (4, 3))
    Y, cycles, vcd = array_rtl.gemm(X, W, 4, 4, waves=True, name="waves_test_array")
    np.testing.assert_array_equal(Y, X.astype(np.int64) @ W.astype(np.int64))
    assert vcd.name == "waves_test_array.vcd" and cycles == pf.systolic.ws_cycles(5, 4, 3, 4, 4)
    s = waves.load_vcd(vcd, ["s_axis_x_tvalid", "s_axis_x_tready", "m_axis_y_tvalid", "m_axis_y_tready"]).cycles()
    x_in = np.flatnonzero((s["s_axis_x_tvalid"] == 1) & (s["s_axis_x_tready"] == 1))
    y_out = np.flatnonzero((s["m_axis_y_tvalid"] == 1) & (s["m_axis_y_tready"] == 1))
    np.testing.assert_array_equal(y_out, x_in + pf.systolic.latency(4, 4))
