"""`python -m pytorch_fpga bench`: a fixed layer set on the simulated accelerator, the compiler's host work per
inference (pytorch_fpga.bench_compiler), and the tools' speeds, written as JSON.

Each layer runs with the ideal stream (a beat every cycle: rtl_cycles) and, on the Verilated RTL, behind a DDR
memory model (pytorch_fpga.sim.memory) at each of BANDWIDTHS_MB_S: cycles_at_mb_s / pe_utilization_at_mb_s.
run_goals adds issue 12's speed goals (pytorch_fpga.bench_engine): ResNet-18's convolutions at 224x224 (each distinct
shape once, weighted by its occurrences) at each bandwidth, the SCALE-Sim reference layers, a verdict per goal."""
from __future__ import annotations

import json
import platform
import time

import numpy as np

from pytorch_fpga import bench_engine as engine
from pytorch_fpga.contract import accel, dwunit, window
from pytorch_fpga.runtime import accelerator as runtime
from pytorch_fpga.runtime import backends

# (name, C, H, W, Co, kernel, stride, padding, groups): LeNet-5's convolutions and ResNet-18-style layers
LAYERS = [
    ("lenet_conv1", 1, 32, 32, 6, 5, 1, 0, 1),
    ("lenet_conv2", 6, 14, 14, 16, 5, 1, 0, 1),
    ("resnet_3x3_28x28x64", 64, 28, 28, 64, 3, 1, 1, 1),
    ("resnet_3x3_14x14x128", 128, 14, 14, 128, 3, 1, 1, 1),
    ("resnet_3x3_7x7x256", 256, 7, 7, 256, 3, 1, 1, 1),
    ("resnet_1x1_14x14x256_128", 256, 14, 14, 128, 1, 1, 0, 1),
    ("mobilenet_dw3x3_14x14x256", 256, 14, 14, 256, 3, 1, 1, 256),
]


# MM2S bandwidths swept: the HP port's 800 MB/s peak at 100 MHz and the 600-400 MB/s commonly quoted for PYNQ-Z1
# DMA transfers (quoted, not measured here; see pytorch_fpga.sim.memory)
BANDWIDTHS_MB_S = (800, 600, 400)


def layer_operands(layer, seed=0):
    """Random int8 input and weights and per-channel requantization for a bench layer."""
    from pytorch_fpga.core import quant
    name, C, H, W, Co, k, s, p, g = layer
    rng = np.random.default_rng(seed)
    X = rng.integers(-128, 128, (1, C, H, W)).astype(np.int8)
    Wt = rng.integers(-127, 128, (Co, C // g, k, k)).astype(np.int8)
    bias = rng.integers(-2**12, 2**12, Co)
    m, shift = quant.quantize_multiplier(np.full(Co, 1.0 / (64 * 128 * np.sqrt(C // g * k * k))))
    return X, Wt, dict(bias=bias, m=m, shift=shift, relu=True, stride=s, padding=p, groups=g)


def memory_sweep(hw: runtime.Accelerator, cfg: accel.AccelConfig, bandwidths=BANDWIDTHS_MB_S) -> dict:
    """{'400': (MemoryModel, Accelerator on the Verilated RTL behind it), ...}; empty on the model backend and on
    a board (its memory is real) or without bandwidths."""
    if not bandwidths or not (hw.backend.name == "verilator" or getattr(hw.backend, "virtual", False)):
        return {}
    from pytorch_fpga.sim.memory import MemoryModel
    out = {}
    for bw in bandwidths:
        mem = MemoryModel.at(bw, clock_mhz=cfg.clock_mhz)
        out[f"{bw:g}"] = (mem, runtime.Accelerator(backends.get("verilator", cfg, memory=mem), cfg))
    return out


def mode(layer, cfg) -> str:
    """'dw', 'window' or 'gemm': how the compiler runs a bench layer (dwunit.choose, then window.choose)."""
    _, C, H, W, Co, k, s, p, g = layer
    dw = g > 1 and g == C == Co
    if g != 1 and not dw:
        return "gemm"
    win = window.Window(1, H, W, C, k, k, s, 1, (p,) * 4, dw)
    if dw and dwunit.choose(win, Co, cfg):
        return "dw"
    return "window" if window.choose(win, Co, cfg) else "gemm"


def measure(layer, hw: runtime.Accelerator, ref: runtime.Accelerator, sweep: dict) -> dict:
    """One bench layer on hw (ideal stream), on the numpy model and behind each memory model of the sweep: its row."""
    cfg = hw.cfg
    X, Wt, args = layer_operands(layer)
    t0 = time.perf_counter()
    Y, rep = hw.conv2d(X, Wt, **args)
    wall = time.perf_counter() - t0
    Ym, rep_m = ref.conv2d(X, Wt, **args)
    cyc, model = rep.cycles, rep_m.cycles
    row = {
        "layer": layer[0], "shape": dict(zip(engine.FIELDS, layer[1:], strict=True)),
        "macs": rep.macs, "jobs": len(rep.jobs), "mode": mode(layer, cfg),
        "rtl_cycles": cyc, "model_cycles": model,
        "model_error": (cyc - model) / model, "pe_utilization": rep.utilization,
        "bytes_in": rep.bytes_in, "bytes_out": rep.bytes_out,
        "gops_at_clock": 2 * rep.macs / (cyc / (cfg.clock_mhz * 1e6)) / 1e9,
        "bit_exact_vs_model": bool(np.array_equal(Y, Ym)),
        "sim_wall_s": wall, "sim_cycles_per_s": cyc / wall if wall else None,
    }
    if sweep:
        reps, walls = {}, {}
        for k, (_, acc) in sweep.items():
            t0 = time.perf_counter()
            reps[k] = acc.conv2d(X, Wt, **args)
            walls[k] = time.perf_counter() - t0
        row.update({
            "cycles_at_mb_s": {k: r.cycles for k, (_, r) in reps.items()},
            "pe_utilization_at_mb_s": {k: r.utilization for k, (_, r) in reps.items()},
            "bit_exact_at_mb_s": all(np.array_equal(Yk, Ym) for Yk, _ in reps.values()),
            "sim_wall_s_at_mb_s": walls,
        })
    return engine.annotate(row, layer, cfg.rows, cfg.cols)


def _progress(items, desc: str, progress: bool):
    if not progress:
        return items
    from tqdm import tqdm
    return tqdm(items, desc=desc, unit="layer")


def run(backend="verilator", config="z1", layers=LAYERS, synth: bool = True, progress: bool = True,
        bandwidths=BANDWIDTHS_MB_S) -> dict:
    """Run every layer on `backend` and on the numpy model, and on the RTL at each MM2S bandwidth (MB/s);
    return the benchmark record."""
    cfg = accel.config(config)
    hw = runtime.Accelerator(backend, cfg)
    ref = runtime.Accelerator("model", cfg)
    sweep = memory_sweep(hw, cfg, bandwidths)
    rows = [measure(layer, hw, ref, sweep)
            for layer in _progress(layers, f"bench on {hw.backend.name} ({cfg.name})", progress)]
    record = {"config": cfg.name, "params": cfg.params(), "clock_mhz": cfg.clock_mhz, "stream_bytes_per_cycle": 8,
              "backend": hw.backend.name, "python": platform.python_version(), "layers": rows,
              "memory_models": {k: mem.as_dict() for k, (mem, _) in sweep.items()}}
    if synth:
        from pytorch_fpga.sim import synth as syn
        rep = syn.accel_report(cfg)
        record["resources"] = {k: rep[k] for k in ("resources", "utilization", "fits", "tool")}
    return record


def table(record: dict) -> str:
    """The benchmark as a text table."""
    bws = list(record.get("memory_models", {}))
    head = f"{'layer':28s} {'MACs':>11s} {'RTL cyc':>9s} {'model':>9s} {'err':>6s} {'util':>6s} {'GOPS':>6s} " \
           f"{'in KB':>7s} {'out KB':>7s} {'kcyc/s':>7s}" + "".join(f" {'cyc@' + k:>9s} {'util':>6s}" for k in bws)
    lines = [head]
    for r in record["layers"]:
        lines.append(f"{r['layer']:28s} {r['macs']:11,d} {r['rtl_cycles']:9,d} {r['model_cycles']:9,d} "
                     f"{r['model_error']:+6.1%} {r['pe_utilization']:6.1%} {r['gops_at_clock']:6.2f} "
                     f"{r['bytes_in'] / 1024:7.1f} {r['bytes_out'] / 1024:7.1f} "
                     f"{(r['sim_cycles_per_s'] or 0) / 1e3:7.0f}"
                     + "".join(f" {r['cycles_at_mb_s'][k]:9,d} {r['pe_utilization_at_mb_s'][k]:6.1%}" for k in bws))
    if bws:
        lines.append("cyc@N: RTL cycles with the input stream behind DDR at N MB/s (pytorch_fpga.sim.memory: "
                     f"first beat after {record['memory_models'][bws[0]]['first_beat_cycles']} cycles)")
    if "resources" in record:
        res, u = record["resources"]["resources"], record["resources"]["utilization"]
        lines.append(f"{record['config']} on xc7z020 (Yosys): " + ", ".join(
            f"{k} {res[k]:g} ({u[k]:.0%})" for k in ("LUT", "FF", "DSP48E1", "RAMB36")))
    return "\n".join(lines)


def run_goals(backend="verilator", config="z1", bench_rows=(), bandwidths=BANDWIDTHS_MB_S,
              progress: bool = True) -> dict:
    """Issue 12's goals (pytorch_fpga.bench_engine): ResNet-18's distinct conv shapes on the ideal stream, the model
    and each bandwidth; the SCALE-Sim reference layers on the ideal stream; a verdict per goal (bench_rows: run()'s)."""
    cfg = accel.config(config)
    hw = runtime.Accelerator(backend, cfg)
    ref = runtime.Accelerator("model", cfg)
    sweep, name, pes = memory_sweep(hw, cfg, bandwidths), hw.backend.name, cfg.rows * cfg.cols
    t0 = time.perf_counter()
    r18 = [{**measure(d["layer"], hw, ref, sweep), "count": d["count"], "names": d["names"]}
           for d in _progress(engine.distinct(engine.resnet18_convs()), "ResNet-18 convs", progress)]
    r18_wall = time.perf_counter() - t0
    refs = [measure(layer, hw, ref, {}) for layer in _progress(engine.reference_layers(), "SCALE-Sim layers", progress)]
    totals = engine.stack_totals(r18, pes)
    walls = {"ideal": sum(r["sim_wall_s"] for r in r18),
             **{k: sum(r["sim_wall_s_at_mb_s"][k] for r in r18) for k in sweep}}
    dw = next((r for r in bench_rows if r["layer"] == engine.DEPTHWISE_LAYER), None)
    every = [*bench_rows, *r18, *refs]
    goals = [*engine.goal_stack(totals, name), engine.goal_model_gap(every, name),
             engine.goal_stream([*bench_rows, *r18]), engine.goal_depthwise(dw, pes, name),
             engine.goal_scalesim(every, name)]
    return {"backend": name, "config": cfg.name,
            "resnet18": {"input": [1, 3, 224, 224], "weighting": engine.WEIGHTING, "layers": r18, "totals": totals,
                         "sim_wall_s_per_pass": walls, "wall_s": r18_wall},
            "scalesim_reference_layers": refs, "goals": goals}


def rows_table(rows, bws=()) -> str:
    """Layer rows with the goals' columns: count, mode, cycles (ideal, model, each bandwidth), stream ratio, and
    rtl_cycles / SCALE-Sim WS (S: SCALE-Sim's reference, F: the project's SCALE-Sim-like formula)."""
    head = f"{'layer':30s} {'n':>2s} {'mode':6s} {'MACs':>13s} {'RTL cyc':>9s} {'model':>9s} {'err':>6s} " \
           + "".join(f"{'cyc@' + k:>9s} " for k in bws) + (f"{'u@' + bws[0]:>6s} " if bws else f"{'util':>6s} ") \
           + f"{'in/fmW':>6s} {'SS-WS':>9s} {'rtl/SS':>8s}"
    lines = [head]
    for r in rows:
        u = r["pe_utilization_at_mb_s"][bws[0]] if bws else r["pe_utilization"]
        lines.append(f"{r['layer']:30s} {r.get('count', 1):2d} {r['mode']:6s} {r['macs']:13,d} {r['rtl_cycles']:9,d} "
                     f"{r['model_cycles']:9,d} {r['model_error']:+6.2%} "
                     + "".join(f"{r['cycles_at_mb_s'][k]:9,d} " for k in bws) + f"{u:6.1%} "
                     f"{r['stream_ratio']:6.2f} {r['scalesim_ws_cycles']:9,d}"
                     f"{'S' if r['scalesim_source'] == 'scalesim' else 'F'} {r['rtl_over_scalesim_ws']:7.3f}")
    return "\n".join(lines)


def goals_table(goals: dict, bench_rows=(), bws=()) -> str:
    """The goals section: ResNet-18's shapes, the stack totals, the SCALE-Sim layers, the bench layers, verdicts."""
    r18, t = goals["resnet18"], goals["resnet18"]["totals"]
    src = engine.SOURCES[goals["backend"]]
    bws = [k for k in bws if k in t.get("cycles_at_mb_s", {})]
    lines = [f"Issue 12 goals on {goals['config']}. RTL cyc: {src}, ideal stream; model: "
             f"{engine.SOURCES['model']}; cyc@N: {src} behind the memory model at N MB/s.",
             "ResNet-18 convolutions, 224x224, batch 1: " + r18["weighting"] + ".", rows_table(r18["layers"], bws),
             f"stack ({t['convolutions']} convs, {t['macs']:,d} MACs): RTL {t['rtl_cycles']:,d} cycles "
             f"({t['pe_utilization']:.1%}), model {t['model_cycles']:,d} ({t['model_pe_utilization']:.1%})"
             + "".join(f"; @{k} MB/s {t['cycles_at_mb_s'][k]:,d} ({t['pe_utilization_at_mb_s'][k]:.1%}, "
                       f"{t['time_ratio_at_mb_s'][k]:.3f}x)" for k in bws),
             "simulated in " + ", ".join(f"{k}: {v:.0f} s" for k, v in r18["sim_wall_s_per_pass"].items())
             + " (each distinct shape once)",
             "SCALE-Sim reference layers (ideal stream):", rows_table(goals["scalesim_reference_layers"])]
    if bench_rows:
        lines += ["bench layers:", rows_table(bench_rows, bws)]
    return "\n".join(lines + [engine.goals_table(goals["goals"])])


def main(args) -> int:
    """CLI entry: run, print the table, write JSON."""
    from pytorch_fpga import bench_compiler, bench_tools
    rec = run(args.backend, args.config, synth=not args.no_synth)
    print(table(rec))
    rec["goals"] = run_goals(args.backend, args.config, rec["layers"])
    print(goals_table(rec["goals"], rec["layers"], list(rec["memory_models"])))
    rec["compiler"] = bench_compiler.run("model", args.config)
    print(bench_compiler.table(rec["compiler"]))
    rec["tool_speeds"] = bench_tools.run()
    print(bench_tools.table(rec["tool_speeds"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rec, fh, indent=1)
        print(f"wrote {args.json}")
    rows = [*rec["layers"], *rec["goals"]["resnet18"]["layers"], *rec["goals"]["scalesim_reference_layers"]]
    return 0 if all(r["bit_exact_vs_model"] and r.get("bit_exact_at_mb_s", True) for r in rows) else 1
