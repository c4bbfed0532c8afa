"""pf.viz.array and pf.viz.dataflow_charts headless (Agg): the animator draws the stepped model's trace; the
charts draw the library's numbers.

Oracles: pf.dataflow.simulate's ArrayTrace (active / fold per PE and cycle), pf.dataflow.utilization_sweep,
access_counts, layer_table and pf.scalesim_ref.compare (the committed SCALE-Sim results).
"""
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

import pytorch_fpga as pf  # noqa: E402
from pytorch_fpga.viz import array as va  # noqa: E402
from pytorch_fpga.viz import dataflow_charts as dc  # noqa: E402

DFS = pf.dataflow.DATAFLOWS


def operands(M, K, N, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(-3, 4, (M, K)).astype(np.int8), rng.integers(-3, 4, (K, N)).astype(np.int8)


@pytest.fixture(scope="module")
def runs():
    """ws/os/is on 4x4 with partial tiles (padding), and one 3x5 array (rows != cols)."""
    X, W = operands(5, 4, 7)
    out = {df: pf.dataflow.simulate(X, W, 4, 4, df) for df in DFS}
    X2, W2 = operands(4, 7, 6, seed=1)
    out.update({f"{df}-3x5": pf.dataflow.simulate(X2, W2, 3, 5, df) for df in DFS})
    return out


def drawn_states(ax, rows, cols):
    """Read each PE's state back from its Rectangle's face colour."""
    by_color = {to_rgba(c): s for s, c in va.STATE_COLORS.items()}
    pes = {p.get_gid(): p for p in ax.patches if (p.get_gid() or "").startswith("pe-")}
    assert len(pes) == rows * cols
    return np.array([[by_color[tuple(pes[f"pe-{r}-{c}"].get_facecolor())] for c in range(cols)]
                     for r in range(rows)])


@pytest.mark.parametrize("key", ["ws", "os", "is", "ws-3x5", "os-3x5", "is-3x5"])
def test_frame_colours_are_the_trace(runs, key):
    r = runs[key]
    tr = r.trace
    T = len(tr)
    assert T == r.cycles
    seen = set()
    fig, ax = plt.subplots()
    frame = va._ArrayFrame(r, ax)                  # the painter draw_array_cycle and both animators use
    for t in range(T):
        frame.update(t)
        states = drawn_states(ax, r.rows, r.cols)
        np.testing.assert_array_equal(states == va.MAC, tr.active[t])
        np.testing.assert_array_equal(states == va.IDLE, tr.fold[t] < 0)
        np.testing.assert_array_equal(states, va.pe_states(r, t))
        seen |= set(np.unique(states).tolist())
    assert seen == {va.IDLE, va.PADDING, va.MAC}    # these shapes show all three states


def test_draw_array_cycle_figure_text_and_arrows(runs):
    r = runs["ws"]
    t = 10                                                      # folds 0 and 1 both in the array
    fig = va.draw_array_cycle(r, t)
    ax = fig.axes[0]
    np.testing.assert_array_equal(drawn_states(ax, 4, 4) == va.MAC, r.trace.active[t])
    texts = [x.get_text() for x in ax.texts]
    title = ax.get_title()
    assert f"cycle {t} of 0..{r.cycles - 1}" in title and "folds 0+1" in title
    assert f"MACs this cycle: {int(r.trace.active[t].sum())}" in title
    # the stationary weight of every PE, as drawn
    w = r.trace.w[t]
    for rr in range(4):
        for cc in range(4):
            assert f"w {w[rr, cc]}" in texts
    assert sum(x.startswith("\u03a3 ") for x in texts) == int((r.trace.fold[t] >= 0).sum())
    # given axes: drawn into them; big arrays: colours only, no numbers
    fig2, axs = plt.subplots(1, 2)
    assert va.draw_array_cycle(runs["os"], 3, ax=axs[1]) is fig2
    X, W = operands(20, 20, 20)
    big = pf.dataflow.simulate(X, W, 16, 16, "ws")
    ax_big = va.draw_array_cycle(big, 30).axes[0]
    np.testing.assert_array_equal(drawn_states(ax_big, 16, 16) == va.MAC, big.trace.active[30])
    assert not any(re.fullmatch(r"[wx\u03a3] -?\d+", x.get_text()) for x in ax_big.texts)
    with pytest.raises(ValueError, match="outside"):
        va.draw_array_cycle(r, r.cycles)
    with pytest.raises(ValueError, match="trace"):
        va.draw_array_cycle(pf.dataflow.simulate(X, W, 4, 4, "ws", trace=False), 0)


def test_animator_slider_spans_every_cycle(runs):
    for key in ("ws", "os", "is-3x5"):
        r = runs[key]
        box = va.array_animator(r)
        s = box.slider
        assert (s.min, s.max) == (0, r.cycles - 1) and s.max - s.min + 1 == r.cycles == len(r.trace)
        assert (box.play.min, box.play.max) == (s.min, s.max)
        first = bytes(box.image.value)
        assert first.startswith(b"\x89PNG")
        s.value = 9                                            # moving the slider redraws the picture
        assert bytes(box.image.value) != first
        ax = box.figure.axes[0]
        np.testing.assert_array_equal(drawn_states(ax, r.rows, r.cols) == va.MAC, r.trace.active[9])


def frame_count(html):
    frames = re.findall(r'frames\[(\d+)\] = "data:image/png;base64,', html)
    assert [int(f) for f in frames] == list(range(len(frames)))
    m = re.search(r"var frames = new Array\((\d+)\);", html)
    assert m and int(m.group(1)) == len(frames)
    return len(frames)


def test_animate_html_embeds_the_expected_frames(runs):
    r = runs["ws"]
    assert r.cycles <= 25
    html = va.animate_html(r)
    assert frame_count(html) == r.cycles                      # every cycle
    assert len(html) < 400_000                                 # palette PNGs keep the notebook small
    assert frame_count(va.animate_html(r, frames=[0, 5, 10])) == 3
    assert frame_count(va.animate_html(r, frames=4)) == 4
    X, W = operands(40, 20, 20)
    long = pf.dataflow.simulate(X, W, 4, 4, "os")
    assert long.cycles > 25
    assert va._frames(long.cycles, None, 25) == sorted(set(np.linspace(0, long.cycles - 1, 25).round().astype(int)))
    with pytest.raises(ValueError, match="frames"):
        va.animate_html(r, frames=[r.cycles])


def test_utilization_lines_are_the_sweep():
    values = [1, 7, 16, 17, 40, 64, 100]
    for dim in ("M", "K", "N"):
        fig = dc.plot_utilization_vs_shape(values, dim, M=50, K=70, N=20, rows=8, cols=8)
        sweep = pf.dataflow.utilization_sweep(values, dim, 50, 70, 20, 8, 8)
        lines = {ln.get_gid(): ln for ln in fig.axes[0].lines}
        assert set(lines) == {f"util-{df}" for df in DFS}
        for df in DFS:
            np.testing.assert_array_equal(lines[f"util-{df}"].get_xdata(), values)
            np.testing.assert_allclose(lines[f"util-{df}"].get_ydata(), sweep["utilization"][df], rtol=0, atol=0)
            for v, u in zip(values, lines[f"util-{df}"].get_ydata(), strict=True):
                shape = {"M": 50, "K": 70, "N": 20, dim: v}
                assert u == pytest.approx(pf.dataflow.utilization_formula(shape["M"], shape["K"], shape["N"],
                                                                          8, 8, df))


def test_reuse_bars_are_the_access_counts():
    M, K, N, R, C = 196, 576, 64, 16, 16                       # X and W spill their 64 KiB buffers
    fig = dc.plot_reuse(M, K, N, R, C)
    bars = {p.get_gid(): p for ax in fig.axes for p in ax.patches if p.get_gid()}
    assert len(bars) == 2 * 3 * 3
    table = dc.reuse_table(M, K, N, R, C)
    for df in DFS:
        acc = pf.dataflow.access_counts(M, K, N, R, C, df)
        for op, a in acc.items():
            buf = a.buf_reads + (a.buf_writes if op == "Y" else 0)
            dram = a.dram_reads + a.dram_writes
            assert bars[f"buffer-{df}-{op}"].get_height() == buf == table[df][op]["buffer"]
            assert bars[f"dram-{df}-{op}"].get_height() == dram == table[df][op]["dram"]
            assert table[df][op]["buffer_reuse"] == M * K * N / buf
            assert table[df][op]["dram_reuse"] == M * K * N / dram
    # the labels above the bars are the reuse factors
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert f"{table['os']['Y']['buffer_reuse']:.3g}x" in labels


def test_layer_cycle_bars():
    table = pf.scalesim_ref.compare()
    fig = dc.plot_layer_cycles(table, dataflows=("ws", "os"))
    ax = fig.axes[0]
    conts = {c.get_label(): c for c in ax.containers}
    assert set(conts) == {"ws ours", "ws SCALE-Sim", "os ours", "os SCALE-Sim"}
    for df in ("ws", "os"):
        rows = [r for r in table if r["dataflow"] == df]
        assert [b.get_height() for b in conts[f"{df} ours"]] == [r["ours"] for r in rows]
        assert [b.get_height() for b in conts[f"{df} SCALE-Sim"]] == [r["scalesim"] for r in rows]
        assert [b.get_gid() for b in conts[f"{df} ours"]] == [f"{df} ours-{r['layer']}" for r in rows]
    layers = pf.scalesim_ref.default_layers()
    lt = pf.dataflow.layer_table(layers, 8, 8)
    ax2 = dc.plot_layer_cycles(lt).axes[0]
    conts2 = {c.get_label(): c for c in ax2.containers}
    assert set(conts2) == set(DFS)
    for df in DFS:
        assert [b.get_height() for b in conts2[df]] == [pf.dataflow.conv_cycles(la, 8, 8, df) for la in layers]
    assert {c.get_label() for c in dc.plot_layer_cycles().axes[0].containers} == \
        {f"{df} {w}" for df in DFS for w in ("ours", "SCALE-Sim")}


def test_import_stays_numpy_only():
    code = ("import sys, pytorch_fpga, pytorch_fpga.viz.array as v, pytorch_fpga.viz.dataflow_charts as d; "
            "bad = [m for m in ('matplotlib', 'ipywidgets', 'torch', 'PIL', 'IPython') if m in sys.modules]; "
            "assert not bad, bad; assert set(v.__all__) <= set(dir(v)) and set(d.__all__) <= set(dir(d))")
    subprocess.run([sys.executable, "-c", code], check=True)
