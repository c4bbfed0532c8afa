"""pf.offload (= pf.compile) never silently wrong: calibration guards, saturation counts of the single-layer
modules, accumulator limits, empty batches, and compiled models that deep-copy, pickle and torch.save."""
import copy
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pytorch_fpga as pf
from pytorch_fpga.graph import quantize
from pytorch_fpga.nn import CalibrationWarning, FPGAConv2d, FPGALinear, Int8Through, fpga_layers
from pytorch_fpga.runtime import compiler
from pytorch_fpga.sim import tools


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


def data(n=32, seed=1):
    return torch.randn(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def test_calibration_warning_is_the_compilers():
    assert CalibrationWarning is quantize.CalibrationWarning and pf.nn.CalibrationWarning is CalibrationWarning
    assert issubclass(CalibrationWarning, UserWarning)


def test_nan_in_calibration_data_raises():
    X = data()
    X[3, 0, 2, 2] = float("nan")
    X[7, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or inf values in samples \[3, 7\]: remove or repair those samples"):
        pf.offload(small_cnn(), X, backend="model")


class Reciprocal(nn.Module):
    def forward(self, x):
        return 1.0 / x


def test_a_node_that_makes_inf_is_named():
    model = nn.Sequential(Reciprocal(), nn.Flatten(), nn.Linear(36, 3)).eval()
    X = data(40)
    X[25] = 0.0                                              # 1/0 = inf in samples 16..31
    with pytest.raises(ValueError, match=r"node '0' produced NaN or inf on the calibration data \(samples 16..31"):
        pf.offload(model, X, backend="model", batch_size=16)
    with pytest.warns(UserWarning) as record:
        pf.offload(model, data(40), backend="model", batch_size=16)       # finite data: fine (1/x on the host)
    assert any(str(w.message).startswith("node '0' (aten.reciprocal.default at test_nn_guards.py:") for w in record)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_a_degenerate_batch_size_raises(batch_size):
    with pytest.raises(ValueError, match=rf"batch_size must be a positive integer.*got {batch_size}"):
        pf.offload(small_cnn(), data(), backend="model", batch_size=batch_size)


def test_the_batch_size_does_not_change_the_calibration():
    a, b = (pf.offload(small_cnn(), data(), backend="model", batch_size=bs) for bs in (5, 256))
    for n, m in zip(a.graph, b.graph, strict=True):           # the max over batches is the max over all
        assert n.scale == m.scale or n.scale == pytest.approx(m.scale, rel=1e-6), n.name


def test_constant_data_warns():
    with pytest.warns(CalibrationWarning, match=r"calibration_data is constant \(every value is 0.5\)"):
        pf.offload(small_cnn(), torch.full((8, 1, 6, 6), 0.5), backend="model")


def test_a_dead_relu_warns_naming_the_layer():
    model = small_cnn()
    with torch.no_grad():
        model[0].bias.fill_(-1e3)                            # every conv output negative: ReLU gives 0
    with pytest.warns(CalibrationWarning, match=r"node '0': its output was 0 for every calibration sample "
                                                r"\(a dead ReLU"):
        om = pf.offload(model, data(), backend="model")
    with torch.no_grad():
        ref = model(data(4, seed=3))                         # the float model only sees the Linear's bias ...
    torch.testing.assert_close(om(data(4, seed=3)), ref, atol=1e-3, rtol=0)    # ... and so does the program


def test_an_all_zero_tensor_warns():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()                                # the conv outputs 0 everywhere: no range to scale
    with pytest.warns(CalibrationWarning, match=r"node '0': its output was 0 for every calibration sample"):
        pf.offload(model, data(), backend="model")


class Skips(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.used(x)


def test_a_layer_the_model_never_calls_is_not_compiled():
    torch.manual_seed(2)
    model, X = Skips().eval(), torch.randn(8, 4)
    om = pf.offload(model, X, backend="model")
    assert [n.name for n in fpga_layers(om)] == ["used"] and "unused" not in [n.name for n in om.graph]
    with torch.no_grad():
        ref = model(X)
    assert float((om(X) - ref).norm() / ref.norm()) < 0.02


def test_healthy_calibration_gives_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pf.offload(small_cnn(), data(), backend="model")


def hand_built(acc):
    """small_cnn as single-layer modules, scales from data() measured here: conv+ReLU -> flatten -> linear."""
    model = small_cnn()
    X = data()
    with torch.no_grad():
        mid = model[1](model[0](X))
    s_in, s_mid = pf.quant.calibrate_minmax(X.numpy()), pf.quant.calibrate_minmax(mid.numpy())
    return nn.Sequential(
        FPGAConv2d.from_float(model[0], s_in, s_mid, relu=True, accelerator=acc, output="int8", name="0"),
        Int8Through(nn.Flatten()),
        FPGALinear.from_float(model[3], s_mid, 1.0, accelerator=acc, output="acc", name="3")).eval()


def test_saturation_is_counted_per_layer_and_shown_by_profile():
    """The single-layer modules count what quantization clips; the per-layer pf.profile shows it."""
    om = hand_built(pf.Accelerator("model", "sim8"))
    conv, fc = om[0], om[2]
    x = data(4, seed=9) * 5                                   # far outside the calibrated range
    with pytest.warns(RuntimeWarning, match=r"'0': inputs reach [0-9.]+x the calibrated range"):
        with torch.no_grad():
            om(x)
    X = x.double().numpy() / conv.q.s_in
    expect = int(np.count_nonzero((np.rint(X) > 127) | (np.rint(X) < -128)))
    assert conv.saturation["inputs"] == x.numel() and conv.saturation["inputs_clipped"] == expect > 0
    Y, _ = conv.acc.conv2d_layer(pf.quant.quantize(x.double().numpy(), conv.q.s_in), conv.q, **conv.conv_args)
    assert conv.saturation["outputs"] == Y.size == 4 * 4 * 6 * 6
    assert conv.saturation["outputs_at_limit"] == int(np.count_nonzero((Y == 127) | (Y == -128))) > 0
    assert fc.saturation["outputs"] == 0                      # logits leave as int32 accumulators: no clipping
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # the far-out-of-range warning comes once a layer
        prof = pf.profile(om, x)
    row = next(r for r in prof.rows if r["layer"] == "0")
    assert (row["inputs"], row["inputs_clipped"]) == (x.numel(), expect)       # this run only
    assert "clip in" in prof.table() and f"{expect / x.numel():.2%}" in prof.table()


def test_the_accumulator_worst_case_is_checked_when_a_layer_is_compiled():
    lin = nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.fill_(0.01)
        lin.bias.zero_()
    s_in = 0.001
    s_w = 0.01 / 127
    with torch.no_grad():
        lin.bias[1] = (2**31 - 1000) * s_in * s_w             # fits int32 alone, not with 4 products of 127*128
    with pytest.raises(OverflowError, match=r"layer 'fc': output channel 1 can overflow the int32 accumulator"):
        pf.nn.FPGALinear.from_float(lin, s_in, 0.1, accelerator=pf.Accelerator("model", "sim8"), name="fc")
    W = np.full((4, 2), 127, np.int8)
    compiler.check_accumulator(W, [2**31 - 1 - 4 * 127 * 128, 0])        # exactly the limit: fine
    with pytest.raises(OverflowError):
        compiler.check_accumulator(W, [2**31 - 4 * 127 * 128, 0])


def test_accelerator_rejects_a_float_bias_and_takes_an_empty_batch():
    acc = pf.Accelerator("model", "sim8")
    X, W = np.ones((3, 5), np.int8), np.ones((5, 2), np.int8)
    with pytest.raises(TypeError, match="bias must be integers"):
        acc.gemm(X, W, np.array([1.7, 2.0]), out_int32=True)
    Y, rep = acc.gemm(X[:0], W, np.array([1, 2]), out_int32=True)
    assert Y.shape == (0, 2) and rep.cycles == 0 and rep.macs == 0
    Wc = np.ones((4, 2, 3, 3), np.int8)
    Y, rep = acc.conv2d(np.ones((0, 2, 7, 5), np.int8), Wc, out_int32=True, stride=2, padding=1)
    expect = torch.nn.functional.conv2d(torch.zeros(0, 2, 7, 5), torch.zeros(4, 2, 3, 3), stride=2, padding=1)
    assert Y.shape == tuple(expect.shape) and rep.cycles == 0


def test_a_compiled_model_refuses_an_empty_batch():
    om = pf.offload(small_cnn(), data(), backend="model")
    with pytest.raises(ValueError, match="the input batch is empty"):
        om(data()[:0])


@pytest.mark.parametrize("backend", ["model", pytest.param("verilator", marks=[
    pytest.mark.skipif(not tools.available("verilator"), reason="needs Verilator")])])
def test_an_offloaded_model_deep_copies_pickles_and_saves(backend):
    om = pf.offload(small_cnn(), data(), backend=backend, config="sim8")
    x = data(6, seed=5)
    with torch.no_grad():
        want = om(x)
    buf = io.BytesIO()
    torch.save(om, buf)
    buf.seek(0)
    copies = [copy.deepcopy(om), pickle.loads(pickle.dumps(om)), torch.load(buf, weights_only=False)]
    for c in copies:
        assert isinstance(c, pf.nn.CompiledModel) and c.compiled.backend.name == backend
        with torch.no_grad():
            assert torch.equal(c(x), want)
        assert torch.equal(c(x[:2]), want[:2])                # a new batch size: lowered again on the copy
