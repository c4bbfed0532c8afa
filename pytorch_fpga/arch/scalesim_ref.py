"""Cross-check of pf.dataflow against SCALE-Sim 3.0: run it, read its reports, explain the difference.

SCALE-Sim (github.com/scalesim-project/scale-sim-v2, `pip install scalesim`) maps a conv layer to the same
GEMM as we do (M = Ho*Wo output pixels, K = kh*kw*C window, N = filters), except that it rounds the output
size up: Ho = ceil((H - kh + s) / s) (topology_utils.py), one more than torch's floor((H - kh) / s) + 1 when
the stride does not divide H - kh (ResNet-18's 56x56 1x1 stride-2 downsample: 29x29 instead of 28x28, see
scalesim_gemm). It has no padding or groups: we fold padding into H, W. It turns every fold into rows of
"demand matrices", one row per cycle. With no memory stalls (its default estimate-bandwidth mode) its
"Total Cycles" column is exactly (read from scalesim/compute/systolic_compute_{ws,os,is}.py):

    ws  F * (M + 2R + C - 2) - 1,  F = ceil(K/R) * ceil(N/C)
    os  F * (K + R + C - 2) - 1,   F = ceil(M/R) * ceil(N/C)
    is  F * (N + 2R + C - 2) - 1,  F = ceil(K/R) * ceil(M/C)

ws, per fold: R cycles to load the weights (ifmap prefix of arr_row idle rows), M activation rows, R - 1 of
input skew and C - 1 for the last partial sums to cross the columns (suffix arr_col - 1). The folds run
strictly one after another: SCALE-Sim has no second weight bank, so every fold pays its weight load and its
fill/drain again. The RTL array (pf.systolic) loads the next tile into the other bank while the current one
streams, so it pays R + (R + C - 1) only once: F*M + 2R + C - 1 in steady state (M >= 2R + C - 3; for small M
its streams wait for the bank-reuse drain rule and pf.systolic.ws_cycles counts that exactly). Per fold the
two agree to within 2 cycles: the RTL registers each PE's partial-sum output (one cycle more latency than
SCALE-Sim, which writes the bottom PE's sum in the cycle of its MAC) and counts cycles 1-based where
SCALE-Sim reports the 0-based index of the last cycle (the -1). So

    ours_ws - scalesim_ws = 2 - (F - 1) * (2R + C - 2)   whenever the RTL streams never wait.

os: SCALE-Sim streams K skewed operands per fold and lets the fold's outputs "drain" in the R + C - 2 skew
cycles of the same fold (its ofmap demand writes the bottom row T - 1 cycles into the fold, before that row's
last MAC has happened), then starts the next fold from an empty array. Our os model overlaps: a new tile
starts max(K, R) cycles after the previous one while the finished sums shift out of separate output
registers, paying 2R + C - 2 fill/drain once: (F - 1) * max(K, R) + K + 2R + C - 2.
is: SCALE-Sim's is is its ws with X^T held and W streamed (T = N), as ours is the RTL on the transposed problem.

`scalesim_like_cycles` reproduces SCALE-Sim exactly (tests/test_scalesim.py checks every layer and dataflow),
and `scalesim_like_sram` its SRAM counters, which equal our buffer counts except OS output writes: SCALE-Sim
adds rows + cols per fold there (`ofmap_writes += shape[0] + shape[1]` after the flip in
systolic_compute_os.py). Its DRAM ifmap reads count distinct ifmap pixels, not im2col elements, so they are
not comparable with our GEMM-level X counts. Depthwise layers: SCALE-Sim expands a 'DP' layer into C
one-channel layers; we run one group and multiply by `groups` (all groups are identical GEMMs).
"""
from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pytorch_fpga.arch import dataflow as dfl
from pytorch_fpga.arch.dataflow import ConvLayer

REFERENCE_JSON = Path(__file__).resolve().parents[1] / "data" / "scalesim_16x16.json"
SCALESIM_DATAFLOWS = ("ws", "os", "is")

# Real-network layers, scaled where a full-size run would take SCALE-Sim minutes (the note says how).
LAYERS = (
    (ConvLayer("lenet_conv1", C=1, H=28, W=28, O=6, kh=5, kw=5), "LeNet-5 conv1, full size"),
    (ConvLayer("lenet_conv2", C=6, H=12, W=12, O=16, kh=5, kw=5), "LeNet-5 conv2, full size"),
    (ConvLayer("alexnet_conv1_crop", C=3, H=67, W=67, O=96, kh=11, kw=11, stride=4),
     "AlexNet conv1 (3->96, 11x11, stride 4) on a 67x67 crop instead of 227x227: Ho 15 instead of 55"),
    (ConvLayer("resnet18_l1_3x3_crop", C=64, H=14, W=14, O=64, kh=3, kw=3, padding=1),
     "ResNet-18 layer1 3x3 conv (64->64, pad 1) on a 14x14 crop instead of 56x56"),
    (ConvLayer("resnet18_l4_3x3_narrow", C=64, H=7, W=7, O=64, kh=3, kw=3, padding=1),
     "ResNet-18 layer4 3x3 conv at its real 7x7 size, 64->64 channels instead of 512->512"),
    (ConvLayer("resnet18_l2_ds_1x1", C=64, H=56, W=56, O=128, kh=1, kw=1, stride=2),
     "ResNet-18 layer2 1x1 stride-2 downsample (64->128), full size"),
    (ConvLayer("mobilenet_dw_3x3", C=512, H=14, W=14, O=512, kh=3, kw=3, padding=1, groups=512),
     "MobileNet-v1 depthwise 3x3 on 14x14x512, full size; SCALE-Sim runs one channel, x512"),
    (ConvLayer("lenet_fc1", C=400, H=1, W=1, O=120, kh=1, kw=1),
     "LeNet-5 fc1 (400->120) as a 1x1 conv on a 1x1 input: M = 1, the RTL's streams wait"),
)

_CFG = """[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:   {sram_kb}
FilterSramSzkB:  {sram_kb}
OfmapSramSzkB:   {sram_kb}
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : {dataflow}
MemoryBanks:   1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
FilterCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""
_TOPO_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
                "Strides,")
_LAYOUT_HEADER = (
    "Layer name, IFMAP Height Intraline Factor, IFMAP Width Intraline Factor, Filter Height Intraline Factor, "
    "Filter Width Intraline Factor, Channel Intraline Factor, Num Filter Intraline Factor, IFMAP Height "
    "Intraline Order, IFMAP Width Intraline Order, Channel Intraline Order, IFMAP Height Interline Order, IFMAP "
    "Width Interline Order, Channel Interline Order, Num Filter Intraline Order, Channel Intraline Order, Filter "
    "Height Intraline Order, Filter Width Intraline Order, Num Filter Interline Order, Channel Interline Order, "
    "Filter Height Interline Order, Filter Width Interline Order,")
# The working reference's layout row (required by 3.0 but unused: Ifmap/FilterCustomLayout are False).
_LAYOUT_ROW = "2, 2, 1, 1, 1, 1, 0, 1, 2, 4, 5, 3, 3, 2, 1, 0, 4, 5, 6, 7,"
_REPORT_KEYS = {   # our key -> SCALE-Sim report column
    "cycles_incl_prefetch": "Total Cycles (incl. prefetch)", "cycles": "Total Cycles", "stalls": "Stall Cycles",
    "overall_util_pct": "Overall Util %", "mapping_eff_pct": "Mapping Efficiency %",
    "compute_util_pct": "Compute Util %", "sram_ifmap_reads": "SRAM IFMAP Reads",
    "sram_filter_reads": "SRAM Filter Reads", "sram_ofmap_writes": "SRAM OFMAP Writes",
    "dram_ifmap_reads": "DRAM IFMAP Reads", "dram_filter_reads": "DRAM Filter Reads",
    "dram_ofmap_writes": "DRAM OFMAP Writes"}


def default_layers() -> list[ConvLayer]:
    """The comparison's layers (LeNet, AlexNet, ResNet-18, MobileNet; some scaled, see LAYERS' notes)."""
    return [layer for layer, _ in LAYERS]


def topology_row(layer: ConvLayer) -> tuple[list[int], int]:
    """SCALE-Sim topology fields [H, W, kh, kw, C, filters, stride] of one group (padding folded into H, W)
    and how many identical groups the layer has."""
    if layer.dilation != 1 or layer.batch != 1:
        raise ValueError(f"{layer.name}: SCALE-Sim has no dilation or batch; use dilation=1, batch=1")
    if not isinstance(layer.stride, int) or not isinstance(layer.padding, int):
        raise ValueError(f"{layer.name}: SCALE-Sim needs one int stride and one int padding for both axes")
    g = layer.groups
    return [layer.H + 2 * layer.padding, layer.W + 2 * layer.padding, layer.kh, layer.kw, layer.C // g,
            layer.O // g, layer.stride], g


def write_inputs(layers, dataflow: str, rows: int, cols: int, outdir, run_name: str | None = None,
                 sram_kb: int = 64) -> dict:
    """Write SCALE-Sim's config, topology and layout CSV for `layers` into outdir; return their paths."""
    if dataflow not in SCALESIM_DATAFLOWS:
        raise ValueError(f"dataflow must be one of {SCALESIM_DATAFLOWS}, got {dataflow!r}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    run_name = run_name or f"pf_{rows}x{cols}_{dataflow}"
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names) or any("DP" in n or "," in n for n in names):
        raise ValueError("layer names must be unique and contain neither ',' nor 'DP' (SCALE-Sim's depthwise tag)")
    topo = [_TOPO_HEADER] + [f"{layer.name}, " + ", ".join(map(str, topology_row(layer)[0])) + ","
                             for layer in layers]
    layout = [_LAYOUT_HEADER] + [f"{layer.name}, {_LAYOUT_ROW}" for layer in layers]
    paths = {"cfg": outdir / f"{run_name}.cfg", "topology": outdir / f"{run_name}_topo.csv",
             "layout": outdir / f"{run_name}_layout.csv"}
    paths["cfg"].write_text(_CFG.format(run_name=run_name, rows=rows, cols=cols, sram_kb=sram_kb, dataflow=dataflow))
    paths["topology"].write_text("\n".join(topo) + "\n")
    paths["layout"].write_text("\n".join(layout) + "\n")
    return {"run_name": run_name, **paths}


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = [[cell.strip() for cell in r] for r in csv.reader(f) if r]
    header = rows[0]
    return [dict(zip(header, r, strict=False)) for r in rows[1:]]


def _number(s: str):
    v = float(s)
    return int(v) if v.is_integer() else v


def parse_reports(run_dir) -> list[dict]:
    """Per layer: cycles, stalls and SRAM/DRAM counts from COMPUTE_REPORT.csv and DETAILED_ACCESS_REPORT.csv."""
    run_dir = Path(run_dir)
    compute = _read_csv(run_dir / "COMPUTE_REPORT.csv")
    detail = _read_csv(run_dir / "DETAILED_ACCESS_REPORT.csv")
    out = []
    for c, d in zip(compute, detail, strict=True):
        both = {**c, **d}
        out.append({key: _number(both[col]) for key, col in _REPORT_KEYS.items()})
    return out


def scalesim_version() -> str:
    """The installed scalesim version, or raise a clear error if it is missing."""
    if importlib.util.find_spec("scalesim") is None:
        raise RuntimeError('SCALE-Sim is not installed: pip install scalesim "numpy<2" '
                           "(or use the precomputed results: load_reference())")
    return importlib.metadata.version("scalesim")


def _cache_dir(cache_dir) -> Path:
    d = Path(cache_dir or os.environ.get("PF_SCALESIM_CACHE") or Path(tempfile.gettempdir()) / "pytorch_fpga_scalesim")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _start(layers, dataflow, rows, cols, sram_kb, cache_dir, use_cache):
    """Write the inputs and start SCALE-Sim (or return cached results): (key, results or (proc, workdir))."""
    cache = _cache_dir(cache_dir)
    work = Path(tempfile.mkdtemp(prefix=f"run_{dataflow}_", dir=cache))
    files = write_inputs(layers, dataflow, rows, cols, work, sram_kb=sram_kb)
    blob = "".join(Path(files[k]).read_text() for k in ("cfg", "topology", "layout")) + scalesim_version()
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    cached = cache / f"{key}.json"
    if use_cache and cached.exists():
        shutil.rmtree(work, ignore_errors=True)
        return key, json.loads(cached.read_text())
    cmd = [sys.executable, "-m", "scalesim.scale", "-c", str(files["cfg"]), "-t", str(files["topology"]),
           "-l", str(files["layout"]), "-p", str(work / "out")]
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return key, (proc, work, files["run_name"])


def _finish(key, started, layers, cache_dir, timeout):
    """Wait for a started SCALE-Sim run, parse and cache its reports, delete its (large) traces."""
    if isinstance(started, list):
        return started
    proc, work, run_name = started
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        shutil.rmtree(work, ignore_errors=True)
        raise RuntimeError(f"SCALE-Sim took longer than {timeout} s; use smaller layers") from None
    run_dir = work / "out" / run_name
    if proc.returncode != 0 or not (run_dir / "COMPUTE_REPORT.csv").exists():
        shutil.rmtree(work, ignore_errors=True)
        raise RuntimeError(f"SCALE-Sim failed (exit {proc.returncode}); last output:\n{log[-2000:]}")
    results = parse_reports(run_dir)
    shutil.rmtree(work, ignore_errors=True)
    if len(results) != len(layers):
        raise RuntimeError(f"SCALE-Sim reported {len(results)} layers, expected {len(layers)}")
    for layer, r in zip(layers, results, strict=True):
        r["layer"] = layer.name
    (_cache_dir(cache_dir) / f"{key}.json").write_text(json.dumps(results))
    return results


def run_scalesim(layers=None, dataflows=("ws", "os"), rows: int = 16, cols: int = 16, sram_kb: int = 64,
                 cache_dir=None, use_cache: bool = True, timeout: float = 900) -> dict[str, list[dict]]:
    """Run `python -m scalesim.scale` once per dataflow (in parallel); {dataflow: per-layer report dicts}.

    Results are cached in cache_dir ($PF_SCALESIM_CACHE or <tmp>/pytorch_fpga_scalesim) under a hash of the
    input files and the scalesim version; use_cache=False always runs SCALE-Sim.
    """
    layers = list(layers or default_layers())
    dataflows = (dataflows,) if isinstance(dataflows, str) else tuple(dataflows)
    started = {df: _start(layers, df, rows, cols, sram_kb, cache_dir, use_cache) for df in dataflows}
    return {df: _finish(key, s, layers, cache_dir, timeout) for df, (key, s) in started.items()}


# --- SCALE-Sim's model in closed form ----------------------------------------------------------------------
def scalesim_gemm(layer: ConvLayer) -> dfl.GemmShape:
    """The GEMM SCALE-Sim runs for one group of `layer`: like layer.gemm, but Ho = ceil((H - kh + s) / s)."""
    (H, W, kh, kw, C, Co, s), groups = topology_row(layer)
    Ho, Wo = math.ceil((H - kh + s) / s), math.ceil((W - kw + s) / s)
    return dfl.GemmShape(Ho * Wo, kh * kw * C, Co, groups)


def scalesim_like_cycles(M: int, K: int, N: int, rows: int, cols: int, dataflow: str = "ws") -> int:
    """SCALE-Sim 3.0's "Total Cycles" for a stall-free GEMM: F * (T + 2R + C - 2) - 1 (ws, is; os: T + R + C - 2)."""
    F = dfl.num_folds(M, K, N, rows, cols, dataflow)
    if dataflow == "ws":
        return F * (M + 2 * rows + cols - 2) - 1
    if dataflow == "os":
        return F * (K + rows + cols - 2) - 1
    return F * (N + 2 * rows + cols - 2) - 1


def scalesim_like_sram(M: int, K: int, N: int, rows: int, cols: int, dataflow: str = "ws") -> dict:
    """SCALE-Sim's SRAM ifmap/filter reads and ofmap writes: our buffer counts, plus its os off-by-(R+C) per fold."""
    acc = dfl.access_counts(M, K, N, rows, cols, dataflow)
    y = acc["Y"].buf_writes
    if dataflow == "os":
        y += dfl.num_folds(M, K, N, rows, cols, "os") * (rows + cols)
    return {"sram_ifmap_reads": acc["X"].buf_reads, "sram_filter_reads": acc["W"].buf_reads, "sram_ofmap_writes": y}


# --- the comparison ------------------------------------------------------------------------------------------
def compare(results: dict | None = None, layers=None, rows: int = 16, cols: int = 16) -> list[dict]:
    """Rows of {layer, dataflow, M, K, N, groups, ours, scalesim, ratio, scalesim_like, ...} per layer and dataflow.

    results: {dataflow: per-layer SCALE-Sim reports} (from run_scalesim); default the committed JSON.
    ours is pf.dataflow.conv_cycles (ws = the RTL's exact count); scalesim is SCALE-Sim's Total Cycles times
    the number of identical groups; scalesim_like is scalesim_like_cycles on scalesim_gemm's shape (M_scalesim),
    which equals it exactly; sram_exact says scalesim_like_sram equals its SRAM counters.
    """
    if results is None:
        ref = load_reference()
        results, layers, rows, cols = ref["results"], ref_layers(ref), ref["rows"], ref["cols"]
    layers = list(layers or default_layers())
    table = []
    for df, reports in results.items():
        for layer, rep in zip(layers, reports, strict=True):
            g, gs = layer.gemm, scalesim_gemm(layer)
            ours = dfl.conv_cycles(g, rows, cols, df)
            theirs = g.groups * rep["cycles"]
            like = g.groups * scalesim_like_cycles(gs.M, gs.K, gs.N, rows, cols, df)
            acc = dfl.access_counts(g.M, g.K, g.N, rows, cols, df)
            sram = scalesim_like_sram(gs.M, gs.K, gs.N, rows, cols, df)
            table.append({
                "layer": layer.name, "dataflow": df, "M": g.M, "K": g.K, "N": g.N, "groups": g.groups,
                "M_scalesim": gs.M,
                "ours": ours, "scalesim": theirs, "ratio": ours / theirs, "scalesim_like": like,
                "exact": like == theirs, "stalls": rep["stalls"],
                "ours_util": g.macs / (rows * cols * ours), "scalesim_util": g.macs / (rows * cols * theirs),
                "x_reads_ours": g.groups * acc["X"].buf_reads, "x_reads_scalesim": g.groups * rep["sram_ifmap_reads"],
                "w_reads_ours": g.groups * acc["W"].buf_reads, "w_reads_scalesim": g.groups * rep["sram_filter_reads"],
                "y_writes_ours": g.groups * acc["Y"].buf_writes,
                "y_writes_scalesim": g.groups * rep["sram_ofmap_writes"],
                "sram_exact": all(sram[k] == rep[k] for k in sram),
            })
    return table


def format_table(table) -> str:
    """A fixed-width text table of compare()'s rows."""
    head = (f"{'layer':24s} {'df':3s} {'M':>5s} {'M_ss':>5s} {'K':>5s} {'N':>4s} {'g':>4s} {'ours':>9s} "
            f"{'SCALE-Sim':>10s} {'ratio':>6s} {'like':>10s} {'exact':>5s}")
    lines = [head, "-" * len(head)]
    for r in table:
        lines.append(f"{r['layer']:24s} {r['dataflow']:3s} {r['M']:5d} {r['M_scalesim']:5d} {r['K']:5d} {r['N']:4d} "
                     f"{r['groups']:4d} {r['ours']:9d} {r['scalesim']:10d} {r['ratio']:6.3f} {r['scalesim_like']:10d} "
                     f"{'yes' if r['exact'] else 'NO':>5s}")
    return "\n".join(lines)


# --- the committed reference ---------------------------------------------------------------------------------
def _layer_dict(layer: ConvLayer) -> dict:
    return {k: getattr(layer, k) for k in ("name", "C", "H", "W", "O", "kh", "kw", "stride", "padding",
                                           "dilation", "groups", "batch")}


def ref_layers(ref: dict) -> list[ConvLayer]:
    """The ConvLayers stored in a reference dict."""
    return [ConvLayer(**{k: v for k, v in d.items() if k != "note"}) for d in ref["layers"]]


def regenerate_reference(path=REFERENCE_JSON, rows: int = 16, cols: int = 16, dataflows=SCALESIM_DATAFLOWS,
                         use_cache: bool = False) -> dict:
    """Run SCALE-Sim on LAYERS and write the results JSON that notebooks read instead of running it."""
    layers = default_layers()
    results = run_scalesim(layers, dataflows, rows, cols, use_cache=use_cache)
    notes = dict((layer.name, note) for layer, note in LAYERS)
    ref = {"scalesim_version": scalesim_version(), "rows": rows, "cols": cols, "sram_kb": 64,
           "command": "python -m scalesim.scale -c CFG -t TOPO -l LAYOUT -p OUTDIR (see pf.scalesim_ref)",
           "layers": [{**_layer_dict(layer), "note": notes[layer.name]} for layer in layers],
           "results": {df: [{k: r[k] for k in ["layer", *_REPORT_KEYS]} for r in results[df]] for df in dataflows}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(_dump(ref))
    return ref


def _dump(ref: dict) -> str:
    """JSON with one layer / one report per line (small, diff-friendly)."""
    lines = ["{"]
    for key in ("scalesim_version", "rows", "cols", "sram_kb", "command"):
        lines.append(f" {json.dumps(key)}: {json.dumps(ref[key])},")
    lines += [' "layers": [', ",\n".join(f"  {json.dumps(d)}" for d in ref["layers"]), " ],", ' "results": {']
    blocks = [f"  {json.dumps(df)}: [\n" + ",\n".join(f"   {json.dumps(r)}" for r in reps) + "\n  ]"
              for df, reps in ref["results"].items()]
    lines += [",\n".join(blocks), " }", "}"]
    return "\n".join(lines) + "\n"


def load_reference(path=REFERENCE_JSON) -> dict:
    """The committed SCALE-Sim results (pytorch_fpga/data/scalesim_16x16.json)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; regenerate it with pf.scalesim_ref.regenerate_reference()")
    return json.loads(path.read_text())


def summary(table=None) -> dict:
    """Per dataflow: how many layers SCALE-Sim's count equals scalesim_like_cycles, and the mean ours/theirs ratio."""
    table = table if table is not None else compare()
    out = {}
    for df in dict.fromkeys(r["dataflow"] for r in table):
        rows = [r for r in table if r["dataflow"] == df]
        out[df] = {"layers": len(rows), "exact": sum(r["exact"] for r in rows),
                   "geomean_ratio": math.exp(sum(math.log(r["ratio"]) for r in rows) / len(rows))}
    return out
