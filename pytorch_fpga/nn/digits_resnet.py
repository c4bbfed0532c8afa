"""A small residual CNN for the 8x8 digits: a graph (not a chain) for the model compiler, trained in seconds.

Where pytorch_fpga.nn.digits_cnn is a Sequential, this network has the two graph shapes a compiler must handle
beyond a chain: residual adds (x + identity, one of them through a strided 1x1 conv downsample) and a channel
concatenation (torch.cat of a block's output with a 1x1-conv branch of it).

    stem     Conv2d(1, 16, 3, pad 1) + BN + ReLU                        16x8x8
    layer1   BasicBlock(16 -> 16)                 + x                   16x8x8
    layer2   BasicBlock(16 -> 32, stride 2)       + BN(conv1x1/2(x))    32x4x4
    branch   Conv2d(32, 32, 1) + BN + ReLU on layer2's output           32x4x4
    cat      torch.cat([layer2, branch], dim=1)                         64x4x4
    avgpool  AdaptiveAvgPool2d(1), flatten                              64
    fc       Linear(64, 10)                                             10

    model = load_pretrained()             # shipped state_dict (pytorch_fpga/data/digits_resnet.pt), eval mode

Training, prediction and accuracy are digits_cnn's helpers (train, predict, accuracy).
`python -m pytorch_fpga.nn.digits_resnet` retrains the network (deterministic, CPU) and rewrites the checkpoint.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from pytorch_fpga.core.datasets import load_digits_split
from pytorch_fpga.nn.digits_cnn import accuracy, predict, train
from pytorch_fpga.nn.models import BasicBlock

CHECKPOINT = Path(__file__).resolve().parent.parent / "data" / "digits_resnet.pt"
DEFAULT_EPOCHS = 15


class DigitsResNet(nn.Module):
    """1x8x8 digit -> 10 logits through a stem, two residual BasicBlocks, a concat with a 1x1 branch, pool, fc."""

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        w2 = 2 * width
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, w2, stride=2, downsample=nn.Sequential(
            nn.Conv2d(width, w2, 1, stride=2, bias=False), nn.BatchNorm2d(w2)))
        self.branch = nn.Sequential(nn.Conv2d(w2, w2, 1, bias=False), nn.BatchNorm2d(w2), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2 * w2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 8, 8) images in [0, 1] -> (N, 10) logits (no Python shape checks: stays fx-traceable)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = torch.cat([x, self.branch(x)], dim=1)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def make_model(seed: int = 0) -> DigitsResNet:
    """The digits ResNet (21,114 parameters), initialised from torch's RNG seeded with `seed` (caller's RNG kept)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DigitsResNet()


def load_pretrained(path=CHECKPOINT) -> DigitsResNet:
    """The digits ResNet with the shipped weights (pytorch_fpga/data/digits_resnet.pt), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: train one with `python -m pytorch_fpga.nn.digits_resnet`")
    model = make_model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


# --- python -m pytorch_fpga.nn.digits_resnet ----------------------------------------------------------------
def main(epochs: int = DEFAULT_EPOCHS, seed: int = 0, path=CHECKPOINT) -> DigitsResNet:
    """Train from scratch on the digits' training split, report test accuracy, save the state_dict to `path`."""
    X_train, y_train, X_test, y_test = load_digits_split()
    t0 = time.perf_counter()
    model = train(make_model(seed), X_train, y_train, epochs=epochs, seed=seed)
    dt = time.perf_counter() - t0
    print(f"trained {epochs} epochs in {dt:.1f} s: float test accuracy {accuracy(predict(model, X_test), y_test):.2%}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB)")
    return model


if __name__ == "__main__":
    main()
