"""Charts of the three dataflows, drawn from pf.dataflow's own numbers (never a copy of its formulas).

    plot_utilization_vs_shape(...)    utilization vs M, K or N per dataflow (pf.dataflow.utilization_sweep)
    reuse_table(...), plot_reuse(...) per-operand buffer and DRAM accesses and reuse (pf.dataflow.access_counts)
    plot_layer_cycles(table)          per-layer cycles: dataflows side by side (pf.dataflow.layer_table) or
                                      ours vs SCALE-Sim (pf.scalesim_ref.compare)

Artists that tests (and curious readers) can find by gid: plot_utilization_vs_shape's lines 'util-{dataflow}';
plot_reuse's bars '{panel}-{dataflow}-{operand}' with panel 'buffer' or 'dram'; plot_layer_cycles' bar
containers are labelled, their bars' gids are '{series}-{layer}'. Module-level imports stay numpy-only.
"""
from __future__ import annotations

import math

import numpy as np

from pytorch_fpga.arch import dataflow as _dfl

__all__ = ["DATAFLOW_COLORS", "plot_utilization_vs_shape", "reuse_table", "plot_reuse", "plot_layer_cycles"]

DATAFLOW_COLORS = {"ws": "#1b9e77", "os": "#d95f02", "is": "#7570b3"}


def plot_utilization_vs_shape(values=None, dim: str = "M", M: int = 64, K: int = 150, N: int = 16, rows: int = 16,
                              cols: int = 16, dataflows=_dfl.DATAFLOWS, ax=None, sweep=None):
    """Utilization (useful MACs / (rows*cols*cycles)) vs one of M, K, N for each dataflow; returns the Figure.

    The numbers are pf.dataflow.utilization_sweep(values, dim, M, K, N, rows, cols, dataflows) (or `sweep`,
    such a dict, if given). One Line2D per dataflow, labelled (and gid'd 'util-<df>') with its name.
    """
    import matplotlib.pyplot as plt

    if sweep is None:
        if values is None:
            values = range(1, 129)
        sweep = _dfl.utilization_sweep(values, dim, M, K, N, rows, cols, dataflows)
    dim = sweep["dim"]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    v = sweep["values"]
    for df, u in sweep["utilization"].items():
        ax.plot(v, u, marker="." if len(v) <= 40 else None, ms=4, lw=1.6, color=DATAFLOW_COLORS.get(df),
                label=df, gid=f"util-{df}")
    fixed = {"M": M, "K": K, "N": N}
    fixed.pop(dim)
    ax.set_xlabel(f"{dim}  (" + ", ".join(f"{k} = {x}" for k, x in fixed.items()) + f"; {rows}x{cols} array)")
    ax.set_ylabel("utilization")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(title="dataflow", fontsize=8, title_fontsize=8)
    ax.set_title(f"utilization vs {dim}", fontsize=10)
    return ax.figure


def reuse_table(M: int, K: int, N: int, rows: int = 16, cols: int = 16, dataflows=_dfl.DATAFLOWS, mem=None) -> dict:
    """{dataflow: {operand: {'buffer', 'dram', 'buffer_reuse', 'dram_reuse'}}} from pf.dataflow.access_counts.

    buffer: accesses between the operand's on-chip buffer and the array (X, W: buffer reads; Y: result writes
    plus partial-sum reads back). dram: DRAM reads + writes (elements). reuse = M*K*N / accesses: how many MACs
    each access feeds (inf when there are no accesses).
    """
    macs = M * K * N
    out = {}
    for df in dataflows:
        acc = _dfl.access_counts(M, K, N, rows, cols, df, mem)
        out[df] = {}
        for op, a in acc.items():
            buf = a.buf_reads + (a.buf_writes if op == "Y" else 0)
            dram = a.dram_reads + a.dram_writes
            out[df][op] = {"buffer": int(buf), "dram": int(dram),
                           "buffer_reuse": macs / buf if buf else math.inf,
                           "dram_reuse": macs / dram if dram else math.inf}
    return out


def plot_reuse(M: int, K: int, N: int, rows: int = 16, cols: int = 16, dataflows=_dfl.DATAFLOWS, mem=None,
               axes=None, log: bool = True):
    """Grouped bars of per-operand accesses per dataflow: buffer<->array (left) and DRAM (right).

    Bar heights are reuse_table's 'buffer' and 'dram' counts (pf.dataflow.access_counts); the label above each
    bar is its reuse, MACs / accesses. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    table = reuse_table(M, K, N, rows, cols, dataflows, mem)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    ops = ("X", "W", "Y")
    width = 0.8 / len(dataflows)
    for ax, panel in zip(axes, ("buffer", "dram"), strict=True):
        for i, df in enumerate(dataflows):
            xs = np.arange(len(ops)) + (i - (len(dataflows) - 1) / 2) * width
            hs = [table[df][op][panel] for op in ops]
            bars = ax.bar(xs, hs, width * 0.92, color=DATAFLOW_COLORS.get(df), label=df)
            for b, op in zip(bars, ops, strict=True):
                b.set_gid(f"{panel}-{df}-{op}")
                reuse = table[df][op][f"{panel}_reuse"]
                ax.annotate(f"{reuse:.3g}x" if math.isfinite(reuse) else "-",
                            (b.get_x() + b.get_width() / 2, max(b.get_height(), 1)), ha="center", va="bottom",
                            fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(np.arange(len(ops)), [f"{op}" for op in ops])
        if log:
            ax.set_yscale("log")
            ax.set_ylim(top=ax.get_ylim()[1] * 8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylabel("accesses (elements)")
        ax.set_title(("on-chip buffer <-> array" if panel == "buffer" else "DRAM <-> buffer")
                     + "  (label: reuse = MACs / accesses)", fontsize=9)
        ax.legend(title="dataflow", fontsize=8, title_fontsize=8, loc="upper left")
    axes[0].figure.suptitle(f"memory accesses per operand: Y = X({M}x{K}) @ W({K}x{N}) on a {rows}x{cols} array, "
                            f"{M * K * N} MACs", fontsize=10)
    return axes[0].figure


def _layer_series(table, dataflows):
    """Layer names and [(label, dataflow, heights, hatch)] from a compare() table or a layer_table."""
    rows = list(table)
    if rows and "scalesim" in rows[0]:
        dfs = [d for d in dict.fromkeys(r["dataflow"] for r in rows) if dataflows is None or d in dataflows]
        layers = list(dict.fromkeys(r["layer"] for r in rows))
        by = {(r["layer"], r["dataflow"]): r for r in rows}
        series = []
        for df in dfs:
            series.append((f"{df} ours", df, [by[(la, df)]["ours"] for la in layers], None))
            series.append((f"{df} SCALE-Sim", df, [by[(la, df)]["scalesim"] for la in layers], "//"))
        return layers, series
    dfs = dataflows or [k[:-7] for k in rows[0] if k.endswith("_cycles")]
    layers = [r["layer"] for r in rows]
    return layers, [(df, df, [r[f"{df}_cycles"] for r in rows], None) for df in dfs]


def plot_layer_cycles(table=None, dataflows=None, ax=None, log: bool = True):
    """Per-layer cycles as grouped bars; returns the Figure.

    table: rows of pf.dataflow.layer_table (one bar per dataflow: '<df>_cycles') or of
    pf.scalesim_ref.compare() (two bars per dataflow: 'ours' and SCALE-Sim's 'scalesim', hatched);
    default: compare() on the committed SCALE-Sim results. dataflows picks which to show.
    """
    import matplotlib.pyplot as plt

    if table is None:
        from pytorch_fpga.arch import scalesim_ref

        table = scalesim_ref.compare()
    layers, series = _layer_series(table, dataflows)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6.5, 1.1 * len(layers) + 2), 4.0), layout="constrained")
    width = 0.84 / len(series)
    for i, (label, df, heights, hatch) in enumerate(series):
        xs = np.arange(len(layers)) + (i - (len(series) - 1) / 2) * width
        face = DATAFLOW_COLORS.get(df)
        bars = ax.bar(xs, heights, width * 0.95, label=label, color="white" if hatch else face,
                      edgecolor=face, hatch=hatch, linewidth=1.0)
        for b, la in zip(bars, layers, strict=True):
            b.set_gid(f"{label}-{la}")
    ax.set_xticks(np.arange(len(layers)), layers, rotation=30, ha="right", fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("cycles")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("cycles per layer", fontsize=10)
    return ax.figure
