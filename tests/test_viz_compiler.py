"""pf.viz.compiler headless (Agg): the pass diff names what the passes did to a small torch model (its own module
names are the oracle), and the timeline draws one bar per measured, estimated and projected number of a profile."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from torch import nn  # noqa: E402

import pytorch_fpga as pf  # noqa: E402
from pytorch_fpga.runtime import report  # noqa: E402
from pytorch_fpga.viz import compiler as vc  # noqa: E402


def _small_model():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(8)
    bn.running_mean, bn.running_var = torch.randn(8) * 0.1, torch.rand(8) + 0.5
    return nn.Sequential(nn.Conv2d(2, 8, 3, padding=1, bias=False), bn, nn.ReLU(), nn.Dropout(0.2), nn.Flatten(),
                         nn.Linear(8 * 5 * 5, 4)).eval()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    model = _small_model()
    x = torch.randn(32, 2, 5, 5)
    return model, x.numpy(), pf.compile(model, x.numpy(), backend="model")


def _names(model, kind):
    return [name for name, m in model.named_modules() if isinstance(m, kind)]


def test_parse_line_reads_back_every_node(small):
    _, _, cm = small
    for g in (cm.float_graph, cm.graph):
        for n in g:
            d = vc.parse_line(n.line())
            assert (d["name"], d["op"], d["inputs"], d["fused"]) == (n.name, n.op, n.inputs, n.fused)
            assert d["where"] == (n.placement or None)
            assert d["type"].startswith(n.dtype) and set(d["params"]) == set(n.params)
            assert (d["scale"] is None) == (n.scale is None)


def test_parse_line_keeps_tuples_with_commas_together():
    d = vc.parse_line("  %c = conv2d(%x, stride=(1, 2), padding=(0, 0, 1, 1), act=('clamp', 0.0, 6.0)) -> "
                      "int8[1, 4, 3, 3] s=0.04724 @accelerator +[bn, relu6]  w_int8[4, 2, 3, 3]:int8 m[4]:int64")
    assert d["inputs"] == ["x"] and d["attrs"] == {"stride": "(1, 2)", "padding": "(0, 0, 1, 1)",
                                                   "act": "('clamp', 0.0, 6.0)"}
    assert d["where"] == "accelerator" and d["fused"] == ["bn", "relu6"] and d["scale"] == "0.04724"
    assert d["params"] == {"w_int8": "[4, 2, 3, 3]:int8", "m": "[4]:int64"}
    with pytest.raises(ValueError, match="not a node line"):
        vc.parse_line("graph Sequential (7 nodes)")


def test_pass_diff_names_the_folded_batchnorm_and_the_fused_relu(small):
    model, _, cm = small
    (conv,), (bn,), (relu,), (drop,) = (_names(model, k) for k in (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Dropout))
    assert [t[0] for t in cm.trace] == ["captured", "remove_identity", "fold_batchnorm", "fuse_activations",
                                        "native_layout", "partition", "quantize"]
    fold = vc.pass_diff(cm.trace, "fold_batchnorm")
    assert fold.splitlines()[0] == "fold_batchnorm: 7 -> 6 nodes (1 removed, 2 changed, 0 added)"   # input, 5 layers
    assert f"  - %{bn} (batchnorm): fused into %{conv}" in fold.splitlines()
    assert f"~ %{conv} (conv2d): fused +[{bn}]" in fold and "params +b[8]:float32" in fold    # the folded bias
    assert f"~ %{relu} (relu): reads %{conv} (was %{bn})" in fold
    fuse = vc.pass_diff(cm.trace, 3)
    assert f"  - %{relu} (relu): fused into %{conv}" in fuse.splitlines() and "+ act=relu" in fuse
    assert f"  - %{drop} (identity): fused" not in vc.pass_diff(cm.trace, 1)       # dropout is dropped, not fused
    assert f"  - %{drop} (identity)" in vc.pass_diff(cm.trace, 1).splitlines()
    layout = vc.pass_diff(cm.trace, "native_layout")
    assert "+ order=nhwc" in layout and "fused +[weights permuted for NHWC input]" in layout
    part = vc.pass_diff(cm.trace, "partition")
    assert f"~ %{conv} (conv2d): @accelerator" in part and "~ %input (input): @host int8" in part
    quant = vc.pass_diff(cm.trace, "quantize")
    assert f"s={cm.graph.input.scale:.4g}" in quant and "+w_int8[8, 2, 3, 3]:int8" in quant


def test_trace_summary_counts_match_the_graphs(small):
    model, _, cm = small
    rows = vc.trace_summary(cm.trace).splitlines()[1:]
    assert len(rows) == len(cm.trace) - 1
    sizes = [len(cm.float_graph)] + [len(t[1].splitlines()) - 1 for t in cm.trace[1:]]
    for row, a, b in zip(rows, sizes[:-1], sizes[1:], strict=True):
        assert f"{a} -> {b}" in row
    assert rows[-1].split()[-1] == "0" and len(cm.graph) == sizes[-1] == 5    # input conv flatten linear output


def test_pass_diff_errors_and_no_change(small):
    _, _, cm = small
    same = [("captured", cm.trace[0][1]), ("again", cm.trace[0][1])]
    assert vc.pass_diff(same, 1).endswith("; no change")
    with pytest.raises(ValueError, match="0 is 'captured'"):
        vc.pass_diff(cm.trace, 0)
    with pytest.raises(ValueError, match="no pass named 'fold_bn'"):
        vc.pass_diff(cm.trace, "fold_bn")
    with pytest.raises(TypeError, match="CompiledModel.trace"):
        vc.pass_diff(str(cm.graph), 1)


def test_timeline_has_a_bar_per_number_and_labelled_sources(small):
    _, x, cm = small
    prof = cm.profile(x[:4])
    fig = vc.timeline(prof)
    ax = fig.axes[0]
    bars = {r.get_gid(): r for r in ax.patches if isinstance(r, Rectangle) and r.get_gid()}
    accel_nodes = [n.name for n in cm.graph if n.placement == "accelerator"]
    steps = [n.name for n in cm.graph]                     # one step a node; the output node dequantizes
    assert [r["step"] for r in prof.rows] == steps
    assert sorted(k for k in bars if k.startswith("host-")) == sorted(f"host-{s}" for s in steps)
    assert sorted(k for k in bars if not k.startswith("host-")) == sorted(
        f"{kind}-{s}" for s in accel_nodes for kind in ("setup", "accel"))
    assert [t.get_text().split()[0] for t in ax.get_yticklabels()] == steps
    for r in prof.rows:
        assert bars[f"host-{r['step']}"].get_width() == pytest.approx(r["host_us"])
        if r["jobs"]:
            assert bars[f"accel-{r['step']}"].get_width() == pytest.approx(r["cycles"] / cm.cfg.clock_mhz)
            assert bars[f"setup-{r['step']}"].get_width() == pytest.approx(r["jobs"] * report.SETUP_US_PER_JOB)
    end = max(b.get_x() + b.get_width() for b in bars.values())
    assert end == pytest.approx(prof.end_to_end_us)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("measured here" in t for t in legend)
    assert any(f"projected at {cm.cfg.clock_mhz:g} MHz" in t for t in legend)
    assert any("estimated" in t for t in legend)


def test_timeline_lays_steps_end_to_end():
    rows = [{"step": s, "op": op, "where": "", "jobs": j, "macs": 0, "cycles": c, "utilization": 0.0,
             "accel_us": c / 50.0, "setup_us": j * report.SETUP_US_PER_JOB, "host_us": h, "backend_wall_us": 0.0}
            for s, op, j, c, h in (("input", "quantize", 0, 0, 5.0), ("conv", "accel", 2, 1000, 7.0),
                                   ("output", "dequantize", 0, 0, 3.0))]
    prof = report.ProgramProfile(rows, batch=2, clock_mhz=50.0, backend="model")
    import matplotlib.pyplot as plt
    _, ax = plt.subplots()
    fig = vc.timeline(prof, ax=ax)
    assert fig is ax.figure
    bars = {r.get_gid(): (r.get_x(), r.get_width()) for r in ax.patches if r.get_gid()}
    assert bars == {"host-input": (0.0, 5.0), "host-conv": (5.0, 7.0), "setup-conv": (12.0, 200.0),
                    "accel-conv": (212.0, 20.0), "host-output": (232.0, 3.0)}
    assert "projected at 50 MHz" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert prof.end_to_end_us == 235.0
    with pytest.raises(ValueError, match="no steps"):
        vc.timeline(report.ProgramProfile([], 1, 100.0, "model"))
    with pytest.raises(TypeError, match="ProgramProfile"):
        vc.timeline(np.zeros(3))
