"""pytorch_fpga.nn: the single-layer FPGAConv2d / FPGALinear, and pf.offload (= pf.compile: a CompiledModel) with
pf.profile, on the 'model' and 'verilator' backends.

The int8 results must be identical on both backends (the Verilated RTL is bit-exact with the numpy model), and
the float results close to the float PyTorch modules: within a bound derived from the quantization steps for one
layer, within a relative error (and the digits CNN's accuracy within 1.5 pp of float) for compiled models.
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
from pytorch_fpga.runtime import report
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



# --- pf.offload: pf.compile under its first name ------------------------------------------------------------------
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


# seq_model's accelerator layers and the float modules whose output each one stands for (after its BN and ReLU)
SEQ_LAYERS = {"0": "2", "4": "6", "8": "9", "11": "11"}


def rel_err(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def float_outputs(model, x, names):
    """{module name: its output on x} from forward hooks on the float model: the calibration oracle."""
    seen = {}
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, (i[0], o)))
             for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


# A few chained int8 layers: each requantization adds at most half a step of its output range (1/254 of max|y|)
# and each input is rounded to 1/254 of its range; the digits CNN's per-layer RMS errors (notebook 04) are well
# below 1 step. Five layers of that stay within a few percent of the output's norm: we allow 5%.
REL_TOL = 0.05


def test_offload_sequential_folds_fuses_and_runs_int8_end_to_end(digits):
    X_train, _, X_test, _ = digits
    model = seq_model()
    x = torch.from_numpy(X_test[:40])
    with torch.no_grad():
        ref = model(x)
    om = pf.offload(model, torch.from_numpy(X_train[:300]), backend="model", config="sim8")
    assert isinstance(om, pf.nn.CompiledModel) and isinstance(om, nn.Module) and not om.training
    # every Conv2d and Linear on the accelerator, with its BatchNorm folded in and its ReLU fused
    assert [n.name for n in fpga_layers(om)] == list(SEQ_LAYERS)
    assert {"1", "2"} <= set(om.graph["0"].fused) and {"5", "6"} <= set(om.graph["4"].fused)
    assert "9" in om.graph["8"].fused and not {"9", "10"} & set(om.graph["11"].fused)
    assert [om.graph[n].attrs["relu"] for n in SEQ_LAYERS] == [True, True, True, False]
    ops = om.graph.ops()
    assert "batchnorm" not in ops and "relu" not in ops and "identity" not in ops    # folded, fused, Dropout gone
    assert (om.graph["3"].op, om.graph["3"].placement) == ("maxpool", "host int8")
    assert (om.graph["7"].op, om.graph["7"].placement) == ("flatten", "host int8")
    # int8 from the input quantization to the logits, which leave the last Linear as int32 accumulators
    assert all(n.dtype == "int8" for n in om.graph if n.op != "output" and n.name != "11")
    assert om.graph["11"].dtype == "int32" and "host float" not in {n.placement for n in om.graph}
    # the caller's model is untouched
    assert isinstance(model[1], nn.BatchNorm2d)
    with torch.no_grad():
        assert torch.equal(model(x), ref)
    y = om(x)
    assert y.dtype == torch.float32 and y.shape == ref.shape and rel_err(y, ref) < REL_TOL
    assert torch.equal(om(x[:7]), y[:7])                        # another batch size: the same per-image integers
    # the same model on the Verilated RTL: identical logits
    if HAVE_VERILATOR:
        ov = pf.offload(model, torch.from_numpy(X_train[:300]), backend="verilator", config="sim8")
        assert torch.equal(ov(x), y)


class Block(nn.Module):
    """A residual block with a custom forward: two convs from a ModuleList, the add, a BatchNorm after it."""

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


def test_offload_custom_modules_residual(digits):
    X_train, _, X_test, _ = digits
    model = randomize_bn(Net(), 1).eval()
    # AdaptiveAvgPool2d(2) has no int8 kernel: named with its line, it runs on the host in float
    with pytest.warns(UserWarning, match=r"node 'head\.0' \(aten\.adaptive_avg_pool2d\.default at test_nn\.py:\d+\)"
                                         r" has no int8 kernel: it runs on the host in float"):
        om = pf.offload(model, torch.from_numpy(X_train[:200]), backend="model", config="sim8")
    names = [n.name for n in fpga_layers(om)]
    convs = ["stem.0", "blocks.0.convs.0", "blocks.0.convs.1", "blocks.1.convs.0", "blocks.1.convs.1", "head.2"]
    assert [n for n in names if n in convs] == convs             # module paths, in order
    assert om.graph["head.0"].placement == "host float"
    adds = [n for n in om.graph if n.op == "add"]                 # the residual adds: int8 kernels on the host
    assert [(a.placement, a.dtype) for a in adds] == [("host int8", "int8")] * 2
    assert all(f"blocks.{i}.convs.1" in a.inputs for i, a in enumerate(adds))
    x = torch.from_numpy(X_test[:30])
    y = om(x)                                                   # no torch.no_grad() needed
    with torch.no_grad():
        ref = model(x)
    assert rel_err(y, ref) < REL_TOL
    if HAVE_VERILATOR:
        with pytest.warns(UserWarning, match="head.0"):
            ov = pf.offload(model, torch.from_numpy(X_train[:200]), backend="verilator", config="sim8")
        assert torch.equal(ov(x), y)


def test_offload_training_mode_warns(digits):
    X = torch.from_numpy(digits[0][:100])
    model = seq_model().train()
    with pytest.warns(UserWarning, match="training mode.*compiled as in eval"):
        om = pf.offload(model, X, backend="model")
    assert not om.training
    with torch.no_grad():
        ref = seq_model()(X[:20])                                # the eval-mode float model: no dropout, BN stats
    assert rel_err(om(X[:20]), ref) < REL_TOL
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pf.offload(seq_model(), X, backend="model")


def test_offload_leaves_the_callers_model_in_training_mode(digits):
    model = seq_model().train()
    with pytest.warns(UserWarning, match="training mode"):
        pf.offload(model, torch.from_numpy(digits[0][:100]), backend="model")
    assert model.training and model[1].training


def test_offload_calibration_options(digits):
    """Each tensor's scale is its range / 127: max |value| ('minmax') or the 99.99th percentile of |values|
    ('percentile') over the calibration data, measured here with hooks on the float model."""
    X = torch.from_numpy(digits[0][:100])
    model = seq_model()
    outs = float_outputs(model, X, SEQ_LAYERS.values())
    ranges = {"input": np.abs(X.double().numpy())}
    ranges.update({n: np.abs(outs[m][1].double().numpy()) for n, m in SEQ_LAYERS.items() if n != "11"})
    om = pf.offload(model, X, backend="model")
    op = pf.offload(model, X, backend="model", calibration="percentile")
    for name, a in ranges.items():
        assert om.graph[name].scale == pytest.approx(a.max() / 127, rel=1e-6), name
        assert op.graph[name].scale == pytest.approx(np.percentile(a, 99.99) / 127, rel=1e-5), name
        assert op.graph[name].scale <= om.graph[name].scale
    assert op.graph["0"].scale < om.graph["0"].scale              # a finer step where the range has outliers
    # float64 data (e.g. numpy) for a float32 model: the same scales (up to float32 noise: torch's CPU conv sums in
    # an order that depends on the buffer's alignment) and the same outputs
    o64 = pf.offload(model, digits[0][:100].astype(np.float64), backend="model")
    assert [n.name for n in o64.graph] == [n.name for n in om.graph]
    for a, b in zip(o64.graph, om.graph, strict=True):
        assert a.scale == b.scale or a.scale == pytest.approx(b.scale, rel=1e-6), a.name
    assert rel_err(o64(X[:10]), om(X[:10])) < 1e-3
    # a single layer compiles too
    conv = nn.Conv2d(1, 4, 3).eval()
    oc = pf.offload(conv, X, backend="model")
    assert [n.op for n in fpga_layers(oc)] == ["conv2d"]
    with torch.no_grad():
        assert rel_err(oc(X), conv(X)) < REL_TOL
    with pytest.raises(ValueError, match=r"calibration must be 'minmax' or 'percentile', got 'mse'"):
        pf.offload(seq_model(), X, backend="model", calibration="mse")


# --- the digits CNN ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_offloaded(digits):
    """The float digits CNN, it compiled (calibrated on the training set), and its int8 logits on the test set."""
    X_train, _, X_test, _ = digits
    om = pf.offload(dc.load_pretrained(), torch.from_numpy(X_train), backend="model")
    return dc.load_pretrained(), om, om(torch.from_numpy(X_test)).numpy()


def test_digits_accuracy(digits, digits_offloaded):
    _, _, X_test, y_test = digits
    model, _, logits = digits_offloaded
    float_acc = dc.accuracy(dc.predict(model, X_test), y_test)
    int8_acc = dc.accuracy(logits, y_test)
    # 450 test images: one image is 0.22 pp. The numpy int8 reference (notebook 04) stays within 1 pp of float;
    # quantization noise only flips near-ties, so we allow 1.5 pp (7 images) either way.
    assert float_acc > 0.97
    assert abs(int8_acc - float_acc) <= 0.015, (float_acc, int8_acc)


def assert_profiles_agree(model_prof, rtl_prof):
    """Step by step the same work (jobs, MACs); cycles from accel.cycle_model within 1% + 8 cycles a job of the
    RTL's counters (the tolerance of tb/conv_accel)."""
    assert [r["step"] for r in model_prof.rows] == [r["step"] for r in rtl_prof.rows]
    for a, b in zip(model_prof.rows, rtl_prof.rows, strict=True):
        assert (a["jobs"], a["macs"]) == (b["jobs"], b["macs"]), (a, b)
        assert abs(a["cycles"] - b["cycles"]) <= 0.01 * a["cycles"] + 8 * a["jobs"], (a, b)
    assert sum(r["jobs"] for r in rtl_prof.rows) > 0


@needs_verilator
def test_digits_bit_identical_on_verilator(digits, digits_offloaded):
    _, om, _ = digits_offloaded
    x = torch.from_numpy(digits[2][:64])
    ov = pf.offload(dc.load_pretrained(), torch.from_numpy(digits[0]), backend="verilator", config="z1")
    assert ov.compiled.backend.name == "verilator"
    assert torch.equal(om(x), ov(x))
    assert_profiles_agree(om.profile(x[:16]), ov.profile(x[:16]))


def test_digits_int8_agrees_with_the_numpy_pipeline(digits, digits_offloaded):
    """pf.offload against digits_cnn's independent numpy int8 pipeline (fold_model, calibrate, quantize_model,
    run_int8): the same min/max ranges, the same accuracy within 1 pp, the same predictions.

    They fold and calibrate at different precision (float32 torch vs float64 numpy), so their scales agree to
    about 1e-7, not bit for bit, and a requantization can land on the other side of a rounding tie.
    """
    X_train, _, X_test, y_test = digits
    _, om, y = digits_offloaded
    ops = dc.fold_model(dc.load_pretrained())
    own = dc.calibrate(ops, X_train)
    for name in ("input", "conv1", "conv2", "dw", "pw"):
        assert om.graph[name].scale == pytest.approx(own[name], rel=1e-6), name
    logits, _ = dc.run_int8(dc.quantize_model(ops, own), X_test)      # = dc.quantized_inference(model, X_test, X_train)
    assert abs(dc.accuracy(y, y_test) - dc.accuracy(logits, y_test)) <= 0.01
    # handed the compiled program's scales, the numpy pipeline predicts the same digits (at most 2 of 450 differ)
    scales = dict(own, input=om.graph["input"].scale, **{n.name: n.scale for n in fpga_layers(om) if n.scale})
    theirs, _ = dc.run_int8(dc.quantize_model(ops, scales), X_test)
    assert np.count_nonzero(theirs.argmax(1) != y.argmax(1)) <= 2
    assert np.corrcoef(theirs.ravel(), y.ravel())[0, 1] > 0.999


# --- errors ------------------------------------------------------------------------------------------------------
def test_errors_are_clear(digits):
    X = torch.from_numpy(digits[0][:50])
    om = pf.offload(seq_model(), X, backend="model")
    with pytest.raises(RuntimeError, match=r"inference only.*pf.compile it again"):
        om.train()
    om.eval()
    xg = X[:2].clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match=r"no backward pass.*torch.no_grad"):
        om(xg)
    with torch.no_grad():
        assert torch.equal(om(xg), om(X[:2]))                   # fine without autograd
    with pytest.raises(TypeError, match=r"input must be float.*int64"):
        om(X[:2].long())
    with pytest.raises(TypeError, match=r"FPGALinear 'fc' expects a torch.Tensor, got list"):
        FPGALinear.from_float(nn.Linear(3, 2), 0.1, 0.1, name="fc")([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match=r"c1: FPGAConv2d.from_float takes an nn.Conv2d, got Conv1d"):
        FPGAConv2d.from_float(nn.Conv1d(1, 2, 3), 0.1, 0.1, name="c1")
    with pytest.raises(ValueError, match="calibration_data is empty"):
        pf.offload(seq_model(), X[:0], backend="model")
    with pytest.raises(TypeError, match="calibration_data must be float.*int64"):
        pf.offload(seq_model(), X.long(), backend="model")
    with pytest.raises(TypeError, match=r"takes a torch.nn.Module, got function"):
        pf.offload(lambda x: x, X)


class WithConv3d(nn.Module):
    """A Conv3d between two offloadable layers."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1)))
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        y = F.relu(self.conv(x))
        y = self.body(y.unsqueeze(2)).squeeze(2)
        return self.fc(F.relu(y).flatten(1))


def test_an_op_without_int8_kernel_runs_on_the_host_in_float(digits):
    X = torch.from_numpy(digits[0][:100])
    torch.manual_seed(8)
    model = WithConv3d().eval()
    with pytest.warns(UserWarning) as record:
        om = pf.offload(model, X, backend="model")
    msgs = [str(w.message) for w in record]
    assert any(re.match(r"node 'body\.0' \(aten\.conv3d\.default at test_nn\.py:\d+\) has no int8 kernel: it runs "
                        r"on the host in float", m) for m in msgs), msgs
    assert om.graph["body.0"].op == "host_op" and om.graph["body.0"].placement == "host float"
    assert [n.name for n in fpga_layers(om)] == ["conv", "fc"]
    x = torch.from_numpy(digits[2][:40])
    with torch.no_grad():
        ref = model(x)
    assert rel_err(om(x), ref) < REL_TOL
    # a model with no op the accelerator runs at all: a Conv1d alone
    conv1d = nn.Conv1d(1, 2, 3).eval()
    with pytest.warns(UserWarning, match=r"node 'conv1d' \(aten\.conv1d\.default\) has no int8 kernel"):
        o1 = pf.offload(conv1d, torch.randn(40, 1, 9), backend="model")
    assert fpga_layers(o1) == []
    x1 = torch.randn(8, 1, 9)
    with torch.no_grad():
        assert rel_err(o1(x1), conv1d(x1)) < REL_TOL


def test_a_model_without_conv_or_linear_runs_int8_on_the_host(digits):
    """ReLU and Flatten only: no accelerator job; quantizing the input is the only error (half a step)."""
    X = torch.from_numpy(digits[0][:100])
    om = pf.offload(nn.Sequential(nn.ReLU(), nn.Flatten()).eval(), X, backend="model")
    assert fpga_layers(om) == [] and {n.placement for n in om.graph} == {"host int8"}
    x = torch.from_numpy(digits[2][:20]) - 0.5
    s_in = float(X.abs().max()) / 127
    assert (om(x) - x.relu().flatten(1)).abs().max() <= s_in / 2 + 1e-6
    assert om.profile(x).total("jobs") == 0


# --- backend='auto' ----------------------------------------------------------------------------------------------
@needs_verilator
def test_auto_backend_picks_the_virtual_pynq_once(digits, monkeypatch, capsys):
    monkeypatch.setattr(pf.backends, "_announced", set())
    X = torch.from_numpy(digits[0][:50])
    oms = [pf.offload(seq_model(), X, backend="auto", config="sim8") for _ in range(2)]
    err = capsys.readouterr().err
    assert len(re.findall(r"backend 'auto' picked 'pynq' \(the virtual PYNQ", err)) == 1, err
    assert all(m.compiled.backend.name == "pynq" and m.compiled.backend.virtual for m in oms)
    ref = pf.offload(seq_model(), X, backend="model", config="sim8")
    assert torch.equal(oms[0](X[:8]), ref(X[:8]))                 # and it runs there, bit-exact


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
    model, om, _ = digits_offloaded
    x = torch.from_numpy(digits[2][:16])
    prof = pf.profile(om, x)
    assert isinstance(prof, report.ProgramProfile) and prof.batch == 16
    assert [r["step"] for r in prof.rows] == [n.name for n in om.graph]         # every step, in order
    # MACs from the float model's layers and the shapes they see (forward hooks)
    seen = float_outputs(model, x, ["conv1", "conv2", "dw", "pw", "fc"])
    cfg = om.cfg
    for r in prof.rows:
        if om.graph[r["step"]].placement == "accelerator":
            m, inp = model.get_submodule(r["step"]), seen[r["step"]][0]
            macs = (pf.conv.conv2d_macs(tuple(inp.shape), tuple(m.weight.shape), m.stride, m.padding, m.dilation,
                                        m.groups) if isinstance(m, nn.Conv2d) else inp.shape[0] * m.weight.numel())
            assert r["where"] == "accelerator" and r["jobs"] > 0 and r["cycles"] > 0 and r["macs"] == macs
            assert r["accel_us"] == pytest.approx(r["cycles"] / cfg.clock_mhz)
            assert r["utilization"] == pytest.approx(macs / (cfg.rows * cfg.cols * r["cycles"]))
            assert 0 < r["utilization"] <= 1
            assert r["setup_us"] == pytest.approx(r["jobs"] * report.SETUP_US_PER_JOB)
        else:
            assert r["where"] == "host int8" and r["jobs"] == 0 and r["cycles"] == 0 and r["macs"] == 0
            assert r["accel_us"] == 0 and r["setup_us"] == 0
        assert r["host_us"] >= 0
    assert {r["step"] for r in prof.rows if r["jobs"]} == {"conv1", "conv2", "dw", "pw", "fc"}
    assert prof.accel_us == pytest.approx(sum(r["cycles"] for r in prof.rows) / cfg.clock_mhz)
    assert prof.end_to_end_us == pytest.approx(prof.accel_us + prof.setup_us + prof.host_us)
    assert prof.as_dict()["end_to_end_us_projected"] == pytest.approx(prof.end_to_end_us)
    table = prof.table()
    assert all(r["step"] in table for r in prof.rows) and f"at {cfg.clock_mhz:g} MHz" in table
