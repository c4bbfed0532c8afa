"""The torch-free runtime: conv/GEMM compiler and pf.Accelerator on the model backend, against torch."""
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pytorch_fpga as pf
from pytorch_fpga.contract import accel
from pytorch_fpga.core import quant
from pytorch_fpga.runtime import compiler
from pytorch_fpga.sim import tools

SMALL = accel.AccelConfig("tiny", rows=8, cols=8, lut_rows=0, x_depth=128, w_depth=256, acc_depth=16, n_max=32)


def rand8(rng, shape):
    a = rng.integers(-128, 128, shape)
    a.flat[: max(1, a.size // 10)] = -128
    return a.astype(np.int8)


def torch_conv(X, W, **kw):
    """Exact integer conv in float64 through torch (the oracle)."""
    mode = kw.pop("padding_mode", "zeros")
    Xt = torch.from_numpy(X.astype(np.float64))
    if mode != "zeros":
        pad = kw.pop("padding")
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        Xt = F.pad(Xt, (pw, pw, ph, ph), mode=mode)
    return F.conv2d(Xt, torch.from_numpy(W.astype(np.float64)), **kw).numpy().astype(np.int64)


CASES = [dict(stride=1, padding=0), dict(stride=2, padding=1), dict(stride=(2, 1), padding=(0, 2)),
         dict(padding="same", dilation=2), dict(padding="valid"), dict(padding=1, groups=2),
         dict(padding=1, groups=8), dict(padding=1, padding_mode="reflect"),
         dict(padding=(1, 2), padding_mode="replicate"), dict(padding=1, padding_mode="circular")]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("batched", [True, False])
def test_conv2d_int32_is_exact(case, batched):
    rng = np.random.default_rng(len(str(case)))
    X = rand8(rng, (2, 8, 9, 7) if batched else (8, 9, 7))
    W = rand8(rng, (16, 8 // case.get("groups", 1), 3, 3))
    bias = rng.integers(-1000, 1000, 16)
    Y, rep = pf.Accelerator("model", SMALL).conv2d(X, W, bias, out_int32=True, **case)
    ref = torch_conv(X if batched else X[None], W, **dict(case)) + bias[:, None, None]
    np.testing.assert_array_equal(Y, ref if batched else ref[0])
    assert rep.macs == pf.conv.conv2d_macs((2 if batched else 1, 8, 9, 7), W.shape, case.get("stride", 1),
                                           case.get("padding", 0), case.get("dilation", 1), case.get("groups", 1))


def test_conv2d_int8_matches_the_integer_reference_and_float():
    rng = np.random.default_rng(1)
    Xf = rng.normal(size=(1, 8, 10, 10))
    Wf = rng.normal(size=(24, 8, 3, 3)) * 0.1
    bf = rng.normal(size=24) * 0.1
    s_in = quant.calibrate_minmax(Xf)
    ref_f = F.relu(F.conv2d(torch.from_numpy(Xf), torch.from_numpy(Wf), torch.from_numpy(bf), padding=1)).numpy()
    layer = quant.quantize_layer(Wf, bf, s_in, quant.calibrate_minmax(ref_f), relu=True)
    X = quant.quantize(Xf, s_in)
    Y, _ = pf.Accelerator("model", SMALL).conv2d_layer(X, layer, padding=1)
    acc = pf.wrap_int32(torch_conv(X, layer.w_int8, padding=1) + layer.bias_int32[:, None, None])
    np.testing.assert_array_equal(Y, layer.requant(acc))
    assert np.abs(quant.dequantize(Y, layer.s_out) - ref_f).max() <= 2 * layer.s_out + 1e-9


def test_gemm_splits_n_when_w_does_not_fit():
    rng = np.random.default_rng(2)
    X, W = rand8(rng, (20, 30)), rand8(rng, (30, 50))
    parts = compiler.gemm_parts(X, W, out_int32=True, cfg=SMALL)
    assert len(parts) > 1 and sum(len(p.out_cols) for p in parts) == 50
    Y, rep = pf.Accelerator("model", SMALL).gemm(X, W, out_int32=True)
    np.testing.assert_array_equal(Y, pf.gemm_int8(X, W))
    assert len(rep.jobs) == len(parts) and rep.macs == 20 * 30 * 50


def test_depthwise_runs_in_window_mode_or_packs_groups_into_gemm_jobs():
    rng = np.random.default_rng(3)
    X, W = rand8(rng, (1, 16, 6, 6)), rand8(rng, (16, 1, 3, 3))
    parts, _ = compiler.conv2d_parts(X, W, out_int32=True, padding=1, groups=16, cfg=SMALL)
    assert len(parts) == 1 and parts[0].job.window.depthwise          # the engine walks channel blocks
    Y, _ = pf.Accelerator("model", SMALL).conv2d(X, W, out_int32=True, padding=1, groups=16)
    np.testing.assert_array_equal(Y, torch_conv(X, W, padding=1, groups=16))
    # unequal strides: no window mode; groups packed side by side, 8 channels per job on an 8-column array
    parts, _ = compiler.conv2d_parts(X, W, out_int32=True, padding=1, stride=(1, 2), groups=16, cfg=SMALL)
    assert len(parts) == 2 and parts[0].job.window is None
    Y, _ = pf.Accelerator("model", SMALL).conv2d(X, W, out_int32=True, padding=1, stride=(1, 2), groups=16)
    np.testing.assert_array_equal(Y, torch_conv(X, W, padding=1, stride=(1, 2), groups=16))


def test_errors_name_the_problem():
    acc = pf.Accelerator("model", SMALL)
    with pytest.raises(TypeError, match="quantize it first"):
        acc.gemm(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int8), out_int32=True)
    with pytest.raises(ValueError, match="does not fit accelerator 'tiny'.*K <= 256"):
        acc.gemm(np.zeros((2, 600), np.int8), np.zeros((600, 2), np.int8), out_int32=True)
    with pytest.raises(ValueError, match="requantization multipliers"):
        acc.gemm(np.zeros((2, 2), np.int8), np.zeros((2, 2), np.int8))
    with pytest.raises(ValueError, match="unknown backend"):
        pf.Accelerator("fpga")
    with pytest.raises(ValueError, match="unknown accelerator config"):
        pf.Accelerator("model", "z9")


def test_backend_from_environment(monkeypatch):
    monkeypatch.setenv("PYTORCH_FPGA_BACKEND", "model")
    assert pf.Accelerator(config=SMALL).backend.name == "model"
    monkeypatch.setenv("PYTORCH_FPGA_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="PYTORCH_FPGA_BACKEND"):
        pf.Accelerator(config=SMALL)


def test_runtime_imports_no_torch():
    code = ("import sys, numpy as np, pytorch_fpga as pf; a = pf.Accelerator('model', 'sim8');"
            "a.gemm(np.ones((3, 3), np.int8), np.ones((3, 3), np.int8), out_int32=True);"
            "import pytorch_fpga.runtime.compiler, pytorch_fpga.runtime.backends, pytorch_fpga.runtime.pynq_driver;"
            "import pytorch_fpga.contract.accel, pytorch_fpga.contract.regmap, pytorch_fpga.contract.design;"
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_z1_config_is_the_rtl_default_and_the_header_is_current():
    src = (tools.RTL_DIR / "conv_accel.v").read_text()
    defaults = {k: int(v) for k, v in re.findall(r"parameter integer (\w+)\s*=\s*(\d+)", src)}
    assert defaults == accel.config("z1").params()
    from pytorch_fpga.contract import regmap
    assert (tools.RTL_DIR / "regmap_generated.vh").read_text() == regmap.verilog_header()
