"""Waveforms of the simulated RTL: read a cocotb run's VCD dump with vcdvcd, sample it per cycle, draw it.

    vcd = cocotb_runner.run_with_waves("pe", ["pe"], "test_pe", parameters={"USE_DSP": 1},
                                       test_dir=tools.TB_DIR / "pe", testcase="mac_random_and_extremes")
    w = load_vcd(vcd, ["clk", "a_in", "psum_in", "psum_out"])      # Waves: name -> Waveform(times, values)
    s = w.cycles(signed=True)                                      # per-cycle samples, numpy int64 arrays
    plot_waves(w, start=0, stop=12, signed=["a_in", "psum_out"])   # clock, bits as square waves, labelled buses

Per-cycle samples. Rising edges (0 -> 1 transitions in the file) are numbered 0, 1, 2, ...; cycle k is the
clock period from edge k to edge k + 1, and a signal's sample for cycle k is its value at the end of that
period, just *before* edge k + 1: what the flip-flops capture at that edge. So a register's sample in cycle
k + 1 is what it computed from its inputs' samples in cycle k. plot_waves draws cycle k between x = k and
x = k + 1, labelled k.

The dumps come from pf.sim.cocotb_runner.run_with_waves (Verilator only: cocotb's Icarus runner forces FST,
and vcdvcd reads VCD); load_vcd reads a VCD from any simulator (Icarus-style x/z values become None).

Module-level imports are numpy only; vcdvcd and matplotlib load when used.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Waveform", "Waves", "load_vcd", "plot_waves", "to_signed"]

_RANGE = re.compile(r"\[\d+:\d+\]$")        # the bit range vcdvcd appends to a vector's name: "a_in[7:0]"


def to_signed(value: int, width: int) -> int:
    """Two's-complement reading of an unsigned `width`-bit value."""
    return value - (1 << width) if value >> (width - 1) & 1 else value


# --------------------------------------------------------------------------------------------- waveforms
@dataclass
class Waveform:
    """One signal's value changes: times (int64, in the VCD's time unit) and values (int, or None for x/z)."""
    name: str        # the name it was asked for
    ref: str         # its full reference in the VCD, e.g. "pe.psum_out[31:0]"
    width: int
    times: np.ndarray
    values: list

    def _index(self, t, side: str) -> int:
        return int(np.searchsorted(self.times, t, side=side)) - 1

    def at(self, t: int) -> int | None:
        """Value in effect at time t (changes at t included); None before the first change."""
        i = self._index(t, "right")
        return None if i < 0 else self.values[i]

    def before(self, t: int) -> int | None:
        """Value just before time t (changes at t excluded): what a register clocked at t captures."""
        i = self._index(t, "left")
        return None if i < 0 else self.values[i]

    def signed(self, value: int | None) -> int | None:
        """A value of this trace read as two's complement."""
        return None if value is None else to_signed(value, self.width)

    def field(self, lsb: int, width: int, name: str | None = None) -> Waveform:
        """Bits [lsb + width - 1 : lsb] as a trace of their own (only the times where they change)."""
        if lsb < 0 or width < 1 or lsb + width > self.width:
            raise ValueError(f"bits [{lsb + width - 1}:{lsb}] are outside {self.name} ({self.width} bits)")
        mask = (1 << width) - 1
        times, values = [], []
        for t, v in zip(self.times.tolist(), self.values, strict=True):
            f = None if v is None else (v >> lsb) & mask
            if not values or f != values[-1]:
                times.append(t)
                values.append(f)
        return Waveform(name or f"{self.name}[{lsb + width - 1}:{lsb}]", f"{self.ref}[{lsb + width - 1}:{lsb}]",
                     width, np.asarray(times, np.int64), values)


def _parse_value(text: str, width: int) -> int | None:
    """A VCD scalar or vector value ('1', '0101', 'x', ...) as an int, or None when any bit is x or z."""
    text = text.lower()
    if any(ch in "xz" for ch in text):
        return None
    try:
        return int(text, 2) & ((1 << width) - 1)
    except ValueError:               # a real ('r') value: not part of our RTL
        return None


class Waves(Mapping):
    """Traces loaded from one VCD, by the names they were asked for (a read-only dict of Waveform)."""

    def __init__(self, traces: dict, path: Path, timescale: str, clock: str | None, unit_s: float = 0.0):
        self._traces = dict(traces)
        self.path = Path(path)
        self.timescale = timescale    # the VCD's time unit, e.g. "1ps"
        self.unit_s = unit_s          # the same in seconds (0 if the file has no $timescale)
        self.clock = clock            # default clock for edges(), cycles() and plot_waves()

    def __getitem__(self, name: str) -> Waveform:
        return self._traces[name]

    def __iter__(self):
        return iter(self._traces)

    def __len__(self) -> int:
        return len(self._traces)

    def __repr__(self) -> str:
        return f"Waves({list(self._traces)}, timescale={self.timescale!r}, clock={self.clock!r})"

    def add(self, trace: Waveform) -> Waveform:
        """Add a derived trace (e.g. from Waveform.field) under its name; returns it."""
        self._traces[trace.name] = trace
        return trace

    def field(self, source: str, lsb: int, width: int, name: str | None = None) -> Waveform:
        """Add bits [lsb + width - 1 : lsb] of `source` as a trace of their own (e.g. one lane of a bus)."""
        return self.add(self[source].field(lsb, width, name))

    def _clock(self, clock: str | None) -> Waveform:
        name = clock or self.clock
        if name is None or name not in self._traces:
            raise KeyError(f"clock {name!r} is not loaded; load it (load_vcd(..., clock=...)) or pass clock=")
        return self._traces[name]

    def edges(self, clock: str | None = None) -> np.ndarray:
        """Times of the clock's rising edges (0 -> 1 transitions; a clock that starts at 1 has no edge there)."""
        clk = self._clock(clock)
        v = clk.values
        return np.asarray([t for i, t in enumerate(clk.times.tolist())
                           if i > 0 and v[i] == 1 and v[i - 1] == 0], np.int64)

    def period(self, clock: str | None = None) -> int:
        """The clock period (median spacing of rising edges), in the VCD's time unit."""
        e = self.edges(clock)
        if len(e) < 2:
            raise ValueError("need at least two rising clock edges")
        return int(np.median(np.diff(e)))

    def cycles(self, signals=None, signed=False, clock: str | None = None, unknown: int | None = None) -> dict:
        """Per-cycle samples: {name: int64 array}; entry k is the value just before rising edge k + 1.

        signed: True (all), False (none) or a collection of names to read as two's complement.
        unknown: the number to put where a sample is x/z (or before the signal's first change); None raises.
        Signals wider than int64 (e.g. a whole result bus) come back as arrays of Python ints (dtype object);
        Waves.field cuts lanes out of them.
        """
        names = [n for n in (signals or self._traces) if n != (clock or self.clock)]
        signed = {signed} if isinstance(signed, str) else signed
        e = self.edges(clock).tolist()[1:]           # cycle k ends at edge k + 1
        out = {}
        for n in names:
            tr = self[n]
            want_signed = signed is True or (not isinstance(signed, bool) and n in signed)
            vals = []
            for t in e:
                v = tr.before(t)
                if v is None:
                    if unknown is None:
                        raise ValueError(f"{n} is x/z or not yet set before the edge at t={t} ({self.timescale}); "
                                         "pass unknown=<a number> to fill such samples")
                    vals.append(unknown)
                else:
                    vals.append(to_signed(v, tr.width) if want_signed else v)
            fits = tr.width < 64 or (tr.width == 64 and want_signed)
            out[n] = np.asarray(vals, np.int64 if fits else object)
        return out


def _resolve(refs: list[str], name: str) -> str:
    """The VCD reference for `name`: exact, else the shallowest reference whose trailing scopes match it."""
    if name in refs:
        return name
    hits = [r for r in refs if _RANGE.sub("", r) == name or _RANGE.sub("", r).endswith("." + name)]
    if len(hits) > 1:                       # Verilator also dumps the top's ports under "$rootio"
        hits = [r for r in hits if not r.startswith("$")] or hits
    if not hits:
        near = sorted({_RANGE.sub("", r).rsplit(".", 1)[-1] for r in refs})
        raise KeyError(f"no signal {name!r} in the VCD; signals include: {', '.join(near[:40])}")
    depth = min(r.count(".") for r in hits)
    best = [r for r in hits if r.count(".") == depth]
    if len(best) > 1:
        raise KeyError(f"{name!r} is ambiguous: {best}; give more of its hierarchy (e.g. 'u_pe.{name}')")
    return best[0]


def load_vcd(path, signals=None, clock: str | None = "clk") -> Waves:
    """Read `signals` (names, optionally with some of their hierarchy) from a VCD file with vcdvcd.

    Names match a full reference or its trailing scopes, without the bit range: "psum_out",
    "u_pe.psum_out", "g_row[0].g_col[1].u_pe.a_out". The shallowest match wins, so "clk" is the top's clock.
    signals=None loads every signal (under its full reference). The clock (if present) is always loaded.
    Returns a Waves: {name: Waveform(times, values)}, plus per-cycle sampling (Waves.cycles) and edges.
    """
    from vcdvcd import VCDVCD

    path = Path(path)
    refs = VCDVCD(str(path), only_sigs=True).signals
    names = list(refs) if signals is None else list(signals)
    if clock and clock not in names:
        try:
            _resolve(refs, clock)
            names.insert(0, clock)
        except KeyError:
            clock = None
    chosen = {n: _resolve(refs, n) for n in names}
    vcd = VCDVCD(str(path), signals=sorted(set(chosen.values())))
    ts = vcd.timescale
    timescale = f"{ts['magnitude'].normalize():f}{ts['unit']}" if ts else "?"
    unit_s = float(ts["timescale"]) if ts else 0.0
    traces = {}
    for n, ref in chosen.items():
        sig = vcd[ref]
        width = int(sig.size)
        times, values = [], []
        for t, v in sig.tv:
            val = _parse_value(v, width)
            if times and times[-1] == t:       # several changes in one time step: keep the last
                values[-1] = val
            elif not values or val != values[-1]:
                times.append(t)
                values.append(val)
        traces[n] = Waveform(n, ref, width, np.asarray(times, np.int64), values)
    return Waves(traces, path, timescale, clock, unit_s)


# --------------------------------------------------------------------------------------------- drawing
_BIT_COLOR, _CLK_COLOR, _BUS_FACE, _X_COLOR = "#1f5fa8", "#2b8a3e", "#e8f0fb", "#d62728"


def _format_time(t: int, waves: Waves) -> str:
    """A duration in VCD units as text in the largest SI unit that keeps it >= 1 (e.g. 10000 x 1ps -> '10 ns')."""
    if not waves.unit_s:
        return f"{t} x {waves.timescale}"
    sec = t * waves.unit_s
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9), ("ps", 1e-12), ("fs", 1e-15)):
        if sec >= f or unit == "fs":
            return f"{sec / f:g} {unit}"


def _time_to_cycle(edges: np.ndarray, period: int):
    """A function mapping times to (fractional) cycle numbers: edge k -> k, linear in between and beyond."""
    idx = np.arange(len(edges), dtype=float)

    def f(t):
        t = np.asarray(t, dtype=float)
        x = np.interp(t, edges, idx)
        x = np.where(t < edges[0], (t - edges[0]) / period, x)
        return np.where(t > edges[-1], idx[-1] + (t - edges[-1]) / period, x)
    return f


def _segments(tr: Waveform, t0: int, t1: int):
    """(t_start, t_end, value) pieces of a trace over [t0, t1]."""
    out, cur, start = [], tr.at(t0), t0
    for t, v in zip(tr.times.tolist(), tr.values, strict=True):
        if t0 < t < t1 and v != cur:
            out.append((start, t, cur))
            start, cur = t, v
    out.append((start, t1, cur))
    return out


def plot_waves(waves: Waves, signals=None, start: int = 0, stop: int | None = None, signed=(), hex=(),
               labels: dict | None = None, clock: str | None = None, ax=None, title: str | None = None,
               fontsize: float = 8, formats: dict | None = None):
    """Draw a digital waveform of cycles start .. stop - 1 (numbered as in Waves.cycles), edge start to edge stop.

    The clock is the top row; 1-bit signals are square waves; wider signals are buses (a hexagon per value,
    labelled in decimal, two's complement for names in `signed` (or all if signed=True), hex for names in
    `hex`, or formats[name](value) -> str). Labels that do not fit their segment are left out. x/z is red.
    labels maps a signal name to the text shown on the left. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon, Rectangle

    clk_name = clock or waves.clock
    signed = {signed} if isinstance(signed, str) else signed
    hex = {hex} if isinstance(hex, str) else hex
    edges = waves.edges(clk_name)
    if len(edges) < 2:
        raise ValueError("the waveform needs at least two rising clock edges")
    period = waves.period(clk_name)
    stop = min(len(edges) - 1, start + 16) if stop is None else stop      # exclusive, like range()
    if not 0 <= start < stop:
        raise ValueError(f"need 0 <= start < stop; got start={start}, stop={stop}")
    to_x = _time_to_cycle(edges, period)
    t0 = int(edges[start]) if start < len(edges) else int(edges[-1] + (start - len(edges) + 1) * period)
    t1 = int(edges[stop]) if stop < len(edges) else int(edges[-1] + (stop - len(edges) + 1) * period)
    names = [n for n in (signals or waves) if n != clk_name]
    rows = ([clk_name] if clk_name else []) + names
    labels, formats = dict(labels or {}), dict(formats or {})
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 0.9))
    fig = ax.figure
    ax_w_in = ax.get_position().width * fig.get_figwidth()
    char_cycles = 0.62 * fontsize / 72 * (stop - start) / max(ax_w_in, 1e-3)   # one character, in cycles
    h, gap = 0.8, 0.5
    ys = []
    for i, n in enumerate(rows):
        tr = waves[n]
        y0 = -i * (h + gap)
        ys.append(y0 + h / 2)
        if i % 2 == 0:                     # faint bands keep the rows apart
            ax.axhspan(y0 - gap / 2, y0 + h + gap / 2, color="#f4f4f4", lw=0, zorder=-1)
        segs = _segments(tr, t0, t1)
        if tr.width == 1:
            ax.plot([start, stop], [y0, y0], color="#cccccc", lw=0.6, ls="--", zorder=0)   # the 0 level
            xs, yv = [], []
            for a, b, v in segs:
                xa, xb = float(to_x(a)), float(to_x(b))
                if v is None:
                    ax.add_patch(Rectangle((xa, y0), xb - xa, h, color=_X_COLOR, alpha=0.3, lw=0))
                    continue
                xs += [xa, xb]
                yv += [y0 + h * v, y0 + h * v]
            ax.plot(xs, yv, color=_CLK_COLOR if n == clk_name else _BIT_COLOR, lw=1.4, solid_joinstyle="miter")
            continue
        want_signed = signed is True or (not isinstance(signed, bool) and n in signed)
        for a, b, v in segs:
            xa, xb = float(to_x(a)), float(to_x(b))
            d = min(0.12, (xb - xa) / 2)
            pts = [(xa, y0 + h / 2), (xa + d, y0 + h), (xb - d, y0 + h), (xb, y0 + h / 2), (xb - d, y0),
                   (xa + d, y0)]
            bad = v is None
            ax.add_patch(Polygon(pts, closed=True, facecolor=_X_COLOR if bad else _BUS_FACE,
                                 alpha=0.35 if bad else 1.0, edgecolor=_BIT_COLOR, lw=1.0))
            if bad:
                text = "x"
            elif n in formats:
                text = formats[n](v)
            elif n in hex:
                text = f"{v:0{(tr.width + 3) // 4}x}"
            else:
                text = str(to_signed(v, tr.width) if want_signed else v)
            if len(text) * char_cycles <= (xb - xa) - d:
                ax.text((xa + xb) / 2, y0 + h / 2, text, ha="center", va="center", fontsize=fontsize,
                        family="monospace")
    for k in range(start, stop + 1):                 # the rising edges
        ax.axvline(k, color="#bbbbbb", lw=0.6, ls=":", zorder=0)
    ax.set_xlim(start, stop)
    ax.set_ylim(-(len(rows) - 1) * (h + gap) - 0.3, h + 0.3)
    ax.set_yticks(ys)
    ax.set_yticklabels([labels.get(n, n) for n in rows], fontsize=fontsize + 1, family="monospace")
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel(f"clock cycle (cycle k runs from rising edge k of {clk_name} to edge k + 1; "
                  f"period {_format_time(period, waves)})")
    ax.set_xticks(range(start, stop + 1))          # edges: grid lines, no labels
    ax.set_xticklabels([])
    step = max(1, math.ceil((stop - start) / 40))
    ax.set_xticks([k + 0.5 for k in range(start, stop, step)], minor=True)   # cycles: labels in between
    ax.set_xticklabels([str(k) for k in range(start, stop, step)], minor=True)
    ax.tick_params(axis="x", which="minor", length=0)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)
    return ax
