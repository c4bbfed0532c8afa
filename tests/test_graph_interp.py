"""The float IR interpreter against torch.nn.functional: every op on random layers, whole graphs, bad IR."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pytorch_fpga.graph import interp
from pytorch_fpga.graph.ir import Graph, Node


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def one(node: Node, in_shape) -> Graph:
    """input -> node -> output."""
    node.inputs = node.inputs or ["input"]
    return Graph([Node("input", "input", shape=in_shape), node, Node("output", "output", [node.name])])


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def close(a, b, tol=1e-4):
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    assert a.shape == b.shape, (a.shape, b.shape)
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())))


# --- convolution -----------------------------------------------------------------------------------------------
CONVS = [  # C, Co, (kh, kw), stride, padding (t, b, l, r), dilation, groups, bias
    (3, 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True),
    (4, 6, (3, 2), (2, 1), (0, 2, 1, 0), (1, 1), 2, False),
    (6, 6, (3, 3), (1, 2), (2, 1, 3, 0), (2, 3), 6, True),          # depthwise, dilated, asymmetric
    (8, 4, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1, True),
    (3, 5, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1, False),
]


@pytest.mark.parametrize("C, Co, k, stride, pad, dil, groups, bias", CONVS)
def test_conv2d_matches_torch(rng, C, Co, k, stride, pad, dil, groups, bias):
    x, W = f32(rng, 2, C, 11, 13), f32(rng, Co, C // groups, *k)
    b = f32(rng, Co) if bias else None
    node = Node("c", "conv2d", [], dict(stride=stride, padding=pad, dilation=dil, groups=groups),
                {"W": W} | ({"b": b} if bias else {}))
    want = F.conv2d(F.pad(t(x), (pad[2], pad[3], pad[0], pad[1])), t(W), None if b is None else t(b),
                    stride=stride, dilation=dil, groups=groups)
    close(interp.outputs(one(node, x.shape), x), want)


@pytest.mark.parametrize("act", [None, "relu", ("clamp", 0.0, 6.0), ("clamp", -0.5, 0.25)])
def test_fused_activations(rng, act):
    x, W, b = f32(rng, 2, 3, 6, 6), f32(rng, 4, 3, 3, 3), f32(rng, 4)
    y = F.conv2d(t(x), t(W), t(b), padding=1)
    want = y if act is None else F.relu(y) if act == "relu" else torch.clamp(y, act[1], act[2])
    node = Node("c", "conv2d", [], dict(stride=1, padding=1, dilation=1, groups=1, act=act), {"W": W, "b": b})
    close(interp.outputs(one(node, x.shape), x), want)
    v, Wl = f32(rng, 3, 10), f32(rng, 5, 10)
    yl = F.linear(t(v), t(Wl))
    want = yl if act is None else F.relu(yl) if act == "relu" else torch.clamp(yl, act[1], act[2])
    close(interp.outputs(one(Node("fc", "linear", [], {"act": act}, {"W": Wl}), v.shape), v), want)


# --- pooling ---------------------------------------------------------------------------------------------------
POOLS = [  # H, W, kernel, stride, padding, ceil_mode   (12 with k3 s2: ceil adds a row and a column)
    (12, 12, 3, 2, 0, False), (12, 12, 3, 2, 0, True), (11, 14, (3, 2), (2, 3), (1, 1), True),
    (7, 9, 2, 2, 1, True), (8, 8, 2, None, 0, False), (13, 10, (3, 3), 2, (1, 0), True),
]


@pytest.mark.parametrize("H, W, k, s, p, ceil", POOLS)
@pytest.mark.parametrize("kind", ["max", "avg_incl", "avg_excl"])
def test_pools_match_torch(rng, H, W, k, s, p, ceil, kind):
    x = f32(rng, 2, 3, H, W)
    kk = k if isinstance(k, tuple) else (k, k)
    pp = p if isinstance(p, tuple) else (p, p)
    attrs = dict(kernel=kk, stride=s, padding=pp, ceil_mode=ceil)
    if kind == "max":
        node = Node("p", "maxpool", [], attrs | {"dilation": 1})
        want = F.max_pool2d(t(x), kk, s, pp, 1, ceil)
    else:
        incl = kind == "avg_incl"
        node = Node("p", "avgpool", [], attrs | {"count_include_pad": incl})
        want = F.avg_pool2d(t(x), kk, s, pp, ceil, incl)
    close(interp.outputs(one(node, x.shape), x), want)


def test_maxpool_dilation_and_asymmetric_padding(rng):
    x = f32(rng, 1, 2, 10, 9)
    node = Node("p", "maxpool", [], dict(kernel=3, stride=2, padding=(1, 1, 1, 1), dilation=(2, 1), ceil_mode=True))
    close(interp.outputs(one(node, x.shape), x), F.max_pool2d(t(x), 3, 2, 1, (2, 1), True))
    node = Node("p", "maxpool", [], dict(kernel=2, stride=2, padding=(0, 1, 1, 0), dilation=1, ceil_mode=False))
    want = F.max_pool2d(F.pad(t(x), (1, 0, 0, 1), value=-np.inf), 2, 2)
    close(interp.outputs(one(node, x.shape), x), want)
    node = Node("p", "avgpool", [], dict(kernel=3, stride=1, padding=(2, 0, 0, 1), count_include_pad=True))
    close(interp.outputs(one(node, x.shape), x), F.avg_pool2d(F.pad(t(x), (0, 1, 2, 0)), 3, 1))


# --- the other ops -----------------------------------------------------------------------------------------------
def test_batchnorm_eval_form(rng):
    x = f32(rng, 3, 5, 4, 4)
    mean, gamma, beta = f32(rng, 5), f32(rng, 5), f32(rng, 5)
    var = rng.uniform(0.2, 2.0, 5).astype(np.float32)
    node = Node("bn", "batchnorm", [], {"eps": 1e-3}, dict(mean=mean, var=var, gamma=gamma, beta=beta))
    want = F.batch_norm(t(x), t(mean), t(var), t(gamma), t(beta), training=False, eps=1e-3)
    close(interp.outputs(one(node, x.shape), x), want)


def test_small_ops(rng):
    x = f32(rng, 2, 4, 5, 3)
    close(interp.outputs(one(Node("r", "relu"), x.shape), x), F.relu(t(x)))
    close(interp.outputs(one(Node("c", "clamp", attrs={"lo": -0.3, "hi": 0.7}), x.shape), x), t(x).clamp(-0.3, 0.7))
    close(interp.outputs(one(Node("g", "global_avgpool"), x.shape), x), F.adaptive_avg_pool2d(t(x), 1))
    close(interp.outputs(one(Node("f", "flatten", attrs={"start": 1}), x.shape), x), torch.flatten(t(x), 1))
    close(interp.outputs(one(Node("i", "identity"), x.shape), x), t(x))
    host = Node("h", "host_op", attrs={"target": "tanh", "fn": np.tanh})
    close(interp.outputs(one(host, x.shape), x), torch.tanh(t(x)))


def test_add_cat_and_a_whole_graph(rng):
    """conv-bn-relu, a residual add with fused ReLU, cat, a 1x1 conv, pools, flatten, linear: vs torch."""
    x = f32(rng, 2, 4, 9, 9)
    W1, W2, W3 = f32(rng, 4, 4, 3, 3), f32(rng, 6, 8, 1, 1), f32(rng, 5, 6)
    bn = dict(mean=f32(rng, 4), var=rng.uniform(0.5, 2, 4).astype(np.float32), gamma=f32(rng, 4), beta=f32(rng, 4))
    g = Graph([
        Node("input", "input", shape=x.shape),
        Node("conv", "conv2d", ["input"], dict(stride=1, padding=1, dilation=1, groups=1), {"W": W1}),
        Node("bn", "batchnorm", ["conv"], {"eps": 1e-5}, bn),
        Node("relu", "relu", ["bn"]),
        Node("add", "add", ["relu", "input"], {"act": "relu"}),
        Node("cat", "cat", ["add", "input"], {"axis": 1}),
        Node("pw", "conv2d", ["cat"], dict(stride=1, padding=0, dilation=1, groups=1, act=("clamp", 0, 6)),
             {"W": W2}),
        Node("pool", "maxpool", ["pw"], dict(kernel=3, stride=2, padding=0, ceil_mode=True)),
        Node("gap", "global_avgpool", ["pool"]),
        Node("flat", "flatten", ["gap"], {"start": 1}),
        Node("fc", "linear", ["flat"], {}, {"W": W3}),
        Node("output", "output", ["fc"]),
    ])
    tx = t(x)
    r = F.relu(F.batch_norm(F.conv2d(tx, t(W1), padding=1), t(bn["mean"]), t(bn["var"]), t(bn["gamma"]),
                            t(bn["beta"])))
    a = F.relu(r + tx)
    pw = torch.clamp(F.conv2d(torch.cat([a, tx], 1), t(W2)), 0, 6)
    fc = F.linear(torch.flatten(F.adaptive_avg_pool2d(F.max_pool2d(pw, 3, 2, ceil_mode=True), 1), 1), t(W3))
    vals = interp.run(g, x)
    assert set(vals) == {n.name for n in g} | {"output"}
    for name, want in [("relu", r), ("add", a), ("pw", pw), ("fc", fc), ("output", fc)]:
        close(vals[name], want)
    few = interp.run(g, x, keep=False)
    assert set(few) == {"fc", "output"}
    close(few["output"], fc)
    close(interp.outputs(g, x[:1]), fc[:1])                          # any batch size


def test_tuple_output():
    g = Graph([Node("input", "input"), Node("r", "relu", ["input"]), Node("output", "output", ["input", "r"])])
    x = np.array([[-1.0, 2.0]], np.float32)
    a, b = interp.outputs(g, x)
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(b, [[0.0, 2.0]])


def resnet18_graph(rng) -> Graph:
    """ResNet-18's shapes (random weights, BN folded), input 1x3x224x224."""
    nodes = [Node("input", "input", shape=(1, 3, 224, 224))]

    def conv(name, inp, ci, co, k, s, act="relu"):
        W = (rng.standard_normal((co, ci, k, k)) * np.sqrt(2 / (ci * k * k))).astype(np.float32)
        nodes.append(Node(name, "conv2d", [inp], dict(stride=s, padding=k // 2, dilation=1, groups=1, act=act),
                          {"W": W, "b": np.zeros(co, np.float32)}))
        return name

    prev = conv("conv1", "input", 3, 64, 7, 2)
    nodes.append(Node("maxpool", "maxpool", [prev], dict(kernel=3, stride=2, padding=1)))
    prev, ci = "maxpool", 64
    for li, (co, s) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], 1):
        for bi in range(2):
            st, p = (s if bi == 0 else 1), f"layer{li}.{bi}"
            c2 = conv(f"{p}.conv2", conv(f"{p}.conv1", prev, ci, co, 3, st), co, co, 3, 1, act=None)
            idn = conv(f"{p}.downsample", prev, ci, co, 1, st, None) if st != 1 or ci != co else prev
            nodes.append(Node(f"{p}.add", "add", [c2, idn], {"act": "relu"}))
            prev, ci = f"{p}.add", co
    nodes += [Node("avgpool", "global_avgpool", [prev]), Node("flatten", "flatten", ["avgpool"], {"start": 1}),
              Node("fc", "linear", ["flatten"], {}, {"W": f32(rng, 1000, 512) * 0.04}),
              Node("output", "output", ["fc"])]
    return Graph(nodes, "resnet18")


def test_resnet18_runs_in_seconds(rng):
    g = resnet18_graph(rng)
    x = f32(rng, 1, 3, 224, 224)
    t0 = time.perf_counter()
    vals = interp.run(g, x)
    assert time.perf_counter() - t0 < 5.0
    assert vals["output"].shape == (1, 1000)
    W = g["layer3.0.conv1"].params["W"]                                # spot-check one layer against torch
    close(vals["layer3.0.conv1"], F.relu(F.conv2d(t(vals["layer2.1.add"]), t(W), stride=2, padding=1)), 1e-3)


# --- bad IR ----------------------------------------------------------------------------------------------------
def test_errors_name_the_node_and_the_problem(rng):
    x = f32(rng, 1, 4, 6, 6)
    bad_groups = Node("c", "conv2d", [], dict(groups=3), {"W": f32(rng, 6, 2, 3, 3)})
    with pytest.raises(ValueError, match="node 'c'.*groups=3"):
        interp.outputs(one(bad_groups, x.shape), x)
    with pytest.raises(ValueError, match="node 'w'.*params\\['W'\\]"):
        interp.outputs(one(Node("w", "conv2d", [], {}, {}), x.shape), x)
    with pytest.raises(ValueError, match="host_op.*no callable"):
        interp.outputs(one(Node("h", "host_op", attrs={"target": "x"}), x.shape), x)
    with pytest.raises(ValueError, match="fused activation"):
        interp.outputs(one(Node("a", "conv2d", [], {"act": "gelu"}, {"W": f32(rng, 2, 4, 1, 1)}), x.shape), x)
    with pytest.raises(ValueError, match="captured for"):
        interp.outputs(one(Node("r", "relu"), (1, 3, 6, 6)), x)
    with pytest.raises(ValueError, match="linear input"):
        interp.outputs(one(Node("fc", "linear", [], {}, {"W": f32(rng, 3, 7)}), None), x.reshape(1, -1))
    g = Graph([Node("input", "input"), Node("c", "conv2d", ["input"], {}, {"W": f32(rng, 2, 4, 1, 1)}),
               Node("add", "add", ["input", "c"]), Node("output", "output", ["add"])])
    with pytest.raises(ValueError, match="node 'add'.*one shape"):
        interp.outputs(g, x)
    g.nodes[2].inputs = ["nowhere", "c"]                                   # edited into an inconsistent graph
    with pytest.raises(ValueError, match="reads \\['nowhere'\\]"):
        interp.outputs(g, x)
    with pytest.raises(ValueError, match="unknown op"):
        Node("q", "softmax")
