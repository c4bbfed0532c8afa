"""Buffer sizes chosen with the cycle model: ResNet-18's convolutions against the XC7Z020's 140 RAMB36.

`python -m pytorch_fpga sizing` sweeps the X, W and accumulator depths of the z1 array, predicts the stack's
cycles with pf.accel.cycle_model (window mode where pf.contract.window.choose takes it, else GEMM jobs; ideal
stream) and estimates each build's block RAM with the aspect ratios of a RAMB36E1 (7-series UG473: 32K x 1 ...
512 x 72). Both are estimates: the RAM count is checked against Yosys's at the z1 point by tests/test_sizing.py.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math

from pytorch_fpga import bench_engine
from pytorch_fpga.contract import accel, dwunit, window
from pytorch_fpga.core import conv

RAMB36_SHAPES = ((1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024), (72, 512))  # (width, depth)
RAMB36_BUDGET = 140                      # XC7Z020
OTHER_RAMB36 = 4                         # assumed for the rest of the overlay (AXI DMA FIFOs); not from a build


def ramb36(width_bits: int, depth: int) -> int:
    """RAMB36s of a width x depth simple dual-port memory, the best aspect ratio (no RAMB18 halves)."""
    return min(math.ceil(width_bits / w) * math.ceil(depth / d) for w, d in RAMB36_SHAPES)


def brams(cfg) -> dict:
    """RAMB36 estimate per buffer of a build (as rtl/conv_accel.v instantiates them)."""
    c = accel.config(cfg)
    return {"x": ramb36(c.rows * 8, 2 * c.x_depth), "w": ramb36(c.cols * 8, c.w_depth),
            "acc": 2 * ramb36(c.cols * 32, c.acc_depth), "params": ramb36(64, c.n_max) + ramb36(64, c.n_max // 8),
            "out": ramb36(64, c.out_depth), "dw_line": ramb36(128, c.dw_lb_depth) if c.dw_ch else 0}


@functools.cache
def layer_cycles(layer: tuple, cfg: accel.AccelConfig) -> tuple[int, str]:
    """(predicted cycles, 'dw', 'window' or 'gemm') of one bench layer on build cfg."""
    _, C, H, W, Co, k, s, p, g = layer
    win = window.Window(1, H, W, C, k, k, s, 1, (p, p, p, p), depthwise=g > 1)
    try:
        if win.depthwise and dwunit.choose(win, Co, cfg):
            return dwunit.job_cycles(win, cfg), "dw"
        if window.choose(win, Co, cfg):
            return window.job_cycles(win, Co, cfg), "window"
        return window.gemm_cycles(win, Co, cfg), "gemm"
    except ValueError as e:                  # a layer this build cannot take at all
        return math.inf, f"does not fit: {e}"


def stack(cfg, layers=None) -> dict:
    """ResNet-18's convolutions on build cfg: predicted cycles, PE utilization, RAMB36 estimate."""
    cfg = accel.config(cfg)
    groups = bench_engine.distinct(layers or bench_engine.resnet18_convs())
    cycles = sum(d["count"] * layer_cycles(d["layer"], cfg)[0] for d in groups)
    macs = sum(d["count"] * conv.conv2d_macs((1, C, H, W), (Co, C // g, k, k), s, p, 1, g)
               for d in groups for _, C, H, W, Co, k, s, p, g in [d["layer"]])
    ram = brams(cfg)
    total = sum(ram.values()) + OTHER_RAMB36
    return {"config": {k: getattr(cfg, k) for k in ("x_depth", "w_depth", "acc_depth")}, "cycles": cycles,
            "utilization": bench_engine.utilization(macs, cycles, cfg.rows * cfg.cols) if cycles < math.inf else 0.0,
            "ramb36": ram, "ramb36_total": total, "fits": total <= RAMB36_BUDGET}


def sweep(x_depths=(1024, 2048, 4096, 8192), w_depths=(4096, 8192, 16384, 32768), acc_depths=(256, 512, 1024),
          base="z1") -> list[dict]:
    """stack() for every combination of depths around the base build, fastest first."""
    b = accel.config(base)
    rows = [stack(dataclasses.replace(b, name=f"{base}-x{x}-w{w}-a{a}", x_depth=x, w_depth=w, acc_depth=a))
            for x, w, a in itertools.product(x_depths, w_depths, acc_depths)]
    return sorted(rows, key=lambda r: (r["cycles"], r["ramb36_total"]))


def best(rows) -> dict:
    """The fastest build that fits the RAMB36 budget (fewest RAMB36 among equally fast ones)."""
    return min((r for r in rows if r["fits"]), key=lambda r: (r["cycles"], r["ramb36_total"]))


def table(rows, base="z1") -> str:
    """The sweep as text, the base build and the best fitting build marked."""
    b, top = accel.config(base), best(rows)
    out = [f"{'X_DEPTH':>8s} {'W_DEPTH':>8s} {'ACC':>5s} {'cycles (model)':>15s} {'util':>6s} {'RAMB36 (est.)':>14s}"]
    for r in rows:
        c = r["config"]
        mark = (" <- z1" if (c["x_depth"], c["w_depth"], c["acc_depth"]) == (b.x_depth, b.w_depth, b.acc_depth)
                else "") + (" <- best that fits" if r is top else "") + ("" if r["fits"] else " (over 140)")
        out.append(f"{c['x_depth']:8d} {c['w_depth']:8d} {c['acc_depth']:5d} {r['cycles']:15,} "
                   f"{r['utilization']:6.1%} {r['ramb36_total']:14d}{mark}")
    out.append(f"cycles: pf.accel.cycle_model, ideal stream, ResNet-18's 20 convolutions (224x224, batch 1); "
               f"RAMB36: estimate from RAMB36E1 aspect ratios + {OTHER_RAMB36} assumed for the DMA")
    return "\n".join(out)


def main(args) -> int:
    rows = sweep()
    print(table(rows))
    return 0
