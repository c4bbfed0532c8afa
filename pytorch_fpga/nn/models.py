"""ResNet-18 and MobileNetV2 written out in plain torch: the networks the model compiler is tested and benchmarked on.

Both follow torchvision's module tree and parameter names exactly, so a torchvision state_dict loads into them
(`model.load_state_dict(torchvision_state_dict)`), and both use torchvision's initialisation. torchvision itself
is not needed (nor downloaded weights). One deliberate difference: ReLU/ReLU6 are not in-place, so an activation
captured by a forward hook is not overwritten by the next layer; the computation is the same.

    model = random_weights(resnet18())         # random BatchNorm statistics too: an int8 compile means something
    model(torch.randn(1, 3, 224, 224)).shape   # (1, 1000)

random_weights exists because a freshly initialised network is a poor compiler test: its BatchNorms are identity
maps (mean 0, var 1, weight 1, bias 0) that fold away to nothing, and torchvision's fan-out init makes activations
shrink through a MobileNet's depthwise layers. random_weights gives every BatchNorm random statistics and reseeds
every conv/linear with a fan-in scale, so activations keep roughly unit size from the input to the logits.
"""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = (nn.ReLU, nn.ReLU6)


# --- ResNet-18 ---------------------------------------------------------------------------------------------
def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x) or x)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual block."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet with BasicBlocks: stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), 4 stages, pool, fc."""

    def __init__(self, layers: tuple[int, int, int, int] = (2, 2, 2, 2), num_classes: int = 1000) -> None:
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be 4 block counts >= 1 (ResNet-18: (2, 2, 2, 2)), got {layers!r}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)
        for m in self.modules():                    # torchvision's init (the Linear keeps torch's default)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images -> (N, num_classes) logits."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 (11,689,512 parameters at 1000 classes), torchvision's structure, names and init."""
    _check_classes(num_classes)
    return ResNet((2, 2, 2, 2), num_classes)


# --- MobileNetV2 -------------------------------------------------------------------------------------------
def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, never going down by more than 10% (torchvision's rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNActivation(nn.Sequential):
    """Sequential(Conv2d (no bias, 'same' padding), BatchNorm2d, ReLU6): torchvision's Conv2dNormActivation."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6())
        self.out_channels = cout


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand] -> 3x3 depthwise -> 1x1 linear project, plus x when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        self.stride = stride
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = [ConvBNActivation(inp, hidden, kernel_size=1)] if expand_ratio != 1 else []
        layers += [ConvBNActivation(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block, with the residual add when stride is 1 and channels match."""
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# t (expansion), c (output channels), n (blocks), s (first block's stride): the paper's Table 2
MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2: features (stem, 17 inverted residuals, 1x1 to 1280), pool, Dropout + Linear."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNActivation(3, cin, stride=2)]
        for t, c, n, s in MOBILENET_V2_SETTING:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, expand_ratio=t))
                cin = cout
        features.append(ConvBNActivation(cin, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():                    # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images -> (N, num_classes) logits."""
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV2:
    """MobileNetV2 (3,504,872 parameters at 1000 classes, width 1.0), torchvision's structure, names and init."""
    _check_classes(num_classes)
    if not (isinstance(width_mult, (int, float)) and math.isfinite(width_mult) and width_mult > 0):
        raise ValueError(f"width_mult must be a positive number (1.0 is the standard network), got {width_mult!r}")
    return MobileNetV2(num_classes, float(width_mult))


def _check_classes(num_classes) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int (ImageNet: 1000), got {num_classes!r}")


# --- random but sane weights -------------------------------------------------------------------------------
def _gains(model: nn.Module) -> dict[nn.Module, float]:
    """sqrt(2) for a conv/linear whose next leaf module (after its BatchNorm, if any) is a ReLU/ReLU6, else 1.

    Leaves are taken in registration order, which is the data-flow order in torchvision-style code
    (conv1, bn1, relu, conv2, bn2, ...): a ReLU halves a zero-mean signal's second moment, the gain restores it.
    """
    leaves = [m for m in model.modules() if not list(m.children())]
    gains = {}
    for i, m in enumerate(leaves):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            j = i + 1
            if j < len(leaves) and isinstance(leaves[j], nn.BatchNorm2d):
                j += 1
            gains[m] = math.sqrt(2.0) if j < len(leaves) and isinstance(leaves[j], ACTIVATIONS) else 1.0
    return gains


@torch.no_grad()
def random_weights(model: nn.Module, seed: int = 0, example_input: torch.Tensor | None = None) -> nn.Module:
    """Deterministic random weights for a compile test: returns `model` (changed in place) in eval mode.

    Conv2d / Linear: weight ~ N(0, gain^2 / fan_in), fan_in = in_channels / groups * kh * kw, gain sqrt(2)
    before a ReLU/ReLU6 and 1 otherwise; bias (if any) ~ N(0, 0.1). BatchNorm: running_mean ~ N(0, 0.1),
    running_var ~ U(0.5, 2), weight ~ U(0.5, 1.5), bias ~ N(0, 0.1). Together each conv+BN+ReLU keeps the
    signal's size, so a N(0, 1) input gives activations of order one through the whole depth.
    All draws come from one torch.Generator seeded with `seed`, in module order: same seed, same weights.

    With `example_input` (a batch the model accepts), one forward pass then makes the BatchNorm statistics
    data-relative, as in a trained network: running_mean = mu + N(0, 0.1) * sigma, running_var = sigma^2 * U(0.5, 2)
    with mu, sigma^2 each channel's mean and variance on that batch (same draws as above). Every BatchNorm then
    re-centres its channels, so deep activations keep depending on the input instead of drifting to a
    per-channel constant (random ReLU networks without it map all noise images to nearly the same logits).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"random_weights needs a torch nn.Module, got {type(model).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    gen = torch.Generator().manual_seed(seed)

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=gen, dtype=torch.float64).mul_(std).to(t.dtype))

    def uniform(t, lo, hi):
        t.copy_((lo + (hi - lo) * torch.rand(t.shape, generator=gen, dtype=torch.float64)).to(t.dtype))

    gains = _gains(model)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()            # in_channels / groups * kh * kw, or in_features
            normal(m.weight, gains[m] / math.sqrt(fan_in))
            if m.bias is not None:
                normal(m.bias, 0.1)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.running_mean is None or m.weight is None:
                raise ValueError(f"{type(m).__name__} without running stats or affine parameters: build it with "
                                 "track_running_stats=True, affine=True")
            normal(m.running_mean, 0.1)
            uniform(m.running_var, 0.5, 2.0)
            uniform(m.weight, 0.5, 1.5)
            normal(m.bias, 0.1)
    model.eval()
    if example_input is not None:
        _data_relative_bn(model, example_input)
    return model


@torch.no_grad()
def _data_relative_bn(model: nn.Module, x: torch.Tensor) -> None:
    """Rescale each BatchNorm's random stats by its input's channel mean/variance, layer by layer in one pass."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"example_input must be a float torch.Tensor batch, got {type(x).__name__}")

    def pre_hook(bn, args):
        (inp,) = args
        dims = [d for d in range(inp.dim()) if d != 1]
        mu, var = inp.mean(dim=dims), inp.var(dim=dims, unbiased=False).clamp_min(1e-6)
        bn.running_mean.copy_(mu + bn.running_mean * var.sqrt())
        bn.running_var.mul_(var)

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    hooks = [bn.register_forward_pre_hook(pre_hook) for bn in bns]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
