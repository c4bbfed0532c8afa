"""The job space of an accelerator build: random job shapes biased to its limits, and the corners each one hits."""
from __future__ import annotations

import math
from dataclasses import dataclass

from pytorch_fpga.contract import accel

# Corners of the job space (coverage bins): a soak or a testbench should hit every one.
BINS = {
    "m_tile=1": "X tiles of one row",
    "m_tile=max": "X tiles as large as the accumulator bank and one X bank allow",
    "last_tile=1": "several tiles, the last one a single row",
    "one_tile": "the whole of M in one tile",
    "many_tiles": "four tiles or more",
    "fk=1": "one k-fold (K <= rows)",
    "K%rows!=0": "K not a multiple of the array's rows (zero-padded fold)",
    "x_bank_full": "m_tile x k-folds fills an X bank exactly",
    "K=max": "the longest reduction the build takes",
    "fk>=23": "a long reduction (23 folds or more, where a one-row tile once read a stale accumulator)",
    "w_buffer_full": "W fills the W buffer exactly (k-folds x n-folds x rows = W_DEPTH)",
    "N=n_max": "as many output channels as a job can take",
    "N%cols!=0": "N not a multiple of the array's columns",
    "fn=1": "one n-fold",
    "relu": "ReLU fused",
    "out_int32": "int32 accumulators out instead of int8",
}


@dataclass(frozen=True)
class Shape:
    """A job's dimensions and flags."""
    M: int
    K: int
    N: int
    m_tile: int
    relu: bool = False
    out_int32: bool = False


def limits(cfg) -> dict:
    """The build's limits: the most k-folds, and for a k-fold count the most n-folds and rows per tile."""
    cfg = accel.config(cfg)
    return {"fk_max": min(cfg.x_depth, cfg.w_depth // cfg.rows), "fn_max": cfg.n_max // cfg.cols}


def _pick(rng, edges: list[int], lo: int, hi: int, p_edge: float = 0.5) -> int:
    """An edge value (clipped to [lo, hi]) with probability p_edge, else uniform in [lo, hi]."""
    if rng.random() < p_edge:
        return int(min(hi, max(lo, edges[int(rng.integers(len(edges)))])))
    return int(rng.integers(lo, hi + 1))


def sample(rng, cfg="sim8", max_tiles: int = 5, max_macs: int | None = None) -> Shape:
    """A random job shape that fits `cfg`, with its dimensions biased to the build's limits (see BINS)."""
    cfg = accel.config(cfg)
    R, C = cfg.rows, cfg.cols
    while True:
        lim = limits(cfg)
        fk = _pick(rng, [1, 2, 23, lim["fk_max"] - 1, lim["fk_max"], cfg.x_depth // cfg.acc_depth], 1, lim["fk_max"])
        K = fk * R - (int(rng.integers(R)) if rng.random() < 0.5 else 0)
        fn_hi = min(lim["fn_max"], cfg.w_depth // (fk * R))
        fn = _pick(rng, [1, fn_hi], 1, fn_hi)
        N = fn * C - (int(rng.integers(C)) if rng.random() < 0.5 else 0)
        mt_hi = min(cfg.acc_depth, cfg.x_depth // fk)
        m_tile = _pick(rng, [1, 2, mt_hi - 1, mt_hi], 1, mt_hi)
        tiles = _pick(rng, [1, 2, max_tiles], 1, max_tiles)
        last = _pick(rng, [1, m_tile], 1, m_tile) if tiles > 1 else int(rng.integers(1, m_tile + 1))
        M = (tiles - 1) * m_tile + last if tiles > 1 else m_tile if rng.random() < 0.5 else last
        if max_macs is None or M * K * N <= max_macs:
            accel.check_job(M, K, N, m_tile, cfg)
            return Shape(M, K, N, m_tile, bool(rng.random() < 0.5), bool(rng.random() < 0.3))


def bins(shape: Shape, cfg="sim8") -> set[str]:
    """The corners (BINS) a job shape hits on `cfg`."""
    cfg = accel.config(cfg)
    s, R, C = shape, cfg.rows, cfg.cols
    fk, fn = math.ceil(s.K / R), math.ceil(s.N / C)
    tiles = math.ceil(s.M / s.m_tile)
    hit = {
        "m_tile=1": s.m_tile == 1,
        "m_tile=max": s.m_tile == min(cfg.acc_depth, cfg.x_depth // fk),
        "last_tile=1": tiles > 1 and s.M - (tiles - 1) * s.m_tile == 1,
        "one_tile": tiles == 1,
        "many_tiles": tiles >= 4,
        "fk=1": fk == 1,
        "K%rows!=0": s.K % R != 0,
        "x_bank_full": s.m_tile * fk == cfg.x_depth,
        "K=max": fk == limits(cfg)["fk_max"],
        "fk>=23": fk >= 23,
        "w_buffer_full": fk * fn * R == cfg.w_depth,
        "N=n_max": fn * C == cfg.n_max,
        "N%cols!=0": s.N % C != 0,
        "fn=1": fn == 1,
        "relu": s.relu,
        "out_int32": s.out_int32,
    }
    return {k for k, v in hit.items() if v}


def coverage(shapes, cfg="sim8") -> dict[str, int]:
    """How many of `shapes` hit each bin (every bin listed, zero when missed)."""
    count = dict.fromkeys(BINS, 0)
    for s in shapes:
        for b in bins(s, cfg):
            count[b] += 1
    return count


def job(rng, shape: Shape, cfg="sim8") -> accel.Job:
    """A packed random job of this shape (operands with extremes; golden output: accel.job_golden)."""
    return accel.random_job(rng, shape.M, shape.K, shape.N, cfg=cfg, m_tile=shape.m_tile, relu=shape.relu,
                            out_int32=shape.out_int32)
