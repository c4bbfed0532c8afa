"""Buffer sizing (pytorch_fpga.sizing): the RAMB36 estimate and the ResNet-18 stack against independent counts."""
import dataclasses

import pytest

import pytorch_fpga as pf
from pytorch_fpga import sizing
from pytorch_fpga.contract import accel
from pytorch_fpga.core import conv


def test_ramb36_aspect_ratios_follow_ug473():
    # one RAMB36E1 holds 32K x 1, 16K x 2, 8K x 4, 4K x 9, 2K x 18, 1K x 36 or 512 x 72 (UG473, table 1-7)
    for w, d in [(1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024), (72, 512)]:
        assert sizing.ramb36(w, d) == 1
    assert sizing.ramb36(73, 512) == 2 and sizing.ramb36(72, 513) == 2
    assert sizing.ramb36(128, 512) == 2                     # two 512 x 72 side by side
    assert sizing.ramb36(128, 8192) == 30                   # 15 blocks of 4K x 9, twice deep


def test_stack_utilization_counts_resnet18_macs_independently():
    torch = pytest.importorskip("torch")
    model = pf.nn.models.resnet18()
    shapes = []
    model.eval()

    def hook(m, inp, out):
        shapes.append((tuple(inp[0].shape), m.weight.shape, m.stride, m.padding, m.dilation, m.groups))
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    for h in handles:
        h.remove()
    macs = sum(conv.conv2d_macs(x, tuple(w), s, p, d, g) for x, w, s, p, d, g in shapes)
    r = sizing.stack("z1")
    assert len(shapes) == 20
    assert r["utilization"] == pytest.approx(macs / (256 * r["cycles"]))
    assert r["fits"] and r["ramb36_total"] <= sizing.RAMB36_BUDGET


def test_smaller_buffers_are_never_faster_and_the_best_fit_is_within_budget():
    z1 = accel.config("z1")
    small = sizing.stack(dataclasses.replace(z1, name="t", x_depth=1024, acc_depth=256))
    assert small["cycles"] >= sizing.stack(z1)["cycles"]
    assert small["ramb36_total"] < sizing.stack(z1)["ramb36_total"]
    rows = [sizing.stack(dataclasses.replace(z1, name=f"t{x}", x_depth=x)) for x in (1024, 4096, 16384)]
    top = sizing.best(rows)
    assert top["fits"] and all(r["cycles"] >= top["cycles"] for r in rows if r["fits"])
    assert not rows[-1]["fits"]                             # 16K-deep X banks alone need 120 RAMB36
