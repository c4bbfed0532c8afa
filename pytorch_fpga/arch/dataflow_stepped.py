"""Stepped ws/os/is array models: Y = X @ W cycle by cycle, with per-cycle PE traces (ArrayTrace).

ws steps rtl/systolic_array.v register by register; is runs it on the transposed problem; os follows the timing
in pf.dataflow's docstring. simulate() also counts buffer and DRAM accesses with pf.dataflow's DRAM rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pytorch_fpga.arch import systolic
from pytorch_fpga.arch.dataflow_counts import MemConfig, _accesses, _check_dataflow, _check_dims, os_cycles
from pytorch_fpga.core.gemm import check_int8, wrap_int32


# --- stepped simulation ---------------------------------------------------------------------------------------
@dataclass
class ArrayTrace:
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
    trace: ArrayTrace | None = None

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
            raise RuntimeError("ws model deadlocked (this is a bug in pytorch_fpga.arch.dataflow_stepped)")
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
        trace = ArrayTrace(rec.stack("active", bool), rec.stack("x", np.int8), rec.stack("w", np.int8),
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
    m0s, mts, n0s, nts = (np.array(v) for v in zip(*tiles, strict=True))
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
            raise RuntimeError("os model did not finish (this is a bug in pytorch_fpga.arch.dataflow_stepped)")
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
            raise RuntimeError("os model: X and W wavefronts out of step (bug in pytorch_fpga.arch.dataflow_stepped)")
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
            raise RuntimeError("os model: a result capture collides with the drain "
                               "(bug in pytorch_fpga.arch.dataflow_stepped)")
        shifted = np.empty_like(out)
        shifted[0], shifted[1:] = out[0], out[:-1]
        out = np.where(cap, acc_new, np.where(shift, shifted, out))
        dd = np.where(dd >= 0, dd + 1, dd)
        done = dd == R
        drained += int(done.sum())
        dd[done] = -1
        start = cap[R - 1]
        if (start & (dd >= 0)).any():
            raise RuntimeError("os model: a column starts draining twice (bug in pytorch_fpga.arch.dataflow_stepped)")
        dd[start], dq[start] = 0, q_in[R - 1, start]
        x_reg, qx, kx, w_reg, qw, kw, acc = x_in, q_in, k_in, w_in, qw_in, kw_in, acc_new
        if record:
            qs = np.maximum(q_in, 0)
            useful = valid & (rr < mts[qs]) & (cc < nts[qs])
            rec.add(active=useful, x=x_in, w=w_in, psum=acc, fold=q_in, out=out, emit=n_emit)
        t += 1
    trace = None
    if record:
        trace = ArrayTrace(rec.stack("active", bool), rec.stack("x", np.int8), rec.stack("w", np.int8),
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


def timeline(result: DataflowResult) -> str:
    """A traced run as one character per cycle: operand beats in, results out, useful MACs (9 = nine or more)."""
    tr = result.trace
    if tr is None:
        raise ValueError("the result has no trace: run simulate(..., trace=True)")
    ex = tr.extra

    def marks(flags, ch):
        return "".join(ch if v else "." for v in flags)

    if result.dataflow == "os":
        entering = (tr.fold[:, :, 0] >= 0).any(axis=1) | (tr.fold[:, 0, :] >= 0).any(axis=1)
        rows = [("x, w beat in", marks(entering, "x")),
                ("results out", "".join(str(min(int(n), 9)) if n else "." for n in ex["emit"]))]
    else:
        held, stream, out = ("weight", "x", "row") if result.dataflow == "ws" else ("x", "w", "col")
        rows = [(f"{held} beat in", marks(ex["load"], "L")), (f"{stream} beat in", marks(ex["accept"], stream)),
                (f"result {out} out", marks(ex["emit"], "Y"))]
    rows = [("cycle (mod 10)", "".join(str(t % 10) for t in range(len(tr))))] + rows
    rows.append(("useful MACs", "".join(str(min(int(a.sum()), 9)) if a.any() else "." for a in tr.active)))
    return "\n".join(f"{name:>15s}  {s}" for name, s in rows)
