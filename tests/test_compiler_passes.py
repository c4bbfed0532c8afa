"""The compiler's passes one by one: each keeps the float model's outputs (torch is the oracle) and does its one job."""
import numpy as np
import pytest
import torch
from torch import nn

from pytorch_fpga.graph import interp, passes
from pytorch_fpga.nn.capture import capture


def _bn(c, seed):
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c)
    bn.running_mean = torch.randn(c, generator=g) * 0.2
    bn.running_var = torch.rand(c, generator=g) + 0.5
    bn.weight.data = torch.rand(c, generator=g) + 0.5
    bn.bias.data = torch.randn(c, generator=g) * 0.1
    return bn


def _graph(model, x):
    g, _ = capture(model.eval(), x)
    return g


def _check(g, model, x):
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(interp.outputs(g, x.numpy()), ref, rtol=1e-4, atol=1e-4)


def test_fold_batchnorm_into_the_conv():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _bn(8, 1), nn.ReLU()).eval()
    x = torch.randn(2, 3, 6, 6)
    g = passes.fold_batchnorm(_graph(model, x))
    assert "batchnorm" not in g.ops()
    conv = next(n for n in g if n.op == "conv2d")
    assert conv.fused == ["1"] and conv.attrs["tensor"] == "1"
    _check(g, model, x)


def test_a_batchnorm_after_a_pool_becomes_a_depthwise_conv():
    model = nn.Sequential(nn.MaxPool2d(2), _bn(4, 2)).eval()
    x = torch.randn(2, 4, 6, 6)
    g = passes.fold_batchnorm(_graph(model, x))
    n = g["1"]
    assert n.op == "conv2d" and n.attrs["groups"] == 4 and n.params["W"].shape == (4, 1, 1, 1)
    _check(g, model, x)


def test_fuse_relu_relu6_but_not_a_general_clamp():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(2, 4, 1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)

        def forward(self, x):
            y = torch.relu(self.a(x))
            y = nn.functional.relu6(self.b(y))
            return torch.clamp(self.c(y), -1.0, 1.0)
    model, x = M().eval(), torch.randn(2, 2, 5, 5)
    g = passes.fuse_activations(_graph(model, x))
    assert g["a"].attrs["act"] == "relu"
    assert g["b"].attrs["act"] == ("clamp", 0.0, 6.0)
    assert g["c"].attrs.get("act") is None and "clamp" in g.ops()        # -1..1 stays a host int8 clamp
    _check(g, model, x)


def test_an_activation_is_not_fused_into_a_layer_with_two_readers():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 4, 1)

        def forward(self, x):
            y = self.a(x)
            return torch.relu(y) + y
    model, x = M().eval(), torch.randn(2, 2, 5, 5)
    g = passes.fuse_activations(_graph(model, x))
    assert g["a"].attrs.get("act") is None and "relu" in g.ops()
    _check(g, model, x)


def test_native_layout_permutes_the_linear_weights_after_a_flatten():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.Flatten(), nn.Linear(5 * 4 * 4, 7)).eval()
    x = torch.randn(3, 3, 6, 6)
    g = _graph(model, x)
    W0 = g["2"].params["W"].copy()
    g = passes.native_layout(g)
    assert g["1"].attrs["order"] == "nhwc" and not np.array_equal(g["2"].params["W"], W0)
    _check(g, model, x)                                 # the interpreter reads the flatten in (H, W, C) order


def test_remove_identity_drops_dropout():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.5), nn.ReLU()).eval()
    x = torch.randn(2, 1, 5, 5)
    g = passes.remove_identity(_graph(model, x))
    assert "identity" not in g.ops()
    _check(g, model, x)


def test_partition_places_every_node_and_says_why():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.small, self.big = nn.Conv2d(2, 8, 3), nn.Conv2d(8, 4, 9)     # K = 8*9*9 = 648 > sim8's 512

        def forward(self, x):
            return torch.sigmoid(self.big(torch.relu(self.small(x))))
    model, x = M().eval(), torch.randn(1, 2, 12, 12)
    g = passes.optimize(_graph(model, x), "sim8")
    assert g["small"].placement == "accelerator"
    assert g["big"].placement == "host int8" and "K=648" in g["big"].attrs["why"]
    sig = next(n for n in g if n.op == "host_op")
    assert sig.placement == "host float" and "sigmoid" in sig.attrs["why"]
    table = passes.placement_table(g)
    assert all(n.name[:28] in table for n in g)
    assert "test_compiler_passes.py" in table                    # the host-float op's source line
    _check(g, model, x)


def test_optimize_records_each_pass_and_leaves_the_input_graph_alone():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), _bn(2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 4)).eval()
    x = torch.randn(2, 1, 5, 5)
    g = _graph(model, x)
    before = str(g)
    trace = []
    out = passes.optimize(g, "z1", trace)
    assert [name for name, _ in trace] == ["remove_identity", "fold_batchnorm", "fuse_activations",
                                           "native_layout", "partition"]
    assert str(g) == before and len(out) < len(g)
    _check(out, model, x)


@pytest.mark.parametrize("bad", ["nope", 3])
def test_unknown_config_is_a_clear_error(bad):
    g = _graph(nn.Sequential(nn.Conv2d(1, 2, 3)).eval(), torch.randn(1, 1, 4, 4))
    with pytest.raises(ValueError, match="unknown accelerator config"):
        passes.partition(g, bad)
