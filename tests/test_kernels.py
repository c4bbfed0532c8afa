"""The program's int8 host kernels and its data movement, against torch and the contract's own pack/unpack."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pytorch_fpga.contract import accel, stream_codec
from pytorch_fpga.core import conv, quant
from pytorch_fpga.graph import quantize
from pytorch_fpga.graph.ir import Node
from pytorch_fpga.graph.lower import _window_counts, pool_geometry
from pytorch_fpga.runtime import kernels


def _int8(rng, shape, extreme=0.1):
    q = rng.integers(-128, 128, shape).astype(np.int8)
    q[rng.random(shape) < extreme] = 127
    q[rng.random(shape) < extreme] = -128
    return q


@pytest.mark.parametrize("relu", [False, True])
def test_add_rescales_to_the_output_scale_within_one_step(rng, relu):
    a, b = _int8(rng, (2, 5, 6, 16)), _int8(rng, (2, 5, 6, 16))
    sa, sb, sy = 0.05, 0.11, 0.09
    mult, S = quantize.fixed_multiplier([sa / sy, sb / sy])
    out = np.empty_like(a)
    kernels.add(a, b, mult, S, relu, out)
    real = (a.astype(np.float64) * sa + b * sb) / sy                   # the float sum, in output steps
    ref = np.clip(np.rint(real), 0 if relu else -128, 127)
    assert np.abs(out - ref).max() <= 1 and np.mean(out == ref) > 0.99
    assert out.max() == 127 and (out.min() == 0 if relu else out.min() == -128)   # saturates, both ends


def test_rescale_moves_a_tensor_to_a_larger_scale(rng):
    a = _int8(rng, (1, 4, 4, 32))
    mult, S = quantize.fixed_multiplier([0.03 / 0.07])
    out = np.empty_like(a)
    kernels.rescale(a, int(mult[0]), S, out)
    assert np.abs(out - np.rint(a * 0.03 / 0.07)).max() <= 1


@pytest.mark.parametrize("k,s,p,d,ceil", [(2, 2, 0, 1, False), (3, 2, 1, 1, False), (3, 2, 1, 1, True),
                                          (3, 1, 1, 2, False), (2, 3, 1, 1, True)])
def test_maxpool_on_int8_equals_torch(rng, k, s, p, d, ceil):
    x = _int8(rng, (2, 9, 11, 8))
    n = Node("mp", "maxpool", ["x"], {"kernel": (k, k), "stride": (s, s), "padding": (p,) * 4, "dilation": (d, d),
                                      "ceil_mode": ceil})
    geo = pool_geometry(n, x.shape)
    out = np.empty((2, geo["Ho"], geo["Wo"], 8), np.int8)
    kernels.maxpool(x, geo, out)
    ref = F.max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2).float(), k, s, p, d, ceil_mode=ceil)
    np.testing.assert_array_equal(out, ref.permute(0, 2, 3, 1).numpy())


@pytest.mark.parametrize("k,s,p,ceil,incl", [(2, 2, 0, False, True), (3, 2, 1, False, True),
                                             (3, 2, 1, True, False), (3, 1, 1, False, False)])
def test_avgpool_is_the_mean_in_output_steps_within_one(rng, k, s, p, ceil, incl):
    x = _int8(rng, (2, 9, 10, 4))
    n = Node("ap", "avgpool", ["x"], {"kernel": (k, k), "stride": (s, s), "padding": (p,) * 4, "ceil_mode": ceil,
                                      "count_include_pad": incl})
    geo = pool_geometry(n, x.shape)
    ratio = 0.04 / 0.03                                                 # s_in / s_out
    m, shift = quant.quantize_multiplier(ratio / _window_counts(geo, incl))
    out = np.empty((2, geo["Ho"], geo["Wo"], 4), np.int8)
    kernels.avgpool(x, geo, m, shift, out)
    mean = F.avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2).double(), k, s, p, ceil_mode=ceil,
                        count_include_pad=incl).permute(0, 2, 3, 1).numpy()
    ref = np.clip(np.rint(mean * ratio), -128, 127)
    assert np.abs(out - ref).max() <= 1 and np.mean(out == ref) > 0.97


def test_global_avgpool(rng):
    x = _int8(rng, (3, 7, 7, 16))
    m, shift = quant.quantize_multiplier(np.float64(0.05 / (49 * 0.02)))
    out = np.empty((3, 1, 1, 16), np.int8)
    kernels.global_avgpool(x, m, shift, out)
    ref = np.clip(np.rint(x.astype(np.float64).mean(axis=(1, 2), keepdims=True) * 0.05 / 0.02), -128, 127)
    assert np.abs(out - ref).max() <= 1


def test_quantize_input_is_pf_quant_in_nhwc(rng):
    x = rng.normal(0, 3, (2, 3, 5, 7)).astype(np.float32)
    out = np.empty((2, 5, 7, 3), np.int8)
    kernels.quantize_input(x, 0.02, out)
    np.testing.assert_array_equal(out, quant.quantize(x.astype(np.float64), 0.02).transpose(0, 2, 3, 1))


@pytest.mark.parametrize("C,k,s,p,d", [(16, 3, 1, 1, 1), (32, 3, 2, 1, 1), (3, 7, 2, 3, 1), (16, 3, 1, 2, 2)])
def test_x_tiles_written_in_place_decode_to_pf_conv_im2col(rng, C, k, s, p, d):
    """The program's copies put exactly the im2col rows (K in (kh, kw, c) order) into a job's stream."""
    x = _int8(rng, (2, 9, 9, C))
    cfg = accel.config("z1")
    xp = np.zeros((2, 9 + 2 * p, 9 + 2 * p, C), np.int8)
    kernels.pad_into(x, (p,) * 4, xp)
    Ho = (9 + 2 * p - d * (k - 1) - 1) // s + 1
    geo = {"stride": (s, s), "dilation": (d, d), "kh": k, "kw": k, "Ho": Ho, "Wo": Ho}
    K, M = k * k * C, 2 * Ho * Ho
    W = _int8(rng, (K, 16))
    # the oracle: pf.conv's im2col on NCHW, reordered from (c, kh, kw) to (kh, kw, c)
    cols = conv.im2col(x.transpose(0, 3, 1, 2), (k, k), s, p, d).reshape(M, C, k, k).transpose(0, 2, 3, 1)
    ref = cols.reshape(M, K)
    for m_tile in (Ho, 2 * Ho * Ho, 5):
        job = accel.pack_job(np.zeros((M, K), np.int8), W, m=np.ones(16, np.int64), shift=np.ones(16, np.int64),
                             cfg=cfg, m_tile=min(m_tile, accel.max_m_tile(M, K, cfg)))
        groups = kernels.tile_groups(job)
        mat = np.zeros((M, -(-K // 16) * 16), np.int8)
        kernels.run_copies(kernels.im2col_copies(xp, geo, 0, C, mat))
        np.testing.assert_array_equal(mat[:, :K], ref)
        stream = job.stream.copy()
        kernels.run_copies(kernels.x_tile_copies(mat, stream, groups, job.fk, 16))
        np.testing.assert_array_equal(stream_codec.decode_x(job, stream), ref)
        if C % 16 == 0 and job.m_tile % Ho == 0:                     # straight from the map, no im2col matrix
            stream = job.stream.copy()
            win = kernels.windows(kernels.rows_view(xp, 16), geo, 0, C // 16)
            kernels.run_copies(kernels.x_window_copies(win, stream, groups, 16))
            np.testing.assert_array_equal(stream_codec.decode_x(job, stream), ref)


@pytest.mark.parametrize("N,out_int32", [(48, False), (21, False), (10, True)])
def test_outputs_read_back_like_pf_accel_unpack(rng, N, out_int32):
    ops = accel.random_operands(rng, 37, 20, N, out_int32=out_int32)
    job = accel.pack_job(**ops, cfg="z1", m_tile=8)
    Y = accel.job_golden(job)
    out = stream_codec.pack_output(Y, job)
    dst = np.zeros((37, 64), np.int32 if out_int32 else np.int8)
    kernels.run_copies(kernels.output_copies(out, job, dst[:, 5:5 + N]))
    np.testing.assert_array_equal(dst[:, 5:5 + N], accel.unpack_output(out, job))
    assert not dst[:, :5].any() and not dst[:, 5 + N:].any()


@pytest.mark.parametrize("cfg,M,K,N,m_tile", [("z1", 70, 100, 40, None), ("sim8", 30, 20, 20, 7),
                                              ("z1", 600, 33, 300, None)])
def test_stream_codec_reads_back_what_pack_job_wrote(rng, cfg, M, K, N, m_tile):
    ops = accel.random_operands(rng, M, K, N)
    job = accel.pack_job(**ops, cfg=cfg, m_tile=m_tile)
    assert stream_codec.stream_bytes(job) == job.stream.size
    np.testing.assert_array_equal(stream_codec.decode_x(job), ops["X"])
    p = stream_codec.decode_params(job)
    for k in ("W", "bias"):
        np.testing.assert_array_equal(p[k], ops[k])
    np.testing.assert_array_equal(p["m"], job.operands["m"])
    np.testing.assert_array_equal(p["shift"], job.operands["shift"])
    Y = accel.job_golden(job)
    np.testing.assert_array_equal(accel.unpack_output(stream_codec.pack_output(Y, job), job), Y)
