"""The depthwise unit's host side (pf.contract.dwunit): packed jobs, their decoding, the golden model against torch,
the compiler's and the graph lowering's choice of it. No RTL here (tb/accel_dw tests the hardware)."""
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pytorch_fpga as pf
from pytorch_fpga.contract import accel, dwunit, regmap, stream_codec, window
from pytorch_fpga.core import quant
from pytorch_fpga.nn import models
from pytorch_fpga.runtime.compiled import Compiled

CFGS = ["sim8", "z1dw"]


def wrap32(a):
    return (np.asarray(a, np.int64) + 2**31) % 2**32 - 2**31


def torch_acc(X, Wt, stride, pads, bias):
    """The int32 accumulators (M, C) of the depthwise conv by torch (float64 on the int values) + bias, wrapped."""
    x = F.pad(torch.from_numpy(X.astype(np.float64)).permute(0, 3, 1, 2), (pads[2], pads[3], pads[0], pads[1]))
    w = torch.from_numpy(Wt.astype(np.float64)).permute(2, 0, 1)[:, None]          # (C, 1, 3, 3)
    y = F.conv2d(x, w, stride=stride, groups=X.shape[3])
    return wrap32(y.permute(0, 2, 3, 1).reshape(-1, X.shape[3]).numpy().astype(np.int64) + np.asarray(bias))


def torch_expect(X, Wt, stride, pads, ops, relu, out_int32):
    acc = torch_acc(X, Wt, stride, pads, ops["bias"])
    return acc.astype(np.int32) if out_int32 else quant.requantize(acc, ops["m"], ops["shift"], relu=relu, axis=-1)


def torch_windows(X, stride, pads):
    """The window rows (M, 9*C) in (ky, kx, c) order, by torch's unfold on the zero-padded map."""
    N, _, _, C = X.shape
    x = F.pad(torch.from_numpy(X.astype(np.float64)).permute(0, 3, 1, 2), (pads[2], pads[3], pads[0], pads[1]))
    u = F.unfold(x, (3, 3), stride=stride)                                             # (N, C*9, L)
    return u.reshape(N, C, 9, -1).permute(0, 3, 2, 1).reshape(-1, 9 * C).numpy().astype(np.int8)


def operands(rng, N, H, W, C, extreme=0.15, relu=False, out_int32=False):
    X = rng.integers(-128, 128, (N, H, W, C)).astype(np.int8)
    Wt = rng.integers(-128, 128, (3, 3, C)).astype(np.int8)
    for A in (X, Wt):
        mask = rng.random(A.shape) < extreme
        A[mask] = rng.choice(np.array([-128, 127], np.int8), int(mask.sum()))
    ops = accel.random_operands(rng, 1, 9, C, relu=relu, out_int32=out_int32)
    return X, Wt, {k: ops[k] for k in ("bias", "m", "shift") if k in ops}


def random_geometry(rng, cfg):
    """A (N, H, W, C, stride, pads) the unit takes on cfg: odd sizes, strides 1/2, pads 0..2, batches of 1-2."""
    cfg = accel.config(cfg)
    while True:
        C = 8 * int(rng.integers(1, min(cfg.dw_ch, 48) // 8 + 1))
        s, pads = int(rng.integers(1, 3)), tuple(int(p) for p in rng.integers(0, 3, 4))
        geo = (int(rng.integers(1, 3)), int(rng.integers(1, 12)), int(rng.integers(1, 12)), C, s, pads)
        if dwunit.unsupported(window.Window(*geo[:4], 3, 3, s, 1, pads, True), cfg) is None:
            return geo


def pack(X, Wt, ops, relu, out_int32, cfg, stride, pads):
    return dwunit.pack_dw_job(X, Wt, **ops, relu=relu, out_int32=out_int32, cfg=cfg, stride=stride, pads=pads)


# --- the golden model against torch ------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", CFGS)
@pytest.mark.parametrize("seed", range(6))
def test_random_jobs_match_torch_depthwise_conv(cfg, seed):
    rng = np.random.default_rng(100 + seed)
    N, H, W, C, s, pads = random_geometry(rng, cfg)
    relu, out_int32 = bool(seed % 2), seed % 3 == 2
    X, Wt, ops = operands(rng, N, H, W, C, relu=relu, out_int32=out_int32)
    job = pack(X, Wt, ops, relu, out_int32, cfg, s, pads)
    want = torch_expect(X, Wt, s, pads, ops, relu, out_int32)
    assert job.dw_unit and job.window.depthwise and (job.M, job.K, job.N) == (want.shape[0], 9, C)
    np.testing.assert_array_equal(accel.job_golden(job), want)
    Y, rep = pf.runtime.backends.get("model", cfg).run(job)                 # the model backend: golden's answer
    np.testing.assert_array_equal(Y, want)
    assert rep.macs == job.M * 9 * C and rep.bytes_out == job.out_bytes == job.M * C * (4 if out_int32 else 1)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("pad", [0, 1, 2])
@pytest.mark.parametrize("H,W", [(7, 5), (6, 9), (3, 3), (1, 4)])
def test_strides_pads_batches_and_odd_sizes(rng, stride, pad, H, W):
    pads = (pad, pad, pad, pad)
    win = window.Window(2, H, W, 16, 3, 3, stride, 1, pads, True)
    if win.OH < 1 or win.OW < 1:                       # e.g. a 1-row map without padding: no output
        assert dwunit.unsupported(win, "sim8") == "the output is empty"
        return
    bottom, right = (win.OH - 1) * stride + 3 - pad - H, (win.OW - 1) * stride + 3 - pad - W
    assert (dwunit.unsupported(win, "sim8") is None) == (max(bottom, right) <= 2)
    if max(bottom, right) > 2:
        return
    X, Wt, ops = operands(rng, 2, H, W, 16)
    job = pack(X, Wt, ops, True, False, "sim8", stride, pads)
    np.testing.assert_array_equal(accel.job_golden(job), torch_expect(X, Wt, stride, pads, ops, True, False))
    np.testing.assert_array_equal(dwunit.decode_x(job), torch_windows(X, stride, pads))


def test_extreme_operands_saturate_and_reach_the_int32_range(rng):
    C = 16
    X = np.full((1, 5, 5, C), -128, np.int8)
    Wt = np.full((3, 3, C), -128, np.int8)
    X[0, 0, 0, :8] = 127                                # some mixed signs too
    bias = np.concatenate([np.full(8, 2**31 - 1000), np.full(8, -2**31 + 5)])     # channels 0-7 wrap around
    Y, _ = pf.runtime.backends.get("model", "sim8").run(pack(X, Wt, {"bias": bias}, False, True, "sim8", 1, (1,) * 4))
    acc = torch_acc(X, Wt, 1, (1,) * 4, bias)
    np.testing.assert_array_equal(Y, acc)
    assert Y.dtype == np.int32 and (Y[:, :8] < 0).all() and Y[:, 8:].min() <= -2**31 + 5 + 4 * 16384   # corner: 4 taps
    # int8: a large multiplier saturates at 127 (or -128 / 0 with ReLU)
    m, shift = quant.quantize_multiplier(np.full(C, 0.5))
    for relu in (False, True):
        ops = {"bias": np.where(np.arange(C) < 8, 0, -10**6), "m": m, "shift": shift}
        job = pack(X, Wt, ops, relu, False, "z1dw", 2, (1, 1, 1, 1))
        want = torch_expect(X, Wt, 2, (1, 1, 1, 1), ops, relu, False)
        np.testing.assert_array_equal(accel.job_golden(job), want)
        assert (want[:, :8] == 127).all() and (want[:, 8:] == (0 if relu else -128)).all()


# --- the stream ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", CFGS)
@pytest.mark.parametrize("seed", range(4))
def test_stream_follows_the_contract_and_decodes_to_the_operands(cfg, seed):
    rng = np.random.default_rng(200 + seed)
    N, H, W, C, s, pads = random_geometry(rng, cfg)
    X, Wt, ops = operands(rng, N, H, W, C)
    job = pack(X, Wt, ops, False, False, cfg, s, pads)
    c = accel.config(cfg)
    R, COLS, fk, fn = c.rows, c.cols, math.ceil(9 / c.rows), math.ceil(C / c.cols)
    # the contract, spelled out: params, then per n-fold and k-fold ROWS rows of COLS bytes (tap rows), then X
    params = np.concatenate(accel.pack_params(ops["bias"], ops["m"], ops["shift"], c))
    rows = []
    for j in range(fn):
        for f in range(fk):
            for r in range(R):
                t, row = f * R + r, np.zeros(COLS, np.int8)
                for ch in range(COLS):
                    if t < 9 and j * COLS + ch < C:
                        row[ch] = Wt[t // 3, t % 3, j * COLS + ch]
                rows.append(row)
    want = np.concatenate([params, np.concatenate(rows).view(np.uint8), X.ravel().view(np.uint8)])
    np.testing.assert_array_equal(job.stream, want)
    assert stream_codec.stream_bytes(job) == job.stream.size and job.stream.size % 8 == 0
    # decoding walks the stream as the unit does, and gives what the operands claim
    np.testing.assert_array_equal(dwunit.decode_w(job), Wt)
    np.testing.assert_array_equal(dwunit.decode_x(job), job.operands["X"])
    np.testing.assert_array_equal(dwunit.decode_x(job), torch_windows(X, s, pads))
    dec = stream_codec.decode_params(job)
    np.testing.assert_array_equal(dec["W"], job.operands["W"])
    for k in ("bias", "m", "shift"):
        np.testing.assert_array_equal(dec[k], ops[k])
    assert [r[1:] for r in stream_codec.x_regions(job)] == [(b, 0, H) for b in range(N)]


def test_decoding_reads_the_stream_not_the_operands(rng):
    X, Wt, ops = operands(rng, 2, 5, 6, 16)
    job = pack(X, Wt, ops, False, True, "sim8", 1, (1, 1, 1, 1))
    off, _, _, _ = dwunit.x_regions(job)[1]                   # image 1's map
    X2 = X.copy()
    X2[1, 2, 3, 5] = ~X2[1, 2, 3, 5]
    stream = job.stream.copy()
    stream[off + (2 * 6 + 3) * 16 + 5] = X2[1, 2, 3, 5].view(np.uint8)
    np.testing.assert_array_equal(dwunit.decode_x(job, stream), torch_windows(X2, 1, (1, 1, 1, 1)))
    live = dataclasses.replace(job, stream=stream)
    be = pf.runtime.backends.get("model", "sim8")
    out = be.allocate(job.out_bytes)
    be.run_into(live, out)                                    # the model backend decodes the live stream
    np.testing.assert_array_equal(accel.unpack_output(out, job), torch_expect(X2, Wt, 1, (1,) * 4, ops, False, True))
    with pytest.raises(ValueError, match="X bytes"):
        dwunit.decode_x(job, stream[:-8])


@pytest.mark.parametrize("cfg", CFGS)
def test_registers_encode_the_geometry(cfg, rng):
    for _ in range(10):
        N, H, W, C, s, pads = random_geometry(rng, cfg)
        relu, out_int32 = bool(rng.integers(2)), bool(rng.integers(2))
        X, Wt, ops = operands(rng, N, H, W, C, out_int32=out_int32)
        job = pack(X, Wt, ops, relu, out_int32, cfg, s, pads)
        regs = job.registers()
        OH = (H + pads[0] + pads[1] - 3) // s + 1
        OW = (W + pads[2] + pads[3] - 3) // s + 1
        assert set(regs) == {"M", "K", "N", "M_TILE", "FLAGS", *regmap.DW_REGS}
        assert (regs["M"], regs["K"], regs["N"], regs["M_TILE"]) == (N * OH * OW, 9, C, N * OH * OW)
        assert regs["FLAGS"] == regmap.FLAG_DW_UNIT | (regmap.FLAG_RELU if relu else 0) | \
            (regmap.FLAG_OUT_INT32 if out_int32 else 0)
        f = regmap.field
        assert (f("DW_SHAPE", "IW", regs["DW_SHAPE"]), f("DW_SHAPE", "IH", regs["DW_SHAPE"])) == (W, H)
        assert (f("DW_OUT", "OW", regs["DW_OUT"]), f("DW_OUT", "OH", regs["DW_OUT"])) == (OW, OH)
        assert f("DW_VIRT", "VW", regs["DW_VIRT"]) == max(W, (OW - 1) * s - pads[2] + 3)
        assert f("DW_VIRT", "VH", regs["DW_VIRT"]) == max(H, (OH - 1) * s - pads[0] + 3)
        g = regs["DW_GEOM"]
        assert [f("DW_GEOM", k, g) for k in ("BEATS", "STRIDE", "PAD_T", "PAD_L", "IMAGES")] == \
            [C // 8, s, pads[0], pads[2], N]
        assert job.x_tile_beats() == [N * H * W * C // 8]


def test_output_is_exactly_m_by_c_in_nhwc_order(rng):
    X, Wt, ops = operands(rng, 2, 4, 5, 8, out_int32=True)
    job = pack(X, Wt, ops, False, True, "z1dw", 1, (1, 1, 1, 1))      # C = 8 < COLS = 16: no padding in the output
    Y = accel.job_golden(job)
    data = stream_codec.pack_output(Y, job)
    assert data.size == job.out_bytes == job.M * 8 * 4
    np.testing.assert_array_equal(data.view("<i4").reshape(2, 4, 5, 8), Y.reshape(2, 4, 5, 8))
    np.testing.assert_array_equal(accel.unpack_output(data, job), Y)
    with pytest.raises(ValueError, match="values"):
        accel.unpack_output(data[:-4], job)


# --- what fits ---------------------------------------------------------------------------------------------------
def test_unsupported_convolutions_say_why():
    W = window.Window

    def why(win, cfg="sim8", **kw):
        return dwunit.unsupported(win, cfg, **kw)
    assert why(W(1, 8, 8, 16, 3, 3, 1, 1, (1, 1, 1, 1), True)) is None
    assert "C=36 is not a multiple of 8" in why(W(1, 8, 8, 36, 3, 3, 1, 1, (1, 1, 1, 1), True))
    assert "C=72 is more than the 64" in why(W(1, 8, 8, 72, 3, 3, 1, 1, (1, 1, 1, 1), True))
    assert why(W(1, 8, 8, 72, 3, 3, 1, 1, (1, 1, 1, 1), True), split=True) is None            # two jobs
    assert "36 is not a multiple" in why(W(1, 8, 8, 36, 3, 3, 1, 1, (1, 1, 1, 1), True), split=True)
    assert "not 3x3" in why(W(1, 8, 8, 16, 5, 5, 1, 1, (2, 2, 2, 2), True))
    assert "dilation 2" in why(W(1, 8, 8, 16, 3, 3, 1, 2, (2, 2, 2, 2), True))
    assert "stride 3" in why(W(1, 8, 8, 16, 3, 3, 3, 1, (1, 1, 1, 1), True))
    assert "top and left" in why(W(1, 8, 8, 16, 3, 3, 1, 1, (3, 1, 1, 1), True))
    assert "depthwise" in why(W(1, 8, 8, 16, 3, 3, 1, 1, (1, 1, 1, 1), False))
    assert "below" in why(W(1, 4, 4, 16, 3, 3, 1, 1, (0, 3, 0, 0), True))                      # OH=5 reaches row 6
    assert "line buffer" in why(W(1, 8, 40, 64, 3, 3, 1, 1, (1, 1, 1, 1), True))              # 320 > 256 beats
    assert "at least 2 beats" in why(W(1, 8, 1, 8, 3, 3, 1, 1, (1, 1, 1, 1), True))
    assert "256 images" in why(W(256, 4, 4, 16, 3, 3, 1, 1, (1, 1, 1, 1), True))
    assert "the output is empty" in why(W(1, 1, 4, 16, 3, 3, 1, 1, (0, 0, 1, 1), True))
    nodw = dataclasses.replace(accel.config("z1dw"), name="z1-nodw", dw_ch=0)
    assert "has no depthwise unit" in why(W(1, 8, 8, 16, 3, 3, 1, 1, (1, 1, 1, 1), True), nodw)
    assert "has no depthwise unit" in why(W(1, 8, 8, 16, 3, 3, 1, 1, (1, 1, 1, 1), True), nodw, split=True)
    X, Wt = np.zeros((1, 8, 8, 36), np.int8), np.zeros((3, 3, 36), np.int8)
    with pytest.raises(ValueError, match="depthwise unit cannot take.*C=36 is not a multiple of 8"):
        dwunit.pack_dw_job(X, Wt, out_int32=True, cfg="sim8", pads=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="do not match"):
        dwunit.pack_dw_job(X[..., :16], Wt, out_int32=True, cfg="sim8")


@pytest.mark.parametrize("cfg", CFGS)
@pytest.mark.parametrize("H,C", [(112, 96), (56, 144), (14, 576), (7, 960), (4, 200)])
def test_chunks_cover_the_channels_in_jobs_the_unit_takes(cfg, H, C):
    c = accel.config(cfg)
    win = window.Window(1, H, H, C, 3, 3, 1, 1, (1, 1, 1, 1), True)
    ch = dwunit.chunks(win, cfg)
    assert [o.start for o, _ in ch] == [0] + [o.stop for o, _ in ch[:-1]] and ch[-1][0].stop == C
    for o, w in ch:
        assert w.C == o.stop - o.start and w.C % 8 == 0 and w.C <= c.dw_ch and H * w.C // 8 <= c.dw_lb_depth
        assert dwunit.unsupported(w, cfg) is None
    assert max(w.C for _, w in ch) - min(w.C for _, w in ch) <= 8                 # balanced
    assert len(ch) == math.ceil(C / min(c.dw_ch, c.dw_lb_depth // H * 8))


def test_cycle_model_counts_the_walk_and_the_output():
    win = window.Window(2, 9, 9, 32, 3, 3, 1, 1, (1, 1, 1, 1), True)
    X, Wt = np.zeros((2, 9, 9, 32), np.int8), np.zeros((3, 3, 32), np.int8)
    for cfg in CFGS:
        c = accel.config(cfg)
        for out_int32 in (False, True):
            job = dwunit.pack_dw_job(X, Wt, m=np.ones(32, np.int64), shift=np.ones(32, np.int64),
                                     out_int32=out_int32, cfg=cfg, win=win)
            cm = accel.cycle_model(job)
            assert cm == dwunit.cycle_model(job) and set(cm) == {"cycles", "mac_cycles", "compute_cycles"}
            head = stream_codec.params_bytes(job) // 8 + stream_codec.w_bytes(job) // 8
            walk = 2 * 10 * 10 * 4                                   # VH = VW = 10 (the bottom/right pad)
            assert cm["compute_cycles"] == walk and cm["mac_cycles"] == job.M * 4
            assert cm["cycles"] >= head + walk
            per_group = 4 if out_int32 else 8 // c.out_lanes
            assert cm["cycles"] >= head + job.M * 4 * per_group               # the output side's bound


# --- the compilers -----------------------------------------------------------------------------------------------
def dw_layer(rng, Nb, C, H, W):
    X = rng.integers(-128, 128, (Nb, C, H, W)).astype(np.int8)
    Wc = rng.integers(-128, 128, (C, 1, 3, 3)).astype(np.int8)
    bias = rng.integers(-2**16, 2**16, C)
    m, shift = quant.quantize_multiplier(rng.uniform(32, 256, C) / (5461.0 * 3))
    return X, Wc, bias, m, shift


def torch_conv_dw(X, Wc, bias, stride, padding):
    x, w = torch.from_numpy(X.astype(np.float64)), torch.from_numpy(Wc.astype(np.float64))
    y = F.conv2d(x, w, torch.from_numpy(np.asarray(bias, np.float64)), stride=stride, padding=padding,
                 groups=X.shape[1])
    return y.numpy().astype(np.int64)


@pytest.mark.parametrize("cfg,Nb,C,H,W,stride,padding", [
    ("sim8", 2, 16, 9, 7, 1, 1), ("sim8", 1, 80, 6, 6, 2, 1), ("sim8", 2, 24, 5, 8, 2, 0),
    ("z1dw", 1, 576, 4, 4, 1, 1), ("z1dw", 2, 32, 11, 10, 2, 1)])
def test_compiler_runs_depthwise_convs_on_the_unit(rng, cfg, Nb, C, H, W, stride, padding):
    X, Wc, bias, m, shift = dw_layer(rng, Nb, C, H, W)
    parts, shape = pf.compiler.conv2d_parts(X, Wc, bias, m, shift, relu=True, stride=stride, padding=padding,
                                            groups=C, cfg=cfg)
    assert parts and all(p.job.dw_unit for p in parts)
    assert np.concatenate([p.out_cols for p in parts]).tolist() == list(range(C))
    acc = torch_conv_dw(X, Wc, bias, stride, padding)
    want = quant.requantize(acc.transpose(0, 2, 3, 1), m, shift, relu=True, axis=-1).transpose(0, 3, 1, 2)
    Y, rep = pf.Accelerator("model", cfg).conv2d(X, Wc, bias, m, shift, relu=True, stride=stride, padding=padding,
                                                 groups=C)
    np.testing.assert_array_equal(Y, want)
    assert len(rep.jobs) == len(parts) and rep.macs == Nb * shape[2] * shape[3] * C * 9
    Y32, _ = pf.Accelerator("model", cfg).conv2d(X[0], Wc, bias, out_int32=True, stride=stride, padding=padding,
                                                 groups=C, mode="dw")                       # unbatched, int32
    np.testing.assert_array_equal(Y32, wrap32(acc[0]))


def test_mode_dw_refuses_and_auto_falls_back(rng):
    X, Wc, bias, m, shift = dw_layer(rng, 1, 12, 6, 6)                              # 12 channels: not a multiple of 8
    with pytest.raises(ValueError, match="mode='dw'.*C=12 is not a multiple of 8"):
        pf.compiler.conv2d_parts(X, Wc, bias, m, shift, padding=1, groups=12, cfg="sim8", mode="dw")
    parts, _ = pf.compiler.conv2d_parts(X, Wc, bias, m, shift, padding=1, groups=12, cfg="sim8")
    assert not any(p.job.dw_unit for p in parts)
    Y, _ = pf.Accelerator("model", "sim8").conv2d(X, Wc, bias, m, shift, padding=1, groups=12)
    acc = torch_conv_dw(X, Wc, bias, 1, 1)
    np.testing.assert_array_equal(Y, quant.requantize(acc.transpose(0, 2, 3, 1), m, shift, axis=-1)
                                  .transpose(0, 3, 1, 2))
    X, Wc, bias, m, shift = dw_layer(rng, 1, 16, 6, 6)
    with pytest.raises(ValueError, match="mode='dw'.*padding mode"):
        pf.compiler.conv2d_parts(X, Wc, bias, m, shift, padding=1, groups=16, padding_mode="reflect", cfg="sim8",
                                 mode="dw")
    with pytest.raises(ValueError, match="mode='dw'.*depthwise"):                   # a dense conv
        pf.compiler.conv2d_parts(X, rng.integers(-8, 8, (16, 16, 3, 3)).astype(np.int8), bias, m, shift,
                                 padding=1, cfg="sim8", mode="dw")
    for mode, dw in (("window", False), ("gemm", False), ("dw", True), ("auto", True)):
        parts, _ = pf.compiler.conv2d_parts(X, Wc, bias, m, shift, padding=1, groups=16, cfg="sim8", mode=mode)
        assert all(p.job.dw_unit == dw for p in parts), mode
    nodw = dataclasses.replace(accel.config("sim8"), name="sim8-nodw", dw_ch=0)
    parts, _ = pf.compiler.conv2d_parts(X, Wc, bias, m, shift, padding=1, groups=16, cfg=nodw)
    assert parts and not any(p.job.dw_unit for p in parts)


class TinyMobileNet(nn.Module):
    """A MobileNetV2-like net: stem, inverted residuals (depthwise 3x3, strides 1 and 2, residual adds), head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(models.ConvBNActivation(3, 16, stride=2),
                                      models.InvertedResidual(16, 16, 1, 1), models.InvertedResidual(16, 24, 2, 6),
                                      models.InvertedResidual(24, 24, 1, 6), models.InvertedResidual(24, 32, 2, 6))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def _depthwise_nodes(g):
    return {n.name for n in g if n.op == "conv2d" and n.attrs.get("groups", 1) > 1
            and n.attrs["groups"] == n.params["w_int8"].shape[0]}


@pytest.mark.parametrize("cfg", CFGS)
def test_graph_lowering_puts_mobilenet_depthwise_layers_on_the_unit(cfg):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16)
    model = models.random_weights(TinyMobileNet(), 0, example_input=x).eval()
    cm = pf.compile(model, x.numpy(), backend="model", config=cfg)
    dws = _depthwise_nodes(cm.graph)
    assert len(dws) == 4
    X = x[:3].numpy()
    plan = cm.compiled.program(3).plan
    on_unit = {s.node for s in plan.steps if s.jobs and all(j.job.dw_unit for j in s.jobs)}
    assert on_unit == dws, (on_unit, dws)                            # 8x8 and 4x4 maps, strides 1 and 2
    assert not any(j.job.dw_unit for s in plan.steps if s.node not in dws for j in s.jobs)
    if cfg == "sim8":                                                   # 96 and 144 channels: several jobs
        assert max(len(s.jobs) for s in plan.steps if s.node in dws) >= 2
    y = cm.run(X)
    # the same int8 graph on a build without the unit (window engine / GEMM jobs, tested against torch elsewhere);
    # a larger W buffer because window.chunks gives sim8 depthwise window jobs of 64 channels whose W (576 rows)
    # does not fit its 512 (a window-mode limitation, not the unit's)
    c = accel.config(cfg)
    nodw = dataclasses.replace(c, name=f"{cfg}-nodw", dw_ch=0, w_depth=max(4096, c.w_depth))
    ref = Compiled(cm.graph, nodw, "model")
    assert not any(j.job.dw_unit for j in ref.program(3).plan.jobs)
    np.testing.assert_array_equal(y, ref.run(X))
    np.testing.assert_array_equal(cm.run(X[:1]), ref.run(X[:1]))                # another batch size
    with torch.no_grad():
        f = model(x[:3]).numpy()
    assert np.corrcoef(y.ravel(), f.ravel())[0, 1] > 0.9
