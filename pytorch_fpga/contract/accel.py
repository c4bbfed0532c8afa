"""conv_accel's jobs in numpy: configurations, stream packing and unpacking, and the bit-exact golden model.

A job is Y (M x N) = requant(X (M x K) @ W (K x N) + bias) on the accelerator (rtl/conv_accel.v); the stream
layout is documented in pytorch_fpga/contract/regmap.py. Torch-free: this runs on a stock PYNQ-Z1 image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pytorch_fpga.arch import systolic
from pytorch_fpga.contract import regmap
from pytorch_fpga.core import quant
from pytorch_fpga.core.gemm import check_int8, gemm_int8


@dataclass(frozen=True)
class AccelConfig:
    """One build of rtl/conv_accel.v: array shape and buffer sizes (the RTL's parameters)."""
    name: str
    rows: int = 16
    cols: int = 16
    lut_rows: int = 3
    x_depth: int = 4096
    w_depth: int = 16384
    acc_depth: int = 512
    n_max: int = 1024
    out_lanes: int = 8         # requantization lanes: int8 output channels per cycle (2, 4 or 8)
    out_depth: int = 8192      # NHWC output buffer rows of 8 bytes (two halves)
    dw_lb_depth: int = 1024    # depthwise unit: line-buffer beats (IW * C / 8 <= this)
    dw_ch: int = 512           # depthwise unit: max channels of a job (0: no unit)
    clock_mhz: float = 100.0

    def params(self) -> dict:
        """The Verilog parameters of this configuration."""
        return {"ROWS": self.rows, "COLS": self.cols, "LUT_ROWS": self.lut_rows, "X_DEPTH": self.x_depth,
                "W_DEPTH": self.w_depth, "ACC_DEPTH": self.acc_depth, "N_MAX": self.n_max,
                "OUT_LANES": self.out_lanes, "OUT_DEPTH": self.out_depth, "DW_LB_DEPTH": self.dw_lb_depth,
                "DW_CH": self.dw_ch}


CONFIGS = {
    # The PYNQ-Z1 build: 16x16 PEs, 8 requantization lanes (4 DSP48E1s each); the bottom 5 PE rows multiply in
    # LUTs so the DSP48E1s fit the XC7Z020 (11 x 16 + 8 x 4 = 208 of 220).
    # No depthwise unit yet: with it (z1dw) Yosys estimates 74% of the LUTs per block, 97% flattened (> 70%).
    "z1": AccelConfig("z1", lut_rows=5, dw_ch=0),
    # z1 with the depthwise unit (rtl/accel_dw.v): simulated and tested, does not fit the XC7Z020's LUT budget yet.
    "z1dw": AccelConfig("z1dw", lut_rows=5),
    # A small build for fast simulation tests (two requantization lanes).
    "sim8": AccelConfig("sim8", rows=8, cols=8, lut_rows=0, x_depth=256, w_depth=512, acc_depth=64, n_max=64,
                        out_lanes=2, out_depth=256, dw_lb_depth=256, dw_ch=64),
}


def config(name_or_cfg) -> AccelConfig:
    """An AccelConfig from a name in CONFIGS (or pass one through)."""
    if isinstance(name_or_cfg, AccelConfig):
        return name_or_cfg
    try:
        return CONFIGS[name_or_cfg]
    except KeyError:
        raise ValueError(f"unknown accelerator config {name_or_cfg!r}; choose one of {sorted(CONFIGS)}") from None


@dataclass
class Job:
    """One accelerator job: dimensions, flags, and its input stream."""
    M: int
    K: int
    N: int
    m_tile: int
    relu: bool
    out_int32: bool
    cfg: AccelConfig
    stream: np.ndarray = field(repr=False)     # uint8, a multiple of 8 bytes
    operands: dict = field(default_factory=dict, repr=False)   # X, W, bias, m, shift (for the numpy model)
    window: object = None      # window mode: the convolution's pf.contract.window.Window (X is a feature map)
    out_nhwc: bool = False     # int8 output per tile in NHWC order (each row's n-folds together)
    dw_unit: bool = False      # a depthwise-unit job (pf.contract.dwunit): window is its 3x3 depthwise geometry

    @property
    def fk(self) -> int:
        """k-folds: ceil(K / rows)."""
        return math.ceil(self.K / self.cfg.rows)

    @property
    def fn(self) -> int:
        """n-folds: ceil(N / cols)."""
        return math.ceil(self.N / self.cfg.cols)

    @property
    def macs(self) -> int:
        """Useful multiply-accumulates: M*K*N, or in window mode the convolution's own (no channel padding)."""
        w = self.window
        if w is None:
            return self.M * self.K * self.N
        return self.M * w.kh * w.kw * self.N * (1 if w.depthwise else w.C)      # a DW-unit job: M * 9 * N

    def tiles(self) -> list[int]:
        """Rows in each X tile."""
        return [min(self.m_tile, self.M - t) for t in range(0, self.M, self.m_tile)]

    @property
    def flags(self) -> int:
        """The FLAGS register value."""
        f = (regmap.FLAG_RELU if self.relu else 0) | (regmap.FLAG_OUT_INT32 if self.out_int32 else 0)
        if self.dw_unit:
            return f | regmap.FLAG_DW_UNIT
        if self.window is not None:
            f |= regmap.FLAG_WINDOW | (regmap.FLAG_DEPTHWISE if self.window.depthwise else 0)
        return f | (regmap.FLAG_OUT_NHWC if self.out_nhwc else 0)

    def x_tile_beats(self) -> list[int]:
        """Input-stream beats of each X tile (window mode: header + input rows; DW unit: one, the NHWC images)."""
        if self.dw_unit:
            return [self.window.N * self.window.H * self.window.W * self.N // 8]
        if self.window is not None:
            return [1 + n * self.window.row(self.cfg) * self.cfg.rows // 8 for n in self.window.tile_nrows(self)]
        return [self.fk * rows * self.cfg.rows // 8 for rows in self.tiles()]

    @property
    def out_bytes(self) -> int:
        """Bytes the job streams out (a DW-unit job: M x N, no channel padding)."""
        return self.M * (self.N if self.dw_unit else self.fn * self.cfg.cols) * (4 if self.out_int32 else 1)

    def registers(self) -> dict:
        """Register writes (name -> value) that set the job up, before CTRL.START."""
        regs = {"M": self.M, "K": self.K, "N": self.N, "M_TILE": self.m_tile, "FLAGS": self.flags}
        if self.dw_unit:
            return {**regs, **JOB_KINDS["dw_unit"][0](self.window)}
        return regs if self.window is None else {**regs, **self.window.registers(self.cfg)}

# Job kinds of modules above this one, registered when they are imported (pf.contract.dwunit: "dw_unit", which
# makes those jobs): kind -> (registers(window) -> dict, cycle_model(job) -> dict).
JOB_KINDS: dict = {}


def nhwc_fits(m_tile: int, N: int, cfg: AccelConfig) -> bool:
    """Whether a tile of m_tile rows and N output channels fits half the NHWC output buffer."""
    return m_tile * math.ceil(N / cfg.cols) * cfg.cols // 8 <= cfg.out_depth // 2


def max_m_tile(M: int, K: int, cfg: AccelConfig) -> int:
    """The most rows an X tile can have: what the accumulator bank and one X bank hold (at most M)."""
    fk = math.ceil(K / cfg.rows)
    return max(1, min(M, cfg.acc_depth, cfg.x_depth // fk))


def choose_m_tile(M: int, K: int, cfg: AccelConfig, N: int | None = None, out_int32: bool = False) -> int:
    """Rows per X tile, the fastest by cycle_model among tiles that split M evenly into 1x..32x the fewest tiles.

    Big tiles need few passes over W but X tile 0's load is never hidden; tiles under 2*rows + cols - 3 rows
    make the array wait for its weight banks, which only pays off when streaming is the bottleneck anyway.
    Without N, the largest tile.
    """
    hi = max_m_tile(M, K, cfg)
    if N is None:
        return hi
    t0 = math.ceil(M / hi)                                   # fewest tiles
    counts = {t0, t0 + 1, t0 + 2} | {t0 * k for k in (2, 3, 4, 6, 8, 12, 16, 24, 32)}
    cands = {hi} | {math.ceil(M / t) for t in counts if math.ceil(M / t) >= min(hi, cfg.rows)}
    empty = np.zeros(0, np.uint8)
    return min(sorted(cands, reverse=True),
               key=lambda t: cycle_model(Job(M, K, N, t, False, out_int32, cfg, empty))["cycles"])


def check_job(M: int, K: int, N: int, m_tile: int, cfg: AccelConfig) -> None:
    """Raise a clear ValueError when a job does not fit this accelerator build."""
    fk, fn = math.ceil(K / cfg.rows), math.ceil(N / cfg.cols)
    problems = []
    if min(M, K, N) < 1:
        problems.append(f"M, K, N must be >= 1 (got {M}, {K}, {N})")
    if fk > cfg.x_depth or fk * cfg.rows > cfg.w_depth:
        kmax = min(cfg.x_depth, cfg.w_depth // cfg.rows) * cfg.rows
        problems.append(f"K={K} is longer than this build takes (K <= {kmax}): split the reduction on the host")
    else:
        if not 1 <= m_tile <= min(cfg.acc_depth, cfg.x_depth // fk):
            problems.append(f"m_tile={m_tile} must be in [1, {min(cfg.acc_depth, cfg.x_depth // fk)}]")
        if fk * fn * cfg.rows > cfg.w_depth:
            problems.append(f"W ({K}x{N}) needs {fk * fn * cfg.rows} buffer rows, the build has {cfg.w_depth}: "
                            "split N into several jobs (pf.compiler does)")
    if fn * cfg.cols > cfg.n_max:
        problems.append(f"N={N} is more than the {cfg.n_max} output channels a job can take: split N")
    if problems:
        raise ValueError(f"job {M}x{K}x{N} does not fit accelerator '{cfg.name}': " + "; ".join(problems))


INT32_MAX = 2**31 - 1


def n_chunk(K: int, cfg: AccelConfig) -> int:
    """Most output channels one job can take for reduction length K (a multiple of the array's columns)."""
    fk = math.ceil(K / cfg.rows)
    folds = max(1, cfg.w_depth // (fk * cfg.rows))
    return max(cfg.cols, min(cfg.n_max, folds * cfg.cols) // cfg.cols * cfg.cols)


def check_accumulator(W, bias=None, name: str = "the job") -> None:
    """Raise when some input int8 X could overflow the int32 accumulator of a column of W (K x N) + bias.

    The worst case of column n is 128 * sum_k |W[k, n]| + |bias[n]|: every x at -128 with the sign of its w.
    """
    W = np.asarray(W, np.int64)
    worst = 128 * np.abs(W).sum(axis=0) + (0 if bias is None else np.abs(np.asarray(bias, np.int64)))
    if worst.max(initial=0) > INT32_MAX:
        n = int(np.argmax(worst))
        raise OverflowError(f"{name}: output channel {n} can overflow the int32 accumulator (worst case "
                            f"{int(worst[n]):,} > {INT32_MAX:,} from K={W.shape[0]} int8 products and bias "
                            f"{0 if bias is None else int(np.asarray(bias).reshape(-1)[n]):,}); split the reduction "
                            "(K) into several layers, or reduce the bias or the weights' scale")


def check_requant(N: int, bias, m, shift, out_int32: bool):
    """bias, m and shift as int64 arrays of N, checked against what the stream's parameter block can carry."""
    bias = np.zeros(N, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(N)
    if out_int32 and m is None:
        m, shift = np.zeros(N, np.int64), np.ones(N, np.int64)
    if m is None or shift is None:
        raise ValueError("int8 outputs need the requantization m and shift per channel (pf.quant)")
    m, shift = np.broadcast_to(np.asarray(m, np.int64), (N,)), np.broadcast_to(np.asarray(shift, np.int64), (N,))
    if m.min() < 0 or m.max() >= 2**31 or shift.min() < 1 or shift.max() > 62:
        raise ValueError("m must be in [0, 2**31) and shift in [1, 62] (see pf.quant.quantize_multiplier)")
    if bias.min() < -2**31 or bias.max() >= 2**31:
        raise ValueError("bias must fit int32")
    return bias, m, shift


def pack_params(bias, m, shift, cfg: AccelConfig) -> list:
    """The stream's parameter block: per n-fold, COLS {bias, m} pairs then COLS shift bytes (zero-padded)."""
    C, N = cfg.cols, len(bias)
    Np = math.ceil(N / C) * C
    pb = np.zeros(Np, "<i4")
    pb[:N] = bias
    pm = np.zeros(Np, "<u4")
    pm[:N] = m
    ps = np.ones(Np, np.uint8)
    ps[:N] = shift
    params = []
    for j in range(Np // C):
        mb = np.empty((C, 2), "<u4")
        mb[:, 0] = pb[j * C:(j + 1) * C].view("<u4")
        mb[:, 1] = pm[j * C:(j + 1) * C]
        params += [mb.view(np.uint8).ravel(), ps[j * C:(j + 1) * C]]
    return params


def pack_job(X, W, bias=None, m=None, shift=None, relu: bool = False, out_int32: bool = False,
             cfg="z1", m_tile: int | None = None) -> Job:
    """Pack Y = requant(X @ W + bias) into conv_accel's input stream (params, X tile 0, W, X tiles 1..)."""
    cfg = config(cfg)
    X, W = check_int8("X", X), check_int8("W", W)
    if X.ndim != 2 or W.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ValueError(f"need X (M x K) and W (K x N) with matching K; got {X.shape} and {W.shape}")
    (M, K), N = X.shape, W.shape[1]
    R, C = cfg.rows, cfg.cols
    m_tile = m_tile or choose_m_tile(M, K, cfg, N, out_int32)
    check_job(M, K, N, m_tile, cfg)
    fk, fn = math.ceil(K / R), math.ceil(N / C)
    bias, m, shift = check_requant(N, bias, m, shift, out_int32)

    params = pack_params(bias, m, shift, cfg)
    Xp = np.zeros((M, fk * R), np.int8)
    Xp[:, :K] = X
    tiles = [Xp[t:t + m_tile] for t in range(0, M, m_tile)]
    x_streams = [np.concatenate([tile[:, f * R:(f + 1) * R] for f in range(fk)]).view(np.uint8).ravel()
                 for tile in tiles]
    w_stream = np.concatenate([systolic.pack_weights(W[f * R:(f + 1) * R, j * C:(j + 1) * C], R, C).ravel()
                               for j in range(fn) for f in range(fk)]).view(np.uint8)
    stream = np.concatenate(params + [x_streams[0], w_stream] + x_streams[1:])
    assert stream.size % regmap.BEAT_BYTES == 0
    return Job(M, K, N, m_tile, bool(relu), bool(out_int32), cfg, stream,
               dict(X=X, W=W, bias=bias, m=np.asarray(m), shift=np.asarray(shift)))


def unpack_output(data, job: Job) -> np.ndarray:
    """Y (M x N) from the job's output stream bytes (int8, or int32 with out_int32)."""
    dt = np.dtype("<i4") if job.out_int32 else np.dtype(np.int8)
    vals = np.frombuffer(bytes(data), dtype=dt)
    if vals.size != job.out_bytes // dt.itemsize:
        raise ValueError(f"output has {vals.size} values, the job produces {job.out_bytes // dt.itemsize}")
    if job.dw_unit:                                  # NHWC: each output pixel's N channels, in order
        return vals.reshape(job.M, job.N).astype(np.int32 if job.out_int32 else np.int8)
    C = job.cfg.cols
    if job.out_nhwc:                                 # rows of every n-fold's channels, tile after tile
        return vals.reshape(job.M, job.fn * C)[:, :job.N].astype(np.int8)
    Y, pos = np.empty((job.M, job.fn * C), dt), 0
    row0 = 0
    for rows in job.tiles():
        for j in range(job.fn):
            Y[row0:row0 + rows, j * C:(j + 1) * C] = vals[pos:pos + rows * C].reshape(rows, C)
            pos += rows * C
        row0 += rows
    return Y[:, :job.N].astype(np.int32 if job.out_int32 else np.int8)


def job_golden(job: Job) -> np.ndarray:
    """The golden output of a packed job."""
    return golden(**job.operands, relu=job.relu, out_int32=job.out_int32)


def golden(X, W, bias=None, m=None, shift=None, relu: bool = False, out_int32: bool = False) -> np.ndarray:
    """What the accelerator must output: acc = wrap32(X @ W + bias); int32 acc, or pf.quant.requantize(acc)."""
    acc = gemm_int8(X, W, bias)
    if out_int32:
        return acc
    return quant.requantize(acc, np.asarray(m, np.int64), np.asarray(shift, np.int64), relu=relu, axis=-1)


def random_operands(rng, M: int, K: int, N: int, relu: bool = False, out_int32: bool = False,
                    extreme: float = 0.1) -> dict:
    """Random int8 X, W with a share `extreme` of -128/127, int32 bias, and a requant m/shift of sensible range."""
    X = rng.integers(-128, 128, (M, K)).astype(np.int8)
    W = rng.integers(-128, 128, (K, N)).astype(np.int8)
    for A in (X, W):
        mask = rng.random(A.shape) < extreme
        A[mask] = rng.choice(np.array([-128, 127], np.int8), int(mask.sum()))
    spread = 5461.0 * np.sqrt(K)         # std of a sum of K products of uniform int8s: (128^2 / 3) sqrt(K)
    ops = dict(X=X, W=W, bias=rng.integers(-int(spread) - 1, int(spread) + 1, N), relu=bool(relu),
               out_int32=bool(out_int32))
    if not out_int32:   # scales that put one spread at 32..256 int8 steps, so some outputs saturate
        ops["m"], ops["shift"] = quant.quantize_multiplier(rng.uniform(32, 256, N) / spread)
    return ops


def random_job(rng, M: int, K: int, N: int, cfg="z1", m_tile: int | None = None, **kwargs) -> Job:
    """A packed job of random_operands(rng, M, K, N, **kwargs); its golden output is job_golden(job)."""
    return pack_job(**random_operands(rng, M, K, N, **kwargs), cfg=cfg, m_tile=m_tile)

# --- cycle model ------------------------------------------------------------------------------------------
# Fixed latencies of rtl/conv_accel.v's pipeline stages (cycles), used by cycle_model().
_LAT_BUF = 3        # a streamed row is written, counted and readable by a feeder
_LAT_FEED = 2       # feeder read + FIFO before the array sees the row
_LAT_ACC = 2        # result row -> accumulator read-modify-write -> bank marked full
_LAT_OUT = 8        # bank read, requant pipeline, packing and output FIFO to the last beat
_LAT_NHWC = 7       # NHWC: the tile's last issue -> its half starts streaming out (lanes, write, hand-over)
_LAT_NHWC_END = 0   # NHWC: the half's last read -> the job's last beat on m_axis (overlapped)


def cycle_model(job: Job) -> dict:
    """Predicted cycles of a job from START to its last output beat, with the streams never stalling.

    A fold-level model of rtl/conv_accel.v: the input stream delivers one 8-byte beat a cycle in the order
    params, X tile 0, W, X tiles 1..; X tile t+2 waits for tile t's bank; each fold's weights load as their
    rows arrive, through the array's two weight banks (pf.systolic's bank rule); an n-fold's results go to
    one of two accumulator banks, which the output side drains at out_lanes int8 channels a cycle (int32: two,
    one 64-bit beat). A depthwise-unit job: pf.contract.dwunit.cycle_model.
    """
    if job.dw_unit:
        return JOB_KINDS["dw_unit"][1](job)
    cfg = job.cfg
    R, C = cfg.rows, cfg.cols
    LAT, D = systolic.latency(R, C), systolic.drain(R, C)
    wbpr = C // 8                                    # beats per W row
    tiles, fk, fn = job.tiles(), job.fk, job.fn
    params_beats = fn * (C + C // 8)
    t = params_beats                                 # beat clock of the input stream
    x_ready, x_start = [], []                         # tile t: all rows written / first beat
    x_beats = job.x_tile_beats()
    w_beats = fn * fk * R * wbpr
    release_x = {}                                   # tile -> cycle the compute side freed its bank
    # input stream order: X0, W, X1, X2, ...; tile t >= 2 also waits for bank release (filled in below)
    x_start.append(t)
    t += x_beats[0]
    x_ready.append(t + _LAT_BUF)
    w_start = t
    t += w_beats
    w_row_ready = lambda i: w_start + (i + 1) * wbpr + _LAT_BUF   # noqa: E731 - row i of the W stream
    stream_end = t
    # fold-level schedule
    load, stream, ms = [], [], []
    acc_release = []                                 # per n-fold (global): cycle its bank is free again
    y_done, out_free = [], 0
    ser = cfg.out_lanes // 2 - 1 if job.out_int32 else 0
    mac, emit_end = 0, []
    for ti, rows in enumerate(tiles):
        if ti >= 1:
            start = max(stream_end, release_x.get(ti - 2, 0))
            x_start.append(start)
            stream_end = start + x_beats[ti]
            x_ready.append(stream_end + _LAT_BUF)
        for j in range(fn):
            g = len(y_done)
            for f in range(fk):
                i = len(load)
                widx = (j * fk + f) * R
                ld = 0 if i == 0 else load[-1] + R
                ld = max(ld, w_row_ready(widx + R - 1) - R + 1) if ti == 0 else ld   # rows arrive in time
                if i >= 2:
                    ld = max(ld, stream[i - 2] + ms[i - 2] + D)
                s = max(ld + R, stream[-1] + ms[-1] if i else 0, x_ready[ti] + _LAT_FEED)
                if f == 0 and g >= 2:                # accumulator bank of n-fold g-2 must be free
                    s = max(s, acc_release[g - 2] - LAT)
                load.append(ld)
                stream.append(s)
                ms.append(rows)
                mac += rows
            done = stream[-1] + rows + LAT + _LAT_ACC
            y_done.append(done)
            begin = max(done, out_free + C + 2)      # parameters load while the bank fills
            if job.out_nhwc and j == 0 and ti >= 2:  # NHWC: the tile's output-buffer half must be streamed out
                begin = max(begin, emit_end[ti - 2] + 1)
            # int32 with more than two lanes: a group's last beats leave after the bank is handed back
            out_free = begin + 1 + rows * (C // 2 if job.out_int32 else C // cfg.out_lanes) - ser
            acc_release.append(out_free)
        release_x[ti] = stream[-1] + rows            # the tile's last activation row has been read
        if job.out_nhwc:                             # the tile's half streams out once its last beat is in
            emit_end.append(max(out_free + _LAT_NHWC, emit_end[-1] if emit_end else 0) + rows * fn * C // 8)
    if job.out_nhwc:
        return _result(emit_end[-1] + _LAT_NHWC_END, mac, stream, ms)
    cycles = out_free + ser + (_LAT_OUT if not job.out_int32 else _LAT_OUT - 3)
    return _result(cycles, mac, stream, ms)


def _result(cycles, mac, stream, ms) -> dict:
    return {"cycles": int(cycles), "mac_cycles": int(mac), "compute_cycles": int(stream[-1] + ms[-1] - stream[0])}
