"""Window mode: conv_accel takes an NHWC feature map and forms the convolution windows on chip (numpy only).

A window job's X tiles are whole input rows of the feature map (channels zero-padded to CB blocks of ROWS), each
behind a header beat; k-fold f is (ky, kx, cb) with cb fastest (depthwise: (ky, kx), and n-fold j reads channel
block j). The feeder walks X buffer addresses with the host's steps and feeds zeros for taps in the padding.
Stream format: pytorch_fpga/contract/regmap.py. This module packs such jobs, decodes them as the hardware reads
them, and says which convolutions fit.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from pytorch_fpga.arch import systolic
from pytorch_fpga.contract import accel
from pytorch_fpga.core.gemm import check_int8

LIMITS = {"kw": 15, "stride": 15, "dilation": 15, "pad_l": 15, "cb": 4095, "width": 65535}   # WIN_GEOM fields


@dataclass(frozen=True)
class Window:
    """A convolution's geometry: NHWC input (N, H, W, C), kernel kh x kw, one stride and dilation, zero pads."""
    N: int
    H: int
    W: int
    C: int
    kh: int
    kw: int
    stride: int = 1
    dilation: int = 1
    pads: tuple = (0, 0, 0, 0)          # top, bottom, left, right (the graph's order)
    depthwise: bool = False

    def __post_init__(self):
        object.__setattr__(self, "pads", tuple(int(p) for p in self.pads))     # hashable: the choices are cached

    @property
    def OH(self) -> int:
        return (self.H + self.pads[0] + self.pads[1] - self.dilation * (self.kh - 1) - 1) // self.stride + 1

    @property
    def OW(self) -> int:
        return (self.W + self.pads[2] + self.pads[3] - self.dilation * (self.kw - 1) - 1) // self.stride + 1

    @property
    def M(self) -> int:
        return self.N * self.OH * self.OW

    def cb(self, cfg) -> int:
        """Channel blocks of ROWS channels per pixel."""
        return math.ceil(self.C / accel.config(cfg).rows)

    def folds(self, cfg) -> int:
        """k-folds per n-fold: kh * kw * CB (depthwise: kh * kw)."""
        return self.kh * self.kw * (1 if self.depthwise else self.cb(cfg))

    def row(self, cfg) -> int:
        """X buffer rows (of ROWS bytes) per input row."""
        return self.W * self.cb(cfg)

    def span(self, rows: int) -> int:
        """Input rows the windows of `rows` consecutive output rows cover (before clipping to the map)."""
        return (rows - 1) * self.stride + (self.kh - 1) * self.dilation + 1

    def tile(self, oy0: int, rows: int) -> tuple[int, int, int]:
        """(rel_y0, first input row, input rows) streamed for output rows [oy0, oy0 + rows) of one image."""
        top = oy0 * self.stride - self.pads[0]
        lo, hi = max(top, 0), min(top + self.span(rows), self.H)
        return top - lo, lo, hi - lo

    def tiles(self, m_tile: int) -> list[tuple[int, int, int]]:
        """(image, first output row, output rows) of each tile of m_tile output pixels."""
        T, out = m_tile // self.OW, []
        for g in range(0, self.N * self.OH, T):
            b, oy0 = divmod(g, self.OH)
            out.append((b, oy0, min(T, self.N * self.OH - g)))
        return out

    def tile_nrows(self, job) -> list[int]:
        """Input rows streamed in each of the job's X tiles."""
        return [self.tile(oy0, rows)[2] for _, oy0, rows in self.tiles(job.m_tile)]

    def header(self, oy0: int, rows: int, cfg) -> np.ndarray:
        """The tile's header beat {A0, REL_Y0, NROWS} as 8 bytes."""
        rel, _, nrows = self.tile(oy0, rows)
        a0 = rel * self.row(cfg) - self.pads[2] * self.cb(cfg)
        return np.array([(nrows & 0xFFFF) | ((rel & 0xFFFF) << 16) | ((a0 & 0xFFFFFFFF) << 32)], "<u8").view(np.uint8)

    def registers(self, cfg) -> dict:
        """The WIN_* register values."""
        cb, s, d = self.cb(cfg), self.stride, self.dilation
        return {"WIN_SHAPE": self.W | self.OW << 16,
                "WIN_GEOM": cb | self.kw << 12 | s << 16 | d << 20 | self.pads[2] << 24,
                "WIN_ROW": self.W * cb, "WIN_XSTEP": s * cb, "WIN_YSTEP": s * self.W * cb,
                "WIN_DX": d * cb, "WIN_DY": d * self.W * cb}


def unsupported(win: Window, cfg, N: int | None = None) -> str | None:
    """Why window mode cannot take this convolution on build cfg (None: it can)."""
    cfg = accel.config(cfg)
    checks = [(win.kw <= LIMITS["kw"], f"kernel width {win.kw} > {LIMITS['kw']}"),
              (1 <= win.stride <= LIMITS["stride"], f"stride {win.stride} not in 1..{LIMITS['stride']}"),
              (1 <= win.dilation <= LIMITS["dilation"], f"dilation {win.dilation} not in 1..{LIMITS['dilation']}"),
              (min(win.pads) >= 0 and win.pads[2] <= LIMITS["pad_l"], f"padding {win.pads} (left <= 15)"),
              (win.cb(cfg) <= LIMITS["cb"], f"{win.C} channels > {LIMITS['cb'] * cfg.rows}"),
              (max(win.W, win.OW) <= LIMITS["width"], f"width {win.W} > {LIMITS['width']}"),
              (win.OH >= 1 and win.OW >= 1, "the output is empty"),
              (not win.depthwise or (cfg.rows == cfg.cols and (N is None or N == win.C)),
               "depthwise needs a square array and as many outputs as inputs")]
    for ok, why in checks:
        if not ok:
            return why
    if win.OW > cfg.acc_depth:
        return f"an output row ({win.OW} pixels) is longer than the accumulator ({cfg.acc_depth} rows)"
    if min(win.H, win.span(1)) * win.row(cfg) > cfg.x_depth:
        return (f"the input rows of one output row ({min(win.H, win.span(1))} x {win.row(cfg)} X buffer rows) "
                f"do not fit the X bank ({cfg.x_depth})")
    if win.folds(cfg) * cfg.rows > cfg.w_depth:
        return f"one output block's weights ({win.folds(cfg)} folds) do not fit the W buffer"
    if any(nrows < 1 for _, oy0, rows in win.tiles(win.OW) for nrows in [win.tile(oy0, rows)[2]]):
        return "an output row's windows lie wholly in the padding"
    return None


def max_tile_oh(win: Window, cfg, N: int | None = None, nhwc: bool = False) -> int:
    """Most output rows per tile: the accumulator and the X bank (and, for a batch, rows that divide OH; with
    NHWC output, half the output buffer for N channels)."""
    cfg = accel.config(cfg)
    T = 1
    for t in range(1, win.OH + 1):
        if t * win.OW > cfg.acc_depth or min(win.H, win.span(t)) * win.row(cfg) > cfg.x_depth or \
                (nhwc and not accel.nhwc_fits(t * win.OW, N, cfg)):
            break
        T = t
    while win.N > 1 and win.OH % T:
        T -= 1
    return T


@functools.lru_cache(maxsize=4096)
def choose_tile_oh(win: Window, N: int, cfg, out_int32: bool = False, nhwc: bool = False) -> int:
    """Output rows per tile, the fewest cycles by pf.accel.cycle_model among the largest and the even splits."""
    cfg = accel.config(cfg)
    hi = max_tile_oh(win, cfg, N, nhwc)
    t0 = math.ceil(win.OH / hi)
    cands = {hi} | {math.ceil(win.OH / t) for t in range(t0, t0 + 4)}
    cands = {t for t in cands if 1 <= t <= hi and (win.N == 1 or win.OH % t == 0)} or {hi}
    K = win.folds(cfg) * cfg.rows

    def cycles(T):
        job = accel.Job(win.M, K, N, T * win.OW, False, out_int32, cfg, _EMPTY, window=win, out_nhwc=nhwc)
        return accel.cycle_model(job)["cycles"]
    return min(sorted(cands, reverse=True), key=cycles)


def im2col(X, win: Window) -> np.ndarray:
    """Window rows (N*OH*OW, kh*kw*C) of an NHWC map in (ky, kx, c) order, zero padding included."""
    X = np.asarray(X)
    pt, pb, pl, pr = win.pads
    s, d = win.stride, win.dilation
    Xp = np.zeros((win.N, win.H + pt + pb + s, win.W + pl + pr + s, win.C), X.dtype)
    Xp[:, pt:pt + win.H, pl:pl + win.W] = X
    taps = [Xp[:, ky * d:ky * d + (win.OH - 1) * s + 1:s, kx * d:kx * d + (win.OW - 1) * s + 1:s]
            for ky in range(win.kh) for kx in range(win.kw)]
    return np.stack(taps, axis=3).reshape(win.M, -1)


def dense_weights(Wt, win: Window) -> np.ndarray:
    """The GEMM weights (kh*kw*C, N) of conv weights (kh, kw, C, N), or depthwise (kh, kw, C) as block-diagonal."""
    Wt = np.asarray(Wt)
    if not win.depthwise:
        return Wt.reshape(-1, Wt.shape[-1])
    D = np.zeros((win.kh * win.kw, win.C, win.C), Wt.dtype)
    D[:, np.arange(win.C), np.arange(win.C)] = Wt.reshape(-1, win.C)
    return D.reshape(-1, win.C)


def nhwc_ok(win: Window, N: int, cfg, out_int32: bool = False) -> bool:
    """Whether the job's output can leave in NHWC order (int8, one output row fits half the output buffer)."""
    return not out_int32 and accel.nhwc_fits(win.OW, N, accel.config(cfg))


def pack_window_job(X, Wt, bias=None, m=None, shift=None, relu: bool = False, out_int32: bool = False,
                    cfg="z1", win: Window | None = None, tile_oh: int | None = None, out_nhwc: bool | None = None,
                    **geometry) -> accel.Job:
    """Pack a convolution of X (N, H, W, C) int8 NHWC with Wt (kh, kw, C, Co), or depthwise (kh, kw, C), as a window
    job: params, X tile 0 (header + input rows), W, X tiles 1.. . geometry: stride, dilation, pads, depthwise.
    out_nhwc: the output in NHWC order (default: when nhwc_ok)."""
    cfg = accel.config(cfg)
    X, Wt = check_int8("X", X), check_int8("W", Wt)
    if X.ndim != 4 or Wt.ndim not in (3, 4):
        raise ValueError(f"need X (N, H, W, C) and W (kh, kw, C, Co) or depthwise (kh, kw, C); got {X.shape}, "
                         f"{Wt.shape}")
    if win is None:
        win = Window(*X.shape, *Wt.shape[:2], **{"depthwise": Wt.ndim == 3, **geometry})
    if (win.N, win.H, win.W, win.C, win.kh, win.kw) != (*X.shape, *Wt.shape[:2]) or Wt.shape[2] != win.C:
        raise ValueError(f"X {X.shape} and W {Wt.shape} do not match the window {win}")
    Co = win.C if win.depthwise else Wt.shape[3]
    why = unsupported(win, cfg, Co)
    if why:
        raise ValueError(f"window mode cannot take this convolution on '{cfg.name}': {why}; lower it to a GEMM "
                         "(im2col rows, pf.accel.pack_job) instead")
    nhwc = nhwc_ok(win, Co, cfg, out_int32) if out_nhwc is None else bool(out_nhwc)
    if nhwc and not nhwc_ok(win, Co, cfg, out_int32):
        raise ValueError(f"NHWC output needs int8 outputs and an output row ({win.OW} x {Co}) within half the "
                         f"output buffer ({cfg.out_depth // 2} rows of 8 bytes): pass out_nhwc=False")
    T = choose_tile_oh(win, Co, cfg, out_int32, nhwc) if tile_oh is None else tile_oh
    if win.N > 1 and win.OH % T:
        raise ValueError(f"tile_oh={T} must divide the output height {win.OH} for a batch of {win.N}: a tile "
                         "would straddle two images")
    if not 1 <= T <= max_tile_oh(win, cfg, Co, nhwc):
        raise ValueError(f"tile_oh={T} must be in [1, {max_tile_oh(win, cfg, Co, nhwc)}] for this layer on "
                         f"'{cfg.name}'")
    R, C, cb, fk = cfg.rows, cfg.cols, win.cb(cfg), win.folds(cfg)
    fn = math.ceil(Co / C)
    if fn * C > cfg.n_max:
        raise ValueError(f"{Co} output channels are more than the {cfg.n_max} a job can take: split them")
    if fk * fn * R > cfg.w_depth:
        raise ValueError(f"W needs {fk * fn * R} buffer rows, '{cfg.name}' has {cfg.w_depth}: split the output "
                         f"channels into jobs of at most {accel.n_chunk(fk * R, cfg)}")
    bias, m, shift = accel.check_requant(Co, bias, m, shift, out_int32)
    Xp = np.zeros((win.N, win.H, win.W, cb * R), np.int8)
    Xp[..., :win.C] = X
    tiles = []
    for b, oy0, rows in win.tiles(T * win.OW):
        _, lo, nrows = win.tile(oy0, rows)
        tiles.append(np.concatenate([win.header(oy0, rows, cfg), Xp[b, lo:lo + nrows].view(np.uint8).ravel()]))
    Wp = np.zeros((win.kh, win.kw, cb * R, fn * C), np.int8)
    if win.depthwise:
        Wp[:, :, np.arange(win.C), np.arange(win.C)] = Wt
        blocks = [Wp[ky, kx, j * R:(j + 1) * R, j * C:(j + 1) * C] for j in range(fn)
                  for ky in range(win.kh) for kx in range(win.kw)]
    else:
        Wp[:, :, :win.C, :Co] = Wt
        blocks = [Wp[ky, kx, c * R:(c + 1) * R, j * C:(j + 1) * C] for j in range(fn)
                  for ky in range(win.kh) for kx in range(win.kw) for c in range(cb)]
    w_stream = np.concatenate([systolic.pack_weights(blk, R, C).ravel() for blk in blocks]).view(np.uint8)
    stream = np.concatenate(accel.pack_params(bias, m, shift, cfg) + [tiles[0], w_stream] + tiles[1:])
    return accel.Job(win.M, fk * R, Co, T * win.OW, bool(relu), bool(out_int32), cfg, stream,
                     dict(X=im2col(X, win), W=dense_weights(Wt, win), bias=bias, m=m, shift=shift), window=win,
                     out_nhwc=nhwc)


def x_regions(job: accel.Job) -> list[tuple[int, int, int, int]]:
    """(byte offset of the rows after the header, image, first input row, input rows) of each X tile."""
    win, cfg = job.window, job.cfg
    pos = sum(p.size for p in accel.pack_params(np.zeros(job.N), np.zeros(job.N), np.ones(job.N), cfg))
    out, wb = [], job.fn * job.fk * cfg.rows * cfg.cols
    for t, (b, oy0, rows) in enumerate(win.tiles(job.m_tile)):
        _, lo, nrows = win.tile(oy0, rows)
        out.append((pos + 8, b, lo, nrows))
        pos += 8 + nrows * win.row(cfg) * cfg.rows + (wb if t == 0 else 0)
    return out


def decode_x(job: accel.Job, stream=None) -> np.ndarray:
    """The window rows (M, kh*kw*C) the engine feeds, read from the stream as the feeder walks it: addresses from
    each tile's header and the WIN_* steps, zeros where a tap leaves the streamed rows or the width."""
    win, cfg = job.window, job.cfg
    s = np.asarray(job.stream if stream is None else stream).view(np.uint8)
    R, cb, regs = cfg.rows, win.cb(cfg), win.registers(cfg)
    ky, kx = np.divmod(np.arange(win.kh * win.kw), win.kw)
    out, row0 = np.zeros((job.M, win.kh * win.kw, cb * R), np.int8), 0
    for (off, _, _, nrows), (_, _, rows) in zip(x_regions(job), win.tiles(job.m_tile), strict=True):
        hdr = int(s[off - 8:off].view("<u8")[0])
        a0, rel = _signed(hdr >> 32, 32), _signed(hdr >> 16, 16)
        buf = s[off:off + nrows * win.row(cfg) * R].view(np.int8).reshape(-1, R)
        oy, ox = np.divmod(np.arange(rows * win.OW), win.OW)
        y = rel + oy[:, None] * win.stride + ky[None] * win.dilation                       # (pixels, taps)
        x = ox[:, None] * win.stride - win.pads[2] + kx[None] * win.dilation
        ok = (y >= 0) & (y < nrows) & (x >= 0) & (x < win.W)
        base = a0 + oy[:, None] * regs["WIN_YSTEP"] + ox[:, None] * regs["WIN_XSTEP"] \
            + ky[None] * regs["WIN_DY"] + kx[None] * regs["WIN_DX"]
        for c in range(cb):
            vals = buf[np.where(ok, base + c, 0)]
            out[row0:row0 + rows * win.OW, :, c * R:(c + 1) * R] = np.where(ok[..., None], vals, 0)
        row0 += rows * win.OW
    return out[:, :, :win.C].reshape(job.M, -1)


def _signed(v: int, bits: int) -> int:
    """The low `bits` of v as a two's-complement integer."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def decode_params_w(job: accel.Job, blocks: np.ndarray) -> np.ndarray:
    """The dense GEMM weights (kh*kw*C, N) from the stream's weight blocks (fn, fk, R, C), rows in array order."""
    win, R, C = job.window, job.cfg.rows, job.cfg.cols
    if win.depthwise:
        d = np.diagonal(blocks, axis1=2, axis2=3)                    # (fn, taps, R): block j's channel j*R + r
        w = d.transpose(1, 0, 2).reshape(win.kh, win.kw, -1)[..., :win.C]
        return dense_weights(w, win)
    Wp = blocks.reshape(job.fn, win.kh, win.kw, win.cb(job.cfg), R, C).transpose(1, 2, 3, 4, 0, 5)
    return Wp.reshape(win.kh, win.kw, -1, job.fn * C)[:, :, :win.C, :job.N].reshape(-1, job.N)


def conv_weights(w, win: Window) -> np.ndarray:
    """Conv weights (Co, C/groups, kh, kw) in window order: (kh, kw, C, Co), or depthwise (kh, kw, C)."""
    w = np.asarray(w)
    return w[:, 0].transpose(1, 2, 0) if win.depthwise else w.transpose(2, 3, 1, 0)


def chunks(win: Window, Co: int, cfg) -> list[tuple[slice, Window]]:
    """A layer's window jobs: the output channels of each (as many as the W buffer holds) and its window
    (depthwise: the job's channels only, its inputs split with its outputs)."""
    cfg = accel.config(cfg)
    step = accel.n_chunk(win.folds(cfg) * cfg.rows, cfg)     # depthwise: folds are kh * kw per n-fold
    return [(slice(a, min(Co, a + step)),
             dataclasses.replace(win, C=min(Co, a + step) - a) if win.depthwise else win)
            for a in range(0, Co, step)]


def job_cycles(win: Window, Co: int, cfg, out_int32: bool = False) -> int:
    """Predicted cycles (pf.accel.cycle_model) of the window jobs of a layer, output channels split by n_chunk."""
    cfg = accel.config(cfg)
    total = 0
    for o, w in chunks(win, Co, cfg):
        n = o.stop - o.start
        nhwc = nhwc_ok(w, n, cfg, out_int32)
        T = choose_tile_oh(w, n, cfg, out_int32, nhwc)
        job = accel.Job(w.M, w.folds(cfg) * cfg.rows, n, T * w.OW, False, out_int32, cfg, _EMPTY, window=w,
                        out_nhwc=nhwc)
        total += accel.cycle_model(job)["cycles"]
    return total


def gemm_cycles(win: Window, Co: int, cfg, out_int32: bool = False) -> int:
    """Predicted cycles of the same layer lowered to GEMM jobs (im2col rows; depthwise: groups packed side by side
    with block-diagonal weights, as pf.graph.lower and pf.compiler do)."""
    cfg = accel.config(cfg)
    parts = [(win.kh * win.kw * win.C, Co)]
    if win.depthwise:
        pack = cfg.cols
        parts = [(win.kh * win.kw * min(pack, win.C - g), min(pack, win.C - g)) for g in range(0, win.C, pack)]
    total = 0
    for K, N in parts:
        step = accel.n_chunk(K, cfg)
        for a in range(0, N, step):
            n = min(step, N - a)
            job = accel.Job(win.M, K, n, accel.choose_m_tile(win.M, K, cfg, n, out_int32), False, out_int32, cfg,
                            _EMPTY)
            total += accel.cycle_model(job)["cycles"]
    return total


PREFER = 1.03      # take window mode when it costs at most 3% more cycles than GEMM (it also saves host work)


@functools.lru_cache(maxsize=4096)
def choose(win: Window, Co: int, cfg, out_int32: bool = False) -> bool:
    """Whether a convolution should run in window mode on build cfg: supported, and not slower by the cycle model
    (beyond PREFER) than its im2col GEMM lowering; e.g. a 3-channel first layer stays a GEMM."""
    if unsupported(win, cfg, Co if not win.depthwise else None) is not None:
        return False
    return job_cycles(win, Co, cfg, out_int32) <= PREFER * gemm_cycles(win, Co, cfg, out_int32)


_EMPTY = np.zeros(0, np.uint8)
