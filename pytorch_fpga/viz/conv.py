"""Pictures and widgets for the course notebooks.

Every drawing is a plain function that returns a matplotlib Figure for one fixed setting (so an executed
notebook shows a real rendered figure without a live kernel); the explorers wrap those functions in
ipywidgets sliders (they need a running kernel).

Sections
  1. Conv explorer: conv_geometry, conv_taps, draw_conv, draw_im2col, conv_explorer
  2. Systolic-array animator   (reserved)
  3. Dataflow charts           (reserved)

Module-level imports stay numpy-only so `import pytorch_fpga` needs nothing else; matplotlib and ipywidgets
are imported inside the functions that use them.

Artists that tests (and curious readers) can find by gid:
  draw_conv:   'input-grid' and 'output-grid' (frames: the grid's Rectangle sits at its top-left corner),
               'tap' / 'tap-pad' (one unit square per kernel tap, on input or on zero padding, at
               (x, y) = (padded column, padded row)), 'window' (the dilated window's extent), 'out'
               (the output element, at (output-grid x + j, i)).
  draw_im2col: the AxesImage 'im2col' (pixel numbers, -1 = padding, masked), 'row' (the highlighted row),
               'channel-c' frames, 'src' / 'src-pad' (the taps of that row on channel c's padded grid).
"""
from __future__ import annotations

import html
from collections import namedtuple

import numpy as np

from pytorch_fpga.core import conv as _conv

# =========================================================================================================
# 1. Conv explorer
# =========================================================================================================
ConvGeometry = namedtuple("ConvGeometry", "H W kh kw sh sw dh dw pt pb pl pr Hp Wp Ho Wo")
ConvGeometry.__doc__ = ("One 2-D convolution's geometry: input H x W, kernel kh x kw, stride (sh, sw), dilation "
                        "(dh, dw), padding top/bottom/left/right, padded input Hp x Wp, output Ho x Wo.")

_GAP = 3                                   # empty columns between draw_conv's input and output grids
_PAD_COLOR, _CELL_COLOR, _EDGE = "#dcdcdc", "#ffffff", "#9a9a9a"
_TAP_COLOR, _TAP_EDGE, _OUT_COLOR, _OUT_EDGE = "#fdae61", "#d7191c", "#abd9e9", "#2c7bb6"
_NONINTERACTIVE = ("agg", "pdf", "ps", "svg", "pgf", "cairo", "template")


def conv_geometry(H: int, W: int, kernel, stride=1, padding=0, dilation=1) -> ConvGeometry:
    """Resolve a single-channel conv's arguments (ints, pairs, 'same'/'valid') like pf.conv does.

    W here is the input *width*. Raises ValueError (pf.conv's message) when the output would be empty.
    """
    kh, kw = _conv._pair("kernel_size", kernel, 1)
    (sh, sw), (dh, dw) = _conv._pair("stride", stride, 1), _conv._pair("dilation", dilation, 1)
    pt, pb, pl, pr = _conv._pads(padding, (kh, kw), (sh, sw), (dh, dw))
    Ho, Wo = _conv.conv_output_size(H, W, (kh, kw), (sh, sw), padding, (dh, dw))
    return ConvGeometry(int(H), int(W), kh, kw, sh, sw, dh, dw, pt, pb, pl, pr,
                        int(H) + pt + pb, int(W) + pl + pr, Ho, Wo)


def _check_out_pos(g: ConvGeometry, out_pos) -> tuple[int, int]:
    i, j = (int(v) for v in out_pos)
    if not (0 <= i < g.Ho and 0 <= j < g.Wo):
        raise ValueError(f"out_pos={tuple(out_pos)} is outside the {g.Ho}x{g.Wo} output: need 0 <= i < {g.Ho} "
                         f"and 0 <= j < {g.Wo}")
    return i, j


def conv_taps(H: int, W: int, kernel, stride=1, padding=0, dilation=1, out_pos=(0, 0)) -> np.ndarray:
    """The input pixels output element Y[i, j] reads: a (kh*kw, 2) array of (row, col) in the *padded* input.

    Rows are in (ki, kj) order, kj fastest: the order of im2col's columns for one channel. Subtract (pt, pl)
    of conv_geometry for unpadded coordinates; anything outside [0, H) x [0, W) then is zero padding.
    """
    g = conv_geometry(H, W, kernel, stride, padding, dilation)
    i, j = _check_out_pos(g, out_pos)
    ki, kj = np.meshgrid(np.arange(g.kh), np.arange(g.kw), indexing="ij")
    return np.stack([i * g.sh + ki * g.dh, j * g.sw + kj * g.dw], axis=-1).reshape(-1, 2)


def _in_padding(g: ConvGeometry, r, c) -> bool:
    return not (g.pt <= r < g.pt + g.H and g.pl <= c < g.pl + g.W)


def _fmt_pair(a, b) -> str:
    return str(a) if a == b else f"({a}, {b})"


def _describe(g: ConvGeometry) -> str:
    pad = str(g.pt) if len({g.pt, g.pb, g.pl, g.pr}) == 1 else f"(t{g.pt} b{g.pb} l{g.pl} r{g.pr})"
    return (f"kernel {g.kh}x{g.kw}, stride {_fmt_pair(g.sh, g.sw)}, padding {pad}, "
            f"dilation {_fmt_pair(g.dh, g.dw)}")


def _grid(ax, x0, y0, rows, cols, facecolors, gid):
    """Unit cells (facecolors: rows x cols of colors) with a frame Rectangle tagged gid at (x0, y0)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    cells = [Rectangle((x0 + c, y0 + r), 1, 1) for r in range(rows) for c in range(cols)]
    ax.add_collection(PatchCollection(cells, facecolors=[facecolors[r][c] for r in range(rows)
                                                         for c in range(cols)],
                                      edgecolors=_EDGE, linewidths=0.6))
    ax.add_patch(Rectangle((x0, y0), cols, rows, fill=False, edgecolor="#555555", lw=1.2, gid=gid))


def draw_conv(H: int, W: int, kernel, stride=1, padding=0, dilation=1, out_pos=(0, 0), ax=None):
    """Draw the (padded) input, the taps output element Y[i, j] = out_pos reads, and the output; return the figure.

    One channel, H x W input (W is the width here). Grey cells are zero padding; orange squares are the
    kernel's taps (labelled with the weight index ki,kj), hatched where they land on padding; the dashed box is
    the dilated window; the blue cell is Y[i, j]. Row/column labels are unpadded input coordinates, so
    padding has negative indices. ax: an Axes to draw into (default: a new figure).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    g = conv_geometry(H, W, kernel, stride, padding, dilation)
    i, j = _check_out_pos(g, out_pos)
    taps = conv_taps(H, W, kernel, stride, padding, dilation, (i, j))
    ox = g.Wp + _GAP                                   # x of the output grid
    U, V = ox + g.Wo + 1, max(g.Hp, g.Ho) + 1.5        # drawing size in cells
    if ax is None:
        cell = min(0.42, 10.0 / U, 5.5 / V)
        fig, ax = plt.subplots(figsize=(max(U * cell + 0.6, 6.0), V * cell + 1.4))
    fig = ax.figure
    cell_in = ax.get_window_extent().width / fig.dpi / U if ax.get_window_extent().width else 0.3
    fs = float(np.clip(cell_in * 20, 5, 9))

    _grid(ax, 0, 0, g.Hp, g.Wp, [[_PAD_COLOR if _in_padding(g, r, c) else _CELL_COLOR for c in range(g.Wp)]
                                 for r in range(g.Hp)], "input-grid")
    _grid(ax, ox, 0, g.Ho, g.Wo, [[_CELL_COLOR] * g.Wo for _ in range(g.Ho)], "output-grid")
    for c in range(g.Wp):
        ax.text(c + 0.5, -0.25, str(c - g.pl), ha="center", va="bottom", fontsize=fs * 0.85, color="#555555")
    for r in range(g.Hp):
        ax.text(-0.25, r + 0.5, str(r - g.pt), ha="right", va="center", fontsize=fs * 0.85, color="#555555")
    for c in range(g.Wo):
        ax.text(ox + c + 0.5, -0.25, str(c), ha="center", va="bottom", fontsize=fs * 0.85, color="#555555")
    for r in range(g.Ho):
        ax.text(ox - 0.25, r + 0.5, str(r), ha="right", va="center", fontsize=fs * 0.85, color="#555555")

    # the dilated window, then its taps
    y0, x0 = i * g.sh, j * g.sw
    eh, ew = g.dh * (g.kh - 1) + 1, g.dw * (g.kw - 1) + 1
    ax.add_patch(Rectangle((x0 - 0.12, y0 - 0.12), ew + 0.24, eh + 0.24, fill=False, ls="--", lw=1.4,
                           edgecolor=_OUT_EDGE, gid="window"))
    for t, (r, c) in enumerate(taps):
        pad = _in_padding(g, r, c)
        ax.add_patch(Rectangle((c, r), 1, 1, facecolor=_PAD_COLOR if pad else _TAP_COLOR, edgecolor=_TAP_EDGE,
                               lw=1.6, hatch="///" if pad else None, gid="tap-pad" if pad else "tap"))
        if cell_in >= 0.22:
            ax.text(c + 0.5, r + 0.5, f"{t // g.kw},{t % g.kw}", ha="center", va="center", fontsize=fs * 0.8)
    ax.add_patch(Rectangle((ox + j, i), 1, 1, facecolor=_OUT_COLOR, edgecolor=_OUT_EDGE, lw=2, gid="out"))
    ax.annotate("", xy=(ox + j, i + 0.5), xytext=(x0 + ew + 0.15, y0 + eh / 2),
                arrowprops=dict(arrowstyle="->", color=_OUT_EDGE, lw=1.3, connectionstyle="arc3,rad=-0.15"))

    ax.text(g.Wp / 2, -1.3, f"input X ({g.H}x{g.W}, padded {g.Hp}x{g.Wp})", ha="center", fontsize=fs + 1)
    ax.text(ox + g.Wo / 2, -1.3, f"output Y ({g.Ho}x{g.Wo})", ha="center", fontsize=fs + 1)
    ax.set_xlim(-1.2, U)
    ax.set_ylim(max(g.Hp, g.Ho) + 0.3, -2.2)
    ax.set_aspect("equal")
    ax.axis("off")
    n_pad = sum(_in_padding(g, r, c) for r, c in taps)
    ax.set_title(f"{_describe(g)}\nY[{i},{j}] reads {len(taps) - n_pad} input pixels"
                 + (f" and {n_pad} zero-padding taps" if n_pad else ""), fontsize=fs + 2)
    handles = [Patch(facecolor=_CELL_COLOR, edgecolor=_EDGE, label="input pixel"),
               Patch(facecolor=_PAD_COLOR, edgecolor=_EDGE, label="zero padding"),
               Patch(facecolor=_TAP_COLOR, edgecolor=_TAP_EDGE, label="tap ki,kj (weight W[.,.,ki,kj])"),
               Patch(facecolor=_PAD_COLOR, edgecolor=_TAP_EDGE, hatch="///", label="tap on padding (reads 0)"),
               Patch(facecolor=_OUT_COLOR, edgecolor=_OUT_EDGE, label=f"output Y[{i},{j}]")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False,
              fontsize=max(fs - 0.5, 6))
    return fig


def _light_cmap():
    import matplotlib
    from matplotlib.colors import ListedColormap

    return ListedColormap(matplotlib.colormaps["YlGnBu"](np.linspace(0.04, 0.5, 256))).with_extremes(bad=_PAD_COLOR)


def draw_im2col(H: int, W: int, kernel, stride=1, padding=0, dilation=1, out_pos=(0, 0), C: int = 1, ax=None):
    """Draw pf.conv.im2col's matrix for a C x H x W input and the input pixels of output element Y[i, j]'s row.

    Every input pixel gets a number, c*H*W + h*W + w (left panel); the matrix (right panel; rows = output
    positions (y, x), Ho*Wo of them; columns = (c, ki, kj), C*kh*kw of them) shows which pixel each entry
    copies, grey where it copies zero padding. The red row belongs to out_pos; the red cells on the left are
    its source pixels. ax: None (new figure), one Axes (matrix only) or a pair (input Axes, matrix Axes).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    g = conv_geometry(H, W, kernel, stride, padding, dilation)
    i, j = _check_out_pos(g, out_pos)
    C = int(C)
    if C < 1:
        raise ValueError(f"C (input channels) must be >= 1, got {C}")
    M, K = g.Ho * g.Wo, C * g.kh * g.kw
    # The matrix itself, from the library: im2col of "pixel number + 1" (so 0 marks padding), minus 1.
    enc = np.arange(1, C * g.H * g.W + 1, dtype=np.int64).reshape(C, g.H, g.W)
    mat = _conv.im2col(enc, (g.kh, g.kw), (g.sh, g.sw), padding, (g.dh, g.dw)) - 1
    row = i * g.Wo + j
    cmap, npx = _light_cmap(), C * g.H * g.W

    if ax is None:
        ch_rows = C * (g.Hp + 1) - 1
        cm = min(0.3, 7.5 / max(M, 1), 8.0 / K)
        ci = min(0.32, 4.0 / max(g.Wp, 1), 7.5 / ch_rows)
        fig, (ax_in, ax_m) = plt.subplots(1, 2, figsize=(g.Wp * ci + K * cm + 3.2, max(ch_rows * ci, M * cm) + 2.6),
                                          gridspec_kw=dict(width_ratios=[g.Wp * ci + 0.8, K * cm + 1.2]))
    elif isinstance(ax, (tuple, list, np.ndarray)):
        ax_in, ax_m = ax
        fig = ax_m.figure
    else:
        ax_in, ax_m, fig = None, ax, ax.figure

    def cell_inches(a, n):
        w = a.get_window_extent().width / a.figure.dpi
        return w / max(n, 1)

    # --- right: the im2col matrix
    img = ax_m.imshow(np.ma.masked_less(mat, 0), cmap=cmap, vmin=0, vmax=max(npx - 1, 1), aspect="equal",
                      interpolation="nearest", extent=(0, K, M, 0))
    img.set_gid("im2col")
    cm_in = min(cell_inches(ax_m, K), ax_m.get_window_extent().height / fig.dpi / max(M, 1))
    fs = float(np.clip(cm_in * 26, 6, 8.5))
    if cm_in >= 0.16 and M * K <= 900:
        for r in range(M):
            for c in range(K):
                if mat[r, c] >= 0:
                    ax_m.text(c + 0.5, r + 0.5, str(mat[r, c]), ha="center", va="center",
                              fontsize=fs * (0.8 if mat[r, c] >= 100 else 1.0),
                              fontweight="bold" if r == row else None)
    ax_m.add_patch(Rectangle((0, row), K, 1, fill=False, edgecolor=_TAP_EDGE, lw=2.2, gid="row"))
    ax_m.set_xticks(np.arange(K) + 0.5)
    ax_m.set_xticklabels([f"{c},{a},{b}" for c in range(C) for a in range(g.kh) for b in range(g.kw)]
                         if K <= 36 else [""] * K, rotation=90, fontsize=fs)
    ax_m.xaxis.tick_top()
    ax_m.xaxis.set_label_position("top")
    ax_m.set_xlabel(f"column (c, ki, kj): K = C*kh*kw = {K}", fontsize=fs + 1.5)
    ticks = np.arange(M) if M <= 40 else np.arange(0, M, g.Wo)
    ax_m.set_yticks(ticks + 0.5)
    ax_m.set_yticklabels([f"{t // g.Wo},{t % g.Wo}" if M <= 40 else f"y={t // g.Wo}" for t in ticks], fontsize=fs)
    ax_m.set_ylabel(f"row = output position (y, x): M = Ho*Wo = {M}", fontsize=fs + 1.5)
    ax_m.tick_params(length=0)
    for k in range(1, C):                               # channel blocks
        ax_m.axvline(k * g.kh * g.kw, color="#555555", lw=1.0)
    ax_m.set_title(f"{_describe(g)}\nim2col matrix ({M} x {K}); red row = Y[{i},{j}]", fontsize=fs + 2.5, pad=10)

    # --- left: the padded input channels with pixel numbers and the row's sources
    if ax_in is not None:
        taps = conv_taps(H, W, kernel, stride, padding, dilation, (i, j))
        ci_in = cell_inches(ax_in, g.Wp + 1)
        fsi = float(np.clip(ci_in * 24, 6, 8.5))
        norm = max(npx - 1, 1)
        for c in range(C):
            y0 = c * (g.Hp + 1)
            colors = [[_PAD_COLOR if _in_padding(g, r, x)
                       else cmap((c * g.H * g.W + (r - g.pt) * g.W + (x - g.pl)) / norm)
                       for x in range(g.Wp)] for r in range(g.Hp)]
            _grid(ax_in, 0, y0, g.Hp, g.Wp, colors, f"channel-{c}")
            ax_in.text(-0.3, y0 + g.Hp / 2, f"c={c}", ha="right", va="center", fontsize=fsi + 1)
            if ci_in >= 0.16:
                for r in range(g.Hp):
                    for x in range(g.Wp):
                        if not _in_padding(g, r, x):
                            ax_in.text(x + 0.5, y0 + r + 0.5, str(c * g.H * g.W + (r - g.pt) * g.W + x - g.pl),
                                       ha="center", va="center", fontsize=fsi * 0.85)
            for r, x in taps:
                pad = _in_padding(g, r, x)
                ax_in.add_patch(Rectangle((x, y0 + r), 1, 1, fill=pad, facecolor=_PAD_COLOR, hatch="///" if pad
                                          else None, edgecolor=_TAP_EDGE, lw=2.0, gid="src-pad" if pad else "src"))
        ax_in.set_xlim(-1.4, g.Wp + 0.2)
        ax_in.set_ylim(C * (g.Hp + 1) - 0.8, -0.2)
        ax_in.set_aspect("equal")
        ax_in.set_anchor("N")
        ax_in.axis("off")
        ax_in.set_title(f"input X ({C}x{g.H}x{g.W}, padded)\npixel number c*H*W + h*W + w", fontsize=fsi + 2)
        ax_in.legend(handles=[Patch(facecolor="white", edgecolor=_TAP_EDGE, lw=2, label=f"read by Y[{i},{j}]"),
                              Patch(facecolor=_PAD_COLOR, edgecolor=_EDGE, label="zero padding")],
                     loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1, frameon=False, fontsize=fsi + 0.5)
    ax_m.set_anchor("N")
    return fig


def _show(fig):
    """Show a figure drawn inside an explorer's Output widget; close it when there is no display (headless)."""
    import matplotlib
    import matplotlib.pyplot as plt

    if matplotlib.get_backend().lower() in _NONINTERACTIVE:
        plt.close(fig)
    else:
        plt.show()


def invalid_message(H, W, kernel, stride=1, padding=0, dilation=1) -> str | None:
    """None if the conv has an output, else the explorer's explanation of why it has none."""
    try:
        conv_geometry(H, W, kernel, stride, padding, dilation)
        return None
    except ValueError as e:
        return f"Invalid combination, no output to draw: {e}"


def conv_explorer(H: int = 7, W: int = 7, kernel=3, stride: int = 1, padding: int = 1, dilation: int = 1,
                  C: int = 1, out_pos=(1, 2)):
    """Sliders for input size, kernel, stride, padding, dilation, channels and output position, redrawing
    draw_conv and draw_im2col; returns the ipywidgets VBox (display it, or make it a cell's last line).

    The output-position sliders are clamped to the output's size; an input/kernel/padding/dilation combination
    without an output shows a message instead of figures. The box has .controls (dict of sliders), .status
    (the HTML line with sizes or the message), .output (the Output widget) and .figures (the last figures).
    Needs a running kernel to react; in a static notebook you see the state it was saved in.
    """
    import ipywidgets as widgets

    kh, kw = _conv._pair("kernel", kernel, 1)

    def slider(label, value, lo, hi):
        return widgets.IntSlider(value=value, min=lo, max=max(hi, value), description=label,
                                 continuous_update=False, style={"description_width": "120px"},
                                 layout=widgets.Layout(width="330px"))

    controls = {"H": slider("input height H", H, 1, 12), "W": slider("input width W", W, 1, 12),
                "kh": slider("kernel height kh", kh, 1, 5), "kw": slider("kernel width kw", kw, 1, 5),
                "stride": slider("stride", stride, 1, 4), "padding": slider("padding", padding, 0, 3),
                "dilation": slider("dilation", dilation, 1, 3), "C": slider("channels C (im2col)", C, 1, 3),
                "i": slider("output row i", out_pos[0], 0, 11), "j": slider("output col j", out_pos[1], 0, 11)}
    status = widgets.HTML()
    figures: list = []
    geometry_keys = ("H", "W", "kh", "kw", "stride", "padding", "dilation")

    def args(v):
        return v["H"], v["W"], (v["kh"], v["kw"]), v["stride"], v["padding"], v["dilation"]

    def clamp(_=None):
        """Keep the output-position sliders inside the output (registered before the drawing observer)."""
        try:
            g = conv_geometry(*args({k: controls[k].value for k in geometry_keys}))
        except ValueError:
            return
        controls["i"].max, controls["j"].max = g.Ho - 1, g.Wo - 1      # lowering max clamps the value

    for k in geometry_keys:
        controls[k].observe(clamp, "value")
    clamp()

    def draw(**v):
        import matplotlib.pyplot as plt

        for f in figures:
            plt.close(f)
        figures.clear()
        msg = invalid_message(*args(v))
        if msg is not None:
            status.value = f"<b style='color:#c00000'>{html.escape(msg)}</b>"
            print(msg)
            return
        g = conv_geometry(*args(v))
        i, j = min(v["i"], g.Ho - 1), min(v["j"], g.Wo - 1)
        status.value = (f"output Y: {g.Ho} x {g.Wo}; im2col matrix: M x K = {g.Ho * g.Wo} x "
                        f"{v['C'] * g.kh * g.kw}; Y[{i},{j}] reads padded rows "
                        f"{i * g.sh}..{i * g.sh + g.dh * (g.kh - 1)}, "
                        f"columns {j * g.sw}..{j * g.sw + g.dw * (g.kw - 1)}")
        figures.append(draw_conv(*args(v), out_pos=(i, j)))
        figures.append(draw_im2col(*args(v), out_pos=(i, j), C=v["C"]))
        for f in figures:
            _show(f)

    out = widgets.interactive_output(draw, controls)
    names = list(controls)
    box = widgets.VBox([widgets.HBox([widgets.VBox([controls[k] for k in names[:5]]),
                                      widgets.VBox([controls[k] for k in names[5:]])]), status, out])
    box.controls, box.status, box.output, box.figures = controls, status, out, figures
    return box
