"""pf.viz.accel headless (Agg): roofs, cycle bounds, shape sweeps and the charts against the library's numbers.

Oracles: pf.accel.cycle_model (the 'model' backend) and, for the cycle bounds, the Verilated RTL (sim8,
pf.sim.verilated); pf.Accelerator('model') reports; the configurations' parameters.
"""
import math
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import pytorch_fpga as pf  # noqa: E402
from pytorch_fpga.contract import accel  # noqa: E402
from pytorch_fpga.viz import accel as va  # noqa: E402


def zero_job(M, K, N, cfg, m_tile=None):
    return accel.pack_job(np.zeros((M, K), np.int8), np.zeros((K, N), np.int8), m=1 << 30, shift=40, cfg=cfg,
                          m_tile=m_tile)


def random_shapes(rng, cfg, n):
    cfg = accel.config(cfg)
    out = []
    while len(out) < n:
        M, K, N = (int(rng.integers(1, hi)) for hi in (3 * cfg.acc_depth, 1500 if cfg.name == "z1" else 300,
                                                         300 if cfg.name == "z1" else 64))
        lo = min(cfg.rows, accel.choose_m_tile(M, K, cfg))              # small tiles, many folds: slow to model
        m_tile = int(rng.integers(lo, accel.choose_m_tile(M, K, cfg) + 1)) if rng.random() < 0.5 else None
        try:
            accel.check_job(M, K, N, m_tile or accel.choose_m_tile(M, K, cfg), cfg)
        except ValueError:
            continue
        out.append((M, K, N, m_tile))
    return out


def test_roofs_z1_and_sim8():
    r = va.roofs("z1")
    assert r["peak_ops_per_cycle"] == 2 * 16 * 16 == 512
    assert r["peak_gops"] == pytest.approx(51.2)
    assert r["bandwidth_gbs"] == pytest.approx(0.8)
    assert r["ridge"] == 64
    assert va.roofs("sim8")["peak_gops"] == pytest.approx(12.8)
    intensity = np.array([1.0, 10.0, 64.0, 100.0, 1000.0])
    np.testing.assert_allclose(va.attainable_gops(intensity, "z1"), [0.8, 8.0, 51.2, 51.2, 51.2])


def test_buffer_sizes_follow_the_config():
    s = va.buffer_sizes("z1")
    assert s == {"X buffer (2 banks)": 2 * 4096 * 16, "W buffer": 16384 * 16,
                 "accumulators (2 banks, int32)": 2 * 512 * 16 * 4, "params {bias, m} + shift": 1024 * 9}
    s8 = va.buffer_sizes("sim8")
    assert s8["X buffer (2 banks)"] == 2 * 256 * 8 and s8["W buffer"] == 512 * 8


@pytest.mark.parametrize("cfg", ["z1", "sim8"])
def test_cycle_bounds_never_exceed_the_cycle_model(cfg):
    rng = np.random.default_rng(3)
    for M, K, N, m_tile in random_shapes(rng, cfg, 80):
        job = zero_job(M, K, N, cfg, m_tile)
        b = va.cycle_bounds(job)
        model = accel.cycle_model(job)
        assert max(b.values()) <= model["cycles"], (M, K, N, m_tile, b, model)
        assert b["tile0_array"] > b["array"] >= model["mac_cycles"]
        assert b["stream_in"] * 8 == job.stream.size
        assert va.utilization_ceiling(job) >= M * K * N / (job.cfg.rows * job.cfg.cols * model["cycles"])


def test_cycle_bounds_never_exceed_the_rtl():
    from pytorch_fpga.sim import verilated
    rng = np.random.default_rng(4)
    with verilated.VerilatedAccel("sim8") as sim:
        for M, K, N, m_tile in random_shapes(rng, "sim8", 25):
            X = rng.integers(-128, 128, (M, K)).astype(np.int8)
            W = rng.integers(-128, 128, (K, N)).astype(np.int8)
            job = accel.pack_job(X, W, out_int32=True, cfg="sim8", m_tile=m_tile)
            out, status, cnt = sim.run_job(job)
            np.testing.assert_array_equal(accel.unpack_output(out, job), accel.job_golden(job))
            assert max(va.cycle_bounds(job).values()) <= cnt["CYCLES"], (M, K, N, m_tile, cnt)


def test_cycle_bounds_by_hand():
    # z1, M=100, K=40, N=20: 3 k-folds, 2 n-folds, one tile; params 2 x 18 beats, X tile 0 = 100 x 3 x 2 beats
    job = zero_job(100, 40, 20, "z1", m_tile=100)
    b = va.cycle_bounds(job)
    assert b["array"] == pf.systolic.ws_cycles(100, 40, 20, 16, 16)
    assert b["tile0_array"] == 36 + 600 + b["array"]
    assert b["stream_in"] == 36 + 600 + 2 * 3 * 16 * 2
    assert b["stream_out"] == 100 * 2 * 16 // accel.config("z1").out_lanes      # int8: out_lanes channels a cycle


def test_shape_sweep_matches_the_model_backend():
    acc = pf.Accelerator("model", "z1")
    s = va.shape_sweep("N", [8, 40, 100], M=200, K=100)
    for n, u, c in zip(s["values"], s["utilization"], s["cycles"], strict=True):
        rng = np.random.default_rng(int(n))
        X = rng.integers(-128, 128, (200, 100)).astype(np.int8)
        W = rng.integers(-128, 128, (100, int(n))).astype(np.int8)
        _, rep = acc.gemm(X, W, m=1 << 30, shift=40)          # int8 outputs, as shape_sweep's jobs
        assert len(rep.jobs) == 1 and rep.cycles == c
        assert rep.utilization == pytest.approx(u)
    assert np.all(s["ceiling"] >= s["utilization"])
    for name in va.BOUND_NAMES:
        assert np.all(s[f"bound_{name}"] >= s["ceiling"] - 1e-12)
    with pytest.raises(ValueError, match="dim"):
        va.shape_sweep("X", [1])


def test_plot_shape_sweeps_draws_the_sweeps():
    sweeps = [va.shape_sweep("M", [16, 64, 256]), va.shape_sweep("K", [16, 128, 576])]
    fig = va.plot_shape_sweeps(sweeps)
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.lines if ln.get_gid()}
    for s in sweeps:
        np.testing.assert_allclose(lines[f"util-{s['dim']}"].get_ydata(), s["utilization"])
        np.testing.assert_allclose(lines[f"ceiling-{s['dim']}"].get_ydata(), s["ceiling"])
        np.testing.assert_array_equal(lines[f"util-{s['dim']}"].get_xdata(), s["values"])


def test_roofline_point_from_reports_and_bench_rows():
    rng = np.random.default_rng(0)
    X = rng.integers(-128, 128, (300, 200)).astype(np.int8)
    W = rng.integers(-128, 128, (200, 40)).astype(np.int8)
    _, rep = pf.Accelerator("model", "z1").gemm(X, W, out_int32=True)
    p = va.roofline_point("g", rep)
    assert p["ops"] == 2 * 300 * 200 * 40
    assert p["intensity"] == pytest.approx(p["ops"] / rep.bytes_in)
    assert p["gops"] == pytest.approx(p["ops"] / (rep.cycles / 100e6) / 1e9)
    assert p["roof_gops"] == pytest.approx(min(51.2, 0.8 * p["intensity"]))
    assert p["bound"] == ("compute" if p["intensity"] >= 64 else "stream")
    assert p["gops"] <= p["roof_gops"]
    row = {"macs": rep.macs, "rtl_cycles": rep.cycles, "bytes_in": rep.bytes_in, "bytes_out": rep.bytes_out}
    assert va.roofline_point("g", row) == p
    assert va.roofline_point("j", rep.jobs[0])["cycles"] == rep.cycles
    assert "g" in va.roofline_table([p]).splitlines()[1]


def test_plot_roofline_places_the_points():
    pts = [va.roofline_point(n, dict(macs=m, cycles=c, bytes_in=b, bytes_out=0))
           for n, m, c, b in (("a", 10**6, 10**4, 10**5), ("b", 10**7, 5 * 10**4, 10**5))]
    fig = va.plot_roofline(pts, "z1")
    ax = fig.axes[0]
    by_gid = {ln.get_gid(): ln for ln in ax.lines if ln.get_gid()}
    assert np.allclose(by_gid["roof-compute"].get_ydata(), 51.2)
    x, y = by_gid["roof-stream"].get_data()
    np.testing.assert_allclose(y, 0.8 * x)
    for p in pts:
        ln = by_gid[f"layer-{p['name']}"]
        assert ln.get_xdata()[0] == pytest.approx(p["intensity"])
        assert ln.get_ydata()[0] == pytest.approx(p["gops"])
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_draw_system_blocks_and_labels():
    fig = va.draw_system("z1")
    ax = fig.axes[0]
    gids = {p.get_gid() for p in ax.patches}
    for name in ("ps", "ddr", "dma", "conv_accel", "regs", "accel_input", "xbuf", "wbuf", "params",
                 "accel_compute", "accel_output"):
        assert f"block-{name}" in gids
    for name in ("s_axis", "m_axis", "axil"):
        assert f"link-{name}" in gids
    text = "\n".join(t.get_text() for t in ax.texts)
    assert "2 banks x 64 KiB" in text and "256 KiB" in text and "16x16" in text
    assert "2 banks x 2 KiB" in "\n".join(t.get_text() for t in va.draw_system("sim8").axes[0].texts)


def test_module_imports_numpy_only():
    code = ("import sys, pytorch_fpga.viz.accel as v; "
            "bad = [m for m in ('matplotlib', 'ipywidgets', 'torch', 'PIL', 'IPython') if m in sys.modules]; "
            "assert not bad, bad; assert set(v.__all__) <= set(dir(v))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ridge_is_where_the_roofs_meet():
    r = va.roofs("z1")
    assert math.isclose(float(va.attainable_gops(r["ridge"])), r["peak_gops"])
