"""pf.offload never silently wrong: calibration guards, saturation counts, accumulator limits, empty batches,
and offloaded models that deep-copy, pickle and torch.save."""
import copy
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pytorch_fpga as pf
from pytorch_fpga.nn import CalibrationWarning, fpga_layers
from pytorch_fpga.runtime import compiler


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


def data(n=32, seed=1):
    return torch.randn(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def test_nan_in_calibration_data_raises_naming_the_samples():
    X = data()
    X[3, 0, 2, 2] = float("nan")
    X[7, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or inf values \(in samples \[3, 7\]\)"):
        pf.offload(small_cnn(), X, backend="model")


class Reciprocal(nn.Module):
    def forward(self, x):
        return 1.0 / x


def test_a_layer_that_sees_inf_is_named_with_its_batch():
    model = nn.Sequential(Reciprocal(), nn.Flatten(), nn.Linear(36, 3)).eval()
    X = data(40)
    X[25] = 0.0                                              # 1/0 = inf reaches the Linear in samples 16..31
    with pytest.raises(ValueError, match=r"layer '2'.*NaN or inf on calibration samples 16\.\.31"):
        pf.offload(model, X, backend="model", batch_size=16)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_a_degenerate_batch_size_raises(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        pf.offload(small_cnn(), data(), backend="model", batch_size=batch_size)


def test_constant_data_warns():
    with pytest.warns(CalibrationWarning, match="calibration_data is constant"):
        pf.offload(small_cnn(), torch.full((8, 1, 6, 6), 0.5), backend="model")


def test_a_dead_relu_warns_naming_the_layer():
    model = small_cnn()
    with torch.no_grad():
        model[0].bias.fill_(-1e3)                            # every conv output negative: ReLU gives 0
    with pytest.warns(CalibrationWarning, match=r"layer '0': its fused ReLU output was 0 .*dead ReLU"):
        pf.offload(model, data(), backend="model")


class Skips(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.used(x)


def test_a_layer_the_data_never_reaches_raises():
    with pytest.raises(ValueError, match=r"layer 'unused' never ran on the calibration data"):
        pf.offload(Skips().eval(), torch.randn(8, 4), backend="model")


def test_healthy_calibration_gives_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pf.offload(small_cnn(), data(), backend="model")


def test_saturation_is_counted_per_layer_and_shown_by_profile():
    om = pf.offload(small_cnn(), data(), backend="model")
    conv, fc = fpga_layers(om)
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


@pytest.mark.parametrize("backend", ["model", "verilator"])
def test_an_offloaded_model_deep_copies_pickles_and_saves(backend, tmp_path):
    om = pf.offload(small_cnn(), data(), backend=backend, config="sim8")
    x = data(6, seed=5)
    with torch.no_grad():
        want = om(x)
    buf = io.BytesIO()
    torch.save(om, buf)
    buf.seek(0)
    copies = [copy.deepcopy(om), pickle.loads(pickle.dumps(om)), torch.load(buf, weights_only=False)]
    for c in copies:
        layers = fpga_layers(c)
        assert layers[0].acc is layers[1].acc                 # the layers still share one accelerator
        assert layers[0].acc.backend.name == backend          # re-attached on first use
        with torch.no_grad():
            assert torch.equal(c(x), want)
