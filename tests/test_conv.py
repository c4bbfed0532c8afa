"""pf.conv against torch.nn.functional.conv2d (the oracle): exact equality on integer-valued data."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pytorch_fpga.core import conv as pc

# torch warns that 'same' with an even kernel may copy the input; that is exactly the case we test.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

FAST = settings(max_examples=300, deadline=None, derandomize=True, database=None)
SLOW = settings(max_examples=60, deadline=None, derandomize=True, database=None)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@st.composite
def configs(draw, max_extra=4, max_groups=3, max_cg=2, max_og=2, max_k=3, modes=("zeros",)):
    """A random, valid conv2d configuration plus the seed for its data."""
    groups = draw(st.integers(1, max_groups))
    cg = 1 if draw(st.booleans()) else draw(st.integers(1, max_cg))      # cg == 1: depthwise when C == groups
    og = draw(st.integers(1, max_og))
    k = (draw(st.integers(1, max_k)), draw(st.integers(1, max_k)))
    ints12 = st.integers(1, 2)
    dilation = draw(st.one_of(ints12, st.tuples(ints12, ints12)))
    mode = draw(st.sampled_from(modes))
    kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    if kind == "same":
        padding, stride = "same", draw(st.sampled_from([1, (1, 1)]))
    else:
        stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
        padding = {"int": draw(st.integers(0, 2)), "valid": "valid",
                   "tuple": (draw(st.integers(0, 2)), draw(st.integers(0, 2)))}[kind]
    d = pair(dilation)
    ext = [d[i] * (k[i] - 1) + 1 for i in range(2)]                     # dilated kernel extent
    if padding == "same":
        tot = [e - 1 for e in ext]
    elif padding == "valid":
        tot = [0, 0]
    else:
        tot = [2 * p for p in pair(padding)]
    # Smallest input giving a non-empty output; reflect/circular also need every pad < / <= the input size.
    lo = [max(1, ext[i] - tot[i], (tot[i] + 1) // 2 + 1 if mode != "zeros" else 1) for i in range(2)]
    H, W = (draw(st.integers(lo[i], lo[i] + max_extra)) for i in range(2))
    batch = draw(st.sampled_from([None, 1, 2]))
    return dict(groups=groups, C=groups * cg, O=groups * og, k=k, stride=stride, padding=padding,
                dilation=dilation, H=H, W=W, batch=batch, bias=draw(st.booleans()), mode=mode,
                seed=draw(st.integers(0, 2**32 - 1)))


def make_data(cfg, dtype=np.float64, lo=-4, hi=4):
    rng = np.random.default_rng(cfg["seed"])
    shape = (cfg["C"], cfg["H"], cfg["W"]) if cfg["batch"] is None else (cfg["batch"], cfg["C"], cfg["H"], cfg["W"])
    X = rng.integers(lo, hi + 1, shape).astype(dtype)
    Wt = rng.integers(lo, hi + 1, (cfg["O"], cfg["C"] // cfg["groups"], *cfg["k"])).astype(dtype)
    b = rng.integers(-20, 21, cfg["O"]).astype(dtype) if cfg["bias"] else None
    return X, Wt, b


def torch_ref(cfg, X, Wt, b):
    """torch's answer in float64 (exact for these small integers); non-zeros modes go through nn.Conv2d."""
    def t(a):
        return None if a is None else torch.tensor(np.asarray(a, np.float64))

    if cfg["mode"] == "zeros":
        y = F.conv2d(t(X), t(Wt), t(b), cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    else:
        layer = torch.nn.Conv2d(cfg["C"], cfg["O"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"],
                                cfg["groups"], cfg["bias"], cfg["mode"], dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(t(Wt))
            if b is not None:
                layer.bias.copy_(t(b))
            y = layer(t(X))
    return y.detach().numpy()


def run(fn, cfg, X, Wt, b):
    return fn(X, Wt, b, stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
              groups=cfg["groups"], padding_mode=cfg["mode"])


# --- exact agreement with torch ----------------------------------------------------------------------------
@FAST
@given(configs())
def test_conv2d_float64_matches_torch(cfg):
    X, Wt, b = make_data(cfg)
    y = run(pc.conv2d, cfg, X, Wt, b)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, torch_ref(cfg, X, Wt, b))


@FAST
@given(configs())
def test_conv2d_int_matches_torch(cfg):
    X, Wt, b = make_data(cfg, np.int8, -128, 127)
    if b is not None:
        b = b.astype(np.int32) * 1000
    y = run(pc.conv2d, cfg, X, Wt, b)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, torch_ref(cfg, X, Wt, b).astype(np.int64))


@SLOW
@given(configs(max_extra=2, max_groups=2, max_og=2, max_k=3))
def test_conv2d_loops_matches_torch(cfg):
    X, Wt, b = make_data(cfg)
    np.testing.assert_array_equal(run(pc.conv2d_loops, cfg, X, Wt, b), torch_ref(cfg, X, Wt, b))
    Xi, Wi, bi = make_data(cfg, np.int64)
    yi = run(pc.conv2d_loops, cfg, Xi, Wi, bi)
    assert yi.dtype == np.int64
    np.testing.assert_array_equal(yi, torch_ref(cfg, Xi, Wi, bi).astype(np.int64))


@FAST
@given(configs(modes=("zeros", "reflect", "replicate", "circular")))
def test_padding_modes_match_nn_conv2d(cfg):
    X, Wt, b = make_data(cfg)
    np.testing.assert_array_equal(run(pc.conv2d, cfg, X, Wt, b), torch_ref(cfg, X, Wt, b))


@SLOW
@given(configs(max_extra=2, max_groups=2, max_og=1, modes=("reflect", "replicate", "circular")))
def test_padding_modes_loops(cfg):
    X, Wt, b = make_data(cfg)
    np.testing.assert_array_equal(run(pc.conv2d_loops, cfg, X, Wt, b), torch_ref(cfg, X, Wt, b))


@FAST
@given(st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
       st.tuples(*[st.integers(0, 3)] * 4), st.integers(0, 3), st.integers(0, 3),
       st.sampled_from([(), (2,), (1, 3)]), st.integers(0, 2**32 - 1))
def test_pad2d_matches_torch_pad(mode, padding, dh, dw, lead, seed):
    pl, pr, pt, pb = padding
    extra = 1 if mode == "reflect" else 0                 # reflect: pad < size; circular: pad <= size
    H, W = max(pt, pb, 1) + extra + dh, max(pl, pr, 1) + extra + dw
    X = np.random.default_rng(seed).integers(-9, 10, (*lead, 2, H, W)).astype(np.float64)
    value = 3.0 if mode == "zeros" else 0
    kw = {"value": value} if mode == "zeros" else {}
    # torch pads non-constant modes on 3-D/4-D inputs only; pad2d takes any leading axes: flatten them.
    Xt = torch.tensor(X.reshape(-1, *X.shape[-3:]))
    ref = F.pad(Xt, padding, "constant" if mode == "zeros" else mode, **kw).numpy()
    ref = ref.reshape(*X.shape[:-2], *ref.shape[-2:])
    np.testing.assert_array_equal(pc.pad2d(X, padding, mode, value), ref)


def test_same_padding_is_asymmetric_like_torch():
    """Even kernel: total padding 1 per axis, torch puts it on the bottom/right."""
    X = np.arange(16.0).reshape(1, 1, 4, 4)
    Wt = np.zeros((1, 1, 2, 2))
    Wt[0, 0, 0, 0] = 1.0                                    # picks the top-left tap: output = X itself
    np.testing.assert_array_equal(pc.conv2d(X, Wt, padding="same"), X)
    np.testing.assert_array_equal(pc.conv2d_loops(X, Wt, padding="same"), X)
    np.testing.assert_array_equal(pc.conv2d(X, Wt, padding="same"),
                                  F.conv2d(torch.tensor(X), torch.tensor(Wt), padding="same").numpy())


def test_depthwise_and_channel_multiplier():
    rng = np.random.default_rng(1)
    X = rng.integers(-5, 6, (2, 6, 7, 7)).astype(np.float64)
    for mult in (1, 2):
        Wt = rng.integers(-5, 6, (6 * mult, 1, 3, 3)).astype(np.float64)
        ref = F.conv2d(torch.tensor(X), torch.tensor(Wt), stride=2, padding=1, groups=6).numpy()
        np.testing.assert_array_equal(pc.conv2d(X, Wt, stride=2, padding=1, groups=6), ref)
        np.testing.assert_array_equal(pc.conv2d_loops(X, Wt, stride=2, padding=1, groups=6), ref)


def test_dtypes():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    Wt = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = pc.conv2d(X, Wt, padding=1)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, F.conv2d(torch.tensor(X), torch.tensor(Wt), padding=1).numpy(), rtol=1e-5,
                               atol=1e-5)
    Xi, Wi = np.full((1, 3, 4, 4), 127, np.int8), np.full((2, 3, 3, 3), -128, np.int8)
    yi = pc.conv2d(Xi, Wi)                                  # no int8/int16 overflow: accumulates in int64
    assert yi.dtype == np.int64 and (yi == 27 * 127 * -128).all()
    assert pc.conv2d(Xi, Wi, bias=np.array([0.5, 0.5])).dtype == np.float64
    assert pc.conv2d(np.ones((1, 1, 3, 3), np.uint8), np.ones((1, 1, 3, 3), np.uint8))[0, 0, 0, 0] == 9


def test_zero_size():
    assert pc.conv2d(np.zeros((0, 2, 5, 5)), np.zeros((3, 2, 3, 3))).shape == (0, 3, 3, 3)
    assert pc.conv2d(np.zeros((1, 2, 5, 5)), np.zeros((0, 2, 3, 3))).shape == (1, 0, 3, 3)
    # No input channels: the output is just the bias.
    np.testing.assert_array_equal(pc.conv2d(np.zeros((1, 0, 4, 4), np.int8), np.zeros((2, 0, 3, 3), np.int8),
                                            np.array([5, -7])),
                                  np.array([5, -7])[None, :, None, None] * np.ones((1, 2, 2, 2), np.int64))
    assert pc.im2col(np.zeros((0, 2, 5, 5)), 3).shape == (0, 18)


# --- errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [pc.conv2d, pc.conv2d_loops])
def test_errors(fn):
    X = np.zeros((1, 4, 6, 6))
    with pytest.raises(ValueError, match="input channels \\(4\\) must be divisible by groups \\(3\\)"):
        fn(X, np.zeros((3, 1, 3, 3)), groups=3)
    with pytest.raises(ValueError, match="output channels \\(3\\) must be divisible by groups \\(2\\)"):
        fn(X, np.zeros((3, 2, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="weight has 4 input channels per group"):
        fn(X, np.zeros((4, 4, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        fn(X, np.zeros((2, 4, 3, 3)), stride=2, padding="same")
    with pytest.raises(ValueError, match="padded input is 6x6 but the \\(dilated\\) kernel is 7x7"):
        fn(X, np.zeros((2, 4, 7, 7)))
    with pytest.raises(ValueError, match="padded input is 6x6 but the \\(dilated\\) kernel is 7x5"):
        fn(X, np.zeros((2, 4, 4, 3)), dilation=2)
    with pytest.raises(ValueError, match="'same' or 'valid'"):
        fn(X, np.zeros((2, 4, 3, 3)), padding="full")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        fn(X, np.zeros((2, 4, 3, 3)), padding_mode="mirror")
    with pytest.raises(ValueError, match="stride must be >= 1"):
        fn(X, np.zeros((2, 4, 3, 3)), stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        fn(X, np.zeros((2, 4, 3, 3)), padding=(1, -1))
    with pytest.raises(ValueError, match="bias must have shape \\(2,\\)"):
        fn(X, np.zeros((2, 4, 3, 3)), bias=np.zeros(3))
    with pytest.raises(ValueError, match="\\(N, C, H, W\\) or unbatched"):
        fn(np.zeros((6, 6)), np.zeros((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="reflect padding"):
        fn(np.zeros((1, 4, 2, 6)), np.zeros((2, 4, 3, 3)), padding=2, padding_mode="reflect")
    with pytest.raises(TypeError, match="real numbers"):
        fn(X.astype(complex), np.zeros((2, 4, 3, 3)))


def test_torch_rejects_the_same_configs():
    """Our errors are torch's errors: these all raise in torch too."""
    X = torch.zeros(1, 4, 6, 6)
    for Wt, kw in [((3, 1, 3, 3), dict(groups=3)), ((2, 4, 3, 3), dict(stride=2, padding="same")),
                   ((2, 4, 7, 7), {}), ((4, 4, 3, 3), dict(groups=2))]:
        with pytest.raises(RuntimeError):
            F.conv2d(X, torch.zeros(Wt), **kw)
    with pytest.raises(RuntimeError):
        F.pad(torch.zeros(1, 1, 2, 2), (2, 2, 0, 0), "reflect")


def test_pad2d_errors():
    X = np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match="4-tuple"):
        pc.pad2d(X, (1, 1))
    with pytest.raises(ValueError, match="reflect padding"):
        pc.pad2d(X, (3, 0, 0, 0), "reflect")
    with pytest.raises(ValueError, match="wrap around more than once"):
        pc.pad2d(X, (0, 0, 4, 0), "circular")
    with pytest.raises(ValueError, match="takes no fill value"):
        pc.pad2d(X, 1, "replicate", value=1)
    with pytest.raises(ValueError, match="negative padding"):
        pc.pad2d(X, -1)
    with pytest.raises(ValueError, match="one of"):
        pc.pad2d(X, 1, "edge")
    assert pc.pad2d(X, (1, 2, 3, 4)).shape == (1, 1, 10, 6)


# --- im2col ------------------------------------------------------------------------------------------------
def test_im2col_layout():
    X = np.arange(2 * 2 * 4 * 5, dtype=np.int8).reshape(2, 2, 4, 5)
    cols = pc.im2col(X, (2, 3), stride=(1, 2), padding=1, dilation=1)
    Ho, Wo = pc.conv_output_size(4, 5, (2, 3), (1, 2), 1, 1)
    assert (Ho, Wo) == (5, 3)
    assert cols.shape == (2 * Ho * Wo, 2 * 2 * 3) and cols.dtype == np.int8
    Xp = np.pad(X, [(0, 0), (0, 0), (1, 1), (1, 1)])
    for n in range(2):
        for y in range(Ho):
            for x in range(Wo):                              # row (n, y, x); columns (c, i, j)
                np.testing.assert_array_equal(cols[(n * Ho + y) * Wo + x],
                                              Xp[n, :, y:y + 2, 2 * x:2 * x + 3].reshape(-1))
    assert pc.im2col(X[0], 3).shape == (2 * 3, 2 * 9)        # unbatched: Ho*Wo rows


@FAST
@given(configs())
def test_im2col_gemm_is_conv(cfg):
    """groups=1 conv == im2col(X) @ W.reshape(O, -1).T, rows (n, y, x) reshaped back to NCHW."""
    cfg = dict(cfg, groups=1, O=cfg["O"] // cfg["groups"] or 1)
    X, Wt, b = make_data(cfg)
    Xb = X if X.ndim == 4 else X[None]
    cols = pc.im2col(Xb, cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"])
    Ho, Wo = pc.conv_output_size(cfg["H"], cfg["W"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"])
    Y = (cols @ Wt.reshape(cfg["O"], -1).T).reshape(Xb.shape[0], Ho, Wo, cfg["O"]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(Y, torch_ref(dict(cfg, bias=False), Xb, Wt, None))


# --- counters ----------------------------------------------------------------------------------------------
def test_counters_known_layers():
    # LeNet-5 conv1: 1x32x32 -> 6x28x28 with 5x5 kernels.
    assert pc.conv2d_macs((1, 1, 32, 32), (6, 1, 5, 5)) == 117_600
    assert pc.conv2d_params((6, 1, 5, 5)) == 156
    # ResNet-18 conv1: 3x224x224 -> 64x112x112, 7x7, stride 2, pad 3, no bias.
    r18 = dict(stride=2, padding=3)
    assert pc.conv2d_macs((1, 3, 224, 224), (64, 3, 7, 7), **r18) == 118_013_952
    assert pc.conv2d_macs((3, 224, 224), (64, 3, 7, 7), **r18) == 118_013_952
    assert pc.conv2d_macs((8, 3, 224, 224), (64, 3, 7, 7), **r18) == 8 * 118_013_952
    assert pc.conv2d_params((64, 3, 7, 7), bias=False) == 9_408
    assert pc.conv2d_bytes((1, 3, 224, 224), (64, 3, 7, 7), **r18) == {
        "input": 150_528, "weight": 9_408, "bias": 0, "output": 802_816, "total": 962_752}
    assert pc.conv2d_bytes((1, 3, 224, 224), (64, 3, 7, 7), **r18, out_bytes=4, bias_bytes=4)["output"] == 3_211_264
    assert pc.im2col_bytes((1, 3, 224, 224), 7, **r18) == 112 * 112 * 147 == 1_843_968
    # VGG-16 conv1_1: 3x224x224 -> 64x224x224, 3x3, pad 1.
    assert pc.conv2d_macs((1, 3, 224, 224), (64, 3, 3, 3), padding=1) == 86_704_128
    assert pc.conv2d_params((64, 3, 3, 3)) == 1_792
    assert pc.im2col_bytes((1, 3, 224, 224), 3, padding=1, elem_bytes=4) == 224 * 224 * 27 * 4
    # MobileNet-v1 depthwise 3x3 on 32x112x112, pad 1.
    assert pc.conv2d_macs((1, 32, 112, 112), (32, 1, 3, 3), padding=1, groups=32) == 3_612_672
    assert pc.conv2d_params((32, 1, 3, 3), bias=False) == 288
    assert pc.conv_output_size(224, 224, 7, 2, 3, 1) == (112, 112)
    assert pc.conv_output_size(5, 6, (2, 3), 1, "same", 2) == (5, 6)


@FAST
@given(configs())
def test_counters_match_torch_shapes(cfg):
    X, Wt, b = make_data(cfg)
    y = torch_ref(dict(cfg, mode="zeros"), X, Wt, b)
    args = (cfg["stride"], cfg["padding"], cfg["dilation"])
    assert pc.conv_output_size(cfg["H"], cfg["W"], cfg["k"], *args) == y.shape[-2:]
    macs = y.size * (cfg["C"] // cfg["groups"]) * cfg["k"][0] * cfg["k"][1]
    assert pc.conv2d_macs(X.shape, Wt.shape, *args, cfg["groups"]) == macs
    assert pc.conv2d_params(Wt.shape, cfg["bias"]) == Wt.size + (cfg["O"] if cfg["bias"] else 0)
    nbytes = pc.conv2d_bytes(X.shape, Wt.shape, *args, cfg["groups"], act_bytes=2, w_bytes=1, out_bytes=4)
    assert (nbytes["input"], nbytes["weight"], nbytes["output"]) == (2 * X.size, Wt.size, 4 * y.size)
    n = 1 if X.ndim == 3 else X.shape[0]
    assert pc.im2col_bytes(X.shape, cfg["k"], *args) == n * y.shape[-1] * y.shape[-2] * cfg["C"] * Wt[0, 0].size


def test_no_warnings_from_library():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pc.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), padding="same", dilation=1)


def test_layer_shapes_against_torch_layers():
    layers = [("C1", (1, 32, 32), (6, 1, 5, 5), 1, 0), ("s2p1", (3, 15, 15), (8, 3, 3, 3), 2, 1),
              ("fc", (120, 1, 1), (84, 120, 1, 1), 1, 0)]
    rows = pc.layer_shapes(layers, bias=True)
    for (name, i_, w_, o_, params, macs), (lname, in_shape, w_shape, s, p) in zip(rows, layers, strict=True):
        m = torch.nn.Conv2d(in_shape[0], w_shape[0], w_shape[2:], s, p)
        out = m(torch.zeros(1, *in_shape))
        assert (name, i_, w_) == (lname, in_shape, w_shape)
        assert o_ == tuple(out.shape[1:]) and params == sum(q.numel() for q in m.parameters())
        assert macs == out.numel() * in_shape[0] * w_shape[2] * w_shape[3]
    text = pc.format_layer_shapes(rows).splitlines()
    assert len(text) == len(layers) + 2 and text[1].split()[0] == "C1"
    assert text[-1].split()[-2:] == [f"{sum(r[4] for r in rows):,}", f"{sum(r[5] for r in rows):,}"]
    assert pc.layer_shapes(layers[:1], bias=False)[0][4] == 6 * 25
