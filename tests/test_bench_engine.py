"""bench_engine (issue 12's goals): ResNet-18's shapes, weighting, ratios, SCALE-Sim cycles, verdicts."""
import numpy as np
import pytest
import torch

from pytorch_fpga import bench, bench_engine
from pytorch_fpga.arch import scalesim_ref
from pytorch_fpga.contract import accel
from pytorch_fpga.core import conv, quant
from pytorch_fpga.nn.models import resnet18
from pytorch_fpga.runtime import compiler

PES = 256


def _torch_convs():
    """{name: (C, H, W, Co, k, stride, padding, groups, MACs from the output tensor)} from ResNet-18's forward."""
    model, seen = resnet18().eval(), {}

    def hook(name):
        def f(mod, inp, out):
            _, C, H, W = inp[0].shape
            seen[name] = (C, H, W, mod.out_channels, mod.kernel_size[0], mod.stride[0], mod.padding[0],
                          mod.groups, out.numel() * (C // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1])
        return f
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Conv2d):
            assert mod.kernel_size[0] == mod.kernel_size[1] and mod.dilation == (1, 1)
            mod.register_forward_hook(hook(name))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    return seen


@pytest.fixture(scope="module")
def torch_convs():
    return _torch_convs()


def _row(layer, rng, bws=("800", "600", "400")):
    """A row as bench.measure makes it, with made-up cycles and the layer's true MACs."""
    macs = conv.conv2d_macs((1, *layer[1:4]), (layer[4], layer[1] // layer[8], layer[5], layer[5]), layer[6],
                            layer[7], 1, layer[8])
    cyc = int(rng.integers(macs // PES + 1, 3 * macs // PES + 2))
    at = {bw: cyc + int(rng.integers(0, cyc)) for bw in bws}
    return {"layer": layer[0], "shape": dict(zip(bench_engine.FIELDS, layer[1:], strict=True)), "macs": macs,
            "rtl_cycles": cyc, "model_cycles": cyc + int(rng.integers(-50, 50)), "cycles_at_mb_s": at,
            "bytes_in": int(rng.integers(1, 10**6))}


def test_resnet18_convs_are_the_torch_models(torch_convs):
    ours = {layer[0]: tuple(layer[1:]) for layer in bench_engine.resnet18_convs()}
    assert len(bench_engine.resnet18_convs()) == 20 == len(torch_convs)
    assert ours == {name: v[:8] for name, v in torch_convs.items()}


def test_distinct_shapes_weigh_to_the_whole_stack(torch_convs):
    groups = bench_engine.distinct(bench_engine.resnet18_convs())
    assert len(groups) == 11 and sum(d["count"] for d in groups) == 20
    assert sorted(n for d in groups for n in d["names"]) == sorted(torch_convs)
    for d in groups:     # every name in a group has the group's shape
        assert all(torch_convs[n][:8] == tuple(d["layer"][1:]) for n in d["names"])
    rows = [{"count": d["count"], "macs": conv.conv2d_macs((1, *d["layer"][1:4]), (d["layer"][4], d["layer"][1],
                                                                                   d["layer"][5], d["layer"][5]),
                                                           d["layer"][6], d["layer"][7])} for d in groups]
    assert bench_engine.weighted(rows, "macs") == sum(v[8] for v in torch_convs.values())


def test_stack_totals_equal_a_sum_over_all_twenty_convs(rng):
    groups = bench_engine.distinct(bench_engine.resnet18_convs())
    rows = [{**_row(d["layer"], rng), "count": d["count"]} for d in groups]
    by_shape = {tuple(r["shape"].values()): r for r in rows}
    every = [by_shape[tuple(layer[1:])] for layer in bench_engine.resnet18_convs()]     # 20 rows, repeats included
    t = bench_engine.stack_totals(rows, PES)
    macs = sum(r["macs"] for r in every)
    assert t["convolutions"] == 20 and t["macs"] == macs
    assert t["rtl_cycles"] == sum(r["rtl_cycles"] for r in every)
    assert t["model_cycles"] == sum(r["model_cycles"] for r in every)
    for bw in ("800", "600", "400"):
        cyc = sum(r["cycles_at_mb_s"][bw] for r in every)
        assert t["cycles_at_mb_s"][bw] == cyc
        assert t["pe_utilization_at_mb_s"][bw] == pytest.approx(macs / (PES * cyc))
        assert t["time_ratio_at_mb_s"][bw] == pytest.approx(cyc / sum(r["cycles_at_mb_s"]["800"] for r in every))
    assert t["time_vs_mb_s"] == "800"


def test_stream_ratio_divides_by_the_tensors_bytes():
    for layer in [*bench.LAYERS, *bench_engine.resnet18_convs()]:
        _, C, H, W, Co, k, s, p, g = layer
        b = conv.conv2d_bytes((1, C, H, W), (Co, C // g, k, k), s, p, 1, g)
        assert bench_engine.fmap_plus_weights(layer) == b["input"] + b["weight"]
        assert bench_engine.stream_ratio(layer, 3 * b["input"]) == pytest.approx(3 * b["input"] / (b["input"] +
                                                                                                 b["weight"]))


def test_scalesim_ws_reads_the_reference_for_its_layers():
    ref = scalesim_ref.load_reference()
    for d, rep, layer in zip(ref["layers"], ref["results"]["ws"], bench_engine.reference_layers(), strict=True):
        cycles, src = bench_engine.scalesim_ws(layer)
        assert src == "scalesim" and cycles == d["groups"] * rep["cycles"]
        assert layer[0] == "ref:" + d["name"] and layer[4] == d["O"]
    # ResNet-18's 56x56 1x1/2 downsample is one of the reference's layers (same shape, other name)
    ds = next(la for la in bench_engine.resnet18_convs() if la[0] == "layer2.0.downsample.0")
    assert bench_engine.scalesim_ws(ds)[1] == "scalesim"


@pytest.mark.parametrize("layer", bench.LAYERS, ids=lambda la: la[0])
def test_scalesim_ws_formula_for_other_layers(layer):
    _, C, H, W, Co, k, s, p, g = layer
    Ho, Wo = torch.nn.functional.conv2d(torch.zeros(1, C, H, W), torch.zeros(Co, C // g, k, k), stride=s,
                                        padding=p, groups=g).shape[2:]
    M, K, N = Ho * Wo, k * k * C // g, Co // g                  # strides divide here: SCALE-Sim's M is torch's
    F = -(-K // 16) * -(-N // 16)
    assert bench_engine.scalesim_ws(layer) == (g * (F * (M + 2 * 16 + 16 - 2) - 1), "scalesim_like")


def test_annotate_and_layer_of(rng):
    layer = bench.LAYERS[2]
    row = bench_engine.annotate(_row(layer, rng), layer)
    assert bench_engine.layer_of(row) == layer
    assert row["rtl_over_scalesim_ws"] == row["rtl_cycles"] / bench_engine.scalesim_ws(layer)[0]
    assert row["scalesim_source"] == "scalesim_like"


def _totals(u800, ratio):
    return {"pe_utilization_at_mb_s": {"800": u800, "400": u800 / ratio}, "time_vs_mb_s": "800",
            "time_ratio_at_mb_s": {"800": 1.0, "400": ratio}}


def test_stack_verdicts():
    util, time = bench_engine.goal_stack(_totals(0.85, 1.10))
    assert (util["met"], time["met"], util["measured"], time["measured"]) == (True, True, 0.85, 1.10)
    util, time = bench_engine.goal_stack(_totals(0.79, 1.16))
    assert (util["met"], time["met"]) == (False, False)
    assert "Verilated RTL" in util["source"] and "weight" in util["weighting"]
    util, time = bench_engine.goal_stack({})                    # no memory sweep: not run, not passed
    assert util["met"] is None and time["met"] is None


def test_model_gap_takes_the_worst_absolute_error():
    rows = [{"layer": "a", "model_error": 0.004}, {"layer": "b", "model_error": -0.03}, {"layer": "c",
                                                                                        "model_error": 0.01}]
    g = bench_engine.goal_model_gap(rows)
    assert (g["worst"], g["measured"], g["met"], g["failing"]) == ("b", 0.03, False, ["b"])
    assert bench_engine.goal_model_gap(rows[::2])["met"] is True


def test_stream_goal_judges_dense_3x3_stride_1_only(rng):
    dense, dw, s2, one = bench.LAYERS[2], bench.LAYERS[6], bench_engine.resnet18_convs()[5], bench.LAYERS[5]
    rows = []
    for layer, ratio in ((dense, 1.2), (dw, 2.0), (s2, 9.0), (one, 9.0)):
        r = _row(layer, rng)
        r["bytes_in"] = round(ratio * bench_engine.fmap_plus_weights(layer))
        rows.append(r)
    g = bench_engine.goal_stream(rows)
    assert list(g["per_layer"]) == [dense[0]] and g["met"] is True
    assert list(g["depthwise_not_judged"]) == [dw[0]]
    assert g["measured"] == pytest.approx(1.2, abs=1e-5)


def test_depthwise_verdict_uses_the_800_mb_s_utilization(rng):
    layer = bench.LAYERS[6]
    row = _row(layer, rng)
    row["pe_utilization"] = row["macs"] / (PES * row["rtl_cycles"])
    row["pe_utilization_at_mb_s"] = {k: row["macs"] / (PES * c) for k, c in row["cycles_at_mb_s"].items()}
    g = bench_engine.goal_depthwise(row, PES)
    assert g["measured"] == row["pe_utilization_at_mb_s"]["800"] and g["met"] is (g["measured"] >= 0.2)
    assert g["model_prediction"] == pytest.approx(row["macs"] / (PES * row["model_cycles"]))
    assert bench_engine.goal_depthwise(None, PES)["met"] is None


def test_scalesim_verdict_and_table(rng):
    rows = [bench_engine.annotate(_row(layer, rng), layer) for layer in bench.LAYERS[2:5]]
    g = bench_engine.goal_scalesim(rows)
    worst = max(rows, key=lambda r: r["rtl_cycles"] / r["scalesim_ws_cycles"])
    assert g["worst"] == worst["layer"] and g["met"] is (worst["rtl_cycles"] <= worst["scalesim_ws_cycles"])
    assert "SCALE-Sim-like formula" in g["per_layer"][worst["layer"]]["source"]
    assert g["failing"] == [r["layer"] for r in rows if r["rtl_cycles"] > r["scalesim_ws_cycles"]]
    text = bench_engine.goals_table([g, bench_engine.goal_depthwise(None, PES)])
    assert ("NOT MET" if not g["met"] else "MET") in text and "not run" in text


@pytest.mark.parametrize("layer", [bench.LAYERS[0], bench.LAYERS[2], bench.LAYERS[6],
                                   bench_engine.resnet18_convs()[0]], ids=lambda la: la[0])
def test_mode_is_what_the_compiler_does(layer):
    cfg = accel.config("z1")
    _, C, H, W, Co, k, s, p, g = layer
    m, shift = quant.quantize_multiplier(np.full(Co, 1e-3))
    parts, _ = compiler.conv2d_parts(np.zeros((1, C, H, W), np.int8), np.zeros((Co, C // g, k, k), np.int8), None,
                                     m, shift, False, False, s, p, 1, g, "zeros", cfg)
    assert bench.mode(layer, cfg) == ("window" if parts[0].job.window is not None else "gemm")


def test_unmet_goals_say_why_with_their_numbers(rng):
    layer = bench.LAYERS[6]                                      # depthwise 3x3 14x14x256
    row = _row(layer, rng)
    row["pe_utilization"] = 0.05
    g = bench_engine.goal_depthwise(row, PES)
    _, C, H, W, *_ = layer
    assert g["met"] is False and f"{H * W * C // 8:,d} beats" in g["why"] and "1 of 16" in g["why"]
    row["pe_utilization"] = 0.5
    assert bench_engine.goal_depthwise(row, PES)["why"] is None
    # a layer whose input stream alone outlasts the SCALE-Sim count is called stream-bound; one that is not, is not
    a, b = (bench_engine.annotate(_row(la, rng), la) for la in bench.LAYERS[:2])
    a["rtl_cycles"], a["bytes_in"] = 2 * a["scalesim_ws_cycles"], 16 * a["scalesim_ws_cycles"]
    b["rtl_cycles"], b["bytes_in"] = 2 * b["scalesim_ws_cycles"], 4 * b["scalesim_ws_cycles"]
    for r in (a, b):
        r["rtl_over_scalesim_ws"] = r["rtl_cycles"] / r["scalesim_ws_cycles"]
    g = bench_engine.goal_scalesim([a, b])
    assert list(g["why"]) == [a["layer"]] and f"{a['bytes_in'] // 8:,d} beats" in g["why"][a["layer"]]
    assert "stream-bound" in bench_engine.goals_table([g])
