"""capture(): torch models into the float IR; the interpreter must reproduce model(x), observe() every node."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from pytorch_fpga.graph import interp
from pytorch_fpga.nn.capture import capture
from pytorch_fpga.nn.digits_cnn import load_pretrained


def close(a, b, tol=1e-4):
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())))


def batch(rng, *shape):
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))


def check_observe(graph, observe, x):
    """observe(x) (torch) and the interpreter agree on every IR node."""
    seen, vals = observe(x), interp.run(graph, x.numpy())
    assert set(seen) == set(vals)
    for name in vals:
        if isinstance(vals[name], np.ndarray):
            close(vals[name], seen[name])


# --- models ------------------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResCat(nn.Module):
    """Residual blocks, a concatenation, ReLU6, pools (ceil_mode, avg), adaptive avg pool, dropout, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 16, 2))
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=(1, 2), dilation=(1, 2), groups=4),
                                    nn.BatchNorm2d(8, affine=False), nn.ReLU6())
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.avg = nn.AvgPool2d(2, 1, 1, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        x = self.stem(x)
        y = torch.cat([self.layer1(x), self.branch(x)], dim=1)
        y = self.avg(self.pool(y))
        return self.fc(self.drop(torch.flatten(self.gap(y), 1)))


class MeanHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((-1, -2)))


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return torch.sigmoid(y) * y


# --- tests -------------------------------------------------------------------------------------------------------
def test_digits_cnn(rng):
    model = load_pretrained()
    graph, observe = capture(model, batch(rng, 2, 1, 8, 8))
    assert graph.ops() == {"input": 1, "conv2d": 4, "batchnorm": 4, "relu": 4, "maxpool": 1, "flatten": 1,
                           "linear": 1, "output": 1}
    leaves = {name for name, m in model.named_modules() if name and not list(m.children())}
    assert {n.name for n in graph if n.op not in ("input", "output")} <= leaves
    assert graph["dw"].attrs["groups"] == 32 and graph["conv1"].shape == (2, 16, 8, 8)
    np.testing.assert_array_equal(graph["fc"].params["W"], model.fc.weight.detach().numpy())
    x = batch(rng, 5, 1, 8, 8)                                           # another batch size than captured
    with torch.no_grad():
        close(interp.outputs(graph, x.numpy()), model(x))
        conv2 = model.conv2(model.conv1_relu(model.conv1_bn(model.conv1(x))))
    seen = observe(x)
    close(seen["conv2"], conv2)
    check_observe(graph, observe, x)


def test_residual_concat_relu6_pools_dropout(rng):
    model = ResCat()
    with torch.no_grad():                                   # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    graph, observe = capture(model, batch(rng, 2, 3, 16, 16))
    ops = graph.ops()
    assert "host_op" not in ops
    assert ops["add"] == 2 and ops["cat"] == 1 and ops["identity"] == 1 and ops["global_avgpool"] == 1
    clamp = next(n for n in graph if n.op == "clamp")
    assert (clamp.name, clamp.attrs["lo"], clamp.attrs["hi"]) == ("branch.2", 0.0, 6.0)
    bn = graph["branch.1"]
    assert np.all(bn.params["gamma"] == 1) and np.all(bn.params["beta"] == 0)
    assert graph["branch.0"].attrs["padding"] == (1, 1, 2, 2) and graph["pool"].attrs["ceil_mode"]
    adds = [n for n in graph if n.op == "add"]
    assert {tuple(n.inputs) for n in adds} == {("layer1.0.bn2", "stem.2"), ("layer1.1.bn2", "layer1.1.downsample.1")}
    x = batch(rng, 3, 3, 16, 16)
    with torch.no_grad():
        close(interp.outputs(graph, x.numpy()), model(x))
    check_observe(graph, observe, x)


def test_mean_over_hw_is_global_avgpool_then_flatten(rng):
    model = MeanHead().eval()
    graph, observe = capture(model, batch(rng, 2, 3, 7, 7))
    assert [n.op for n in graph] == ["input", "conv2d", "relu", "global_avgpool", "flatten", "linear", "output"]
    x = batch(rng, 2, 3, 7, 7)
    with torch.no_grad():
        close(interp.outputs(graph, x.numpy()), model(x))
    check_observe(graph, observe, x)


def test_sigmoid_becomes_a_host_op_with_its_source_line(rng):
    model = WithSigmoid()
    graph, observe = capture(model, batch(rng, 1, 3, 5, 5))
    host = [n for n in graph if n.op == "host_op"]
    assert len(host) == 2                                                # sigmoid and the product
    sig = next(n for n in host if "sigmoid" in n.attrs["target"])
    lines, first = inspect.getsourcelines(WithSigmoid.forward)
    line = first + next(i for i, s in enumerate(lines) if "torch.sigmoid" in s)
    assert sig.source == f"test_capture.py:{line}"
    assert graph["conv"].source == f"test_capture.py:{line - 1}"
    x = batch(rng, 4, 3, 5, 5)
    with torch.no_grad():
        close(interp.outputs(graph, x.numpy()), model(x))
        close(sig.attrs["fn"](x.numpy()), torch.sigmoid(x))
    check_observe(graph, observe, x)


def test_falls_back_to_fx_when_export_fails(rng, monkeypatch):
    model = ResCat().eval()

    def broken(*a, **k):
        raise RuntimeError("export is broken today")
    monkeypatch.setattr(torch.export, "export", broken)
    with pytest.warns(UserWarning, match="export is broken today.*symbolic_trace"):
        graph, observe = capture(model, batch(rng, 2, 3, 16, 16))
    assert "host_op" not in graph.ops() and graph.ops()["add"] == 2
    x = batch(rng, 2, 3, 16, 16)
    with torch.no_grad():
        close(interp.outputs(graph, x.numpy()), model(x))
    check_observe(graph, observe, x)


@torch.library.custom_op("pftest::twice", mutates_args=())
def _twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


class CustomOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)

    def forward(self, x):
        return torch.relu(_twice(self.conv(x)))


def test_an_op_export_cannot_trace_runs_on_the_host(rng):
    model = CustomOp().eval()
    with pytest.warns(UserWarning, match="export.*fake"):               # no fake kernel: export fails, fx works
        graph, _ = capture(model, batch(rng, 1, 2, 3, 3))
    assert [n.op for n in graph] == ["input", "conv2d", "host_op", "relu", "output"]
    x = batch(rng, 2, 2, 3, 3)
    with torch.no_grad():
        close(interp.outputs(graph, x.numpy()), model(x))


def test_errors(rng):
    class TwoIn(nn.Module):
        def forward(self, x, y):
            return x + y

    class TwoOut(nn.Module):
        def forward(self, x):
            return x.relu(), x.sigmoid()

    with pytest.raises(ValueError, match="2 inputs.*one tensor input"):
        capture(TwoIn(), batch(rng, 1, 2))
    with pytest.raises(TypeError, match="one example input tensor"):
        capture(nn.ReLU(), (batch(rng, 1, 2), batch(rng, 1, 2)))
    with pytest.raises(ValueError, match="returns 2 .*one output tensor"):
        capture(TwoOut(), batch(rng, 1, 2))
