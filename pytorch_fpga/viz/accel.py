"""Pictures and numbers of the accelerator system (rtl/conv_accel.v): block diagram, utilization, roofline.

Everything here draws from the library's own numbers (pf.accel's configurations, jobs and cycle model,
pf.systolic's fold schedule, pf.contract.regmap's stream format), never from a copy of them:

  draw_system(cfg)                 the PS + AXI DMA + conv_accel block diagram, labelled with cfg's buffer sizes
  buffer_sizes(cfg)                the on-chip buffers of a build, in bytes
  cycle_bounds(job)                lower bounds on a job's cycles: the array, the input stream, the output side
  utilization_ceiling(job)         useful MACs / (PEs x the largest of those bounds)
  shape_sweep(dim, values, ...)    utilization (pf.accel.cycle_model, i.e. the 'model' backend) and the ceiling
                                   as one of M, K, N varies
  plot_shape_sweeps(sweeps)        one panel per sweep
  roofs(cfg)                       the compute roof (2 ops per PE per cycle) and the stream roof (8 B per cycle)
  roofline_point(name, report)     one layer or job on the roofline: ops, bytes in, intensity, achieved GOPS
  roofline_table(points)           those as text
  plot_roofline(points, cfg)       the roofline chart

Operational intensity is ops (2 per MAC) per byte of the *input* stream: s_axis is the channel the array waits
on (STALL_IN); results leave on their own channel (m_axis, the DMA's S2MM side), so they do not share its
bandwidth.

Artists that tests (and curious readers) can find by gid: draw_system's blocks 'block-<name>' (FancyBboxPatch)
and arrows 'link-<name>'; plot_roofline's 'roof-compute' and 'roof-stream' lines and 'layer-<name>' markers;
plot_shape_sweeps' 'util-<dim>' and 'ceiling-<dim>' lines.

Module-level imports stay numpy-only; matplotlib is imported inside the functions that draw.
"""
from __future__ import annotations

import math

import numpy as np

from pytorch_fpga.arch import systolic
from pytorch_fpga.contract import accel, dwunit, regmap

__all__ = ["buffer_sizes", "draw_system", "cycle_bounds", "utilization_ceiling", "shape_sweep",
           "plot_shape_sweeps", "roofs", "attainable_gops", "roofline_point", "roofline_table", "plot_roofline"]

BOUND_NAMES = {"array": "array alone (folds, fill, drain)", "tile0_array": "X tile 0 in, then the array",
               "stream_in": "input stream (8 B/cycle)", "stream_out": "output side (2 channels/cycle)"}


# ---------------------------------------------------------------------------------------------- buffers
def buffer_sizes(cfg="z1") -> dict:
    """Bytes of each on-chip buffer of a build (as rtl/conv_accel.v instantiates them)."""
    cfg = accel.config(cfg)
    return {
        "X buffer (2 banks)": 2 * cfg.x_depth * cfg.rows,
        "W buffer": cfg.w_depth * cfg.cols,
        "accumulators (2 banks, int32)": 2 * cfg.acc_depth * cfg.cols * 4,
        "params {bias, m} + shift": cfg.n_max * 8 + cfg.n_max,
    }


def _kib(n: int) -> str:
    return f"{n / 1024:g} KiB"


def draw_system(cfg="z1", ax=None):
    """Block diagram: Zynq PS and DDR, the AXI DMA, and conv_accel with its sub-blocks; returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    cfg = accel.config(cfg)
    sizes = buffer_sizes(cfg)
    if ax is None:
        fig, ax = plt.subplots(figsize=(12, 6.2))
    else:
        fig = ax.figure
    ax.set(xlim=(0, 100), ylim=(0, 60), aspect="auto")
    ax.axis("off")

    def block(name, x0, y0, x1, y1, text, color, fs=8.5, bold=False, va="center", ty=None):
        p = FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0.3,rounding_size=0.8",
                           fc=color, ec="#444444", lw=1.0, gid=f"block-{name}")
        ax.add_patch(p)
        ax.text((x0 + x1) / 2, ty if ty is not None else (y0 + y1) / 2, text, ha="center", va=va, fontsize=fs,
                fontweight="bold" if bold else "normal")
        return p

    def link(name, pts, text=None, tpos=None, color="#222222", ls="-", both=False, fs=7.5, rot=0):
        for (xa, ya), (xb, yb) in zip(pts[:-2], pts[1:-1], strict=True):
            ax.plot([xa, xb], [ya, yb], color=color, ls=ls, lw=1.4)
        a = FancyArrowPatch(pts[-2], pts[-1], arrowstyle="<|-|>" if both else "-|>", mutation_scale=12,
                            color=color, lw=1.4, ls=ls, gid=f"link-{name}")
        ax.add_patch(a)
        if text:
            ax.text(*tpos, text, fontsize=fs, ha="center", va="center", color=color, rotation=rot,
                    bbox=dict(fc="white", ec="none", pad=0.5))

    # processing system and memory
    block("ps", 2, 38, 21, 56, "Zynq PS\nARM Cortex-A9\nLinux + pynq driver", "#dbe9f6", fs=9)
    block("ddr", 2, 4, 21, 22, "DDR3\nX, W, params in\nY out", "#eeeeee", fs=9)
    link("ps-ddr", [(11.5, 37.5), (11.5, 22.5)], both=True)
    # DMA
    block("dma", 28, 4, 44, 30, "AXI DMA\n(simple mode)\n\nMM2S: DDR -> stream\nS2MM: stream -> DDR",
          "#fde9c9", fs=8.5)
    link("hp", [(21.5, 13), (27.5, 13)], "AXI4\nHP port", (24.5, 17.5), both=True, fs=7)
    # the accelerator
    block("conv_accel", 49, 1.5, 98.5, 58.5, "", "#f4f9ef")
    ax.text(50.5, 56.8, f"conv_accel  ({cfg.name}: {cfg.rows}x{cfg.cols} PEs, {cfg.clock_mhz:g} MHz)",
            fontsize=9.5, fontweight="bold", va="center")
    block("regs", 53, 45, 96, 53, "conv_accel_regs (AXI4-Lite): job M, K, N, M_TILE, FLAGS; CTRL.START; STATUS;\n"
          "counters CYCLES, MAC_CYCLES, STALL_IN, STALL_OUT", "#ffffff", fs=7.5)
    block("accel_input", 53, 14, 63, 40, "accel_input\n\nparses the\nstream:\nparams,\nX tile 0,\nW,\n"
          "X tiles 1..", "#e3f1da", fs=8)
    block("xbuf", 66, 31, 78, 40, f"X buffer\n2 banks x {_kib(sizes['X buffer (2 banks)'] // 2)}\n(double-buffered)",
          "#ffffff", fs=7.5)
    block("wbuf", 66, 22, 78, 29, f"W buffer\n{_kib(sizes['W buffer'])}\n(all of W, resident)", "#ffffff", fs=7.5)
    block("params", 66, 14, 78, 20, f"params\n{_kib(sizes['params {bias, m} + shift'])}", "#ffffff", fs=7.5)
    block("accel_compute", 81, 17, 96, 40,
          f"accel_compute\n\nfeeders\n->\n{cfg.rows}x{cfg.cols} systolic\narray (WS)\n->\n"
          f"accumulators\n2 x {_kib(sizes['accumulators (2 banks, int32)'] // 2)}", "#e3f1da", fs=8)
    block("accel_output", 81, 4, 96, 13, f"accel_output\nrequant x {cfg.out_lanes} lanes\n+ ReLU -> FIFO",
          "#e3f1da", fs=8)
    # streams and control
    link("s_axis", [(44.5, 24), (52.5, 24)], "AXI4-Stream\ns_axis 64-bit", (48.5, 28), fs=7)
    link("m_axis", [(80.5, 8), (44.5, 8)], "AXI4-Stream m_axis 64-bit (tlast ends the job)", (62.5, 10), fs=7)
    link("axil", [(21.5, 50), (52.5, 50)], "AXI4-Lite (GP port): control, status, counters", (35, 52.5), fs=7)
    link("dma-ctl", [(36, 50), (36, 30.5)], "AXI4-Lite", (36, 40), fs=7, rot=90)
    for name, y in (("to-x", 35.5), ("to-w", 25.5), ("to-p", 17)):
        link(name, [(63.5, y), (65.5, y)])
    link("x-comp", [(78.5, 35.5), (80.5, 35.5)])
    link("w-comp", [(78.5, 25.5), (80.5, 25.5)])
    link("p-out", [(78.5, 17), (79.7, 17), (79.7, 11), (80.5, 11)])
    link("comp-out", [(88.5, 16.5), (88.5, 13.5)])
    ax.set_title("The accelerator system: the host streams a job through the DMA; control over AXI4-Lite",
                 fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------- utilization
def cycle_bounds(job: accel.Job) -> dict:
    """Lower bounds on a job's cycles from each resource working alone at full rate.

    array:       the job's folds (each X tile, each n-fold, each k-fold: the tile's rows) streamed back to back
                 through the array with its two weight banks, pf.systolic.ws_cycles_for_folds (no stream waits);
    tile0_array: the parameters and X tile 0 stream in first and compute waits for the whole tile, so
                 their beats come before `array` (the part of the stream the X double buffer cannot hide);
    stream_in:   the input stream's beats, one 8-byte beat a cycle;
    stream_out:  the output side, out_lanes int8 channels a cycle (int32: one beat, two channels):
                 M x n-folds x COLS / lanes.
    A depthwise-unit job: `array` is the unit's walk of positions (one a cycle), its output N channels per pixel.
    """
    cfg = job.cfg
    if job.dw_unit:                    # the depthwise unit: its walk of positions, the stream, the output lanes
        lanes = 2 if job.out_int32 else cfg.out_lanes
        return {"array": dwunit.cycle_model(job)["compute_cycles"],
                "stream_in": job.stream.size // regmap.BEAT_BYTES, "stream_out": job.M * job.N // lanes}
    fold_ms = [rows for rows in job.tiles() for _ in range(job.fn * job.fk)]
    array = systolic.ws_cycles_for_folds(fold_ms, cfg.rows, cfg.cols)
    params_beats = job.fn * (cfg.cols + cfg.cols // 8)               # pf.contract.regmap's stream format, part 1
    tile0_beats = job.x_tile_beats()[0]
    lanes = 2 if job.out_int32 else cfg.out_lanes
    return {"array": array, "tile0_array": params_beats + tile0_beats + array,
            "stream_in": job.stream.size // regmap.BEAT_BYTES,
            "stream_out": job.M * job.fn * (cfg.cols // lanes)}


def utilization_ceiling(job: accel.Job) -> float:
    """Useful MACs / (PEs x max(cycle_bounds)): no schedule of this job can do better."""
    pes = job.cfg.rows * job.cfg.cols
    return job.macs / (pes * max(cycle_bounds(job).values()))


def _zero_job(M, K, N, cfg, m_tile=None):
    return accel.pack_job(np.zeros((M, K), np.int8), np.zeros((K, N), np.int8), m=1 << 30, shift=40, cfg=cfg,
                          m_tile=m_tile)


def shape_sweep(dim: str, values, M: int = 784, K: int = 576, N: int = 64, cfg="z1") -> dict:
    """Vary one of 'M', 'K', 'N' of a GEMM job; the others fixed. Returns arrays: values, cycles (pf.accel's
    cycle model: what the 'model' backend reports; measured within 0.2% of the RTL's CYCLES at every point of
    notebook 07's sweeps, and the tests allow 1% + 8 cycles a job), utilization, ceiling, and each bound's own
    utilization limit (bound_<name>)."""
    if dim not in ("M", "K", "N"):
        raise ValueError(f"dim must be 'M', 'K' or 'N', got {dim!r}")
    cfg = accel.config(cfg)
    pes = cfg.rows * cfg.cols
    out = {"dim": dim, "fixed": {"M": M, "K": K, "N": N}, "values": np.asarray(list(values), int)}
    cols = {k: [] for k in ("cycles", "utilization", "ceiling", *(f"bound_{b}" for b in BOUND_NAMES))}
    for v in out["values"]:
        shape = dict(M=M, K=K, N=N)
        shape[dim] = int(v)
        job = _zero_job(shape["M"], shape["K"], shape["N"], cfg)
        macs = shape["M"] * shape["K"] * shape["N"]
        cyc = accel.cycle_model(job)["cycles"]
        cols["cycles"].append(cyc)
        cols["utilization"].append(macs / (pes * cyc))
        b = cycle_bounds(job)
        cols["ceiling"].append(macs / (pes * max(b.values())))
        for name, c in b.items():
            cols[f"bound_{name}"].append(macs / (pes * c))
    out.update({k: np.asarray(v) for k, v in cols.items()})
    return out


def plot_shape_sweeps(sweeps, axes=None):
    """One panel per shape_sweep result: utilization (the cycle model), the ceiling, and each bound alone."""
    import matplotlib.pyplot as plt

    sweeps = list(sweeps)
    if axes is None:
        fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.8), sharey=True, squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    colors = {"array": "#1b9e77", "tile0_array": "#66a61e", "stream_in": "#d95f02", "stream_out": "#7570b3"}
    for ax, s in zip(axes, sweeps, strict=False):
        x, dim = s["values"], s["dim"]
        for name, label in BOUND_NAMES.items():
            ax.plot(x, np.minimum(s[f"bound_{name}"], 1.05), ":", color=colors[name], lw=1.3, label=f"limit: {label}")
        ax.plot(x, s["ceiling"], "--", color="gray", lw=1.5, label="ceiling (tightest limit)", gid=f"ceiling-{dim}")
        ax.plot(x, s["utilization"], "o-", color="black", ms=3.5, lw=1.2, label="utilization (cycle model)",
                gid=f"util-{dim}")
        fixed = ", ".join(f"{k}={v}" for k, v in s["fixed"].items() if k != dim)
        ax.set(xscale="log", xlabel=dim, ylim=(0, 1.05), title=f"vary {dim} ({fixed})")
        ax.set_xticks(x[:: max(1, len(x) // 6)])
        ax.set_xticklabels([str(v) for v in x[:: max(1, len(x) // 6)]])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PE utilization")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- roofline
def roofs(cfg="z1", bytes_per_cycle: int = regmap.BEAT_BYTES) -> dict:
    """The roofline's two roofs for a build: compute (2 ops per PE per cycle) and the input stream."""
    cfg = accel.config(cfg)
    ops = 2 * cfg.rows * cfg.cols
    return {"peak_ops_per_cycle": ops, "peak_gops": ops * cfg.clock_mhz / 1e3,
            "bytes_per_cycle": bytes_per_cycle, "bandwidth_gbs": bytes_per_cycle * cfg.clock_mhz / 1e3,
            "ridge": ops / bytes_per_cycle, "clock_mhz": cfg.clock_mhz}


def attainable_gops(intensity, cfg="z1", bytes_per_cycle: int = regmap.BEAT_BYTES):
    """min(compute roof, stream bandwidth x intensity) in GOPS, intensity in ops per input byte."""
    r = roofs(cfg, bytes_per_cycle)
    return np.minimum(r["peak_gops"], r["bandwidth_gbs"] * np.asarray(intensity, float))


def _field(report, *names):
    for n in names:
        if isinstance(report, dict) and n in report:
            return report[n]
        if not isinstance(report, dict) and hasattr(report, n):
            return getattr(report, n)
    raise KeyError(f"report has none of {names}")


def roofline_point(name: str, report, cfg="z1") -> dict:
    """A layer (LayerReport), a job (JobReport) or a bench JSON row on the roofline."""
    cfg = accel.config(cfg)
    macs = int(_field(report, "macs"))
    cycles = int(_field(report, "cycles", "rtl_cycles"))
    b_in, b_out = int(_field(report, "bytes_in")), int(_field(report, "bytes_out"))
    ops = 2 * macs
    intensity = ops / b_in
    gops = ops / cycles * cfg.clock_mhz / 1e3
    roof = float(attainable_gops(intensity, cfg))
    return {"name": name, "macs": macs, "ops": ops, "cycles": cycles, "bytes_in": b_in, "bytes_out": b_out,
            "intensity": intensity, "gops": gops, "roof_gops": roof, "of_roof": gops / roof,
            "bound": "compute" if intensity >= roofs(cfg)["ridge"] else "stream"}


def roofline_table(points) -> str:
    """The roofline points as a text table."""
    lines = [f"{'layer':28s} {'ops/B':>7s} {'GOPS':>6s} {'roof':>6s} {'of roof':>7s}  bound"]
    for p in points:
        lines.append(f"{p['name']:28s} {p['intensity']:7.1f} {p['gops']:6.2f} {p['roof_gops']:6.2f} "
                     f"{p['of_roof']:7.1%}  {p['bound']}")
    return "\n".join(lines)


def plot_roofline(points, cfg="z1", ax=None, title=None, xlim=(0.5, 2000)):
    """The roofline of a build with the points (roofline_point dicts) placed on it; returns the Figure."""
    import matplotlib.pyplot as plt

    cfg = accel.config(cfg)
    r = roofs(cfg)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8.5, 5.2))
    else:
        fig = ax.figure
    lo, hi, ridge = math.log10(xlim[0]), math.log10(xlim[1]), r["ridge"]
    xs = np.logspace(lo, math.log10(ridge), 200)            # the roof is min(stream, compute): draw each part
    xc = np.logspace(math.log10(ridge), hi, 200)            # where it binds, and faint extensions beyond
    ax.plot(xc, np.full_like(xc, r["peak_gops"]), color="#1b9e77", lw=2.2, gid="roof-compute",
            label=f"compute roof: 2 x {cfg.rows * cfg.cols} ops/cycle x {cfg.clock_mhz:g} MHz = "
                  f"{r['peak_gops']:g} GOPS")
    ax.plot(xs, r["bandwidth_gbs"] * xs, color="#d95f02", lw=2.2, gid="roof-stream",
            label=f"stream roof: {r['bytes_per_cycle']} B/cycle x {cfg.clock_mhz:g} MHz = "
                  f"{r['bandwidth_gbs'] * 1e3:g} MB/s")
    ax.plot(xs, np.full_like(xs, r["peak_gops"]), color="#1b9e77", lw=1, ls="--", alpha=0.4)
    ax.plot(xc, r["bandwidth_gbs"] * xc, color="#d95f02", lw=1, ls="--", alpha=0.4)
    ax.axvline(ridge, color="gray", ls=":", lw=1)
    ax.text(ridge * 1.08, r["peak_gops"] * 1.4, f"ridge: {ridge:g} ops/B", fontsize=8, color="gray")
    markers = "osD^vP*Xhp<>"
    for i, p in enumerate(points):
        ax.plot([p["intensity"]] * 2, [p["gops"], p["roof_gops"]], color="#999999", lw=0.8)
        ax.plot(p["intensity"], p["gops"], markers[i % len(markers)], ms=8, mec="black", mew=0.6,
                gid=f"layer-{p['name']}", label=f"{p['name']} ({p['of_roof']:.0%} of roof)")
    ax.set(xscale="log", yscale="log", xlim=xlim, ylim=(r["peak_gops"] / 200, r["peak_gops"] * 2.5),
           xlabel="operational intensity (ops per byte streamed in)", ylabel="GOPS at the clock")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7.5, loc="lower right")
    ax.set_title(title or f"Roofline of conv_accel ({cfg.name})", fontsize=10)
    fig.tight_layout()
    return fig
