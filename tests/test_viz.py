"""pf.viz's conv explorer, headless (Agg): the drawn taps and im2col matrix against the library and torch.

Oracles: torch.nn.functional.conv2d with identity weights IS im2col (output channel t copies tap t), so it
gives, in torch's own padding semantics (including 'same'), which input pixel every (output position, tap)
reads; pf.conv.im2col and torch's unfold of an explicitly padded, numbered input give the padded coordinates.
"""
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import pytorch_fpga as pf  # noqa: E402
from pytorch_fpga.viz import conv as viz  # noqa: E402

# torch warns that 'same' with an even kernel may copy the input; that is a case we draw.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

CONFIGS = [  # (H, W, kernel, stride, padding, dilation); W is the input width
    (5, 5, 3, 1, 0, 1),
    (7, 7, 3, 2, 1, 1),
    (6, 9, (2, 3), (2, 1), (1, 2), (2, 1)),
    (8, 5, 3, 1, "same", 2),
    (6, 6, (4, 2), 1, "same", 1),          # even kernel: more padding on the bottom/right
    (4, 7, (1, 3), (1, 3), "valid", (1, 2)),
    (3, 3, 3, 3, 2, 1),                    # most taps land on padding
    (5, 4, 2, 2, 3, 3),
]


def torch_taps(H, W, kernel, stride, padding, dilation, C=1):
    """(Ho*Wo, C*kh*kw): the number c*H*W + h*W + w of the pixel each output position's tap reads, -1 on padding."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    K = C * kh * kw
    X = torch.arange(1, C * H * W + 1, dtype=torch.float64).reshape(1, C, H, W)
    eye = torch.eye(K, dtype=torch.float64).reshape(K, C, kh, kw)
    Y = F.conv2d(X, eye, stride=stride, padding=padding, dilation=dilation)[0]
    return Y.reshape(K, -1).T.numpy().astype(np.int64) - 1


def padded_taps(g, stride, dilation):
    """(Ho*Wo, kh*kw): padded-grid numbers r*Wp + c of every tap, from pf.conv.im2col and checked vs unfold."""
    Xp = np.arange(g.Hp * g.Wp, dtype=np.int64).reshape(1, g.Hp, g.Wp)
    cols = pf.conv.im2col(Xp, (g.kh, g.kw), stride, 0, dilation)
    ref = F.unfold(torch.from_numpy(Xp[None]).double(), (g.kh, g.kw), dilation=dilation, stride=stride)
    np.testing.assert_array_equal(cols, ref[0].T.numpy().astype(np.int64))
    return cols


def positions(g):
    return sorted({(0, 0), (g.Ho - 1, g.Wo - 1), (g.Ho // 2, g.Wo // 2), (0, g.Wo - 1)})


def patches(ax, gid):
    return [p for p in ax.patches if p.get_gid() == gid]


def cells(ax, gid, x0=0.0, y0=0.0):
    return sorted((int(round(p.get_y() - y0)), int(round(p.get_x() - x0))) for p in patches(ax, gid))


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_conv_taps_and_padding_agree_with_torch(cfg):
    H, W, k, s, p, d = cfg
    g = viz.conv_geometry(*cfg)
    ref = torch_taps(*cfg)
    assert ref.shape == (g.Ho * g.Wo, g.kh * g.kw)
    padded = padded_taps(g, s, d)
    for row in range(g.Ho * g.Wo):
        taps = viz.conv_taps(*cfg, out_pos=divmod(row, g.Wo))
        np.testing.assert_array_equal(taps[:, 0] * g.Wp + taps[:, 1], padded[row])     # same order as im2col
        h, w = taps[:, 0] - g.pt, taps[:, 1] - g.pl                                    # unpadded coordinates
        inside = (0 <= h) & (h < H) & (0 <= w) & (w < W)
        np.testing.assert_array_equal(np.where(inside, h * W + w, -1), ref[row])        # torch's padding rule


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_draw_conv_highlights_the_im2col_taps(cfg):
    H, W, k, s, p, d = cfg
    g = viz.conv_geometry(*cfg)
    ref, padded = torch_taps(*cfg), padded_taps(g, s, d)
    for i, j in positions(g):
        ax = viz.draw_conv(*cfg, out_pos=(i, j)).axes[0]
        row = i * g.Wo + j
        real = sorted((v // W + g.pt, v % W + g.pl) for v in ref[row] if v >= 0)
        assert cells(ax, "tap") == real
        assert len(patches(ax, "tap-pad")) == int((ref[row] < 0).sum())
        assert sorted(cells(ax, "tap") + cells(ax, "tap-pad")) == sorted(divmod(int(v), g.Wp) for v in padded[row])
        (frame_in,), (frame_out,) = patches(ax, "input-grid"), patches(ax, "output-grid")
        assert (frame_in.get_height(), frame_in.get_width()) == (g.Hp, g.Wp)
        assert (frame_out.get_height(), frame_out.get_width()) == (g.Ho, g.Wo)
        assert cells(ax, "out", frame_out.get_x(), frame_out.get_y()) == [(i, j)]
        plt.close(ax.figure)


@pytest.mark.parametrize("cfg,C", [(CONFIGS[1], 2), (CONFIGS[2], 1), (CONFIGS[4], 3), (CONFIGS[7], 2)], ids=str)
def test_draw_im2col_matrix_row_and_sources(cfg, C):
    H, W, k, s, p, d = cfg
    g = viz.conv_geometry(*cfg)
    ref = torch_taps(*cfg, C=C)
    i, j = g.Ho // 2, g.Wo - 1
    fig = viz.draw_im2col(*cfg, out_pos=(i, j), C=C)
    ax_in, ax_m = fig.axes[:2]
    (img,) = [im for im in ax_m.images if im.get_gid() == "im2col"]
    np.testing.assert_array_equal(np.ma.filled(img.get_array(), -1), ref)
    row = i * g.Wo + j
    assert cells(ax_m, "row") == [(row, 0)] and patches(ax_m, "row")[0].get_width() == C * g.kh * g.kw
    drawn, n_pad = [], 0
    for c in range(C):
        (frame,) = patches(ax_in, f"channel-{c}")
        y0 = frame.get_y()
        for gid in ("src", "src-pad"):
            for r, x in cells(ax_in, gid, 0, y0):
                if 0 <= r < g.Hp:                      # this channel's grid
                    if gid == "src":
                        drawn.append(c * H * W + (r - g.pt) * W + (x - g.pl))
                    else:
                        n_pad += 1
    # every channel shows the same window, so the sources are the row's pixels
    assert sorted(drawn) == sorted(int(v) for v in ref[row] if v >= 0)
    assert n_pad == int((ref[row] < 0).sum())


def test_draw_into_given_axes_and_bad_arguments():
    fig, ax = plt.subplots()
    assert viz.draw_conv(5, 5, 3, out_pos=(2, 2), ax=ax) is fig
    fig2, axes = plt.subplots(1, 2)
    assert viz.draw_im2col(5, 5, 3, padding=1, out_pos=(4, 4), ax=axes) is fig2
    fig3, ax3 = plt.subplots()
    assert viz.draw_im2col(5, 5, 3, ax=ax3) is fig3 and len(fig3.axes) == 1
    with pytest.raises(ValueError, match="outside the 3x3 output"):
        viz.draw_conv(5, 5, 3, out_pos=(3, 0))
    with pytest.raises(ValueError, match="output would be empty"):
        viz.draw_im2col(2, 5, 3)


def test_invalid_message():
    assert viz.invalid_message(5, 5, 3) is None
    msg = viz.invalid_message(3, 3, 5, padding=0, dilation=1)
    assert msg.startswith("Invalid combination") and "output would be empty" in msg
    assert "output would be empty" in viz.invalid_message(6, 6, 3, dilation=3)


def test_explorer_builds_and_clamps_the_output_position():
    import ipywidgets as widgets

    box = viz.conv_explorer(H=7, W=7, kernel=3, stride=1, padding=1, dilation=1, out_pos=(6, 6))
    assert isinstance(box, widgets.VBox)
    c = box.controls
    assert set(c) == {"H", "W", "kh", "kw", "stride", "padding", "dilation", "C", "i", "j"}
    assert "output Y: 7 x 7" in box.status.value and len(box.figures) == 2
    c["stride"].value = 2                                   # output becomes 4 x 4: i, j clamp to 3
    assert (c["i"].value, c["j"].value, c["i"].max) == (3, 3, 3)
    assert "output Y: 4 x 4" in box.status.value
    ax = box.figures[0].axes[0]
    (frame_out,) = patches(ax, "output-grid")
    assert cells(ax, "out", frame_out.get_x(), frame_out.get_y()) == [(3, 3)]


def test_explorer_invalid_parameters_show_the_message():
    box = viz.conv_explorer(H=5, W=5, kernel=3, padding=0)
    c = box.controls
    c["H"].value = 2                                        # 2 rows < a 3-row kernel, no padding
    assert "Invalid combination" in box.status.value and "output would be empty" in box.status.value
    assert box.figures == []
    c["H"].value = 4
    assert "output Y: 2 x 3" in box.status.value and len(box.figures) == 2


def test_import_stays_numpy_only():
    code = ("import sys, pytorch_fpga as pf; pf.viz; "
            "bad = [m for m in ('matplotlib', 'ipywidgets', 'torch') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
