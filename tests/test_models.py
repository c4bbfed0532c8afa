"""ResNet-18 and MobileNetV2 (pytorch_fpga.nn.models) against torchvision's published description.

Oracles: torchvision's published parameter counts (11,689,512 and 3,504,872), state_dict key sets derived here
from the architecture tables (ResNet-18 stages (2, 2, 2, 2); MobileNetV2's t/c/n/s table), and a functional
re-implementation of both networks with torch.nn.functional reading only the state_dict.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytorch_fpga.nn.models import mobilenet_v2, random_weights, resnet18

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
MNV2_TABLE = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1)]


@pytest.fixture(scope="module")
def rn():
    return random_weights(resnet18(), seed=0)


@pytest.fixture(scope="module")
def mn():
    return random_weights(mobilenet_v2(), seed=0)


def _bn(prefix):
    return {f"{prefix}.{k}" for k in BN_KEYS}


def _resnet18_keys():
    keys = {"conv1.weight", "fc.weight", "fc.bias"} | _bn("bn1")
    for stage in range(1, 5):
        for b in range(2):
            p = f"layer{stage}.{b}"
            keys |= {f"{p}.conv1.weight", f"{p}.conv2.weight"} | _bn(f"{p}.bn1") | _bn(f"{p}.bn2")
            if stage > 1 and b == 0:
                keys |= {f"{p}.downsample.0.weight"} | _bn(f"{p}.downsample.1")
    return keys


def _mobilenet_v2_keys():
    keys = {"features.0.0.weight", "classifier.1.weight", "classifier.1.bias"} | _bn("features.0.1")
    i = 1
    for t, _, n, _ in MNV2_TABLE:
        for _ in range(n):
            p, k = f"features.{i}.conv", 0
            if t != 1:
                keys |= {f"{p}.0.0.weight"} | _bn(f"{p}.0.1")
                k = 1
            keys |= {f"{p}.{k}.0.weight"} | _bn(f"{p}.{k}.1") | {f"{p}.{k + 1}.weight"} | _bn(f"{p}.{k + 2}")
            i += 1
    return keys | {f"features.{i}.0.weight"} | _bn(f"features.{i}.1")


# --- structure ----------------------------------------------------------------------------------------------
def test_parameter_counts_match_torchvision():
    assert sum(p.numel() for p in resnet18().parameters()) == 11_689_512
    assert sum(p.numel() for p in mobilenet_v2().parameters()) == 3_504_872
    # A 10-class head changes only the last Linear: 512 * 990 + 990 and 1280 * 990 + 990 fewer.
    assert sum(p.numel() for p in resnet18(10).parameters()) == 11_689_512 - 513 * 990
    assert sum(p.numel() for p in mobilenet_v2(10).parameters()) == 3_504_872 - 1281 * 990


def test_resnet18_state_dict_has_torchvision_names(rn):
    sd = rn.state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.1.running_var",
                "layer4.1.bn2.weight", "fc.bias"):
        assert key in sd
    assert set(sd) == _resnet18_keys()
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd["layer3.0.conv1.weight"].shape == (256, 128, 3, 3)
    assert sd["fc.weight"].shape == (1000, 512)
    m = rn
    assert isinstance(m.avgpool, nn.AdaptiveAvgPool2d) and m.avgpool.output_size == (1, 1)
    assert (m.maxpool.kernel_size, m.maxpool.stride, m.maxpool.padding) == (3, 2, 1)
    assert m.layer1[0].downsample is None and m.layer2[0].conv1.stride == (2, 2)
    assert m.layer2[0].downsample[0].stride == (2, 2)


def test_mobilenet_v2_state_dict_has_torchvision_names(mn):
    sd = mn.state_dict()
    for key in ("features.0.0.weight", "features.1.conv.0.0.weight", "features.2.conv.1.0.weight",
                "features.17.conv.3.running_var", "features.18.1.bias", "classifier.1.weight"):
        assert key in sd
    assert set(sd) == _mobilenet_v2_keys()
    assert sd["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert sd["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)       # depthwise
    assert sd["features.2.conv.0.0.weight"].shape == (96, 16, 1, 1)      # 6x expansion
    assert sd["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert sd["classifier.1.weight"].shape == (1000, 1280)
    res = [i for i, m in enumerate(mn.features) if getattr(m, "use_res_connect", False)]
    assert res == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]                    # stride 1 and same channels
    assert isinstance(mn.classifier[0], nn.Dropout) and mn.classifier[0].p == 0.2
    assert all(isinstance(m[2], nn.ReLU6) for m in (mn.features[0], mn.features[18]))


def test_width_mult_rounds_channels_like_torchvision():
    sd = mobilenet_v2(width_mult=0.5).state_dict()
    assert sd["features.0.0.weight"].shape[0] == 16          # 32 * 0.5
    assert sd["features.1.conv.1.weight"].shape[0] == 8      # 16 * 0.5
    assert sd["features.2.conv.2.weight"].shape[0] == 16     # 24 * 0.5 = 12 -> 16 (multiple of 8, >= 90%)
    assert sd["features.18.0.weight"].shape[0] == 1280       # last channel never shrinks
    assert mobilenet_v2(width_mult=1.4).state_dict()["features.18.0.weight"].shape[0] == 1792


@torch.no_grad()
def test_torchvision_init():
    torch.manual_seed(0)
    r, m = resnet18(), mobilenet_v2()
    w = r.layer4[0].conv2.weight                                                 # fan_out = 512 * 9
    assert float(w.detach().std()) == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.01)
    w = m.features[18][0].weight.detach()                                        # fan_out = 1280
    assert float(w.std()) == pytest.approx(math.sqrt(2 / 1280), rel=0.01)
    assert float(m.classifier[1].weight.detach().std()) == pytest.approx(0.01, rel=0.01)
    assert float(m.classifier[1].bias.abs().max()) == 0.0
    for bn in [x for x in list(r.modules()) + list(m.modules()) if isinstance(x, nn.BatchNorm2d)]:
        assert bool((bn.weight == 1).all()) and bool((bn.bias == 0).all())


@pytest.mark.parametrize("make", [resnet18, mobilenet_v2])
def test_output_shape_and_state_dict_round_trip(make):
    gen = torch.Generator().manual_seed(3)
    src, dst = random_weights(make(), seed=1), make().eval()
    dst.load_state_dict(src.state_dict(), strict=True)
    with torch.no_grad():
        assert src(torch.randn(1, 3, 224, 224, generator=gen)).shape == (1, 1000)
        x = torch.randn(1, 3, 64, 64, generator=gen)
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(ValueError, match="num_classes"):
        resnet18(bad)
    with pytest.raises(ValueError, match="num_classes"):
        mobilenet_v2(bad)
    with pytest.raises(ValueError, match="width_mult"):
        mobilenet_v2(width_mult=-abs(float(bad)))
    with pytest.raises(TypeError, match="nn.Module"):
        random_weights({"weight": 1})


# --- the forward pass against torch.nn.functional on the state_dict -----------------------------------------
def _bn_f(x, sd, p):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        training=False, eps=1e-5)


def _resnet18_functional(sd, x):
    x = F.relu(_bn_f(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for stage in range(1, 5):
        for b in range(2):
            p, s = f"layer{stage}.{b}", 2 if stage > 1 and b == 0 else 1
            out = F.relu(_bn_f(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=s, padding=1), sd, f"{p}.bn1"))
            out = _bn_f(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            idt = _bn_f(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=s), sd, f"{p}.downsample.1") \
                if s == 2 else x
            x = F.relu(out + idt)
    return F.linear(x.mean(dim=(2, 3)), sd["fc.weight"], sd["fc.bias"])


def _mobilenet_v2_functional(sd, x):
    def cba(x, p, stride=1, groups=1):
        w = sd[f"{p}.0.weight"]
        return F.relu6(_bn_f(F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=groups), sd, f"{p}.1"))

    x, i, cin = cba(x, "features.0", stride=2), 1, 32
    for t, c, n, s in MNV2_TABLE:
        for j in range(n):
            p, stride = f"features.{i}.conv", s if j == 0 else 1
            h = cba(x, f"{p}.0") if t != 1 else x
            k = int(t != 1)
            h = cba(h, f"{p}.{k}", stride=stride, groups=h.shape[1])
            h = _bn_f(F.conv2d(h, sd[f"{p}.{k + 1}.weight"]), sd, f"{p}.{k + 2}")
            x = x + h if stride == 1 and cin == c else h
            i, cin = i + 1, c
    x = cba(x, f"features.{i}")
    return F.linear(x.mean(dim=(2, 3)), sd["classifier.1.weight"], sd["classifier.1.bias"])


@pytest.mark.parametrize("name", ["rn", "mn"])
def test_forward_matches_functional_reimplementation(name, request):
    model = request.getfixturevalue(name)
    oracle = _resnet18_functional if name == "rn" else _mobilenet_v2_functional
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(model(x), oracle(model.state_dict(), x), rtol=1e-4, atol=1e-4)


# --- random_weights -----------------------------------------------------------------------------------------
@torch.no_grad()
def test_random_weights_ranges_and_determinism(mn):
    bns = [m for m in mn.modules() if isinstance(m, nn.BatchNorm2d)]
    var = torch.cat([b.running_var for b in bns])
    mean = torch.cat([b.running_mean for b in bns])
    w, b = torch.cat([x.weight for x in bns]), torch.cat([x.bias for x in bns])
    assert 0.5 <= float(var.min()) and float(var.max()) <= 2.0 and float(var.std()) > 0.3
    assert 0.5 <= float(w.min()) and float(w.max()) <= 1.5 and float(w.std()) > 0.2
    assert float(mean.std()) == pytest.approx(0.1, rel=0.1) and float(b.std()) == pytest.approx(0.1, rel=0.1)
    assert not mn.training and not any(m.training for m in mn.modules())
    again, other = random_weights(mobilenet_v2(), seed=0), random_weights(mobilenet_v2(), seed=1)
    sd, sd0, sd1 = mn.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(sd[k], sd0[k]) for k in sd)
    assert not torch.equal(sd["features.5.conv.1.0.weight"], sd1["features.5.conv.1.0.weight"])
    assert not torch.equal(sd["features.5.conv.1.1.running_var"], sd1["features.5.conv.1.1.running_var"])
    # Conv weights: N(0, gain^2 / fan_in); depthwise fan_in = 9, ReLU6 follows -> gain sqrt(2).
    assert float(sd["features.18.0.weight"].std()) == pytest.approx(math.sqrt(2 / 320), rel=0.02)
    assert float(sd["features.17.conv.2.weight"].std()) == pytest.approx(math.sqrt(1 / 960), rel=0.02)  # linear


@pytest.mark.parametrize("name", ["rn", "mn"])
def test_random_weights_keep_activations_in_range(name, request):
    """For a N(0, 1) input, every BatchNorm output and the logits have std in [1e-2, 1e3], and differ per input."""
    model = request.getfixturevalue(name)
    stds = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: stds.__setitem__(n, float(o.std())))
             for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            y1 = model(torch.randn(1, 3, 224, 224, generator=gen))
            y2 = model(torch.randn(1, 3, 224, 224, generator=gen))
    finally:
        for h in hooks:
            h.remove()
    assert len(stds) == (20 if name == "rn" else 52)
    bad = {n: s for n, s in stds.items() if not 1e-2 <= s <= 1e3}
    assert not bad, f"activations out of range: {bad}"
    assert 1e-2 <= float(y1.std()) <= 1e3
    # Not collapsed to a constant: two noise images give different logits (only a few percent apart for
    # ResNet-18 without example_input: deep random ReLU nets map noise images to similar features).
    assert float((y1 - y2).std()) > 0.01 * float(y1.std())


def test_random_weights_with_example_input_makes_bn_stats_data_relative():
    """running_mean = mu + m0 * sigma, running_var = sigma^2 * v0: (m0, v0) the data-free draws, (mu, sigma^2)
    each BatchNorm input's channel statistics on the example batch, measured here with forward hooks."""
    gen = torch.Generator().manual_seed(11)
    x, x2 = torch.randn(2, 3, 112, 112, generator=gen), torch.randn(2, 3, 112, 112, generator=gen)
    plain, model = random_weights(resnet18(), seed=4), random_weights(resnet18(), seed=4, example_input=x)
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda _m, a, n=n: seen.setdefault(n, []).append(a[0]))
             for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    for h in hooks:
        h.remove()
    sd0, sd = plain.state_dict(), model.state_dict()
    assert all(torch.equal(sd0[k], sd[k]) for k in sd if "running" not in k)
    for n, (inp, _) in seen.items():
        mu, var = inp.mean(dim=(0, 2, 3)), inp.var(dim=(0, 2, 3), unbiased=False)
        torch.testing.assert_close(sd[f"{n}.running_mean"], mu + sd0[f"{n}.running_mean"] * var.sqrt(),
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(sd[f"{n}.running_var"], var * sd0[f"{n}.running_var"], rtol=1e-4, atol=1e-6)
    # Every BatchNorm re-centres, so the last feature maps depend on the input as much as on the weights.
    a1, a2 = seen["layer4.1.bn2"]
    assert float((a1 - a2).std()) > 0.5 * float(a1.std())
    assert 1e-2 <= float(y.std()) <= 1e3 and float((y - y2).std()) > 0.1 * float(y.std())
    with pytest.raises(TypeError, match="example_input"):
        random_weights(resnet18(), example_input=[[1.0]])
