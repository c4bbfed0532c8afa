"""pf.profile: where an offloaded model spends its time, layer by layer (accelerator cycles vs CPU time)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from pytorch_fpga.nn.modules import FPGAConv2d, FPGALinear, Int8Through


@dataclass
class Profile:
    """Per-layer rows (dicts) and totals; .table() for text, .to_dataframe() with pandas, .plot() for a chart."""
    rows: list
    clock_mhz: float

    @property
    def fpga_us(self) -> float:
        return sum(r["time_us"] for r in self.rows if r["where"] == "fpga")

    @property
    def cpu_us(self) -> float:
        return sum(r["time_us"] for r in self.rows if r["where"] == "cpu")

    def table(self) -> str:
        """A text table: accelerator time projected at the clock and CPU time measured here, in separate columns."""
        tot = self.fpga_us + self.cpu_us or 1.0
        lines = [f"{'layer':18s} {'type':12s} {'where':5s} {'MACs':>10s} {'cycles':>9s} {'util':>6s} "
                 f"{'in B':>8s} {'out B':>7s} {'clip in':>7s} {'sat out':>7s} {'fpga us':>9s} {'cpu us':>9s}",
                 f"{'':18s} {'':12s} {'':5s} {'':>10s} {'':>9s} {'':>6s} {'':>8s} {'':>7s} {'':>7s} {'':>7s} "
                 f"{'projected':>9s} {'measured':>9s}"]
        for r in self.rows:
            fpga = r["where"] == "fpga"
            util = f"{r['utilization']:6.1%}" if fpga else f"{'':6s}"
            clip = f"{r['inputs_clipped'] / r['inputs']:7.2%}" if fpga and r["inputs"] else f"{'':7s}"
            sat = f"{r['outputs_at_limit'] / r['outputs']:7.2%}" if fpga and r["outputs"] else f"{'':7s}"
            fpga_us = f"{r['time_us']:9.1f}" if fpga else f"{'':9s}"
            cpu_us = f"{r['time_us']:9.1f}" if not fpga else f"{'':9s}"
            lines.append(f"{r['layer'][:18]:18s} {r['type'][:12]:12s} {r['where']:5s} {r['macs']:10,d} "
                         f"{r['cycles']:9,d} {util} {r['bytes_in']:8,d} {r['bytes_out']:7,d} {clip} {sat} "
                         f"{fpga_us} {cpu_us}")
        lines.append(f"accelerator {self.fpga_us:.1f} us projected at {self.clock_mhz:g} MHz "
                     f"({self.fpga_us / tot:.0%}), CPU {self.cpu_us:.1f} us measured here ({self.cpu_us / tot:.0%}); "
                     "the host work of packing each accelerator layer's jobs is not in either column")
        return "\n".join(lines)

    def to_dataframe(self):
        """The rows as a pandas DataFrame (needs pandas)."""
        import pandas as pd
        return pd.DataFrame(self.rows)

    def plot(self, ax=None):
        """A bar chart of each layer's time, coloured by where it runs."""
        import matplotlib.pyplot as plt
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 3))
        names = [r["layer"] for r in self.rows]
        colors = ["tab:orange" if r["where"] == "fpga" else "tab:blue" for r in self.rows]
        ax.bar(range(len(names)), [r["time_us"] for r in self.rows], color=colors)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_ylabel("time (us)")
        ax.set_title(f"per-layer time: accelerator projected at {self.clock_mhz:g} MHz (orange) vs CPU measured "
                     "here (blue)")
        return ax.figure


def _wrapped(model, name: str) -> bool:
    """True for the inner module of an Int8Through (profiled through its wrapper)."""
    parent = name.rsplit(".", 1)[0] if "." in name else None
    return parent is not None and isinstance(model.get_submodule(parent), Int8Through)


def profile(model: nn.Module, x, clock_mhz: float | None = None):
    """Run `model(x)` once and report each step or layer. A pf.compile'd model reports its program's steps
    (CompiledModel.profile); a model built from FPGAConv2d / FPGALinear layers reports each leaf layer: MACs,
    cycles, PE utilization, bytes, inputs clipped when quantized, int8 outputs at the limits, time and share."""
    if hasattr(model, "compiled") and hasattr(model, "profile"):
        return model.profile(x)
    rows, hooks, t0, sat0 = [], [], {}, {}
    acc = getattr(model, "fpga_accelerator", None)
    clock = clock_mhz or (acc.cfg.clock_mhz if acc is not None else 100.0)
    leaves = [(n, m) for n, m in model.named_modules()
              if isinstance(m, (FPGAConv2d, FPGALinear, Int8Through))
              or (not list(m.children()) and not isinstance(m, nn.Identity) and not _wrapped(model, n))]

    def pre(m, i, name):
        if isinstance(m, (FPGAConv2d, FPGALinear)):
            sat0[name] = dict(m.saturation)
        t0[name] = time.perf_counter()

    def post(m, i, o, name):
        wall = time.perf_counter() - t0[name]
        if isinstance(m, (FPGAConv2d, FPGALinear)) and m.last_report is not None:
            rep = m.last_report
            cyc = rep.cycles
            sat = {k: v - sat0[name][k] for k, v in m.saturation.items()}   # this run's clipping only
            rows.append(dict(layer=name, type=type(m).__name__, where="fpga", macs=rep.macs, cycles=cyc,
                             utilization=rep.utilization, bytes_in=rep.bytes_in, bytes_out=rep.bytes_out,
                             time_us=cyc / clock, sim_wall_s=wall, **sat))
        else:
            rows.append(dict(layer=name, type=type(m).__name__, where="cpu", macs=0, cycles=0, utilization=0.0,
                             bytes_in=0, bytes_out=0, time_us=wall * 1e6, sim_wall_s=wall, inputs=0,
                             inputs_clipped=0, outputs=0, outputs_at_limit=0))

    for name, m in leaves:
        hooks.append(m.register_forward_pre_hook(lambda m, i, name=name: pre(m, i, name)))
        hooks.append(m.register_forward_hook(lambda m, i, o, name=name: post(m, i, o, name)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return Profile(rows, clock)
