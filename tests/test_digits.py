"""pf.datasets digits split, the shipped digits CNN, and its int8 reference (pytorch_fpga.nn.digits_cnn).

Oracles: torch for BatchNorm folding (float64) and for every integer layer (torch conv2d/matmul on float64
copies of the int8 values, which is exact here, then the documented requantization rule in torch int64 ops;
pf.quant is never called on the oracle side).
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytorch_fpga.core.datasets import load_digits_split
from pytorch_fpga.nn import digits_cnn as dc


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


@pytest.fixture(scope="module")
def model():
    return dc.load_pretrained()


@pytest.fixture(scope="module")
def int8_run(model, split):
    X_train, _, X_test, _ = split
    return dc.quantized_inference(model, X_test, X_train)


# --- the data ----------------------------------------------------------------------------------------------
def test_split_is_deterministic_stratified_and_complete(split):
    from sklearn.datasets import load_digits
    X_train, y_train, X_test, y_test = split
    again = load_digits_split()
    for a, b in zip(split, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(load_digits_split(seed=1)[3], y_test) or \
        not np.array_equal(load_digits_split(seed=1)[2], X_test)
    assert X_train.dtype == X_test.dtype == np.float32 and X_train.shape[1:] == X_test.shape[1:] == (1, 8, 8)
    assert y_train.dtype == y_test.dtype == np.int64
    assert X_train.min() == 0.0 and max(X_train.max(), X_test.max()) == 1.0
    digits = load_digits()
    counts = np.bincount(digits.target, minlength=10)
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), np.round(0.25 * counts).astype(int))
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10) + np.bincount(y_test, minlength=10), counts)
    # Train + test is the whole data set, each image exactly once (compare sorted (pixels, label) rows).
    rows = lambda X, y: np.column_stack([X.reshape(len(X), -1) * 16, y])          # noqa: E731
    both = np.concatenate([rows(X_train, y_train), rows(X_test, y_test)])
    full = rows(digits.images.astype(np.float32) / 16, digits.target)
    np.testing.assert_array_equal(both[np.lexsort(both.T[::-1])], full[np.lexsort(full.T[::-1])])
    # A different fraction still stratifies.
    _, _, _, y10 = load_digits_split(test_fraction=0.1, seed=3)
    np.testing.assert_array_equal(np.bincount(y10, minlength=10), np.round(0.1 * counts).astype(int))


# --- the float model ---------------------------------------------------------------------------------------
def test_pretrained_checkpoint_accuracy(model, split):
    assert dc.CHECKPOINT.stat().st_size < 64 * 1024
    acc = dc.accuracy(dc.predict(model, split[2]), split[3])
    assert acc >= 0.95, acc


def test_train_is_deterministic(split):
    X, y = split[0][:256], split[1][:256]
    a = dc.train(dc.make_model(0), X, y, epochs=1, seed=5).state_dict()
    b = dc.train(dc.make_model(0), X, y, epochs=1, seed=5).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fuse_bn_is_exact_against_torch():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=True).double()
    bn = nn.BatchNorm2d(5).double()
    with torch.no_grad():                            # non-trivial running statistics and affine parameters
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.1, 3)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    W, b = dc.fuse_bn(conv, bn)
    with torch.no_grad():
        ref = bn(conv(x))
    out = F.conv2d(x, torch.from_numpy(W), torch.from_numpy(b), padding=1)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_folded_float_network_matches_torch(model, split):
    X = split[2][:100]
    with torch.no_grad():
        ref = copy.deepcopy(model).double().eval()(torch.from_numpy(X).double()).numpy()
    logits, acts = dc.float_forward(dc.fold_model(model), X)
    np.testing.assert_allclose(logits, ref, rtol=1e-10, atol=1e-10)
    assert [op.kind for op in dc.fold_model(model)] == ["conv", "conv", "maxpool", "conv", "conv", "flatten",
                                                        "linear"]


def test_maxpool_and_unsupported_layers():
    x = np.random.default_rng(0).integers(-128, 128, (2, 3, 7, 6)).astype(np.int8)
    np.testing.assert_array_equal(dc.maxpool2d(x, 2), F.max_pool2d(torch.from_numpy(x).double(), 2).numpy())
    with pytest.raises(NotImplementedError):
        dc.fold_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid()))


# --- the int8 network --------------------------------------------------------------------------------------
def test_int8_accuracy_close_to_float(model, split, int8_run):
    X_train, _, X_test, y_test = split
    float_acc = dc.accuracy(dc.predict(model, X_test), y_test)
    int8_acc = dc.accuracy(int8_run[0], y_test)
    # 2 percentage points = 9 of the 450 test images. int8 with per-channel weight scales and calibrated
    # per-tensor activation scales adds noise of ~1/(2*127) of each tensor's range per layer, which moves only
    # the few test images whose top-2 logits are nearly tied (0-2 of them for this network); a wrong scale,
    # shift, rounding or channel axis instead costs tens of points. So 2 pp never flakes, yet catches bugs.
    assert abs(int8_acc - float_acc) <= 0.02, (float_acc, int8_acc)
    pct_logits, _ = dc.quantized_inference(model, X_test, X_train, method="percentile", pct=99.9)
    assert abs(dc.accuracy(pct_logits, y_test) - float_acc) <= 0.02


def _oracle_requant(acc: torch.Tensor, m, shift, relu: bool, axis: int) -> torch.Tensor:
    """clamp((acc * m + 2**(shift-1)) >> shift, -128 or 0, 127) in torch int64, per output channel."""
    shape = [1] * acc.ndim
    shape[axis] = -1
    m = torch.as_tensor(np.asarray(m), dtype=torch.int64).reshape(shape)
    shift = torch.as_tensor(np.asarray(shift), dtype=torch.int64).reshape(shape)
    y = (acc * m + (torch.ones_like(shift) << (shift - 1))) >> shift          # >> on int64 is arithmetic
    return y.clamp(0 if relu else -128, 127)


def _oracle_wrap32(acc: torch.Tensor) -> torch.Tensor:
    return ((acc + 2**31) & 0xFFFFFFFF) - 2**31


def test_every_int8_layer_matches_a_torch_oracle(model, int8_run):
    _, layers = int8_run
    ops = dc.fold_model(model)
    s_prev = None
    for op in ops:
        t = layers[op.name]
        if op.kind not in ("conv", "linear"):
            continue
        L = t["layer"]
        if s_prev is not None:
            assert L.s_in == s_prev                  # scales chain: a layer's input scale is the one before
        s_prev = L.s_out
        assert t["q_in"].dtype == np.int8 and L.w_int8.dtype == np.int8
        x = torch.from_numpy(t["q_in"].astype(np.float64))
        w = torch.from_numpy(L.w_int8.astype(np.float64))
        # Products <= 128 * 127 and at most 512 of them: every partial sum is an integer < 2**53, so float64 is exact.
        if op.kind == "conv":
            acc = F.conv2d(x, w, None, op.stride, op.padding, groups=op.groups)
            axis = 1
        else:
            acc = x @ w.T
            axis = 1
        bias = torch.from_numpy(L.bias_int32.astype(np.int64))
        acc = acc.round().to(torch.int64) + (bias.reshape(-1, 1, 1) if op.kind == "conv" else bias)
        acc = _oracle_wrap32(acc)
        np.testing.assert_array_equal(t["acc"], acc.numpy(), err_msg=op.name)
        assert t["wrapped"] == 0                     # |acc| <= 512 * 128 * 127 + |bias|, far below 2**31
        if t["scale"] is None:                       # the last layer: int32 accumulators are the result
            np.testing.assert_array_equal(t["q"], acc.numpy())
            continue
        q = _oracle_requant(acc, L.m, L.shift, L.relu, axis)
        assert t["q"].dtype == np.int8
        np.testing.assert_array_equal(t["q"], q.numpy(), err_msg=op.name)
        assert (t["q"].min() >= 0) if L.relu else True
        # The dequantized output approximates the float network (loosely: errors accumulate layer by layer).
        err = np.abs(t["int8"] - t["float"])
        assert np.mean(err) < 2 * L.s_out, op.name


def test_logits_are_dequantized_int32(int8_run):
    logits, layers = int8_run
    L = layers["fc"]["layer"]
    np.testing.assert_allclose(logits, layers["fc"]["acc"] * (L.s_in * L.s_w), rtol=1e-15)
    assert np.corrcoef(logits.ravel(), layers["fc"]["float"].ravel())[0, 1] > 0.99
