"""The residual digits CNN (pytorch_fpga.nn.digits_resnet): shipped checkpoint, wiring, and re-training.

Oracles: the held-out labels for accuracy, and a torch.nn.functional re-implementation of the network (conv,
batch norm, residual adds, channel concatenation) reading only the state_dict.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pytorch_fpga.core.datasets import load_digits_split
from pytorch_fpga.nn import digits_resnet as dr


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


@pytest.fixture(scope="module")
def model():
    return dr.load_pretrained()


def _accuracy(model, X, y):
    with torch.no_grad():
        pred = model(torch.as_tensor(X)).argmax(dim=1).numpy()
    return float(np.mean(pred == y))


def test_pretrained_accuracy_on_held_out_split(model, split):
    _, _, X_test, y_test = split
    assert not model.training
    assert _accuracy(model, X_test, y_test) >= 0.97
    assert dr.accuracy(dr.predict(model, X_test), y_test) == pytest.approx(_accuracy(model, X_test, y_test))


def test_checkpoint_matches_make_model():
    saved = torch.load(dr.CHECKPOINT, map_location="cpu", weights_only=True)
    fresh = dr.make_model().state_dict()
    assert list(saved) == list(fresh)
    assert all(saved[k].shape == fresh[k].shape and saved[k].dtype == fresh[k].dtype for k in fresh)
    assert fresh["fc.weight"].shape == (10, 64) and fresh["layer2.downsample.0.weight"].shape == (32, 16, 1, 1)
    assert fresh["branch.0.weight"].shape == (32, 32, 1, 1)
    assert sum(v.numel() for k, v in fresh.items() if "running" not in k and "num_batches" not in k) \
        == sum(p.numel() for p in dr.make_model().parameters())


def _bn(x, sd, p):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        training=False, eps=1e-5)


def _functional(sd, x):
    x = F.relu(_bn(F.conv2d(x, sd["conv1.weight"], padding=1), sd, "bn1"))
    for p, s in (("layer1", 1), ("layer2", 2)):
        out = F.relu(_bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=s, padding=1), sd, f"{p}.bn1"))
        out = _bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
        idt = _bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=2), sd, f"{p}.downsample.1") if s == 2 else x
        x = F.relu(out + idt)
    branch = F.relu(_bn(F.conv2d(x, sd["branch.0.weight"]), sd, "branch.1"))
    x = torch.cat([x, branch], dim=1)
    assert x.shape[1:] == (64, 4, 4)
    return F.linear(x.mean(dim=(2, 3)), sd["fc.weight"], sd["fc.bias"])


def test_forward_matches_functional_reimplementation(model, split):
    X = torch.as_tensor(split[2][:64])
    with torch.no_grad():
        torch.testing.assert_close(model(X), _functional(model.state_dict(), X), rtol=1e-5, atol=1e-5)


def test_short_retrain_from_scratch_learns_and_is_deterministic(split):
    X_train, y_train, X_test, y_test = split
    before = dr.make_model(seed=3).eval()
    acc0 = _accuracy(before, X_test, y_test)
    a = dr.train(dr.make_model(seed=3), X_train, y_train, epochs=2, seed=3)
    b = dr.train(dr.make_model(seed=3), X_train, y_train, epochs=2, seed=3)
    acc = _accuracy(a, X_test, y_test)
    assert acc0 < 0.3 and acc >= 0.8                       # chance is 0.1
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_main_writes_a_loadable_checkpoint(tmp_path, split, capsys):
    path = tmp_path / "sub" / "digits_resnet.pt"
    trained = dr.main(epochs=1, path=path)
    assert "test accuracy" in capsys.readouterr().out
    again = dr.load_pretrained(path)
    X = torch.as_tensor(split[2][:32])
    with torch.no_grad():
        torch.testing.assert_close(again(X), trained(X), rtol=0, atol=0)


def test_make_model_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = dr.make_model(0), dr.make_model(0), dr.make_model(1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.conv1.weight, b.conv1.weight) and not torch.equal(a.conv1.weight, c.conv1.weight)


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m pytorch_fpga.nn.digits_resnet"):
        dr.load_pretrained(tmp_path / "missing.pt")
