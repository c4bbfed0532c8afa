"""The depthwise unit (FLAGS.DW_UNIT): a 3x3 depthwise convolution computed as the NHWC map streams in (numpy only).

The unit keeps the last input rows in a line buffer and walks a virtual grid of VH x VW positions per image (the
map plus the bottom/right padding its last outputs need), C / 8 beats a position; the output (oy, ox) is formed at
position (oy * s - pad_t + 2, ox * s - pad_l + 2) from rows vy-2..vy and columns vx-2..vx (zeros outside the map)
and leaves in NHWC order. Stream format: pytorch_fpga/contract/regmap.py. This module packs such jobs, decodes them
as the unit reads them, says which convolutions fit, splits a layer's channels into jobs and predicts their cycles.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from pytorch_fpga.contract import accel, window
from pytorch_fpga.core.gemm import check_int8

LIMITS = {"stride": (1, 2), "pad": 2, "images": 255, "size": 65535, "beats": 4095}   # the DW_* register fields

# Latencies of rtl/accel_dw.v (cycles), used by cycle_model(): an output beat is pushed into the unit's queue
# PIPE advances after its position; QUEUE entries; the last lane issue -> the job's last beat on m_axis.
PIPE, QUEUE, END = 3, 4, 7


def virtual(win: window.Window) -> tuple[int, int]:
    """(VH, VW): rows walked per image and positions walked per row (the map plus the padding outputs need)."""
    s, pt, pl = win.stride, win.pads[0], win.pads[2]
    return max(win.H, (win.OH - 1) * s - pt + 3), max(win.W, (win.OW - 1) * s - pl + 3)


def registers(win: window.Window) -> dict:
    """The DW_* register values of a job of this geometry."""
    VH, VW = virtual(win)
    return {"DW_SHAPE": win.W | win.H << 16, "DW_OUT": win.OW | win.OH << 16, "DW_VIRT": VW | VH << 16,
            "DW_GEOM": win.C // 8 | win.stride << 12 | win.pads[0] << 16 | win.pads[2] << 20 | win.N << 24}


def unsupported(win: window.Window, cfg, split: bool = False) -> str | None:
    """Why the depthwise unit cannot take this convolution as one job on build cfg (None: it can); split: as the
    jobs of chunks(win, cfg), the channels split with their inputs."""
    cfg = accel.config(cfg)
    if split and win.C % 8 == 0 and cfg.dw_ch:
        return next((why for _, w in chunks(win, cfg) for why in [unsupported(w, cfg)] if why), None)
    C, s, (pt, _, pl, _) = win.C, win.stride, win.pads
    VH, VW = virtual(win)
    bottom, right = (win.OH - 1) * s + 3 - pt - win.H, (win.OW - 1) * s + 3 - pl - win.W
    beats = win.W * C // 8
    checks = [(cfg.dw_ch > 0, f"build '{cfg.name}' has no depthwise unit"),
              (win.depthwise, "the unit computes depthwise convolutions only (groups = channels)"),
              ((win.kh, win.kw) == (3, 3), f"kernel {win.kh}x{win.kw} is not 3x3"),
              (win.dilation == 1, f"dilation {win.dilation} is not 1"),
              (s in LIMITS["stride"], f"stride {s} is not 1 or 2"),
              (min(win.pads) >= 0 and max(pt, pl) <= LIMITS["pad"], f"padding {win.pads}: top and left must be 0..2"),
              (C % 8 == 0, f"C={C} is not a multiple of 8"),
              (C <= cfg.dw_ch, f"C={C} is more than the {cfg.dw_ch} channels a depthwise-unit job takes on "
                               f"'{cfg.name}': split the channels (dwunit.chunks)"),
              (1 <= win.N <= LIMITS["images"], f"{win.N} images: a job takes 1..{LIMITS['images']}"),
              (win.OH >= 1 and win.OW >= 1, "the output is empty"),
              (max(bottom, right) <= LIMITS["pad"], f"the last outputs reach {bottom} rows below / {right} columns "
                                                    "right of the map (at most 2)"),
              (max(VH, VW) <= LIMITS["size"] and C // 8 <= LIMITS["beats"], f"the map {win.H}x{win.W}x{C} is too "
                                                                             "large for the DW_* fields"),
              (beats <= cfg.dw_lb_depth, f"an input row ({win.W} pixels x {C} channels = {beats} beats) is longer "
                                         f"than the line buffer ({cfg.dw_lb_depth} beats): split the channels"),
              (beats >= 2, f"an input row ({win.W} pixels x {C} channels = {beats} beat) must be at least 2 beats")]
    return next((why for ok, why in checks if not ok), None)


def chunks(win: window.Window, cfg) -> list[tuple[slice, window.Window]]:
    """A layer's depthwise-unit jobs: the channels of each (blocks of 8 shared out evenly, at most dw_ch and what
    the line buffer holds for the map's width) and its window (the job's channels only: inputs split with outputs)."""
    cfg = accel.config(cfg)
    step = max(1, min(cfg.dw_ch, cfg.dw_lb_depth // max(1, win.W) * 8) // 8)        # blocks of 8 per job
    blocks = math.ceil(win.C / 8)
    jobs = math.ceil(blocks / step)
    q, r = divmod(blocks, jobs)
    ends = [min(win.C, 8 * (i * q + min(i, r))) for i in range(jobs + 1)]          # the first r jobs: one more
    return [(slice(a, b), dataclasses.replace(win, C=b - a)) for a, b in zip(ends[:-1], ends[1:], strict=True)]


def pack_dw_job(X, Wt, bias=None, m=None, shift=None, relu: bool = False, out_int32: bool = False, cfg="z1",
                win: window.Window | None = None, **geometry) -> accel.Job:
    """Pack a 3x3 depthwise convolution of X (N, H, W, C) int8 NHWC with Wt (3, 3, C) as a depthwise-unit job:
    params, W (tap rows), the images' NHWC bytes. geometry: stride, pads (top, bottom, left, right)."""
    cfg = accel.config(cfg)
    X, Wt = np.ascontiguousarray(check_int8("X", X)), check_int8("W", Wt)
    if X.ndim != 4 or Wt.ndim != 3:
        raise ValueError(f"need X (N, H, W, C) and depthwise W (3, 3, C); got {X.shape}, {Wt.shape}")
    if win is None:
        win = window.Window(*X.shape, *Wt.shape[:2], **{**geometry, "depthwise": True})
    if (win.N, win.H, win.W, win.C) != X.shape or Wt.shape != (win.kh, win.kw, win.C) or not win.depthwise:
        raise ValueError(f"X {X.shape} and W {Wt.shape} do not match the depthwise window {win}")
    why = unsupported(win, cfg)
    if why:
        raise ValueError(f"the depthwise unit cannot take this convolution on '{cfg.name}': {why}")
    C, R, COLS = win.C, cfg.rows, cfg.cols
    fk, fn = math.ceil(9 / R), math.ceil(C / COLS)
    bias, m, shift = accel.check_requant(C, bias, m, shift, out_int32)
    Wp = np.zeros((fk * R, fn * COLS), np.int8)                  # row t = tap ky * 3 + kx, column = channel
    Wp[:9, :C] = Wt.reshape(9, C)
    w_stream = np.ascontiguousarray(Wp.reshape(fk, R, fn, COLS).transpose(2, 0, 1, 3)).view(np.uint8).ravel()
    stream = np.concatenate(accel.pack_params(bias, m, shift, cfg) + [w_stream, X.view(np.uint8).ravel()])
    return accel.Job(win.M, 9, C, win.M, bool(relu), bool(out_int32), cfg, stream,
                     dict(X=window.im2col(X, win), W=window.dense_weights(Wt, win), bias=bias, m=m, shift=shift),
                     window=win, dw_unit=True)


def x_offset(job: accel.Job) -> int:
    """Byte offset of the X section (after the parameters and W)."""
    C = job.cfg.cols
    return job.fn * (C * 8 + C) + job.fn * job.fk * job.cfg.rows * C


def x_regions(job: accel.Job) -> list[tuple[int, int, int, int]]:
    """(byte offset, image, first input row, input rows) of each image's NHWC map in the stream (window.x_regions'
    form: the compiler's programs copy the map's rows straight in)."""
    win = job.window
    img = win.H * win.W * win.C
    return [(x_offset(job) + b * img, b, 0, win.H) for b in range(win.N)]


def decode_x(job: accel.Job, stream=None) -> np.ndarray:
    """The window rows (M, 9*C) the unit forms, read from the stream as it walks its virtual grid: a position
    (vy, vx) takes the next C / 8 beats iff it lies in the map; outputs at (oy * s - pad_t + 2, ox * s - pad_l + 2)
    take rows vy-2..vy, columns vx-2..vx of the positions seen (zeros outside the map)."""
    win = job.window
    s = np.asarray(job.stream if stream is None else stream).view(np.int8)
    off, (VH, VW), C = x_offset(job), virtual(win), win.C
    if s.size != off + win.N * win.H * win.W * C:
        raise ValueError(f"the stream has {s.size - off} X bytes, the job's {win.N} images need "
                         f"{win.N * win.H * win.W * C}")
    b, vy, vx = (a.ravel() for a in np.meshgrid(np.arange(win.N), np.arange(VH), np.arange(VW), indexing="ij"))
    real = (vy < win.H) & (vx < win.W)
    beat = np.cumsum(real) - 1                                  # the stream pixel a real position reads
    seen = np.zeros((win.N, VH + 2, VW + 2, C), np.int8)        # two zero rows/columns before the map
    seen[b[real], vy[real] + 2, vx[real] + 2] = s[off:].reshape(-1, C)[beat[real]]
    qy, qx = vy - 2 + win.pads[0], vx - 2 + win.pads[2]
    emit = (qy >= 0) & (qx >= 0) & (qy % win.stride == 0) & (qx % win.stride == 0) & \
        (qy // win.stride < win.OH) & (qx // win.stride < win.OW)
    eb, ey, ex = b[emit], vy[emit], vx[emit]                    # walk order: image, then row-major
    taps = [seen[eb, ey + ky, ex + kx] for ky in range(3) for kx in range(3)]
    out = np.stack(taps, axis=1).reshape(len(eb), 9 * C)
    if len(out) != job.M:
        raise ValueError(f"the walk emits {len(out)} outputs, the job has M={job.M}")
    return out


def decode_w(job: accel.Job, stream=None) -> np.ndarray:
    """The depthwise weights (3, 3, C) from the stream's W section (n-fold, k-fold, tap rows of COLS channels)."""
    s = np.asarray(job.stream if stream is None else stream).view(np.int8)
    R, COLS, fk, fn = job.cfg.rows, job.cfg.cols, job.fk, job.fn
    off = job.fn * (COLS * 8 + COLS)
    blocks = s[off:off + fn * fk * R * COLS].reshape(fn, fk, R, COLS)
    return blocks.transpose(1, 2, 0, 3).reshape(fk * R, fn * COLS)[:9, :job.N].reshape(3, 3, job.N)


def emit_positions(win: window.Window) -> np.ndarray:
    """Index, in the walk of positions (image, vy, vx, beat), of each output beat in output (NHWC) order."""
    VH, VW = virtual(win)
    s, pt, pl, cb = win.stride, win.pads[0], win.pads[2], win.C // 8
    vy, vx = np.arange(win.OH) * s - pt + 2, np.arange(win.OW) * s - pl + 2
    n = np.arange(win.N)
    return (((n[:, None, None, None] * VH + vy[None, :, None, None]) * VW + vx[None, None, :, None]) * cb
            + np.arange(cb)[None, None, None, :]).ravel()


def cycle_model(job: accel.Job) -> dict:
    """Predicted cycles of a depthwise-unit job from START to its last output beat, the streams never stalling.

    A beat-level model of rtl/accel_dw.v: after params and W, the walk advances one position a cycle (a position in
    the map takes the stream's next beat); an output beat enters the queue PIPE advances after its position, and
    the whole walk waits while the queue is full with an output beat to push. The lanes take a queued beat in
    8 / out_lanes issues, an issue every out_lanes / 2 cycles for int32 (one 64-bit beat a cycle), each through
    the unit's output register (a head leaves the queue when its last issue is loaded there); the job's last output
    waits for the walk to end (its input all consumed)."""
    cfg, win = job.cfg, job.window
    x0 = job.fn * (cfg.cols + cfg.cols // 8) + job.fn * job.fk * cfg.rows * cfg.cols // 8
    e = emit_positions(win)
    subs, gap = 8 // cfg.out_lanes, (cfg.out_lanes // 2 if job.out_int32 else 1)
    walk = win.N * math.prod(virtual(win)) * (win.C // 8)
    walk_end = x0 + walk                             # the walk's last position has advanced (no waits)
    if subs == 1 and gap == 1:                       # the lanes keep up: the walk never waits
        last = max(x0 + int(e[-1]) + PIPE + 2, walk_end + 1)
    else:
        pops, last, delay = [], -(1 << 40), 0        # last: the latest lane issue
        for k, ek in enumerate(e.tolist()):
            push = x0 + ek + PIPE + delay
            if k >= QUEUE and push <= pops[k - QUEUE]:     # the queue is full: the walk waits for a pop
                delay += pops[k - QUEUE] + 1 - push
                push = pops[k - QUEUE] + 1
            for j in range(subs):                    # the lanes' input register: loaded, then issued
                load = max(push + 1, last)
                if k == len(e) - 1 and j == subs - 1:      # the last output waits for the walk's end
                    load = max(load, walk_end + delay)
                last = max(load + 1, last + gap)
            pops.append(load)
        last += gap - 1
    return {"cycles": int(last + END), "mac_cycles": int(job.M * job.N // 8), "compute_cycles": int(walk)}


def job_cycles(win: window.Window, cfg, out_int32: bool = False) -> int:
    """Predicted cycles of a depthwise layer's depthwise-unit jobs (channels split by chunks)."""
    cfg = accel.config(cfg)
    return sum(cycle_model(accel.Job(w.M, 9, w.C, w.M, False, out_int32, cfg, _EMPTY, window=w, dw_unit=True))
               ["cycles"] for _, w in chunks(win, cfg))


@functools.lru_cache(maxsize=4096)
def choose(win: window.Window, Co: int, cfg, out_int32: bool = False) -> bool:
    """Whether a convolution should run on the depthwise unit: the unit takes it (channels split by chunks) and
    the cycle model predicts no more cycles than the window engine or GEMM jobs, whichever window.choose picks."""
    cfg = accel.config(cfg)
    if unsupported(win, cfg, split=True) is not None or Co != win.C:
        return False
    other = window.job_cycles(win, Co, cfg, out_int32) if window.choose(win, Co, cfg, out_int32) else \
        window.gemm_cycles(win, Co, cfg, out_int32)
    return job_cycles(win, cfg, out_int32) <= other


_EMPTY = np.zeros(0, np.uint8)

accel.JOB_KINDS["dw_unit"] = (registers, cycle_model)     # Job.registers and accel.cycle_model use these
