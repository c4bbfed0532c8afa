"""SCALE-Sim 3.0, run live: its cycle counts equal scalesim_like_cycles exactly; the committed JSON is current.

All layers of pf.scalesim_ref.LAYERS run on a 16x16 array in ws, os and is (three SCALE-Sim processes in
parallel, ~30-40 s on two cores). Some layers are scaled-down crops of the real ones so SCALE-Sim stays fast;
LAYERS' notes say how.
"""
import math

import pytest

pytest.importorskip("scalesim")

from pytorch_fpga.arch import dataflow as dfl  # noqa: E402
from pytorch_fpga.arch import scalesim_ref as ssr  # noqa: E402

LAYERS = ssr.default_layers()
INT_KEYS = ["cycles", "cycles_incl_prefetch", "stalls", "sram_ifmap_reads", "sram_filter_reads",
            "sram_ofmap_writes", "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("scalesim_cache")


@pytest.fixture(scope="module")
def live(cache):
    return ssr.run_scalesim(LAYERS, ssr.SCALESIM_DATAFLOWS, 16, 16, cache_dir=cache, use_cache=False)


def test_lenet_matches_the_shared_reference_measurement(live):
    # /work/shared/reference/scalesim/README.md: WS conv1/conv2 1243/1099, OS 1979/719 compute cycles
    assert [r["cycles"] for r in live["ws"][:2]] == [1243, 1099]
    assert [r["cycles"] for r in live["os"][:2]] == [1979, 719]


@pytest.mark.parametrize("df", ssr.SCALESIM_DATAFLOWS)
def test_scalesim_like_cycles_is_exact(live, df):
    for layer, rep in zip(LAYERS, live[df], strict=True):
        assert rep["layer"] == layer.name and rep["stalls"] == 0
        g = ssr.scalesim_gemm(layer)
        assert rep["cycles"] == ssr.scalesim_like_cycles(g.M, g.K, g.N, 16, 16, df), (layer.name, df)
        assert {k: rep[k] for k in ssr.scalesim_like_sram(g.M, g.K, g.N, 16, 16, df)} == \
            ssr.scalesim_like_sram(g.M, g.K, g.N, 16, 16, df), (layer.name, df)


def test_conv_mapping_agrees_except_scalesims_rounded_up_output_size():
    for layer in LAYERS:
        ours, theirs = layer.gemm, ssr.scalesim_gemm(layer)
        assert (ours.K, ours.N, ours.groups) == (theirs.K, theirs.N, theirs.groups)
        if layer.name == "resnet18_l2_ds_1x1":          # 56x56, 1x1, stride 2: torch 28x28, SCALE-Sim 29x29
            assert (ours.M, theirs.M) == (28 * 28, 29 * 29)
        else:
            assert ours.M == theirs.M


def test_our_buffer_counts_equal_scalesims_sram_counters(live):
    table = ssr.compare(live, LAYERS)
    for r in table:
        if r["M"] != r["M_scalesim"]:
            continue
        assert r["x_reads_ours"] == r["x_reads_scalesim"] and r["w_reads_ours"] == r["w_reads_scalesim"]
        if r["dataflow"] != "os":                       # SCALE-Sim os adds rows + cols per fold (see module doc)
            assert r["y_writes_ours"] == r["y_writes_scalesim"]
    assert all(r["exact"] and r["sram_exact"] for r in table)


def test_the_explained_difference(live):
    """ws: ours - theirs = 2 - (F-1)(2R+C-2) per group when the RTL never waits; os/is follow their formulas."""
    R = C = 16
    for layer, rep in zip(LAYERS, live["ws"], strict=True):
        g = layer.gemm
        if g.M != ssr.scalesim_gemm(layer).M or g.M < 2 * R + C - 3:
            continue
        F = dfl.num_folds(g.M, g.K, g.N, R, C, "ws")
        assert dfl.cycles(g.M, g.K, g.N, R, C, "ws") - rep["cycles"] == 2 - (F - 1) * (2 * R + C - 2)
    for df in ("os", "is"):
        for layer, rep in zip(LAYERS, live[df], strict=True):
            g = layer.gemm
            if g.M != ssr.scalesim_gemm(layer).M:
                continue
            F = dfl.num_folds(g.M, g.K, g.N, R, C, df)
            T = g.K if df == "os" else g.N
            per_fold = T + (R if df == "os" else 2 * R) + C - 2
            assert rep["cycles"] == F * per_fold - 1
    table = ssr.compare(live, LAYERS)
    text = ssr.format_table(table)
    assert "lenet_conv2" in text and "NO" not in text
    s = ssr.summary(table)
    assert all(v["exact"] == v["layers"] == len(LAYERS) for v in s.values())
    assert all(0.3 < v["geomean_ratio"] < 1 for v in s.values())   # double buffering / overlap pays off


def test_committed_json_matches_the_live_run(live):
    ref = ssr.load_reference()
    assert (ref["rows"], ref["cols"], ref["scalesim_version"]) == (16, 16, ssr.scalesim_version())
    assert ssr.ref_layers(ref) == LAYERS
    for df in ssr.SCALESIM_DATAFLOWS:
        assert len(ref["results"][df]) == len(live[df])
        for committed, now in zip(ref["results"][df], live[df], strict=True):
            assert committed["layer"] == now["layer"]
            assert {k: committed[k] for k in INT_KEYS} == {k: now[k] for k in INT_KEYS}
            for k in ("overall_util_pct", "mapping_eff_pct", "compute_util_pct"):
                assert math.isclose(committed[k], now[k], rel_tol=1e-9)
    assert ssr.compare() == ssr.compare(live, LAYERS)


def test_cache_and_inputs(live, cache, tmp_path, monkeypatch):
    def no_run(*args, **kwargs):
        raise AssertionError("SCALE-Sim was started although its results are cached")

    monkeypatch.setattr(ssr.subprocess, "Popen", no_run)          # a cache hit starts no process
    again = ssr.run_scalesim(LAYERS, ("ws",), 16, 16, cache_dir=cache, use_cache=True)
    assert again["ws"] == live["ws"]
    files = ssr.write_inputs(LAYERS[:2], "os", 16, 16, tmp_path)
    topo = files["topology"].read_text().splitlines()
    assert topo[1] == "lenet_conv1, 28, 28, 5, 5, 1, 6, 1," and len(topo) == 3
    assert len(files["layout"].read_text().splitlines()) == 3
    cfg = files["cfg"].read_text()
    assert "[layout]" in cfg and "[sparsity]" in cfg and "Dataflow : os" in cfg
    with pytest.raises(ValueError, match="DP"):
        ssr.write_inputs([dfl.ConvLayer("convDP", 1, 8, 8, 1, 3, 3)], "ws", 4, 4, tmp_path)


def test_non_square_array_live(tmp_path):
    """rows != cols: the formulas keep R and C apart (an 8x4 array, small layers only)."""
    layers = [LAYERS[0], LAYERS[1], LAYERS[-1]]
    res = ssr.run_scalesim(layers, ssr.SCALESIM_DATAFLOWS, 8, 4, cache_dir=tmp_path, use_cache=False)
    for df, reps in res.items():
        for layer, rep in zip(layers, reps, strict=True):
            g = ssr.scalesim_gemm(layer)
            assert rep["cycles"] == ssr.scalesim_like_cycles(g.M, g.K, g.N, 8, 4, df), (layer.name, df)
