"""import_onnx(): ONNX models (torch.onnx dynamo exports and hand-built graphs) vs onnxruntime as the oracle."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytorch_fpga.graph import interp
from pytorch_fpga.graph.onnx_import import import_onnx


def ort_run(model_or_path, x):
    data = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def close(a, b, tol=1e-4):
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())))


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# --- torch.onnx dynamo exports -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two small CNNs exported with torch.onnx.export(dynamo=True): one optimised, one not (BN + Constants kept)."""
    torch = pytest.importorskip("torch")
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=(1, 2), dilation=(1, 2), groups=8)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            y = torch.relu(self.bn(self.conv(x)))
            z = nn.functional.relu6(y)
            y = torch.cat([y + z, torch.sigmoid(z)], 1)
            y = nn.functional.max_pool2d(y, 3, 2, 1, ceil_mode=True)
            y = nn.functional.avg_pool2d(y, 2, 1, 1, count_include_pad=False)
            y = nn.functional.adaptive_avg_pool2d(y, 1)
            return self.fc(nn.functional.dropout(y.view(y.size(0), -1), 0.5, self.training))

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    seq = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    seq.eval()
    out = tmp_path_factory.mktemp("onnx")
    paths = {"net": str(out / "net.onnx"), "seq": str(out / "seq.onnx")}
    torch.onnx.export(net, (torch.zeros(2, 3, 8, 8),), paths["net"], dynamo=True, verbose=False)
    torch.onnx.export(seq, (torch.zeros(2, 2, 6, 6),), paths["seq"], dynamo=True, verbose=False, optimize=False)
    return paths


def test_dynamo_export_matches_onnxruntime(exported, rng):
    graph = import_onnx(exported["net"])
    ops = graph.ops()
    assert ops["conv2d"] >= 1 and ops["cat"] == 1 and ops["add"] == 1 and ops["clamp"] == 1
    assert ops["maxpool"] == 1 and ops["avgpool"] == 1 and ops["global_avgpool"] == 1 and ops["linear"] == 1
    host = [n for n in graph if n.op == "host_op"]
    assert [n.attrs["target"] for n in host] == ["Sigmoid"]
    assert "Sigmoid" in host[0].source
    assert graph["input"].shape == (2, 3, 8, 8) and graph.output.shape == (2, 4)
    x = f32(rng, 2, 3, 8, 8)
    close(interp.outputs(graph, x), ort_run(exported["net"], x))


def test_unoptimised_export_keeps_batchnorm_and_folds_constants(exported, rng):
    graph = import_onnx(exported["seq"])
    assert [n.op for n in graph] == ["input", "conv2d", "batchnorm", "relu", "flatten", "linear", "output"]
    x = f32(rng, 2, 2, 6, 6)
    close(interp.outputs(graph, x), ort_run(exported["seq"], x))


# --- hand-built graphs ---------------------------------------------------------------------------------------
def build(nodes, x_shape, y_shape, inits=(), opset=17):
    """A one-input one-output ONNX model from nodes and {name: array} initializers; checked by onnx.checker."""
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def check(model, x, ops):
    graph = import_onnx(model)
    assert [n.op for n in graph][1:-1] == ops
    close(interp.outputs(graph, x), ort_run(model, x))
    return graph


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm(rng, trans_b):
    B, C = f32(rng, 5, 7) if trans_b else f32(rng, 7, 5), f32(rng, 5)
    m = build([helper.make_node("Gemm", ["x", "B", "C"], ["y"], transB=trans_b)], [3, 7], [3, 5], {"B": B, "C": C})
    check(m, f32(rng, 3, 7), ["linear"])


def test_gemm_with_alpha_is_an_error(rng):
    m = build([helper.make_node("Gemm", ["x", "B"], ["y"], alpha=2.0)], [3, 7], [3, 5], {"B": f32(rng, 7, 5)})
    with pytest.raises(ValueError, match="alpha"):
        import_onnx(m)


def test_matmul_add_is_one_linear_and_matmul_alone_too(rng):
    m = build([helper.make_node("MatMul", ["x", "B"], ["t"]), helper.make_node("Add", ["t", "C"], ["u"]),
               helper.make_node("MatMul", ["u", "B2"], ["y"])], [4, 6], [4, 2],
              {"B": f32(rng, 6, 3), "C": f32(rng, 3), "B2": f32(rng, 3, 2)})
    g = check(m, f32(rng, 4, 6), ["linear", "linear"])
    assert "b" in g["u"].params and "b" not in g["y"].params


def test_batchnorm_clip_relu_identity_dropout(rng):
    C = 4
    inits = {"s": f32(rng, C), "b": f32(rng, C), "m": f32(rng, C), "v": rng.uniform(0.5, 2, C).astype(np.float32),
             "lo": np.float32(-0.5), "hi": np.float32(0.75)}
    m = build([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["a"], epsilon=1e-3),
               helper.make_node("Clip", ["a", "lo", "hi"], ["c"]), helper.make_node("Identity", ["c"], ["d"]),
               helper.make_node("Dropout", ["d"], ["e"]), helper.make_node("Relu", ["e"], ["y"])],
              [2, C, 3, 3], [2, C, 3, 3], inits)
    g = check(m, f32(rng, 2, C, 3, 3), ["batchnorm", "clamp", "identity", "identity", "relu"])
    assert (g["c"].attrs["lo"], g["c"].attrs["hi"]) == (-0.5, 0.75)


def test_clip_with_attributes_in_opset_6(rng):
    m = build([helper.make_node("Clip", ["x"], ["y"], min=0.0, max=6.0)], [2, 5], [2, 5], opset=6)
    check(m, 4 * f32(rng, 2, 5), ["clamp"])


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad(rng, auto_pad):
    W = f32(rng, 3, 2, 4, 3)
    out = [1, 3, 4, 4] if auto_pad != "VALID" else [1, 3, 3, 3]
    m = build([helper.make_node("Conv", ["x", "W"], ["y"], strides=[2, 2], auto_pad=auto_pad)], [1, 2, 8, 7], out,
              {"W": W})
    check(m, f32(rng, 1, 2, 8, 7), ["conv2d"])


@pytest.mark.parametrize("ceil, incl", [(0, 1), (1, 0), (1, 1)])
def test_average_and_max_pool(rng, ceil, incl):
    m = build([helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 0],
                                ceil_mode=ceil, count_include_pad=incl),
               helper.make_node("MaxPool", ["a"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=ceil)],
              [1, 2, 10, 9], ["n", "c", "h", "w"])
    check(m, f32(rng, 1, 2, 10, 9), ["avgpool", "maxpool"])


def test_global_pool_reduce_mean_flatten_reshape_concat(rng):
    m = build([helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
               helper.make_node("ReduceMean", ["x"], ["r"], axes=[-1, -2], keepdims=0),
               helper.make_node("Reshape", ["x", "shape"], ["s"]),
               helper.make_node("Concat", ["f", "r", "s"], ["y"], axis=-1)],
              [2, 3, 4, 5], [2, 66], {"shape": np.array([0, -1], np.int64)})
    check(m, f32(rng, 2, 3, 4, 5), ["global_avgpool", "flatten", "global_avgpool", "flatten", "flatten", "cat"])


def test_unknown_ops_are_host_ops_evaluated_by_the_reference_runtime(rng):
    m = build([helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Tanh", ["c"], ["t"]),
               helper.make_node("Mul", ["t", "k"], ["s"]), helper.make_node("Softmax", ["s"], ["y"], axis=1)],
              [1, 2, 5, 5], [1, 3, 5, 5], {"W": f32(rng, 3, 2, 3, 3), "k": np.float32(1.5)})
    g = check(m, f32(rng, 1, 2, 5, 5), ["conv2d", "host_op", "host_op", "host_op"])
    assert [n.attrs["target"] for n in g if n.op == "host_op"] == ["Tanh", "Mul", "Softmax"]


def test_errors(rng):
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two",
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, [2]) for k in "ab"],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(ValueError, match="2 inputs"):
        import_onnx(helper.make_model(g))
    with pytest.raises(TypeError, match="path or an onnx.ModelProto"):
        import_onnx(42)
