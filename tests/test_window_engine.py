"""Window mode at the z1 build's limits on the Verilated RTL, the virtual PYNQ and the compilers, against torch.

Long reductions (3x3x512: K = 4608) at full tile height, output channels beyond the weight buffer (several jobs,
the feature map streamed once per job), stride-2 and 1x1 layers, a depthwise layer; outputs bit-exact with
torch.nn.functional.conv2d and the numpy model, RTL cycles within 2% of the cycle model.
"""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pytorch_fpga as pf
from pytorch_fpga.contract import accel, stream_codec, window
from pytorch_fpga.core import quant
from pytorch_fpga.runtime import backends


def torch_conv(X, W, bias, **kw):
    """The exact int32 accumulator of an int8 conv2d (float64 through torch), NCHW."""
    X, W, bias = (torch.from_numpy(np.asarray(a, np.float64)) for a in (X, W, bias))
    return F.conv2d(X, W, bias, **kw).numpy().astype(np.int64)


def operands(rng, Nb, C, H, Co, k, groups=1):
    X = rng.integers(-128, 128, (Nb, C, H, H)).astype(np.int8)
    W = rng.integers(-128, 128, (Co, C // groups, k, k)).astype(np.int8)
    X[rng.random(X.shape) < 0.1] = -128                      # extremes
    W[rng.random(W.shape) < 0.1] = 127
    bias = rng.integers(-2**20, 2**20, Co)
    spread = 5461.0 * np.sqrt(C // groups * k * k)
    m, shift = quant.quantize_multiplier(rng.uniform(32, 256, Co) / spread)
    return X, W, bias, m, shift


@pytest.mark.slow
@pytest.mark.parametrize("C,H,Co,k,s,p,groups", [
    (512, 7, 64, 3, 1, 1, 1),         # K = 4608: one tile of all 7 output rows (49 pixels), two jobs
    (256, 14, 48, 3, 2, 1, 1),        # stride 2: tiles of whole output rows
    (256, 14, 32, 1, 2, 0, 1),        # 1x1 stride 2 (a ResNet downsample; the compiler would pick GEMM)
    (32, 14, 32, 3, 1, 1, 32),        # depthwise
])
def test_z1_window_layers_match_torch_on_the_rtl(rng, C, H, Co, k, s, p, groups):
    X, W, bias, m, shift = operands(rng, 1, C, H, Co, k, groups)
    kw = dict(stride=s, padding=p, groups=groups)
    acc = torch_conv(X, W, bias, **kw)
    want = quant.requantize(acc.transpose(0, 2, 3, 1), m, shift, relu=True, axis=-1).transpose(0, 3, 1, 2)
    hw = pf.Accelerator("verilator", "z1")
    win = pf.compiler._window(X, W.shape, s, p, 1, groups, "zeros")
    parts = pf.compiler.window_parts(X, W, win, bias, m, shift, True, False, accel.config("z1"))   # window mode
    for pt in parts:
        job = pt.job
        assert job.m_tile == window.choose_tile_oh(job.window, job.N, "z1", False, job.out_nhwc) * job.window.OW
        Y, rep = hw.backend.run(job)
        np.testing.assert_array_equal(Y, accel.job_golden(job))
        model = accel.cycle_model(job)["cycles"]
        assert abs(rep.cycles - model) <= 0.02 * rep.cycles, (rep.cycles, model)
    Y, report = hw.conv2d(X, W, bias, m, shift, relu=True, **kw)
    np.testing.assert_array_equal(Y, want)
    if C == 512:                                              # K = 4608 at full tile height
        assert parts[0].job.K == 4608 and parts[0].job.m_tile == 49 and len(parts) == 2
        assert report.utilization > 0.8


def test_weights_beyond_the_buffer_split_output_channels_and_stream_the_map_once_per_job(rng):
    X, W, bias, m, shift = operands(rng, 1, 512, 7, 512, 3)
    parts, _ = pf.compiler.conv2d_parts(X, W, bias, m, shift, cfg="z1", padding=1)
    chunk = accel.n_chunk(4608, accel.config("z1"))
    assert [len(pt.out_cols) for pt in parts] == [chunk] * (512 // chunk) + ([512 % chunk] if 512 % chunk else [])
    fmap, weights = 7 * 7 * 512, 9 * 512 * 512
    x_bytes = sum(stream_codec.stream_bytes(pt.job) - stream_codec.w_bytes(pt.job) - stream_codec.params_bytes(
        pt.job) for pt in parts)
    assert x_bytes <= len(parts) * (fmap + 8)                 # each job streams the map once (plus its header)
    assert sum(pt.job.stream.size for pt in parts) <= 1.5 * (fmap + weights)
    Y, _ = pf.Accelerator("model", "z1").conv2d(X, W, bias, m, shift, padding=1)
    acc = torch_conv(X, W, bias, padding=1)
    np.testing.assert_array_equal(Y, quant.requantize(acc.transpose(0, 2, 3, 1), m, shift, axis=-1)
                                  .transpose(0, 3, 1, 2))


def test_a_window_job_runs_on_the_virtual_pynq(rng):
    X, W, bias, m, shift = operands(rng, 2, 16, 9, 24, 3)
    job = pf.compiler.conv2d_parts(X, W, bias, m, shift, cfg="sim8", stride=2, padding=1)[0][0].job
    assert job.window is not None and job.out_nhwc
    be = backends.get("pynq", "sim8")
    out = be.allocate(job.out_bytes)
    stream = be.allocate(job.stream.size)
    stream[:] = job.stream
    live = dataclasses.replace(job, stream=stream)
    be.run_into(live, out)
    np.testing.assert_array_equal(accel.unpack_output(out, job), accel.job_golden(job))


def test_mode_forces_gemm_or_window_and_refuses_what_the_engine_cannot_take(rng):
    X, W, bias, m, shift = operands(rng, 1, 16, 8, 16, 3)
    want = torch_conv(X, W, bias, padding=1)
    for mode, windowed in (("gemm", False), ("window", True), ("auto", True)):
        parts, _ = pf.compiler.conv2d_parts(X, W, bias, out_int32=True, padding=1, cfg="sim8", mode=mode)
        assert all((pt.job.window is not None) == windowed for pt in parts), mode
        Y, _ = pf.Accelerator("model", "sim8").conv2d(X, W, bias, out_int32=True, padding=1, mode=mode)
        np.testing.assert_array_equal(Y, want)
    with pytest.raises(ValueError, match="mode='window'.*padding mode"):
        pf.compiler.conv2d_parts(X, W, bias, out_int32=True, padding=1, stride=(1, 2), cfg="sim8", mode="window")
    with pytest.raises(ValueError, match="mode must be"):
        pf.compiler.conv2d_parts(X, W, bias, out_int32=True, cfg="sim8", mode="im2col")
    assert window.Window(1, 4, 4, 8, 3, 3, pads=[1, 1, 1, 1]).pads == (1, 1, 1, 1)      # lists are taken too
