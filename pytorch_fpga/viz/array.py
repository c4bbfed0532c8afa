"""Pictures of the systolic array at work: a cycle-by-cycle animator of pf.dataflow.simulate's traces.

The dataflow charts (utilization, reuse, per-layer cycles) are in pf.viz.dataflow_charts.

  Animator  (a DataflowResult from pf.dataflow.simulate(..., trace=True))
    pe_states(result, t)              the (rows, cols) PE states at cycle t: IDLE, PADDING or MAC
    draw_array_cycle(result, t, ax)   one cycle as a picture: the grid coloured by state, operands, flow arrows
    array_animator(result)            ipywidgets Play + IntSlider stepping through the cycles (live kernel)
    animate_html(result, frames)      the same as a self-contained JavaScript player (FuncAnimation.to_jshtml),
                                      which still plays in a saved notebook without a kernel

PE states. A PE is a MAC when it multiplies a real X element by a real W element this cycle (trace.active);
PADDING when a fold's wavefront passes through it but one operand is the zero padding of a partial tile
(trace.fold >= 0, not active); IDLE when no operand is there at all (trace.fold == -1: the array filling,
draining, or waiting for a weight bank).

Artists that tests (and curious readers) can find by gid: draw_array_cycle's 'pe-{r}-{c}' Rectangles (face
colour = STATE_COLORS[state]).

Module-level imports stay numpy-only; matplotlib, PIL (a matplotlib dependency) and ipywidgets are imported
where they are used.
"""
from __future__ import annotations

import numpy as np

__all__ = ["IDLE", "PADDING", "MAC", "STATE_COLORS", "STATE_NAMES", "pe_states", "draw_array_cycle",
           "array_animator", "animate_html"]

IDLE, PADDING, MAC = 0, 1, 2
STATE_NAMES = {IDLE: "idle (no operand)", PADDING: "padding (zero operand)", MAC: "MAC (useful)"}
STATE_COLORS = {IDLE: "#eeeeee", PADDING: "#fdd49e", MAC: "#8fd175"}
DATAFLOW_NAMES = {"ws": "weight-stationary", "os": "output-stationary", "is": "input-stationary"}

# Edge labels per dataflow: the stationary operand, what enters west / north, what leaves south
_FLOW = {
    "ws": dict(held="w", west="x", north="W tile load", south="psum -> Y row"),
    "os": dict(held="\u03a3", west="x", north="w", south="Y drain"),
    "is": dict(held="x", west="w", north="X tile load", south="psum -> Y col"),
}
_TEXT_ORDER = {"ws": "wxs", "os": "sxw", "is": "xws"}   # per PE: held (bold), then the two other values
_ANNOTATE_MAX = 6          # annotate PE values when max(rows, cols) <= this
_ARROWS_MAX = 12           # one edge arrow per row/column up to this size, else one arrow per side
_ON, _OFF = "#222222", "#c8c8c8"


def _trace(result):
    tr = getattr(result, "trace", None)
    if tr is None:
        raise ValueError("the result has no trace: run pf.dataflow.simulate(..., trace=True)")
    return tr


def _check_t(result, t) -> int:
    T = len(_trace(result))
    t = int(t)
    if not 0 <= t < T:
        raise ValueError(f"cycle t={t} is outside 0..{T - 1} ({T} cycles)")
    return t


def pe_states(result, t: int) -> np.ndarray:
    """(rows, cols) int array of PE states at cycle t: MAC (trace.active), PADDING (fold >= 0) or IDLE."""
    tr = _trace(result)
    t = _check_t(result, t)
    return np.where(tr.active[t], MAC, np.where(tr.fold[t] >= 0, PADDING, IDLE)).astype(np.int8)


def _folds_text(fold) -> str:
    fs = sorted(int(f) for f in np.unique(fold) if f >= 0)
    if not fs:
        return "fold -"
    return f"fold {fs[0]}" if len(fs) == 1 else "folds " + "+".join(map(str, fs))


def _status(result, t) -> str:
    tr = _trace(result)
    ex = tr.extra
    df = result.dataflow
    parts = []
    if df in ("ws", "is"):
        held = "W" if df == "ws" else "X\u1d40"
        stream = "x" if df == "ws" else "w"
        if ex["accept"][t]:
            parts.append(f"{stream} beat enters")
        if ex["load"][t]:
            parts.append(f"{held} beat shifts into a weight bank")
        if ex["emit"][t]:
            parts.append("result row leaves" if df == "ws" else "result column leaves")
    else:
        n = int(ex["emit"][t])
        if tr.fold[t][:, 0].max() >= 0 or tr.fold[t][0, :].max() >= 0:
            parts.append("x, w enter (skewed)")
        if n:
            parts.append(f"{n} result{'s' if n > 1 else ''} drain out")
    return "; ".join(parts) if parts else "no stream activity"


class _ArrayFrame:
    """The artists of one array picture, created once and updated per cycle (for the animators)."""

    def __init__(self, result, ax, annotate=None, fontsize=None):
        from matplotlib.patches import FancyArrow, Patch, Rectangle

        self.result, self.ax, self.tr = result, ax, _trace(result)
        R, C = result.rows, result.cols
        self.R, self.C = R, C
        self.flow = _FLOW[result.dataflow]
        self.annotate = max(R, C) <= _ANNOTATE_MAX if annotate is None else bool(annotate)
        big = max(R, C)
        fs = fontsize or (8.5 if big <= 4 else max(5.0, 8.5 * 4 / big))
        self.fs = fs
        fl = max(fs, 8.0)                                   # titles, labels, legend
        g = 0.24 if big <= _ARROWS_MAX else 0.08           # gap between PEs (room for the flow arrows)
        self.g = g
        u = 0.9 / _cell_inches(big)                         # margin unit: the same inches for every size
        ax.set_xlim(-1.5 * u, C + 0.2)
        ax.set_ylim(R + 0.85 * u, -0.8 * u)
        ax.set_aspect("equal")
        ax.set_axis_off()

        self.rects = np.empty((R, C), dtype=object)
        for r in range(R):
            for c in range(C):
                rect = Rectangle((c + g / 2, r + g / 2), 1 - g, 1 - g, facecolor=STATE_COLORS[IDLE],
                                 edgecolor="#777777", linewidth=0.8, gid=f"pe-{r}-{c}")
                ax.add_patch(rect)
                self.rects[r, c] = rect

        # markers between neighbouring PEs: which way the moving operands go
        small = big <= _ARROWS_MAX
        self.small = small
        if small:
            ms = 5.5 if big <= 4 else 4.0
            hx, hy = np.meshgrid(np.arange(1, C), np.arange(R) + 0.5)
            vx, vy = np.meshgrid(np.arange(C) + 0.5, np.arange(1, R))
            ax.plot(hx.ravel(), hy.ravel(), ">", ms=ms, color="#9a9a9a", ls="none", gid="flow-east")
            ax.plot(vx.ravel(), vy.ravel(), "v", ms=ms, color="#9a9a9a", ls="none", gid="flow-south")

        # edge arrows: west inputs (per row), north inputs (per column), south outputs (per column)
        k = min(u, 2.0) if small else u
        akw = dict(width=0.05 * k, head_width=0.17 * k, head_length=0.15 * k, length_includes_head=True,
                   color=_OFF, lw=0)
        self.west, self.north, self.south = [], [], []
        for y in (np.arange(R) + 0.5 if small else [R / 2]):
            self.west.append(ax.add_patch(FancyArrow(-0.55 * u, y, 0.53 * u + g / 2, 0, **akw)))
        for x in (np.arange(C) + 0.5 if small else [C / 2]):
            self.north.append(ax.add_patch(FancyArrow(x, -0.5 * u, 0, 0.48 * u + g / 2, **akw)))
            self.south.append(ax.add_patch(FancyArrow(x, R - g / 2 + 0.02, 0, 0.4 * u + g / 2, **akw)))
        lab = dict(fontsize=fl, color="#444444")
        if small:
            ax.text(-0.57 * u, g / 2 - 0.03, f"{self.flow['west']} \u2192", ha="left", va="bottom", **lab)
        else:
            ax.text(-0.57 * u, R / 2 - 0.2 * u, f"{self.flow['west']} \u2192", ha="left", va="bottom", **lab)
        ax.text(C / 2, -0.53 * u, f"{self.flow['north']} \u2193", ha="center", va="bottom", **lab)
        ax.text(C / 2, R + 0.45 * u, f"\u2193 {self.flow['south']}", ha="center", va="top", **lab)

        # per-PE text: held operand (bold), moving operands / partial sum, fold tag
        self.t_held = np.empty((R, C), dtype=object)
        self.t_mid = np.empty((R, C), dtype=object)
        self.t_low = np.empty((R, C), dtype=object)
        self.t_fold = np.empty((R, C), dtype=object)
        if self.annotate:
            for r in range(R):
                for c in range(C):
                    x0 = c + g / 2 + 0.07
                    self.t_held[r, c] = ax.text(x0, r + 0.34, "", fontsize=fs, fontweight="bold", va="center")
                    self.t_mid[r, c] = ax.text(x0, r + 0.56, "", fontsize=fs * 0.95, va="center")
                    self.t_low[r, c] = ax.text(x0, r + 0.77, "", fontsize=fs * 0.95, va="center")
                    self.t_fold[r, c] = ax.text(c + 1 - g / 2 - 0.05, r + g / 2 + 0.1, "", fontsize=fs * 0.75,
                                                ha="right", va="center", color="#666666")
        self.title = ax.set_title("", fontsize=fl + 1)
        self.status = ax.text(C / 2 - 0.65 * u, R + 0.7 * u, "", ha="center", va="top", fontsize=fl, color="#222222")
        handles = [Patch(facecolor=STATE_COLORS[s], edgecolor="#777777", label=STATE_NAMES[s])
                   for s in (MAC, PADDING, IDLE)]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False,
                  fontsize=fl * 0.9, handlelength=1.2, columnspacing=1.0)

    def update(self, t: int):
        t = _check_t(self.result, t)
        res, tr = self.result, self.tr
        st = pe_states(res, t)
        for (r, c), s in np.ndenumerate(st):
            self.rects[r, c].set_facecolor(STATE_COLORS[int(s)])
        fold = tr.fold[t]
        # edge arrows: on when an operand enters / leaves there this cycle
        live_w = fold[:, 0] >= 0
        ex = tr.extra
        if res.dataflow == "os":
            live_n = fold[0, :] >= 0
            live_s = np.full(len(self.south), int(ex["emit"][t]) > 0)
        else:
            live_n = np.full(len(self.north), bool(ex["load"][t]))
            live_s = np.full(len(self.south), bool(ex["emit"][t]))
        if not self.small:
            live_w, live_n = [live_w.any()], [np.asarray(live_n).any()]
        for arrows, live in ((self.west, live_w), (self.north, live_n), (self.south, live_s)):
            for a, on in zip(arrows, live, strict=True):
                a.set_color(_ON if on else _OFF)
        if self.annotate:
            x, w, ps = tr.x[t], tr.w[t], tr.psum[t]
            for r, c in np.ndindex(st.shape):
                here = fold[r, c] >= 0
                col = "#111111" if here else "#9a9a9a"
                vals = {"x": f"x {x[r, c]}", "w": f"w {w[r, c]}", "s": f"\u03a3 {ps[r, c]}"}
                held, mid, low = (vals[k] for k in _TEXT_ORDER[res.dataflow])
                mid, low = (mid, low) if here else ("", "")
                self.t_held[r, c].set_text(held)
                self.t_held[r, c].set_color(col)
                self.t_mid[r, c].set_text(mid)
                self.t_low[r, c].set_text(low)
                self.t_fold[r, c].set_text(f"f{fold[r, c]}" if here else "")
        T = len(tr)
        self.title.set_text(f"{DATAFLOW_NAMES[res.dataflow]} ({res.dataflow}), {self.R}x{self.C} array, "
                            f"Y = X({res.M}x{res.K}) @ W({res.K}x{res.N})\n"
                            f"cycle {t} of 0..{T - 1}   {_folds_text(fold)}   MACs this cycle: "
                            f"{int((st == MAC).sum())}")
        self.status.set_text(_status(res, t))
        return self


def _cell_inches(big: int) -> float:
    """Inches per PE in the figures this module makes (0.9 for arrays up to 4x4, smaller beyond)."""
    return min(0.9, max(0.22, 4.0 / big))


def _figsize(result):
    cell = _cell_inches(max(result.rows, result.cols))
    u = 0.9 / cell
    return (result.cols + 1.7 * u) * cell + 0.2, (result.rows + 1.65 * u) * cell + 0.85


def draw_array_cycle(result, t: int, ax=None, annotate=None, fontsize=None):
    """Draw the rows x cols array of a traced pf.dataflow.simulate result at cycle t; returns the Figure.

    Each PE is coloured by its state (MAC / padding / idle, see pe_states); for small arrays (max(rows, cols)
    <= 6, or annotate=True) it shows the stationary operand in bold (ws: w, is: x, os: the accumulator
    \u03a3), the operands passing through and the partial sum, and a tag f<n> with the fold the operation
    belongs to. Grey arrows between PEs show which way data moves; the edge arrows turn dark in the cycles an
    operand enters (west, north) or a result leaves (south). The title gives the cycle and the folds in flight.
    """
    t = _check_t(result, t)
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=_figsize(result), layout="constrained")
    _ArrayFrame(result, ax, annotate, fontsize).update(t)
    return ax.figure


def _palette_png(fig, fname, dpi=None, colors: int = 64) -> None:
    """Draw fig and write it as an adaptive-palette PNG (about 4x smaller than matplotlib's RGBA PNG)."""
    from PIL import Image

    if dpi not in (None, "figure") and dpi != fig.dpi:
        fig.set_dpi(dpi)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    Image.fromarray(rgb).quantize(colors, method=Image.Quantize.MEDIANCUT).save(fname, format="png", optimize=True)


def _detached_figure(figsize, dpi):
    """A Figure not managed by pyplot (notebooks do not display it by themselves) whose PNGs are palette PNGs.

    Its canvas skips draw_idle (FuncAnimation would otherwise draw every frame twice) and its savefig writes
    PNGs through _palette_png, so the frames FuncAnimation.to_jshtml embeds stay small.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    canvas.draw_idle = lambda *args, **kwargs: None
    plain_savefig = fig.savefig

    def savefig(fname, *, format=None, dpi=None, **kwargs):
        kwargs.pop("transparent", None)                  # FuncAnimation.save asks for an opaque white
        face = kwargs.pop("facecolor", None)             # background, which this figure already has
        if (format or "png") == "png" and not kwargs:
            return _palette_png(fig, fname, dpi)
        kwargs.update({} if face is None else {"facecolor": face})
        return plain_savefig(fname, format=format, dpi=dpi, **kwargs)

    fig.savefig = savefig
    return fig


def _freeze_layout(fig):
    """Run the constrained layout once, then keep the axes where they are (frames redraw much faster)."""
    fig.canvas.draw()
    fig.set_layout_engine("none")


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def array_animator(result, t: int = 0, interval: int = 500, dpi: int = 72, annotate=None):
    """Play button + cycle slider stepping a traced result through its cycles; returns an ipywidgets VBox.

    The slider runs over 0..cycles-1 (one position per recorded cycle); Play advances it every `interval`
    ms. Each position redraws draw_array_cycle's picture as a PNG in an Image widget. The box has .play,
    .slider, .image, .figure and .show(t). Needs a running kernel to react.
    """
    import ipywidgets as widgets

    T = len(_trace(result))
    t = _check_t(result, t)
    fig = _detached_figure(_figsize(result), dpi)
    frame = _ArrayFrame(result, fig.add_subplot(), annotate).update(t)
    _freeze_layout(fig)
    play = widgets.Play(value=t, min=0, max=T - 1, step=1, interval=int(interval), description="play")
    slider = widgets.IntSlider(value=t, min=0, max=T - 1, step=1, description="cycle",
                               continuous_update=True, layout=widgets.Layout(width="420px"))
    widgets.jslink((play, "value"), (slider, "value"))
    image = widgets.Image(format="png")

    def show(cycle):
        frame.update(int(cycle))
        image.value = _png(fig)

    slider.observe(lambda change: show(change["new"]), "value")
    show(t)
    box = widgets.VBox([widgets.HBox([play, slider]), image])
    box.play, box.slider, box.image, box.figure, box.show = play, slider, image, fig, show
    return box


def _frames(T: int, frames, max_frames: int) -> list[int]:
    if frames is None:
        frames = T if T <= max_frames else max_frames
    if isinstance(frames, (int, np.integer)):
        n = int(frames)
        if n < 1:
            raise ValueError(f"frames must be >= 1, got {n}")
        return sorted({int(round(v)) for v in np.linspace(0, T - 1, min(n, T))})
    out = [int(f) for f in frames]
    bad = [f for f in out if not 0 <= f < T]
    if bad or not out:
        raise ValueError(f"frames must be cycles in 0..{T - 1}; got {bad or 'none'}")
    return out


def animate_html(result, frames=None, interval: int = 600, dpi: int = 72, annotate=None,
                 max_frames: int = 25) -> str:
    """A self-contained HTML/JavaScript player of the array's cycles (matplotlib FuncAnimation.to_jshtml).

    frames: None (every cycle, or max_frames evenly spaced ones if there are more), an int (that many evenly
    spaced cycles) or a list of cycles. The frames are embedded PNGs, so keep arrays small and dpi low (a 4x4
    array, 21 frames at dpi 72 is ~0.25 MB). No ffmpeg needed; display it with IPython.display.HTML(...).
    """
    from matplotlib.animation import FuncAnimation

    T = len(_trace(result))
    cycles = _frames(T, frames, max_frames)
    fig = _detached_figure(_figsize(result), dpi)
    frame = _ArrayFrame(result, fig.add_subplot(), annotate).update(cycles[0])
    _freeze_layout(fig)

    def step(t):
        frame.update(t)
        return []

    anim = FuncAnimation(fig, step, frames=cycles, init_func=lambda: [], interval=interval, blit=False,
                         repeat=True)
    return anim.to_jshtml(fps=1000.0 / interval, default_mode="once")
