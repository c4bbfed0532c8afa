"""Window mode (pf.contract.window): packed jobs, their decoding and the numpy model against torch conv2d."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pytorch_fpga.contract import accel, regmap, stream_codec, window
from pytorch_fpga.core import quant
from pytorch_fpga.runtime import backends

KERNELS = [(1, 1), (3, 3), (5, 5), (1, 3)]
CFGS = ["sim8", "z1"]


def wrap32(a):
    return (np.asarray(a, np.int64) + 2**31) % 2**32 - 2**31


def torch_conv(X, Wt, win, bias=None):
    """int64 accumulators (M, Co) of the convolution by torch (float64 on the int values), + bias, wrapped."""
    x = F.pad(torch.from_numpy(X.astype(np.float64)).permute(0, 3, 1, 2), (*win.pads[2:], *win.pads[:2]))
    w = torch.from_numpy(Wt.astype(np.float64))
    w = w.permute(2, 0, 1)[:, None] if win.depthwise else w.permute(3, 2, 0, 1)
    y = F.conv2d(x, w, stride=win.stride, dilation=win.dilation, groups=win.C if win.depthwise else 1)
    acc = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1]).numpy().astype(np.int64)
    return acc if bias is None else acc + np.asarray(bias, np.int64)


def torch_windows(X, win):
    """The window rows (M, kh*kw*C) in (ky, kx, c) order, by torch's unfold on the padded map."""
    x = F.pad(torch.from_numpy(X.astype(np.float64)).permute(0, 3, 1, 2), (*win.pads[2:], *win.pads[:2]))
    u = F.unfold(x, (win.kh, win.kw), dilation=win.dilation, stride=win.stride)      # (N, C*kh*kw, L)
    u = u.reshape(win.N, win.C, win.kh * win.kw, -1).permute(0, 3, 2, 1).reshape(win.M, -1)
    return u.numpy().astype(np.int8)


def torch_expect(X, Wt, win, ops, relu, out_int32):
    """What the job must output: the torch accumulator wrapped to int32, or pf.quant.requantize of it."""
    acc = wrap32(torch_conv(X, Wt, win, ops["bias"]))
    return acc.astype(np.int32) if out_int32 else quant.requantize(acc, ops["m"], ops["shift"], relu=relu, axis=-1)


def random_geometry(rng, cfg, depthwise=None, batch=(1, 2)):
    """(Window, Co) window mode supports on cfg: stride 1-3, dilation 1-2, asymmetric pads, odd channel counts."""
    cfg = accel.config(cfg)
    R = cfg.rows
    while True:
        kh, kw = KERNELS[rng.integers(len(KERNELS))]
        dw = bool(rng.integers(4) == 0) if depthwise is None else depthwise
        C = int(rng.integers(1, 3 * R))
        if C % R == 0 and rng.integers(4):
            C += int(rng.integers(1, R))                  # mostly not a multiple of the array rows
        win = window.Window(int(rng.integers(batch[0], batch[1] + 1)), int(rng.integers(1, 11)),
                            int(rng.integers(1, 11)), C, kh, kw, int(rng.integers(1, 4)), int(rng.integers(1, 3)),
                            tuple(int(p) for p in rng.integers(0, 3, 4)), dw)
        Co = C if dw else int(rng.integers(1, 2 * cfg.cols + 4))
        fn = math.ceil(Co / cfg.cols)
        if window.unsupported(win, cfg, Co) is None and win.folds(cfg) * fn * R <= cfg.w_depth:   # one job's W
            return win, Co


def random_operands(rng, win, Co, relu=False, out_int32=False, extreme=0.15):
    """X (N, H, W, C), W (kh, kw, C[, Co]) int8 with a share `extreme` of -128/127; bias, m, shift as pf.accel's."""
    X = rng.integers(-128, 128, (win.N, win.H, win.W, win.C)).astype(np.int8)
    Wt = rng.integers(-128, 128, (win.kh, win.kw, win.C) + (() if win.depthwise else (Co,))).astype(np.int8)
    for A in (X, Wt):
        mask = rng.random(A.shape) < extreme
        A[mask] = rng.choice(np.array([-128, 127], np.int8), int(mask.sum()))
    K = win.kh * win.kw * (1 if win.depthwise else win.C)
    ops = accel.random_operands(rng, 1, K, Co, relu=relu, out_int32=out_int32)
    return X, Wt, {k: ops[k] for k in ("bias", "m", "shift") if k in ops}


def pack(X, Wt, win, ops, relu, out_int32, cfg, tile_oh=None):
    return window.pack_window_job(X, Wt, **ops, relu=relu, out_int32=out_int32, cfg=cfg, tile_oh=tile_oh,
                                  stride=win.stride, dilation=win.dilation, pads=win.pads)


def random_case(seed, cfg, **kwargs):
    rng = np.random.default_rng(seed)
    win, Co = random_geometry(rng, cfg, **kwargs)
    relu, out_int32 = bool(rng.integers(2)), bool(rng.integers(2))
    X, Wt, ops = random_operands(rng, win, Co, relu, out_int32)
    job = pack(X, Wt, win, ops, relu, out_int32, cfg)
    assert job.window == win
    return X, Wt, win, ops, relu, out_int32, job


# ---------------------------------------------------------------------------------------- golden vs torch
@pytest.mark.parametrize("cfg", CFGS)
@pytest.mark.parametrize("seed", range(16))
def test_window_job_golden_matches_torch_conv2d(cfg, seed):
    X, Wt, win, ops, relu, out_int32, job = random_case(1000 * CFGS.index(cfg) + seed, cfg)
    expect = torch_expect(X, Wt, win, ops, relu, out_int32)
    assert expect.shape == (job.M, job.N) == (win.M, Wt.shape[-1] if not win.depthwise else win.C)
    np.testing.assert_array_equal(accel.job_golden(job), expect, err_msg=str(win))


@pytest.mark.parametrize("cfg", CFGS)
@pytest.mark.parametrize("seed", range(6))
def test_depthwise_window_jobs_match_torch(cfg, seed):
    X, Wt, win, ops, relu, out_int32, job = random_case(7000 + seed, cfg, depthwise=True)
    assert job.flags & regmap.FLAG_DEPTHWISE and job.K == win.kh * win.kw * accel.config(cfg).rows
    np.testing.assert_array_equal(accel.job_golden(job), torch_expect(X, Wt, win, ops, relu, out_int32))


@pytest.mark.parametrize("depthwise", [False, True])
def test_extreme_operands_wrap_the_int32_accumulator(depthwise):
    """All -128 (products 2**14) with a bias near INT32_MAX: some accumulators wrap, as the hardware's do."""
    win = window.Window(2, 6, 5, 13 if not depthwise else 8, 5, 5, 1, 1, (2, 1, 2, 0), depthwise)
    Co = win.C if depthwise else 7
    X = np.full((win.N, win.H, win.W, win.C), -128, np.int8)
    Wt = np.full((5, 5, win.C) + (() if depthwise else (Co,)), -128, np.int8)
    unbiased = torch_conv(X, Wt, win)                       # windows in the padding have fewer taps
    ops = dict(bias=np.full(Co, 2**31 - (unbiased.min() + unbiased.max()) // 2))
    acc = unbiased + ops["bias"]
    assert acc.max() > 2**31 - 1 and acc.min() <= 2**31 - 1          # some wrap, some do not
    job = pack(X, Wt, win, ops, False, True, "sim8")
    np.testing.assert_array_equal(accel.job_golden(job), wrap32(acc))
    assert accel.job_golden(job).min() < 0


@pytest.mark.parametrize("relu", [False, True])
def test_extreme_operands_saturate_int8_outputs(rng, relu):
    """-128/127 everywhere and a large scale: outputs clamp at both ends (0 with ReLU), as requantize says."""
    win = window.Window(1, 7, 9, 19, 3, 3, 2, 1, (1, 0, 0, 2))
    X = rng.choice(np.array([-128, 127], np.int8), (1, 7, 9, 19))
    Wt = rng.choice(np.array([-128, 127], np.int8), (3, 3, 19, 10))
    ops = dict(bias=rng.integers(-2**20, 2**20, 10), m=np.full(10, 2**30), shift=np.full(10, 40))
    job = pack(X, Wt, win, ops, relu, False, "z1")
    Y = accel.job_golden(job)
    np.testing.assert_array_equal(Y, torch_expect(X, Wt, win, ops, relu, False))
    assert Y.max() == 127 and Y.min() == (0 if relu else -128)


# ------------------------------------------------------------------------- the stream as the hardware reads it
@pytest.mark.parametrize("cfg", CFGS)
@pytest.mark.parametrize("seed", range(10))
def test_decoded_stream_reproduces_the_convolution(cfg, seed):
    X, Wt, win, ops, relu, out_int32, job = random_case(3000 + 100 * CFGS.index(cfg) + seed, cfg)
    Xd = stream_codec.decode_x(job)
    np.testing.assert_array_equal(Xd, torch_windows(X, win), err_msg=str(win))
    p = stream_codec.decode_params(job)
    dense = Wt.reshape(-1, Wt.shape[-1]) if not win.depthwise else np.zeros((win.kh * win.kw * win.C, win.C), np.int8)
    if win.depthwise:
        for t in range(win.kh * win.kw):
            for c in range(win.C):
                dense[t * win.C + c, c] = Wt.reshape(-1, win.C)[t, c]
    np.testing.assert_array_equal(p["W"], dense)
    np.testing.assert_array_equal(p["bias"], ops["bias"])
    if not out_int32:
        np.testing.assert_array_equal(p["m"], ops["m"])
        np.testing.assert_array_equal(p["shift"], ops["shift"])
    Y = accel.golden(Xd, p["W"], p["bias"], p["m"], p["shift"], relu=relu, out_int32=out_int32)
    np.testing.assert_array_equal(Y, torch_expect(X, Wt, win, ops, relu, out_int32))
    assert stream_codec.stream_bytes(job) == job.stream.size == 8 * sum(job.x_tile_beats()) + \
        stream_codec.params_bytes(job) + stream_codec.w_bytes(job)


@pytest.mark.parametrize("cfg", CFGS)
@pytest.mark.parametrize("seed", range(8))
def test_model_backend_run_into_matches_torch(cfg, seed):
    X, Wt, win, ops, relu, out_int32, job = random_case(5000 + 100 * CFGS.index(cfg) + seed, cfg)
    be = backends.get("model", cfg)
    stream = be.allocate(job.stream.size)
    stream[:] = job.stream
    job.stream = stream
    out = be.allocate(job.out_bytes)
    cycles = be.run_into(job, out)
    np.testing.assert_array_equal(accel.unpack_output(out, job), torch_expect(X, Wt, win, ops, relu, out_int32))
    assert cycles == accel.cycle_model(job)["cycles"]


def test_decoding_reads_the_stream_not_the_operands(rng):
    """Overwrite one input pixel in the packed stream: the decoded windows follow it, as torch's unfold does."""
    win = window.Window(1, 6, 7, 10, 3, 3, 1, 1, (1, 1, 1, 1))
    X, Wt, ops = random_operands(rng, win, 5)
    job = pack(X, Wt, win, ops, False, True, "sim8")
    y, x, c, R = 3, 4, 9, 8
    s, copies = job.stream.copy(), 0
    for off, _, lo, nrows in stream_codec.x_regions(job):      # tiles share halo rows: each streams its copy
        if lo <= y < lo + nrows:
            s[off + ((y - lo) * win.W + x) * win.cb("sim8") * R + c] = 0x80      # that byte is X[0, y, x, c]
            copies += 1
    assert copies >= 1 and len(stream_codec.x_regions(job)) > 1
    X2 = X.copy()
    X2[0, y, x, c] = -128
    assert X[0, y, x, c] != -128
    np.testing.assert_array_equal(stream_codec.decode_x(job, s), torch_windows(X2, win))


@pytest.mark.parametrize("N", [1, 2])
def test_every_tile_size_decodes_to_the_same_windows(rng, N):
    """Every tile_oh the layer allows: headers and rows in the stream give the same windows."""
    win = window.Window(N, 9, 6, 11, 3, 3, 1, 2, (2, 1, 0, 2))
    X, Wt, ops = random_operands(rng, win, 9)
    want = torch_windows(X, win)
    T = window.max_tile_oh(win, "sim8")
    for t in range(1, T + 1):
        if N > 1 and win.OH % t:
            continue
        job = pack(X, Wt, win, ops, False, True, "sim8", tile_oh=t)
        assert job.m_tile == t * win.OW
        np.testing.assert_array_equal(stream_codec.decode_x(job), want, err_msg=f"tile_oh={t}")


# ---------------------------------------------------------------------------------------- what does not fit
def test_unsupported_geometries_say_why():
    sq8 = accel.config("sim8")
    nonsquare = accel.AccelConfig("8x4", rows=8, cols=4, lut_rows=0, x_depth=256, w_depth=512, acc_depth=64,
                                  n_max=64)
    cases = [(window.Window(1, 4, 40, 8, 1, 16), 8, sq8, "kernel width 16"),
             (window.Window(1, 40, 40, 8, 3, 3, stride=16), 8, sq8, "stride 16"),
             (window.Window(1, 4, 4, 8, 1, 1, pads=(0, 0, 16, 0)), 8, sq8, "padding"),
             (window.Window(1, 6, 6, 8, 3, 3, depthwise=True), 8, nonsquare, "depthwise needs a square array"),
             (window.Window(1, 2, 100, 8, 1, 1), 8, sq8, "longer than the accumulator"),
             (window.Window(1, 8, 50, 16, 3, 3), 8, sq8, "do not fit the X bank")]
    for win, Co, cfg, why in cases:
        reason = window.unsupported(win, cfg, Co)
        assert reason is not None and why in reason, (win, reason)
        X = np.zeros((win.N, win.H, win.W, win.C), np.int8)
        Wt = np.zeros((win.kh, win.kw, win.C) + (() if win.depthwise else (Co,)), np.int8)
        with pytest.raises(ValueError, match=why):
            window.pack_window_job(X, Wt, out_int32=True, cfg=cfg, stride=win.stride, pads=win.pads)
    ok = window.Window(1, 8, 30, 8, 3, 3, pads=(1, 1, 1, 1))
    assert window.unsupported(ok, sq8, 8) is None


def test_tile_oh_out_of_range_raises(rng):
    win = window.Window(1, 12, 12, 9, 3, 3, pads=(1, 1, 1, 1))
    X, Wt, ops = random_operands(rng, win, 4)
    T = window.max_tile_oh(win, "sim8")
    assert 1 <= T < win.OH
    pack(X, Wt, win, ops, False, True, "sim8", tile_oh=T)
    for bad in (T + 1, -1):
        with pytest.raises(ValueError, match="tile_oh"):
            pack(X, Wt, win, ops, False, True, "sim8", tile_oh=bad)


def test_batched_tile_oh_must_not_straddle_images(rng):
    """With a batch, a tile_oh that does not divide OH is refused (a tile would run into the next image)."""
    win = window.Window(2, 3, 4, 8, 1, 1)
    X, Wt, ops = random_operands(rng, win, 8)
    assert window.max_tile_oh(win, "sim8") == 3
    with pytest.raises(ValueError, match="straddle"):
        pack(X, Wt, win, ops, False, True, "sim8", tile_oh=2)
    np.testing.assert_array_equal(stream_codec.decode_x(pack(X, Wt, win, ops, False, True, "sim8", tile_oh=3)),
                                  torch_windows(X, win))


def test_choose_keeps_a_three_channel_stem_as_gemm_and_takes_a_64_channel_layer():
    stem = window.Window(1, 224, 224, 3, 7, 7, stride=2, pads=(3, 3, 3, 3))
    assert window.unsupported(stem, "z1", 64) is None                 # it fits, but a GEMM is faster
    assert not window.choose(stem, 64, "z1")
    assert window.job_cycles(stem, 64, "z1") > window.gemm_cycles(stem, 64, "z1")
    layer = window.Window(1, 56, 56, 64, 3, 3, pads=(1, 1, 1, 1))
    assert window.choose(layer, 64, "z1")
    assert not window.choose(window.Window(1, 4, 40, 8, 1, 16), 8, "z1")     # unsupported: never chosen


# ------------------------------------------------------------------------------------- registers and headers
@pytest.mark.parametrize("cfg", CFGS)
@pytest.mark.parametrize("seed", range(8))
def test_registers_and_headers_encode_the_geometry(cfg, seed):
    X, Wt, win, ops, relu, out_int32, job = random_case(9000 + 100 * CFGS.index(cfg) + seed, cfg)
    R = accel.config(cfg).rows
    pt, pb, pl, pr = win.pads
    s, d = win.stride, win.dilation
    OH = (win.H + pt + pb - d * (win.kh - 1) - 1) // s + 1
    OW = (win.W + pl + pr - d * (win.kw - 1) - 1) // s + 1
    CB = math.ceil(win.C / R)
    regs = job.registers()
    f = regmap.field
    assert (f("WIN_SHAPE", "IW", regs["WIN_SHAPE"]), f("WIN_SHAPE", "OW", regs["WIN_SHAPE"])) == (win.W, OW)
    g = regs["WIN_GEOM"]
    assert [f("WIN_GEOM", n, g) for n in ("CB", "KW", "STRIDE", "DIL", "PAD_L")] == [CB, win.kw, s, d, pl]
    assert [regs[n] for n in ("WIN_ROW", "WIN_XSTEP", "WIN_YSTEP", "WIN_DX", "WIN_DY")] == \
        [win.W * CB, s * CB, s * win.W * CB, d * CB, d * win.W * CB]
    flags = regs["FLAGS"]
    assert [f("FLAGS", n, flags) for n in ("RELU", "OUT_INT32", "WINDOW", "DEPTHWISE")] == \
        [relu, out_int32, 1, win.depthwise]
    assert (regs["M"], regs["K"]) == (win.N * OH * OW, win.kh * win.kw * (1 if win.depthwise else CB) * R)
    assert regs["M_TILE"] % OW == 0
    T = regs["M_TILE"] // OW
    # the headers, tile by tile: global output rows [t*T, (t+1)*T) of the batch's N*OH
    regions = stream_codec.x_regions(job)
    assert len(regions) == math.ceil(win.N * OH / T)
    for t, (off, b, lo, nrows) in enumerate(regions):
        g0 = t * T
        b_, oy0 = divmod(g0, OH)
        rows = min(T, win.N * OH - g0)
        top = oy0 * s - pt
        bottom = (oy0 + rows - 1) * s - pt + (win.kh - 1) * d
        lo_, hi_ = max(top, 0), min(bottom, win.H - 1)
        assert (b, lo, nrows) == (b_, lo_, hi_ - lo_ + 1)
        hdr = int(job.stream[off - 8:off].view("<u8")[0])
        rel = top - lo_
        signed = lambda v, bits: (v + 2**(bits - 1)) % 2**bits - 2**(bits - 1)     # noqa: E731
        assert (hdr & 0xFFFF, signed(hdr >> 16 & 0xFFFF, 16), signed(hdr >> 32, 32)) == \
            (nrows, rel, rel * win.W * CB - pl * CB)
        body = job.stream[off:off + nrows * win.W * CB * R].view(np.int8).reshape(nrows, win.W, CB * R)
        np.testing.assert_array_equal(body[..., :win.C], X[b, lo:lo + nrows])
        assert not body[..., win.C:].any()


# ----------------------------------------------------------------------------------------- tile sizes
@pytest.mark.parametrize("cfg", CFGS)
def test_max_tile_oh_respects_the_buffers_and_images(cfg):
    c = accel.config(cfg)
    rng = np.random.default_rng(11)
    layers = [random_geometry(rng, cfg, batch=(1, 3))[0] for _ in range(60)]
    layers += [window.Window(1, 40, c.x_depth // 36, 3 * c.rows - 1, 3, 3, 2, pads=(1, 1, 1, 1)),   # X bank
               window.Window(1, 40, c.acc_depth // 3 + 1, 1, 1, 1),                                # accumulator
               window.Window(2, 9, 9, c.rows + 1, 5, 5, 1, 1, (2, 2, 2, 2)),
               window.Window(3, 14, 7, 5, 1, 1, 2)]
    seen_limits = set()
    for win in layers:
        if window.unsupported(win, c) is not None:
            continue
        T = window.max_tile_oh(win, c)
        assert 1 <= T <= win.OH, win
        if win.N > 1:
            assert win.OH % T == 0, win
        tiles = win.tiles(T * win.OW)
        assert [(b, oy) for b, oy0, rows in tiles for oy in range(oy0, oy0 + rows)] == \
            [(b, oy) for b in range(win.N) for oy in range(win.OH)], win          # in order, each row once
        for _, oy0, rows in tiles:
            assert oy0 + rows <= win.OH, win                                    # never straddles images
            assert rows * win.OW <= c.acc_depth, win
            assert win.tile(oy0, rows)[2] * win.row(c) <= c.x_depth, win
        if T < win.OH and win.N == 1:
            nxt = max(win.tile(oy0, T + 1)[2] for oy0 in range(0, win.OH - T))
            limit = "acc" if (T + 1) * win.OW > c.acc_depth else "x" if nxt * win.row(c) > c.x_depth else None
            seen_limits.add(limit)
    assert {"acc", "x"} <= seen_limits, seen_limits            # the sweep reaches both buffers' limits


def test_packed_tiles_fit_the_x_bank_and_accumulator(rng):
    """The packed stream's X tiles (beats after the header) fit one X bank; M_TILE fits the accumulator."""
    for cfg in CFGS:
        c = accel.config(cfg)
        for _ in range(12):
            win, Co = random_geometry(rng, cfg, batch=(1, 2))
            X, Wt, ops = random_operands(rng, win, Co)
            job = pack(X, Wt, win, ops, False, True, cfg, tile_oh=window.max_tile_oh(win, c))
            assert job.m_tile <= c.acc_depth
            assert all((beats - 1) * 8 // c.rows <= c.x_depth for beats in job.x_tile_beats())
