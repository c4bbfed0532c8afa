"""Cycle-level models of a ROWS x COLS systolic array running Y = X (M x K) @ W (K x N) in three dataflows.

    ws  weight-stationary: a W tile (K-rows x N-cols) sits in the PEs, X rows stream west->east, partial sums
        flow north->south. This is rtl/systolic_array.v, modelled register by register: two weight banks,
        ROWS cycles to load a tile, a bank is reloaded only after its fold drained (pf.systolic.drain),
        latency ROWS + COLS - 1. Its cycle count is pf.systolic.ws_cycles for every shape.
    os  output-stationary: PE (r, c) accumulates Y[m0+r, n0+c]; X rows stream from the west, W columns from
        the north, both skewed; K streams through; results drain south through an output shift register.
    is  input-stationary: an X^T tile (K-rows x M-cols) sits in the PEs and W columns stream through; exactly
        the ws array computing Y^T = W^T @ X^T, so its cycles are ws_cycles(N, K, M).

Cycle counts run from the first operand entering the array to the last result leaving it, inclusive.

OS timing (our definition; no RTL yet). Tiles run N-tiles outer, M-tiles inner; F = ceil(M/R) * ceil(N/C).
Tile q starts at s_q = q * max(K, R). X[m0+r, k] enters row r at s_q + k + r and W[k, n0+c] enters column c
at s_q + k + c; both move one PE a cycle, so PE (r, c) does MAC k at s_q + k + r + c (k = 0 restarts the
accumulator). The last MAC writes the sum into the PE's output register; one cycle after PE (R-1, c) finished,
column c shifts its output registers south for R cycles, one result (bottom row first) leaving per cycle.
A new tile may start max(K, R) cycles after the previous one: K for the operand streams, R so that every
output register has been shifted on before it is overwritten. Hence
    os_cycles = (F - 1) * max(K, R) + K + 2R + C - 2.

Memory hierarchy (access counts, in elements): DRAM -> three on-chip buffers (X, W, Y; sizes in MemConfig)
-> array edges. Buffer reads of X and W are the real (non-padding) elements streamed or loaded into the
array; Y buffer writes are result elements leaving the array (one per fold, i.e. K-partials in ws/is) and Y
buffer reads are partial sums read back to be accumulated. DRAM: an operand matrix is fetched once if it fits
its buffer, else every fold fetches its tile again (DRAM reads = buffer reads); Y is written once if it fits
its buffer (int32), else every partial sum spills to DRAM and is read back. Buffer writes of X and W are the
DRAM reads that fill them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import systolic
from .conv import conv_output_size
from .gemm import check_int8, wrap_int32

DATAFLOWS = ("ws", "os", "is")


# --- shapes and formulas ------------------------------------------------------------------------------------
def _check_dataflow(dataflow: str) -> str:
    df = str(dataflow).lower()
    if df not in DATAFLOWS:
        raise ValueError(f"dataflow must be one of {DATAFLOWS}, got {dataflow!r}")
    return df


def _check_dims(M: int, K: int, N: int, rows: int, cols: int) -> None:
    for name, v in (("M", M), ("K", K), ("N", N), ("rows", rows), ("cols", cols)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")


def num_folds(M: int, K: int, N: int, rows: int, cols: int, dataflow: str = "ws") -> int:
    """Array tiles a GEMM needs: ws ceil(K/R)*ceil(N/C), os ceil(M/R)*ceil(N/C), is ceil(K/R)*ceil(M/C)."""
    _check_dims(M, K, N, rows, cols)
    a, b = {"ws": (K, N), "os": (M, N), "is": (K, M)}[_check_dataflow(dataflow)]
    return math.ceil(a / rows) * math.ceil(b / cols)


def os_cycles(M: int, K: int, N: int, rows: int, cols: int) -> int:
    """Exact output-stationary cycles: (F - 1) * max(K, rows) + K + 2*rows + cols - 2."""
    F = num_folds(M, K, N, rows, cols, "os")
    return (F - 1) * max(K, rows) + K + 2 * rows + cols - 2


def is_cycles(M: int, K: int, N: int, rows: int, cols: int) -> int:
    """Exact input-stationary cycles: the ws array on the transposed problem, ws_cycles(N, K, M)."""
    _check_dims(M, K, N, rows, cols)
    return systolic.ws_cycles(N, K, M, rows, cols)


def cycles(M: int, K: int, N: int, rows: int, cols: int, dataflow: str = "ws") -> int:
    """Closed-form cycles of Y = X (M x K) @ W (K x N) on a rows x cols array (ws: pf.systolic.ws_cycles)."""
    df = _check_dataflow(dataflow)
    _check_dims(M, K, N, rows, cols)
    if df == "ws":
        return systolic.ws_cycles(M, K, N, rows, cols)
    return os_cycles(M, K, N, rows, cols) if df == "os" else is_cycles(M, K, N, rows, cols)


def utilization_formula(M: int, K: int, N: int, rows: int, cols: int, dataflow: str = "ws") -> float:
    """Useful MACs / (rows * cols * cycles) from the closed-form cycle count."""
    return M * K * N / (rows * cols * cycles(M, K, N, rows, cols, dataflow))


# --- memory accesses ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemConfig:
    """On-chip buffer sizes (bytes) and element sizes; defaults match SCALE-Sim's 64 KiB per operand."""
    x_buf_bytes: int = 64 * 1024
    w_buf_bytes: int = 64 * 1024
    y_buf_bytes: int = 64 * 1024
    x_bytes: int = 1
    w_bytes: int = 1
    y_bytes: int = 4


@dataclass(frozen=True)
class Access:
    """Element counts for one operand: on-chip buffer reads/writes and DRAM reads/writes."""
    buf_reads: int
    buf_writes: int
    dram_reads: int
    dram_writes: int
    elem_bytes: int = 1

    @property
    def dram_bytes(self) -> int:
        """DRAM traffic in bytes (reads + writes)."""
        return (self.dram_reads + self.dram_writes) * self.elem_bytes


def _accesses(M, K, N, x_reads, w_reads, y_writes, y_reads, mem: MemConfig) -> dict[str, Access]:
    """Apply the DRAM rule (fetch once if the matrix fits its buffer, else per fold) to buffer-level counts."""
    x_dram = M * K if M * K * mem.x_bytes <= mem.x_buf_bytes else x_reads
    w_dram = K * N if K * N * mem.w_bytes <= mem.w_buf_bytes else w_reads
    if M * N * mem.y_bytes <= mem.y_buf_bytes:
        y_dram_w, y_dram_r = M * N, 0
    else:
        y_dram_w, y_dram_r = y_writes, y_reads
    return {"X": Access(int(x_reads), int(x_dram), int(x_dram), 0, mem.x_bytes),
            "W": Access(int(w_reads), int(w_dram), int(w_dram), 0, mem.w_bytes),
            "Y": Access(int(y_reads), int(y_writes), int(y_dram_r), int(y_dram_w), mem.y_bytes)}


def access_counts(M: int, K: int, N: int, rows: int, cols: int, dataflow: str = "ws",
                  mem: MemConfig | None = None) -> dict[str, Access]:
    """Closed-form buffer and DRAM accesses per operand ("X", "W", "Y"); see the module docstring."""
    df = _check_dataflow(dataflow)
    _check_dims(M, K, N, rows, cols)
    mem = mem or MemConfig()
    nK, nN = math.ceil(K / rows), math.ceil(N / cols)
    if df == "ws":
        reads = (M * K * nN, K * N, M * N * nK, M * N * (nK - 1))
    elif df == "os":
        reads = (M * K * nN, K * N * math.ceil(M / rows), M * N, 0)
    else:
        reads = (M * K, K * N * math.ceil(M / cols), M * N * nK, M * N * (nK - 1))
    return _accesses(M, K, N, *reads, mem)


# --- conv layers as GEMMs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GemmShape:
    """A conv layer as `groups` independent GEMMs, each (M x K) @ (K x N)."""
    M: int
    K: int
    N: int
    groups: int = 1

    @property
    def macs(self) -> int:
        """Useful MACs over all groups."""
        return self.groups * self.M * self.K * self.N


@dataclass(frozen=True)
class ConvLayer:
    """A Conv2d layer's shape: input C x H x W (batch images), O filters of kh x kw, torch-style arguments."""
    name: str
    C: int
    H: int
    W: int
    O: int
    kh: int
    kw: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    batch: int = 1

    @property
    def out_hw(self) -> tuple[int, int]:
        """(Ho, Wo) with torch's output-size rule."""
        return conv_output_size(self.H, self.W, (self.kh, self.kw), self.stride, self.padding, self.dilation)

    @property
    def gemm(self) -> GemmShape:
        """im2col mapping: M = batch*Ho*Wo, K = C/groups*kh*kw, N = O/groups, one GEMM per group."""
        return conv_gemm(self.C, self.H, self.W, self.O, (self.kh, self.kw), self.stride, self.padding,
                         self.dilation, self.groups, self.batch)


def conv_gemm(C: int, H: int, W: int, O: int, kernel_size, stride=1, padding=0, dilation=1, groups: int = 1,
              batch: int = 1) -> GemmShape:
    """Map a conv layer to GEMMs: M = batch*Ho*Wo, K = C/groups*kh*kw, N = O/groups, `groups` of them."""
    if groups < 1 or C % groups or O % groups:
        raise ValueError(f"groups ({groups}) must be >= 1 and divide both C ({C}) and O ({O})")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, (int, np.integer)) else kernel_size
    Ho, Wo = conv_output_size(H, W, (kh, kw), stride, padding, dilation)
    return GemmShape(batch * Ho * Wo, C // groups * kh * kw, O // groups, groups)


def conv_cycles(layer: ConvLayer | GemmShape, rows: int, cols: int, dataflow: str = "ws") -> int:
    """Cycles for a conv layer: its groups run as separate GEMMs one after another."""
    g = layer.gemm if isinstance(layer, ConvLayer) else layer
    return g.groups * cycles(g.M, g.K, g.N, rows, cols, dataflow)


def conv_utilization(layer: ConvLayer | GemmShape, rows: int, cols: int, dataflow: str = "ws") -> float:
    """Useful MACs / (rows * cols * cycles) for a conv layer."""
    g = layer.gemm if isinstance(layer, ConvLayer) else layer
    return g.macs / (rows * cols * conv_cycles(g, rows, cols, dataflow))


def utilization_sweep(values, dim: str = "M", M: int = 64, K: int = 150, N: int = 16, rows: int = 16,
                      cols: int = 16, dataflows=DATAFLOWS) -> dict:
    """Vary one of M, K, N over `values`: {'values', 'cycles': {df: array}, 'utilization': {df: array}}."""
    if dim not in ("M", "K", "N"):
        raise ValueError(f"dim must be 'M', 'K' or 'N', got {dim!r}")
    values = np.asarray(list(values), dtype=np.int64)
    shapes = [{"M": M, "K": K, "N": N, dim: int(v)} for v in values]
    macs = np.array([s["M"] * s["K"] * s["N"] for s in shapes], dtype=np.float64)
    out = {"dim": dim, "values": values, "cycles": {}, "utilization": {}}
    for df in dataflows:
        cyc = np.array([cycles(s["M"], s["K"], s["N"], rows, cols, df) for s in shapes], dtype=np.int64)
        out["cycles"][df] = cyc
        out["utilization"][df] = macs / (rows * cols * cyc)
    return out


def layer_table(layers, rows: int = 16, cols: int = 16, dataflows=DATAFLOWS) -> list[dict]:
    """Per conv layer: GEMM shape and, per dataflow, closed-form cycles and utilization (for charts)."""
    table = []
    for layer in layers:
        g = layer.gemm
        row = {"layer": layer.name, "M": g.M, "K": g.K, "N": g.N, "groups": g.groups, "macs": g.macs}
        for df in dataflows:
            row[f"{df}_cycles"] = conv_cycles(g, rows, cols, df)
            row[f"{df}_util"] = g.macs / (rows * cols * row[f"{df}_cycles"])
        table.append(row)
    return table


# --- stepped simulation ---------------------------------------------------------------------------------------
@dataclass
class Trace:
    """Per-cycle PE state, arrays of shape (cycles, rows, cols); x/w are the values each PE multiplied.

    active: the PE did a useful MAC (real X and W element, not padding or a bubble).
    x, w:   int8 operands at the PE's multiplier this cycle (ws: x moving, w held; is: x held, w moving;
            os: both moving). psum: int32 partial-sum (ws/is) or accumulator (os) register after the cycle.
    fold:   index of the fold/tile the operation belongs to, -1 for a bubble.
    extra:  dataflow-specific registers and per-cycle flags: ws/is 'bank0', 'bank1' (T, R, C) the two banks
            of the held operand after the cycle (W in ws, X^T in is), 'load' (T,) a held-tile beat shifted in,
            'accept' (T,) a stream beat entered,
            'emit' (T,) a result row left; os 'out' (T, R, C) output shift registers, 'emit' (T,) results out.
    """
    active: np.ndarray
    x: np.ndarray
    w: np.ndarray
    psum: np.ndarray
    fold: np.ndarray
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.active)

    def frame(self, t: int) -> dict:
        """Everything recorded for cycle t, as a dict of arrays (for animators)."""
        f = {k: getattr(self, k)[t] for k in ("active", "x", "w", "psum", "fold")}
        f.update({k: v[t] for k, v in self.extra.items()})
        return f


@dataclass
class DataflowResult:
    """Outcome of a stepped run: Y, cycles, access counts, the observed schedule and an optional trace.

    schedule: ws/is {'load': [cycle each fold's first weight beat entered], 'stream': [... first stream beat]}
    (is: folds of the transposed problem), equal to pf.systolic.ws_schedule; os {'tile': [start cycles]}.
    """
    dataflow: str
    rows: int
    cols: int
    M: int
    K: int
    N: int
    Y: np.ndarray
    cycles: int
    access: dict
    schedule: dict
    trace: Trace | None = None

    @property
    def macs(self) -> int:
        """Useful MACs: M * K * N."""
        return self.M * self.K * self.N

    @property
    def utilization(self) -> float:
        """Useful MACs / (rows * cols * cycles)."""
        return self.macs / (self.rows * self.cols * self.cycles)


class _Recorder:
    """Collects per-cycle arrays (or nothing when tracing is off)."""

    def __init__(self, on: bool):
        self.on, self.data = on, {}

    def add(self, **arrays):
        if self.on:
            for k, v in arrays.items():
                self.data.setdefault(k, []).append(np.array(v, copy=True))

    def stack(self, name, dtype):
        return np.stack(self.data[name]).astype(dtype, copy=False)


def _step_ws(S, T, rows: int, cols: int, record: bool):
    """Step rtl/systolic_array.v register by register for Y = S @ T (S streams, T is held in the banks)."""
    R, C = rows, cols
    M, K = S.shape
    N = T.shape[1]
    plan = systolic.fold_plan(K, N, R, C)
    F = len(plan)
    streams = list(systolic.ws_streams(S, T, R, C))
    wbeats = np.stack([wb for _, wb, _ in streams])          # (F, R, C): beat i of fold f
    xbeats = np.stack([xb for _, _, xb in streams])          # (F, M, R)
    fk = np.array([f.k for f in plan])
    fn = np.array([f.n for f in plan])
    LAT, D = systolic.latency(R, C), systolic.drain(R, C)
    rr, cc = np.arange(R)[:, None], np.arange(C)[None, :]

    # control state (the RTL's only reset state)
    wb = wrow = xb = 0
    full, drn = [False, False], [0, 0]
    vld, lst = [False] * LAT, [False] * LAT
    w_ptr = x_ptr = 0
    # datapath registers
    bank = np.zeros((2, R, C), np.int8)
    a_reg = np.zeros((R, C), np.int8)
    s_reg = np.zeros((R, C), np.int8)
    f_reg = np.full((R, C), -1, np.int32)                    # instrumentation: fold of the travelling beat
    psum = np.zeros((R, C), np.int32)
    skew_a = np.zeros((max(R - 1, 1), R), np.int8)          # stage i of row r's input-skew shift register
    skew_s = np.zeros((max(R - 1, 1), R), np.int8)
    skew_f = np.full((max(R - 1, 1), R), -1, np.int32)
    deskew = np.zeros((max(C - 1, 1), C), np.int32)          # stage i of column c's output de-skew register
    ridx = np.arange(1, R)

    outs, cur = [[] for _ in range(F)], 0
    reads = {"stream": 0, "held": 0, "y_w": 0, "y_r": 0}
    load_start, stream_start = [], []
    rec = _Recorder(record)
    limit = 2 * systolic.ws_cycles(M, K, N, R, C) + 10
    t = last_out = 0
    while cur < F:
        if t > limit:
            raise RuntimeError("ws model deadlocked (this is a bug in pytorch_fpga.dataflow)")
        # ---- combinational: handshakes
        w_valid, x_valid = w_ptr < F * R, x_ptr < F * M
        w_acc = w_valid and not full[wb] and drn[wb] == 0
        x_acc = x_valid and full[xb]
        xf, xm = divmod(x_ptr, M)
        x_end = x_acc and xm == M - 1
        tdata = xbeats[xf, xm] if x_valid else np.zeros(R, np.int8)
        # ---- output port: a de-skewed result row leaves when the valid pipe says so
        emit = vld[LAT - 1]
        if emit:
            row = np.empty(C, np.int32)
            row[:C - 1] = deskew[C - 2 - np.arange(C - 1), np.arange(C - 1)]
            row[C - 1] = psum[R - 1, C - 1]
            f = plan[cur]
            outs[cur].append(row)
            reads["y_w"] += f.n
            reads["y_r"] += f.n if f.k0 > 0 else 0
            last_out = t
            if len(outs[cur]) == M:
                assert lst[LAT - 1], "tlast out of step with the fold"
                cur += 1
        # ---- the PE grid
        a_in = np.empty((R, C), np.int8)
        s_in = np.empty((R, C), np.int8)
        f_in = np.empty((R, C), np.int32)
        a_in[0, 0], s_in[0, 0], f_in[0, 0] = tdata[0], xb, (xf if x_acc else -1)
        if R > 1:
            a_in[1:, 0], s_in[1:, 0], f_in[1:, 0] = skew_a[ridx - 1, ridx], skew_s[ridx - 1, ridx], \
                skew_f[ridx - 1, ridx]
        a_in[:, 1:], s_in[:, 1:], f_in[:, 1:] = a_reg[:, :-1], s_reg[:, :-1], f_reg[:, :-1]
        w_use = np.where(s_in == 1, bank[1], bank[0])
        p_in = np.zeros((R, C), np.int32)
        p_in[1:] = psum[:-1]
        new_psum = p_in + a_in.astype(np.int32) * w_use.astype(np.int32)   # int32 arithmetic wraps
        # ---- clock edge
        if w_acc:
            wf, wi = divmod(w_ptr, R)
            if wi == 0:
                load_start.append(t)
            reads["held"] += fn[wf] if R - 1 - wi < fk[wf] else 0
            bank[wb, 1:] = bank[wb, :-1].copy()
            bank[wb, 0] = wbeats[wf, wi]
            w_ptr += 1
        if R > 1:
            skew_a[1:], skew_s[1:], skew_f[1:] = skew_a[:-1].copy(), skew_s[:-1].copy(), skew_f[:-1].copy()
            skew_a[0], skew_s[0], skew_f[0] = tdata, xb, (xf if x_acc else -1)
        if C > 1:
            deskew[1:] = deskew[:-1].copy()
            deskew[0] = psum[R - 1]
        a_reg, s_reg, f_reg, psum = a_in, s_in, f_in, new_psum
        if x_acc:
            if xm == 0:
                stream_start.append(t)
            reads["stream"] += fk[xf]
            x_ptr += 1
        drn = [max(0, d - 1) for d in drn]
        if w_acc:
            wrow += 1
            if wrow == R:
                wrow, full[wb], wb = 0, True, 1 - wb
        if x_end:
            full[xb], drn[xb], xb = False, D, 1 - xb
        vld, lst = [x_acc] + vld[:-1], [x_end] + lst[:-1]
        # ---- trace
        if record:
            useful = (f_in >= 0) & (rr < fk[np.maximum(f_in, 0)]) & (cc < fn[np.maximum(f_in, 0)])
            rec.add(active=useful, x=a_in, w=w_use, psum=psum, fold=f_in, bank0=bank[0], bank1=bank[1],
                    load=w_acc, accept=x_acc, emit=emit)
        t += 1
    Y = systolic.ws_assemble([np.stack(o) for o in outs], M, K, N, R, C)
    trace = None
    if record:
        trace = Trace(rec.stack("active", bool), rec.stack("x", np.int8), rec.stack("w", np.int8),
                      rec.stack("psum", np.int32), rec.stack("fold", np.int32),
                      {k: rec.stack(k, bool if k in ("load", "accept", "emit") else np.int8)
                       for k in ("bank0", "bank1", "load", "accept", "emit")})
    return Y, last_out + 1, reads, {"load": load_start, "stream": stream_start}, trace


def _step_os(X, W, rows: int, cols: int, record: bool):
    """Step the output-stationary array (see the module docstring for its exact timing)."""
    R, C = rows, cols
    M, K = X.shape
    N = W.shape[1]
    tiles = [(m0, min(R, M - m0), n0, min(C, N - n0)) for n0 in range(0, N, C) for m0 in range(0, M, R)]
    F, P = len(tiles), max(K, R)
    m0s, mts, n0s, nts = (np.array(v) for v in zip(*tiles))
    Xt = np.zeros((F, R, K), np.int8)
    Wt = np.zeros((F, K, C), np.int8)
    for q, (m0, mt, n0, nt) in enumerate(tiles):
        Xt[q, :mt] = X[m0:m0 + mt]
        Wt[q, :, :nt] = W[:, n0:n0 + nt]
    rr, cc = np.arange(R)[:, None], np.arange(C)[None, :]
    ar, ac = np.arange(R), np.arange(C)

    x_reg = np.zeros((R, C), np.int8)
    qx = np.full((R, C), -1, np.int32)
    kx = np.zeros((R, C), np.int32)
    w_reg = np.zeros((R, C), np.int8)
    qw = np.full((R, C), -1, np.int32)
    kw = np.zeros((R, C), np.int32)
    acc = np.zeros((R, C), np.int32)
    out = np.zeros((R, C), np.int32)
    dd = np.full(C, -1)                  # drain step of each column (-1: not draining)
    dq = np.full(C, -1)                  # tile being drained
    Y = np.zeros((M, N), np.int32)
    reads = {"x": 0, "w": 0, "y_w": 0}
    rec = _Recorder(record)
    drained, t = 0, 0
    limit = os_cycles(M, K, N, R, C) + 10
    while drained < F * C:
        if t > limit:
            raise RuntimeError("os model did not finish (this is a bug in pytorch_fpga.dataflow)")
        # ---- edge feeders (the skew): row r gets X[m0+r, t - s_q - r], column c gets W[t - s_q - c, n0+c]
        tr = t - ar
        q_r, k_r = tr // P, tr % P
        ok_r = (tr >= 0) & (q_r < F) & (k_r < K)
        qe_r = np.where(ok_r, q_r, -1)
        xe = np.where(ok_r, Xt[np.clip(q_r, 0, F - 1), ar, np.minimum(k_r, K - 1)], 0)
        reads["x"] += int(np.sum(ok_r & (ar < mts[np.clip(q_r, 0, F - 1)])))
        tc = t - ac
        q_c, k_c = tc // P, tc % P
        ok_c = (tc >= 0) & (q_c < F) & (k_c < K)
        qe_c = np.where(ok_c, q_c, -1)
        we = np.where(ok_c, Wt[np.clip(q_c, 0, F - 1), np.minimum(k_c, K - 1), ac], 0)
        reads["w"] += int(np.sum(ok_c & (ac < nts[np.clip(q_c, 0, F - 1)])))
        # ---- PE inputs: from the west / north neighbour's registers
        x_in = np.empty((R, C), np.int8)
        q_in = np.empty((R, C), np.int32)
        k_in = np.empty((R, C), np.int32)
        x_in[:, 0], q_in[:, 0], k_in[:, 0] = xe, qe_r, k_r
        x_in[:, 1:], q_in[:, 1:], k_in[:, 1:] = x_reg[:, :-1], qx[:, :-1], kx[:, :-1]
        w_in = np.empty((R, C), np.int8)
        qw_in = np.empty((R, C), np.int32)
        kw_in = np.empty((R, C), np.int32)
        w_in[0], qw_in[0], kw_in[0] = we, qe_c, k_c
        w_in[1:], qw_in[1:], kw_in[1:] = w_reg[:-1], qw[:-1], kw[:-1]
        valid = q_in >= 0
        if not (np.array_equal(valid, qw_in >= 0) and np.array_equal(q_in[valid], qw_in[valid])
                and np.array_equal(k_in[valid], kw_in[valid])):
            raise RuntimeError("os model: X and W wavefronts out of step (bug in pytorch_fpga.dataflow)")
        prod = x_in.astype(np.int32) * w_in.astype(np.int32)
        acc_new = np.where(valid, np.where(k_in == 0, 0, acc) + prod, acc).astype(np.int32)
        cap = valid & (k_in == K - 1)
        # ---- output port: draining columns emit their bottom output register
        cols_d = np.nonzero(dd >= 0)[0]
        n_emit = 0
        if cols_d.size:
            qd, row = dq[cols_d], R - 1 - dd[cols_d]
            real = (row < mts[qd]) & (cols_d < nts[qd])
            Y[m0s[qd][real] + row[real], n0s[qd][real] + cols_d[real]] = out[R - 1, cols_d[real]]
            n_emit = int(real.sum())
            reads["y_w"] += n_emit
        # ---- clock edge: drain shift, captures, registers
        shift = (dd[None, :] >= 0) & (rr > dd[None, :])
        if (shift & cap).any():
            raise RuntimeError("os model: a result capture collides with the drain (bug in pytorch_fpga.dataflow)")
        shifted = np.empty_like(out)
        shifted[0], shifted[1:] = out[0], out[:-1]
        out = np.where(cap, acc_new, np.where(shift, shifted, out))
        dd = np.where(dd >= 0, dd + 1, dd)
        done = dd == R
        drained += int(done.sum())
        dd[done] = -1
        start = cap[R - 1]
        if (start & (dd >= 0)).any():
            raise RuntimeError("os model: a column starts draining twice (bug in pytorch_fpga.dataflow)")
        dd[start], dq[start] = 0, q_in[R - 1, start]
        x_reg, qx, kx, w_reg, qw, kw, acc = x_in, q_in, k_in, w_in, qw_in, kw_in, acc_new
        if record:
            qs = np.maximum(q_in, 0)
            useful = valid & (rr < mts[qs]) & (cc < nts[qs])
            rec.add(active=useful, x=x_in, w=w_in, psum=acc, fold=q_in, out=out, emit=n_emit)
        t += 1
    trace = None
    if record:
        trace = Trace(rec.stack("active", bool), rec.stack("x", np.int8), rec.stack("w", np.int8),
                      rec.stack("psum", np.int32), rec.stack("fold", np.int32),
                      {"out": rec.stack("out", np.int32), "emit": rec.stack("emit", np.int32)})
    return Y, t, reads, {"tile": [q * P for q in range(F)]}, trace


def _operands(X, W):
    X, W = check_int8("X", X), check_int8("W", W)
    if X.ndim != 2 or W.ndim != 2 or X.shape[1] != W.shape[0]:
        raise ValueError(f"need X (M x K) and W (K x N) with matching K; got {X.shape} and {W.shape}")
    if min(X.shape) < 1 or W.shape[1] < 1:
        raise ValueError(f"M, K and N must be >= 1; got X {X.shape}, W {W.shape}")
    return X, W


def simulate(X, W, rows: int, cols: int, dataflow: str = "ws", trace: bool = True,
             mem: MemConfig | None = None) -> DataflowResult:
    """Step Y = X @ W (int8 -> int32) cycle by cycle on a rows x cols array in the given dataflow."""
    df = _check_dataflow(dataflow)
    X, W = _operands(X, W)
    _check_dims(X.shape[0], X.shape[1], W.shape[1], rows, cols)
    M, K = X.shape
    N = W.shape[1]
    mem = mem or MemConfig()
    if df == "ws":
        Y, cyc, r, sched, tr = _step_ws(X, W, rows, cols, trace)
        access = _accesses(M, K, N, r["stream"], r["held"], r["y_w"], r["y_r"], mem)
    elif df == "is":
        Yt, cyc, r, sched, tr = _step_ws(np.ascontiguousarray(W.T), np.ascontiguousarray(X.T), rows, cols, trace)
        Y = np.ascontiguousarray(Yt.T)
        access = _accesses(M, K, N, r["held"], r["stream"], r["y_w"], r["y_r"], mem)
        if tr is not None:                   # the held operand is X: swap so x/w keep their meaning
            tr.x, tr.w = tr.w, tr.x
    else:
        Y, cyc, r, sched, tr = _step_os(X, W, rows, cols, trace)
        access = _accesses(M, K, N, r["x"], r["w"], r["y_w"], 0, mem)
    return DataflowResult(df, rows, cols, M, K, N, wrap_int32(Y), int(cyc), access, sched, tr)
