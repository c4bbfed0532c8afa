"""pytorch_fpga.nn: FPGAConv2d / FPGALinear, pf.offload and pf.profile on the 'model' and 'verilator' backends.

The int8 results must be identical on both backends (the Verilated RTL is bit-exact with the numpy model), and
the float results close to the float PyTorch modules, within a bound derived from the quantization steps.
Verilator tests use the small 'sim8' build for speed (built once into build/verilated), a few use 'z1'.
"""
import copy
import re
import shutil
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import pytorch_fpga as pf
from pytorch_fpga.core import quant
from pytorch_fpga.core.datasets import load_digits_split
from pytorch_fpga.nn import FPGAConv2d, FPGALinear, Int8Activation, fpga_layers
from pytorch_fpga.nn import digits_cnn as dc
from pytorch_fpga.sim import tools

HAVE_VERILATOR = tools.available("verilator") and bool(shutil.which("g++") or shutil.which("c++"))
needs_verilator = pytest.mark.skipif(not HAVE_VERILATOR, reason="needs Verilator and a C++ compiler")
# torch's own note on padding='same' with an even kernel (it pads a copy of the input): expected here
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")


# --- shared accelerators (one Verilated model per config for the whole module) ---------------------------------
@pytest.fixture(scope="module")
def accs():
    made = {}

    def get(backend, config="sim8"):
        if (backend, config) not in made:
            if backend == "verilator" and not HAVE_VERILATOR:
                pytest.skip("needs Verilator and a C++ compiler")
            made[backend, config] = pf.Accelerator(backend, config)
        return made[backend, config]
    return get


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


# --- error bounds ----------------------------------------------------------------------------------------------
# For one output y = sum_k x_k w_k + b of a layer quantized with input scale s_in, weight scales s_w (per output
# channel) and output scale s_out, the accelerator computes s_in*s_w*(sum_k qx_k qw_k + qb) with
# |x_k - s_in qx_k| <= s_in/2, |w_k - s_w qw_k| <= s_w/2, |b - s_in s_w qb| <= s_in s_w/2 (round to nearest, no
# clipping: the scales come from this very data), so, writing x w - x^ w^ = x (w - w^) + w^ (x - x^),
#     |accumulator - y| <= s_w/2 * sum_k |x_k| + s_in/2 * sum_k |w^_k| + s_in s_w/2.
# Requantization rounds to the nearest step (+ s_out/2; its 31-bit multiplier adds a relative 2**-31) and then
# clamps to the int8 range (and to >= 0 with a fused ReLU). The clamp is 1-Lipschitz and leaves the float result
# unchanged (|y| <= 127 s_out by calibration, y >= 0 after ReLU), so it can only shrink the error. Hence
#     |y_fpga - y_float| <= s_w/2 * sum_k |x_k| + s_in/2 * sum_k |w^_k| + s_in s_w/2 + s_out/2     (elementwise)
# plus float32 rounding of the torch reference, covered by SLACK.
SLACK = 1e-5


def conv_bound(conv: nn.Conv2d, q: quant.QuantLayer, x: torch.Tensor) -> torch.Tensor:
    """The elementwise bound above for a conv: sums over each output's receptive field, padding included."""
    c = copy.deepcopy(conv).double()
    c.bias = None
    s_w = torch.from_numpy(q.s_w).reshape(-1, 1, 1)
    with torch.no_grad():
        c.weight.copy_(torch.ones_like(c.weight))
        sum_x = c(x.double().abs())                               # sum_k |x_k| (padding modes copy |x| too)
    sum_w = torch.from_numpy(np.abs(q.w_int8.astype(np.float64)).sum(axis=(1, 2, 3))).reshape(-1, 1, 1)
    return s_w / 2 * sum_x + q.s_in / 2 * (s_w * sum_w) + q.s_in * s_w / 2 + q.s_out / 2 + SLACK


def linear_bound(q: quant.QuantLayer, x: torch.Tensor) -> torch.Tensor:
    s_w = torch.from_numpy(q.s_w)
    sum_w = torch.from_numpy(np.abs(q.w_int8.astype(np.float64)).sum(axis=1))
    sum_x = x.double().abs().sum(-1, keepdim=True)
    return s_w / 2 * sum_x + q.s_in / 2 * s_w * sum_w + q.s_in * s_w / 2 + q.s_out / 2 + SLACK


def assert_cycles_close(model_rep, rtl_rep):
    """The model backend's cycles come from accel.cycle_model, which follows the RTL's counter within 1% + 8
    cycles a job (the tolerance of tb/conv_accel); the work (jobs, MACs, bytes) must be identical."""
    assert len(model_rep.jobs) == len(rtl_rep.jobs) > 0 and model_rep.macs == rtl_rep.macs
    for a, b in zip(model_rep.jobs, rtl_rep.jobs, strict=True):
        assert (a.M, a.K, a.N, a.bytes_in, a.bytes_out) == (b.M, b.K, b.N, b.bytes_in, b.bytes_out)
        assert abs(a.cycles - b.cycles) <= 0.01 * a.cycles + 8, (a, b)


# --- FPGAConv2d: every nn.Conv2d option ------------------------------------------------------------------------
CONV_CASES = [
    dict(),
    dict(bias=False),
    dict(stride=2),
    dict(stride=(2, 1), padding=(1, 2)),
    dict(padding=1),
    dict(padding=(0, 1)),
    dict(padding="same"),
    dict(padding="valid"),
    dict(kernel_size=(2, 3), padding="same"),                      # even kernel: asymmetric 'same' padding
    dict(padding="same", dilation=2),
    dict(dilation=(2, 1), padding=2, stride=(1, 2)),
    dict(padding=1, padding_mode="reflect"),
    dict(padding=(1, 2), padding_mode="replicate"),
    dict(padding=1, padding_mode="circular"),
    dict(padding="same", padding_mode="reflect"),
    dict(groups=2, padding=1),
    dict(groups=4, out_channels=8, padding=1, bias=False),          # depthwise (groups = in_channels)
    dict(groups=4, out_channels=4, stride=2, padding=1, padding_mode="replicate"),   # depthwise, strided
    dict(kernel_size=1),                                            # pointwise
]
CASE_IDS = [",".join(f"{k}={v}" for k, v in c.items()) or "default" for c in CONV_CASES]


def make_conv(case, seed=0):
    case = dict(case)
    args = dict(in_channels=4, out_channels=case.pop("out_channels", 6), kernel_size=case.pop("kernel_size", 3))
    torch.manual_seed(seed)
    conv = nn.Conv2d(**args, **case).eval()
    if conv.bias is not None:
        with torch.no_grad():
            conv.bias.mul_(4)                                       # a bias that matters next to the products
    return conv


@pytest.mark.parametrize("case", CONV_CASES, ids=CASE_IDS)
def test_fpga_conv2d_options(case, accs):
    conv = make_conv(case, seed=len(CASE_IDS[CONV_CASES.index(case)]))
    x = torch.randn(3, 4, 7, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = conv(x)
    s_in, s_out = quant.calibrate_minmax(x.numpy()), quant.calibrate_minmax(y.numpy())
    layers = {b: FPGAConv2d.from_float(conv, s_in, s_out, accelerator=accs(b), output="int8", name="c")
              for b in ("model", "verilator")}
    q = layers["model"].q

    out = {b: layers[b](x) for b in layers}
    assert all(isinstance(o, Int8Activation) and o.scale == s_out for o in out.values())
    assert out["model"].q.dtype == torch.int8 and tuple(out["model"].shape) == tuple(y.shape)
    # bit-identical on the numpy model and on the Verilated RTL
    assert torch.equal(out["model"].q, out["verilator"].q)
    assert_cycles_close(layers["model"].last_report, layers["verilator"].last_report)
    # ... and equal to the library's integer reference: exact conv (pf.conv), int32 wrap, requant
    ref = q.requant(pf.wrap_int32(pf.conv.conv2d(quant.quantize(x.numpy(), s_in), q.w_int8, q.bias_int32,
                                                 conv.stride, conv.padding, conv.dilation, conv.groups,
                                                 conv.padding_mode)))
    np.testing.assert_array_equal(out["model"].q.numpy(), ref)

    # float output: q * s_out, within the quantization bound of the float module
    fl = FPGAConv2d.from_float(conv, s_in, s_out, accelerator=accs("model"), name="c")
    yf = fl(x)
    assert yf.dtype == torch.float32 and torch.equal(yf, out["model"].float())
    bound = conv_bound(conv, q, x)
    err = (yf.double() - y.double()).abs()
    assert (err <= bound).all(), f"max excess {(err - bound).max():.3g}"
    assert bound.max() < 0.1 * y.abs().max()                    # the bound itself is meaningful (< 10%)

    # unbatched (C, H, W): the same integers as the batched row
    for b in layers:
        o1 = layers[b](x[1])
        assert o1.q.shape == y.shape[1:] and torch.equal(o1.q, out[b].q[1])
    # a zero-size batch: the right shape, no accelerator job
    for b in layers:
        z = layers[b](x[:0])
        assert z.q.shape == (0, *y.shape[1:]) and layers[b].last_report.cycles == 0
    assert fl(x[:0]).shape == conv(x[:0]).shape


def test_fpga_conv2d_relu_and_bn_fused(accs):
    """from_float with a BatchNorm folded in and a fused ReLU, against conv -> bn -> relu in float."""
    torch.manual_seed(3)
    conv, bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    ref_mod = nn.Sequential(conv, bn, nn.ReLU()).eval()
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        y = ref_mod(x)
    s_in, s_out = quant.calibrate_minmax(x.numpy()), quant.calibrate_minmax(y.numpy())
    outs = []
    for b in ("model", "verilator"):
        layer = FPGAConv2d.from_float(conv, s_in, s_out, bn=bn, relu=True, accelerator=accs(b), output="int8")
        outs.append(layer(x))
    assert torch.equal(outs[0].q, outs[1].q) and outs[0].q.min() >= 0
    # the bound with the folded weights (a conv carrying them)
    folded = copy.deepcopy(conv)
    W, _ = pf.nn.fuse_bn(conv, bn)
    with torch.no_grad():
        folded.weight.copy_(torch.from_numpy(W))
    err = (outs[0].float().double() - y.double()).abs()
    assert (err <= conv_bound(folded, layer.q, x)).all()


def test_fpga_conv2d_on_z1(accs):
    """The PYNQ-Z1 build: a strided, padded conv wider than the 16-column array, and a depthwise conv."""
    torch.manual_seed(4)
    x = torch.randn(2, 24, 9, 9)
    for conv in (nn.Conv2d(24, 40, 3, stride=2, padding=1), nn.Conv2d(24, 24, 3, padding=1, groups=24)):
        with torch.no_grad():
            y = conv(x)
        s_in, s_out = quant.calibrate_minmax(x.numpy()), quant.calibrate_minmax(y.numpy())
        layers = [FPGAConv2d.from_float(conv, s_in, s_out, accelerator=accs(b, "z1"), output="int8")
                  for b in ("model", "verilator")]
        o = [layer(x) for layer in layers]
        assert torch.equal(o[0].q, o[1].q)
        assert ((o[0].float().double() - y.double()).abs() <= conv_bound(conv, layers[0].q, x)).all()


# --- FPGALinear --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 20), (20,), (2, 3, 20), (0, 20), (2, 0, 20)], ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_fpga_linear(shape, relu, accs):
    torch.manual_seed(5)
    lin = nn.Linear(20, 12)
    x = torch.randn(*shape)
    calib = torch.randn(8, 20)                                   # scales from a calibration batch
    with torch.no_grad():
        yc = lin(calib)
        y = lin(x)
    if relu:
        yc, y = yc.relu(), y.relu()
    xmax = max(calib.abs().max().item(), x.abs().max().item() if x.numel() else 0.0)
    s_in, s_out = quant.scale_from_amax(xmax), quant.scale_from_amax(max(yc.abs().max().item(),
                                                                         y.abs().max().item() if y.numel() else 0))
    outs = {b: FPGALinear.from_float(lin, s_in, s_out, relu=relu, accelerator=accs(b), output="int8", name="fc")(x)
            for b in ("model", "verilator")}
    assert outs["model"].q.shape == y.shape
    assert torch.equal(outs["model"].q, outs["verilator"].q)
    fl = FPGALinear.from_float(lin, s_in, s_out, relu=relu, accelerator=accs("model"))
    yf = fl(x)
    assert yf.shape == y.shape and yf.dtype == torch.float32
    assert ((yf.double() - y.double()).abs() <= linear_bound(fl.q, x)).all()
    # output='acc': the int32 accumulators, dequantized (no requantization step, so no s_out/2 term)
    ya = FPGALinear.from_float(lin, s_in, s_out, relu=relu, accelerator=accs("model"), output="acc")(x)
    assert ya.shape == y.shape
    assert ((ya.double() - y.double()).abs() <= linear_bound(fl.q, x) - s_out / 2).all()


# --- property test: the exact int32 path vs torch's float64 conv on the int8 values ---------------------------
@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 3))
    C, Co = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    stride = draw(st.sampled_from([1, 2, 3, (1, 2), (2, 1)]))
    dilation = draw(st.sampled_from([1, 2, (2, 1)]))
    padding = draw(st.sampled_from([0, 1, 2, (1, 0), (0, 2), "valid"] + (["same"] if stride == 1 else [])))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    batch = draw(st.sampled_from([None, 1, 2]))
    return dict(C=C, Co=Co, k=(kh, kw), H=H, W=W, stride=stride, dilation=dilation, padding=padding, mode=mode,
                groups=groups, batch=batch, bias=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.filter_too_much])
@given(conv_configs())
def test_conv_int32_path_property(cfg):
    """Integer-valued float weights with +-127 in every channel give s_w = 1 exactly; integer inputs in
    [-128, 127] with s_in = 1 quantize to themselves: the 'acc' output is then the int32 accumulator itself
    (|acc| < 2**24, exact in float32) and must equal torch's float64 conv of the same integers, exactly."""
    conv = nn.Conv2d(cfg["C"], cfg["Co"], cfg["k"], stride=cfg["stride"], padding=cfg["padding"],
                     dilation=cfg["dilation"], groups=cfg["groups"], bias=cfg["bias"], padding_mode=cfg["mode"],
                     dtype=torch.float64)
    rng = np.random.default_rng(cfg["seed"])
    W = rng.integers(-127, 128, conv.weight.shape)
    W.reshape(len(W), -1)[:, 0] = rng.choice([-127, 127], len(W))      # max |w| = 127 per output channel
    shape = (cfg["C"], cfg["H"], cfg["W"]) if cfg["batch"] is None else (cfg["batch"], cfg["C"], cfg["H"], cfg["W"])
    x = torch.from_numpy(rng.integers(-128, 128, shape).astype(np.float64))
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(W.astype(np.float64)))
        if conv.bias is not None:
            conv.bias.copy_(torch.from_numpy(rng.integers(-5000, 5000, cfg["Co"]).astype(np.float64)))
        try:
            ref = conv(x)
        except RuntimeError:                                    # torch rejects it (empty output, pad too large)
            assume(False)
    layer = FPGAConv2d.from_float(conv, 1.0, 1.0, accelerator=pf.Accelerator("model", "sim8"), output="acc")
    assert np.all(layer.q.s_w == 1.0)
    y = layer(x)
    assert y.dtype == torch.float32 and y.shape == ref.shape
    assert torch.equal(y.double(), ref)
    assert layer.last_report.macs == pf.conv.conv2d_macs((cfg["batch"] or 1, cfg["C"], cfg["H"], cfg["W"]),
                                                         W.shape, cfg["stride"], cfg["padding"], cfg["dilation"],
                                                         cfg["groups"])


# --- pf.offload --------------------------------------------------------------------------------------------------
def randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


def seq_model():
    torch.manual_seed(6)
    return randomize_bn(nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12 * 4 * 4, 32), nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(32, 10))).eval()


def rel_err(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


# A few chained int8 layers: each requantization adds at most half a step of its output range (1/254 of max|y|)
# and each input is rounded to 1/254 of its range; the digits CNN's per-layer RMS errors (notebook 04) are well
# below 1 step. Five layers of that stay within a few percent of the output's norm: we allow 5%.
REL_TOL = 0.05


def test_offload_sequential_fuses_and_flows_int8(digits):
    X_train, _, X_test, _ = digits
    model = seq_model()
    om = pf.offload(model, torch.from_numpy(X_train[:300]), backend="model")
    kinds = [type(m).__name__ for m in om]
    assert kinds == ["FPGAConv2d", "Identity", "Identity", "Int8Through", "FPGAConv2d", "Identity", "Identity",
                     "Int8Through", "FPGALinear", "Identity", "Int8Through", "FPGALinear"]
    assert [m.q.relu for m in fpga_layers(om)] == [True, True, True, False]
    assert [m.output for m in fpga_layers(om)] == ["int8", "int8", "int8", "acc"]
    assert isinstance(om[3].module, nn.MaxPool2d) and isinstance(om[10].module, nn.Dropout)
    assert model[1].__class__ is nn.BatchNorm2d                # the original is untouched
    # int8 flows: each offloaded layer after the first gets an Int8Activation at exactly its own input scale
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((type(m).__name__, type(i[0]).__name__,
                                                                  type(o).__name__)))
             for m in om if not isinstance(m, nn.Identity)]
    x = torch.from_numpy(X_test[:40])
    y = om(x)
    for h in hooks:
        h.remove()
    assert seen[0] == ("FPGAConv2d", "Tensor", "Int8Activation")
    assert all(s[1] == "Int8Activation" for s in seen[1:])
    assert seen[-1] == ("FPGALinear", "Int8Activation", "Tensor")
    layers = fpga_layers(om)
    for a, b in zip(layers, layers[1:], strict=False):
        assert b.q.s_in == a.q.s_out
    with torch.no_grad():
        ref = model(x)
    assert y.shape == ref.shape and rel_err(y, ref) < REL_TOL
    # the same model on the Verilated RTL: identical logits
    ov = pf.offload(model, torch.from_numpy(X_train[:300]), backend="verilator" if HAVE_VERILATOR else "model",
                    config="sim8")
    assert torch.equal(ov(x), pf.offload(model, torch.from_numpy(X_train[:300]), backend="model", config="sim8")(x))


class Block(nn.Module):
    """A residual block with a custom forward: two offloaded convs from a ModuleList, the add on the CPU."""

    def __init__(self, c):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for _ in range(2)])
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu(self.convs[0](x))
        y = self.convs[1](y)
        return F.relu(self.bn(x + y))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(Block(8), Block(8))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def test_offload_custom_modules_residual(digits, accs):
    X_train, _, X_test, _ = digits
    torch.manual_seed(7)
    model = randomize_bn(Net(), 1).eval()
    om = pf.offload(model, torch.from_numpy(X_train[:200]), backend="model", config="sim8")
    names = [m.layer_name for m in fpga_layers(om)]
    assert names == ["stem.0", "blocks.0.convs.0", "blocks.0.convs.1", "blocks.1.convs.0", "blocks.1.convs.1",
                     "head.2"]
    assert isinstance(om.blocks[0].convs[1], FPGAConv2d) and isinstance(om.blocks[0].bn, nn.BatchNorm2d)
    # outside a Sequential nothing is fused and nothing leaves an offloaded layer in int8: the adds see floats
    assert [m.output for m in fpga_layers(om)] == ["float"] * 5 + ["acc"]
    assert isinstance(om.head[0], nn.AdaptiveAvgPool2d)          # not int8-safe: stays a float CPU op
    x = torch.from_numpy(X_test[:30])
    y = om(x)                                                   # no torch.no_grad() needed: an inference copy
    with torch.no_grad():
        ref = model(x)
    assert rel_err(y, ref) < REL_TOL
    if HAVE_VERILATOR:
        ov = pf.offload(model, torch.from_numpy(X_train[:200]), accelerator=accs("verilator"))
        assert torch.equal(ov(x), y)


def test_offload_training_mode_warns(digits):
    model = seq_model().train()
    with pytest.warns(UserWarning, match="training mode.*switched to eval"):
        om = pf.offload(model, torch.from_numpy(digits[0][:100]), backend="model")
    assert model.training and model[1].training                # the caller's model is left alone
    assert not any(m.training for m in om.modules())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pf.offload(model.eval(), torch.from_numpy(digits[0][:100]), backend="model")


def test_offload_single_layer_and_calibration_options(digits):
    X = torch.from_numpy(digits[0][:100])
    conv = nn.Conv2d(1, 4, 3).eval()
    oc = pf.offload(conv, X, backend="model")
    assert isinstance(oc, FPGAConv2d) and oc.layer_name == "conv2d" and oc.fpga_accelerator is oc.acc
    with torch.no_grad():
        assert rel_err(oc(X), conv(X)) < REL_TOL
    # float64 data (e.g. numpy) for a float32 model, and percentile calibration (finer input and output steps)
    om = pf.offload(seq_model(), digits[0][:100].astype(np.float64), backend="model")
    op = pf.offload(seq_model(), X, backend="model", calibration="percentile")
    for a, b in zip(fpga_layers(om), fpga_layers(op), strict=True):
        assert b.q.s_out <= a.q.s_out and b.q.s_in <= a.q.s_in
    with pytest.raises(ValueError, match="calibration must be"):
        pf.offload(seq_model(), X, backend="model", calibration="mse")


# --- the digits CNN ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_offloaded(digits):
    X_train = digits[0]
    return dc.load_pretrained(), pf.offload(dc.load_pretrained(), torch.from_numpy(X_train), backend="model")


def test_digits_accuracy(digits, digits_offloaded):
    _, _, X_test, y_test = digits
    model, om = digits_offloaded
    float_acc = dc.accuracy(dc.predict(model, X_test), y_test)
    int8_acc = dc.accuracy(dc.predict(om, X_test), y_test)
    # 450 test images: one image is 0.22 pp. The numpy int8 reference (notebook 04) stays within 1 pp of float;
    # quantization noise only flips near-ties, so we allow 1.5 pp (7 images) either way.
    assert float_acc > 0.97
    assert abs(int8_acc - float_acc) <= 0.015, (float_acc, int8_acc)


@needs_verilator
def test_digits_bit_identical_on_verilator(digits, digits_offloaded, accs):
    _, _, X_test, _ = digits
    _, om = digits_offloaded
    x = torch.from_numpy(X_test[:300])
    ov = pf.offload(dc.load_pretrained(), torch.from_numpy(digits[0]), accelerator=accs("verilator", "z1"))
    assert all(m.acc.backend.name == "verilator" for m in fpga_layers(ov))
    assert torch.equal(om(x), ov(x))
    for a, b in zip(fpga_layers(om), fpga_layers(ov), strict=True):
        assert_cycles_close(a.last_report, b.last_report)


def test_digits_matches_run_int8(digits, digits_offloaded):
    """pf.offload and digits_cnn's numpy pipeline agree bit for bit when given the same scales.

    Their own calibrations differ in the 7th digit: offload records ranges with hooks on the float32 torch
    model, dc.calibrate runs the BN-folded network in float64 numpy. So we hand run_int8 offload's scales.
    """
    X_train, _, X_test, _ = digits
    _, om = digits_offloaded
    layers = {m.layer_name: m for m in fpga_layers(om)}
    own = dc.calibrate(dc.fold_model(dc.load_pretrained()), X_train)
    for name, m in layers.items():
        assert m.q.s_out == pytest.approx(own[name], rel=1e-6)
    scales = {"input": layers["conv1"].q.s_in, **{n: m.q.s_out for n, m in layers.items()}}
    qmodel = dc.quantize_model(dc.fold_model(dc.load_pretrained()), scales)
    logits, trace = dc.run_int8(qmodel, X_test)
    for name, m in layers.items():                              # same integers in every layer
        np.testing.assert_array_equal(qmodel.layers[name].w_int8, m.q.w_int8)
        np.testing.assert_array_equal(qmodel.layers[name].bias_int32, m.q.bias_int32)
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o: seen.__setitem__(m.layer_name, o)) for m in layers.values()]
    y = om(torch.from_numpy(X_test))
    for h in hooks:
        h.remove()
    for name in ("conv1", "conv2", "dw", "pw"):
        np.testing.assert_array_equal(seen[name].q.numpy(), trace[name]["q"])
    assert torch.equal(y, torch.from_numpy(logits.astype(np.float32)))


# --- errors ------------------------------------------------------------------------------------------------------
def test_errors_name_the_layer(digits):
    X = torch.from_numpy(digits[0][:50])
    om = pf.offload(seq_model(), X, backend="model")
    with pytest.raises(RuntimeError, match=r"FPGAConv2d '0' runs inference only.*eval mode"):
        om.train()
    om.eval()
    xg = X[:2].clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match=r"FPGAConv2d '0': no backward pass.*torch.no_grad"):
        om(xg)
    with torch.no_grad():
        om(xg)                                                  # fine without autograd
    with pytest.raises(TypeError, match=r"FPGAConv2d '0' expects float input.*torch.int64"):
        om(X[:2].long())
    with pytest.raises(TypeError, match=r"FPGALinear 'fc' expects a torch.Tensor, got list"):
        FPGALinear.from_float(nn.Linear(3, 2), 0.1, 0.1, name="fc")([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match=r"c1: FPGAConv2d.from_float takes an nn.Conv2d, got Conv1d"):
        FPGAConv2d.from_float(nn.Conv1d(1, 2, 3), 0.1, 0.1, name="c1")

    class WithConv3d(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.Conv3d(2, 2, 1)))

        def forward(self, x):
            return self.body(x)
    with pytest.raises(NotImplementedError, match=r"layer 'body.1.0' is a Conv3d.*nn.Conv2d and nn.Linear"):
        pf.offload(WithConv3d().eval(), X, backend="model")
    with pytest.raises(NotImplementedError, match=r"layer 'seq.0' is a Conv1d.*nn.Conv2d and nn.Linear"):
        m = nn.Module()
        m.seq = nn.Sequential(nn.Conv1d(1, 2, 3))
        pf.offload(m.eval(), X, backend="model")
    with pytest.raises(NotImplementedError, match=r"'conv1d' is a Conv1d"):
        pf.offload(nn.Conv1d(1, 2, 3).eval(), torch.randn(4, 1, 9), backend="model")
    with pytest.raises(ValueError, match="calibration_data is empty"):
        pf.offload(seq_model(), X[:0], backend="model")
    with pytest.raises(TypeError, match="calibration_data must be float"):
        pf.offload(seq_model(), X.long(), backend="model")
    with pytest.raises(ValueError, match="no nn.Conv2d or nn.Linear"):
        pf.offload(nn.Sequential(nn.ReLU(), nn.Flatten()).eval(), X, backend="model")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        pf.offload(lambda x: x, X)


# --- backend='auto' ----------------------------------------------------------------------------------------------
@needs_verilator
def test_auto_backend_picks_the_virtual_pynq_once(digits, monkeypatch, capsys):
    monkeypatch.setattr(pf.backends, "_announced", set())
    X = torch.from_numpy(digits[0][:50])
    oms = [pf.offload(seq_model(), X, backend="auto", config="sim8") for _ in range(2)]
    err = capsys.readouterr().err
    assert len(re.findall(r"backend 'auto' picked 'pynq' \(the virtual PYNQ", err)) == 1, err
    assert all(m.fpga_accelerator.backend.name == "pynq" and m.fpga_accelerator.backend.virtual for m in oms)
    assert all(m.acc.backend.name == "pynq" for m in fpga_layers(oms[0]))


@needs_verilator
def test_auto_backend_without_pynq_picks_verilator(monkeypatch, capsys):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pynq" else real(name, *a))
    monkeypatch.setattr(pf.backends, "_announced", set())
    assert pf.backends.auto() == "verilator"
    assert "picked 'verilator' (the Verilated RTL" in capsys.readouterr().err


# --- pf.profile --------------------------------------------------------------------------------------------------
def test_profile_rows(digits, digits_offloaded):
    _, om = digits_offloaded
    x = torch.from_numpy(digits[2][:16])
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.__setitem__(m.layer_name, tuple(i[0].shape)))
             for m in fpga_layers(om)]
    prof = pf.profile(om, x)
    for h in hooks:
        h.remove()
    names = [r["layer"] for r in prof.rows]
    assert names == ["conv1", "conv2", "pool", "dw", "pw", "flatten", "fc"]    # the Identity leftovers are gone
    layers = {m.layer_name: m for m in fpga_layers(om)}
    for r in prof.rows:
        if r["layer"] in layers:
            m = layers[r["layer"]]
            assert r["where"] == "fpga" and r["cycles"] == m.last_report.cycles > 0
            if isinstance(m, FPGAConv2d):
                macs = pf.conv.conv2d_macs(shapes[r["layer"]], m.q.w_int8.shape, **{
                    k: m.conv_args[k] for k in ("stride", "padding", "dilation", "groups")})
            else:
                macs = shapes[r["layer"]][0] * m.q.w_int8.size
            assert r["macs"] == macs
            assert r["time_us"] == pytest.approx(r["cycles"] / om.fpga_accelerator.cfg.clock_mhz)
            assert r["utilization"] == pytest.approx(macs / (256 * r["cycles"]))
        else:
            assert r["where"] == "cpu" and r["type"] == "Int8Through" and r["macs"] == 0
    total = prof.fpga_us + prof.cpu_us
    assert sum(r["time_us"] / total for r in prof.rows) == pytest.approx(1.0)
    assert prof.fpga_us == pytest.approx(sum(m.last_report.cycles for m in layers.values()) / 100.0)
    table = prof.table()
    assert all(n in table for n in names) and "at 100 MHz" in table
