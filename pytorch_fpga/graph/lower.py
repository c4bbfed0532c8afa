"""Lower an int8 graph to a plan for one batch size: steps over NHWC tensors, with every accelerator job packed.

A 3x3 depthwise conv2d the depthwise unit takes (pf.contract.dwunit.choose: the build has one, it fits, and the
cycle model prefers it) becomes depthwise-unit jobs: the NHWC map streams once, as it is, and the outputs come
back NHWC. A conv2d the window engine takes (pf.contract.window.choose: supported, and not slower by the cycle
model) becomes window jobs: the NHWC map streams as it is, whole input rows per tile, and the accelerator forms
the windows. Otherwise a conv2d (or linear, a 1x1 conv on an (N, 1, 1, F) map) becomes GEMM jobs,
Y (N*Ho*Wo x Co) = X (M x K) @ W (K x Co), K in (kh, kw, c) order so that a window's rows of channels are
contiguous in an NHWC map. Groups are packed side by side with block-diagonal weights; output channels are split
into several jobs when W does not fit the weight buffer. The weights, biases and requantization are packed into each
job's stream here, once; running the plan only writes the X tiles into the streams (pytorch_fpga.runtime.program).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from pytorch_fpga.contract import accel, dwunit, stream_codec, window
from pytorch_fpga.core import quant
from pytorch_fpga.graph.ir import Graph, Node


@dataclass
class JobPlan:
    """One accelerator job of a layer: its packed stream (X tiles still zero) and what it reads and writes."""
    job: accel.Job
    c0: int                     # input channels [c0, c1) of the layer's input map that its K covers
    c1: int
    o0: int                     # output channels [o0, o0 + job.N) of the layer it produces
    regions: list               # stream_codec.x_regions(job): (byte offset, first row, rows) per X tile;
                                # window jobs: (byte offset, image, first input row, input rows)


@dataclass
class Step:
    """One node's work: kind 'accel' (jobs), or a host kernel ('quantize', 'add', 'maxpool', ...)."""
    node: str
    kind: str
    src: list                   # tensor names it reads
    dst: str                    # tensor it writes
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    jobs: list = field(default_factory=list)


@dataclass
class Plan:
    """The steps of a graph for one batch size, and every tensor's NHWC (or (N, F)) shape, dtype and scale."""
    graph: Graph
    batch: int
    cfg: accel.AccelConfig
    steps: list
    tensors: dict               # name -> (shape, dtype)
    aliases: dict               # name -> (base tensor, channel offset) for outputs written into a cat's buffer

    @property
    def jobs(self) -> list:
        return [j for s in self.steps for j in s.jobs]


def nhwc(shape, batch: int) -> tuple:
    """A tensor's shape in the plan: (N, H, W, C) for feature maps, (N, F) for vectors."""
    return (batch, shape[2], shape[3], shape[1]) if len(shape) == 4 else (batch, *shape[1:])


ALIGN_SLACK = 1.03     # take tiles of whole output rows when they cost at most 3% more cycles than the best tile


@functools.lru_cache(maxsize=4096)
def _m_tile(M: int, K: int, N: int, out_int32: bool, cfg: accel.AccelConfig, Nb: int, Ho: int, Wo: int) -> int:
    """The X tile height: pf.accel.choose_m_tile's, or a nearly as fast one of whole output rows (q rows of Wo
    inside one image, or whole images), which the program fills straight from the feature map."""
    best = accel.choose_m_tile(M, K, cfg, N, out_int32)
    hi = accel.max_m_tile(M, K, cfg)
    cands = {q * Wo for q in range(1, Ho + 1) if q * Wo <= hi and (Nb == 1 or Ho % q == 0)}
    cands |= {k * Ho * Wo for k in range(1, Nb + 1) if k * Ho * Wo <= hi}
    if not cands or best in cands:
        return best

    def cycles(t):
        return accel.cycle_model(accel.Job(M, K, N, t, False, out_int32, cfg, _EMPTY))["cycles"]
    aligned = min(sorted(cands, reverse=True), key=cycles)
    return aligned if cycles(aligned) <= ALIGN_SLACK * cycles(best) else best


_EMPTY = np.zeros(0, np.uint8)


def geometry(n: Node, in_shape: tuple) -> dict:
    """A conv2d's (or linear's) input and output sizes in the plan's terms."""
    if n.op == "linear":
        Nb, F = in_shape
        return dict(N=Nb, H=1, W=1, C=F, kh=1, kw=1, stride=(1, 1), dilation=(1, 1), pads=(0, 0, 0, 0), Ho=1,
                    Wo=1, groups=1)
    Nb, H, W, C = in_shape
    Co, Cg, kh, kw = n.params["w_int8"].shape
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = n.attrs["stride"], n.attrs["dilation"], n.attrs["padding"]
    Ho = (H + pt + pb - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + pl + pr - dw * (kw - 1) - 1) // sw + 1
    return dict(N=Nb, H=H, W=W, C=C, kh=kh, kw=kw, stride=(sh, sw), dilation=(dh, dw), pads=(pt, pb, pl, pr),
                Ho=Ho, Wo=Wo, groups=n.attrs.get("groups", 1))


def window_of(n: Node, geo: dict) -> window.Window | None:
    """The conv's window-mode geometry (None: padding, strides or groups the engine cannot express)."""
    if n.op != "conv2d" or geo["stride"][0] != geo["stride"][1] or geo["dilation"][0] != geo["dilation"][1]:
        return None
    Co, Cg = n.params["w_int8"].shape[:2]
    G = geo["groups"]
    depthwise = G > 1 and G == geo["C"] == Co and Cg == 1
    if G != 1 and not depthwise:
        return None
    return window.Window(geo["N"], geo["H"], geo["W"], geo["C"], geo["kh"], geo["kw"], geo["stride"][0],
                         geo["dilation"][0], tuple(geo["pads"]), depthwise)


def window_jobs(n: Node, win: window.Window, cfg: accel.AccelConfig, dw: bool = False) -> list[JobPlan]:
    """The packed window-mode jobs of a conv2d (dw: depthwise-unit jobs; X still zero); output channels split by the
    W buffer (depthwise: channels split with their inputs; dw: by dwunit.chunks)."""
    w = n.params["w_int8"]
    Wt = window.conv_weights(w, win)
    bias, m, shift = n.params["bias_int32"], n.params["m"], n.params["shift"]
    relu, out_int32 = bool(n.attrs.get("relu")), bool(n.attrs.get("out_int32"))
    plans, mod = [], dwunit if dw else window
    pack = dwunit.pack_dw_job if dw else window.pack_window_job
    for o, wj in dwunit.chunks(win, cfg) if dw else window.chunks(win, w.shape[0], cfg):
        X0 = np.zeros((wj.N, wj.H, wj.W, wj.C), np.int8)
        job = pack(X0, Wt[..., o], bias[o], m[o], shift[o], relu, out_int32, cfg, win=wj)
        job.operands = {}                                                         # the stream is the truth
        c0, c1 = (o.start, o.stop) if win.depthwise else (0, win.C)
        plans.append(JobPlan(job, c0, c1, o.start, mod.x_regions(job)))
    return plans


def layer_jobs(n: Node, geo: dict, cfg: accel.AccelConfig) -> list[JobPlan]:
    """The packed jobs of a conv2d/linear node for the geometry `geo`: the depthwise unit or window mode when
    chosen, else GEMM jobs."""
    win = window_of(n, geo)
    Co, out_int32 = n.params["w_int8"].shape[0], bool(n.attrs.get("out_int32"))
    if win is not None and dwunit.choose(win, Co, cfg, out_int32):
        return window_jobs(n, win, cfg, dw=True)
    if win is not None and window.choose(win, Co, cfg, out_int32):
        return window_jobs(n, win, cfg)
    w = n.params["w_int8"]
    W4 = w.reshape(w.shape[0], -1, 1, 1) if w.ndim == 2 else w                  # (Co, Cg, kh, kw)
    Co, Cg, kh, kw = W4.shape
    G = geo["groups"]
    Og = Co // G
    M = geo["N"] * geo["Ho"] * geo["Wo"]
    pack = max(1, cfg.cols // Og) if G > 1 and Og < cfg.cols else 1
    bias, m, shift = n.params["bias_int32"], n.params["m"], n.params["shift"]
    relu, out_int32 = bool(n.attrs.get("relu")), bool(n.attrs.get("out_int32"))
    plans = []
    for g0 in range(0, G, pack):
        g1 = min(G, g0 + pack)
        c0, c1, cw = g0 * Cg, g1 * Cg, (g1 - g0) * Cg
        Wj = np.zeros((kh, kw, cw, (g1 - g0) * Og), np.int8)                    # block-diagonal over groups
        for i, g in enumerate(range(g0, g1)):
            Wj[:, :, i * Cg:(i + 1) * Cg, i * Og:(i + 1) * Og] = W4[g * Og:(g + 1) * Og].transpose(2, 3, 1, 0)
        Wj = Wj.reshape(kh * kw * cw, -1)
        K, step = Wj.shape[0], accel.n_chunk(Wj.shape[0], cfg)
        for a in range(0, Wj.shape[1], step):
            b = min(Wj.shape[1], a + step)
            o = slice(g0 * Og + a, g0 * Og + b)
            job = accel.pack_job(np.zeros((M, K), np.int8), Wj[:, a:b], bias[o], m[o], shift[o], relu, out_int32,
                                 cfg, m_tile=_m_tile(M, K, b - a, out_int32, cfg, geo["N"], geo["Ho"], geo["Wo"]))
            job.operands = {}                                                     # the stream is the truth
            plans.append(JobPlan(job, c0, c1, o.start, stream_codec.x_regions(job)))
    return plans


def _window_counts(geo: dict, include_pad: bool) -> np.ndarray:
    """How many input positions each avgpool window averages: (Ho, Wo)."""
    (sh, sw), (pt, pb, pl, pr), kh, kw = geo["stride"], geo["pads"], geo["kh"], geo["kw"]
    H, W = (geo["H"] + pt + pb, geo["W"] + pl + pr) if include_pad else (geo["H"], geo["W"])
    oy, ox = (0, 0) if include_pad else (pt, pl)
    ys = np.arange(geo["Ho"]) * sh - oy
    xs = np.arange(geo["Wo"]) * sw - ox
    cy = np.minimum(ys + kh, H) - np.maximum(ys, 0)
    cx = np.minimum(xs + kw, W) - np.maximum(xs, 0)
    return np.outer(cy, cx)


def pool_geometry(n: Node, in_shape: tuple) -> dict:
    """maxpool/avgpool sizes, with ceil_mode's extra bottom/right padding made explicit."""
    Nb, H, W, C = in_shape
    kh, kw = n.attrs["kernel"]
    sh, sw = n.attrs.get("stride") or (kh, kw)
    dh, dw = n.attrs.get("dilation", (1, 1))
    pt, pb, pl, pr = n.attrs.get("padding", (0, 0, 0, 0))
    out = []
    for size, k, s, d, lo, hi in ((H, kh, sh, dh, pt, pb), (W, kw, sw, dw, pl, pr)):
        span = size + lo + hi - d * (k - 1) - 1
        o = (-(-span // s) if n.attrs.get("ceil_mode") else span // s) + 1
        if n.attrs.get("ceil_mode") and (o - 1) * s >= size + lo:              # torch: no window starts in padding
            o -= 1
        out.append(o)
    Ho, Wo = out
    pb2 = max(pb, (Ho - 1) * sh + dh * (kh - 1) + 1 - H - pt)
    pr2 = max(pr, (Wo - 1) * sw + dw * (kw - 1) + 1 - W - pl)
    return dict(N=Nb, H=H, W=W, C=C, kh=kh, kw=kw, stride=(sh, sw), dilation=(dh, dw), pads=(pt, pb2, pl, pr2),
                Ho=Ho, Wo=Wo, torch_pads=(pt, pb, pl, pr))


def lower(g: Graph, batch: int, cfg="z1") -> Plan:
    """The plan of the int8 graph g for inputs of `batch` images."""
    cfg = accel.config(cfg)
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    tensors, steps, aliases = {}, [], {}
    for n in g.nodes:
        if n.op == "output":
            continue
        shape = nhwc(n.shape, batch)
        src = [tensors[i][0] for i in n.inputs]
        attrs, params, kind, jobs = {}, {}, n.op, []
        if n.op == "input":
            kind, attrs = "quantize", {"scale": n.scale}
        elif n.op in ("conv2d", "linear"):
            geo = geometry(n, src[0])
            shape = (batch, geo["Ho"], geo["Wo"], n.params["w_int8"].shape[0]) if n.op == "conv2d" else shape
            attrs = dict(geo, relu=n.attrs["relu"], out_int32=n.attrs["out_int32"])
            if n.placement == "accelerator":
                kind, jobs = "accel", layer_jobs(n, geo, cfg)
            else:
                kind, params = "host_layer", {k: n.params[k] for k in ("w_int8", "bias_int32", "m", "shift")}
        elif n.op in ("add", "cat"):
            attrs, params = {"S": n.attrs["S"], "relu": n.attrs.get("act") is not None}, {"mult": n.params["mult"]}
        elif n.op in ("maxpool", "avgpool"):
            geo = pool_geometry(n, src[0])
            shape = (batch, geo["Ho"], geo["Wo"], geo["C"])
            attrs = dict(geo)
            if n.op == "avgpool":
                counts = _window_counts(geo, n.attrs.get("count_include_pad", True))
                params["m"], params["shift"] = quant.quantize_multiplier(n.attrs["ratio"] / counts)
        elif n.op == "global_avgpool":
            params["m"], params["shift"] = quant.quantize_multiplier(
                n.attrs["ratio"] / (src[0][1] * src[0][2]))
        elif n.op == "clamp":
            attrs = {"lo": n.attrs["qlo"], "hi": n.attrs["qhi"]}
        elif n.op == "flatten":
            attrs = {"order": n.attrs.get("order", "nchw"), "in_shape": src[0]}
        elif n.op == "host_op":
            attrs = {"fn": n.attrs["fn"], "scale": n.scale, "in_scales": [g[i].scale for i in n.inputs],
                     "out_nchw": n.shape}
        tensors[n.name] = (shape, "int32" if n.dtype == "int32" else "int8")
        steps.append(Step(n.name, kind, list(n.inputs), n.name, attrs, params, jobs))
    for s in steps:                                 # accelerator outputs read only by a cat go straight into it
        if s.kind == "cat":
            off = 0
            for i in s.src:
                prod = next(p for p in steps if p.dst == i)
                if prod.kind == "accel" and len(g.users(i)) == 1 and g[i].scale == g[s.dst].scale \
                        and i not in aliases:
                    aliases[i] = (s.dst, off)
                off += tensors[i][0][-1]
    return Plan(g, batch, cfg, steps, tensors, aliases)


def summary(plan: Plan) -> str:
    """The plan's accelerator jobs, one row each: layer, M x K x N, tiles, stream bytes."""
    rows = [f"{'layer':28s} {'job':>5s} {'M':>6s} {'K':>6s} {'N':>5s} {'m_tile':>6s} {'tiles':>5s} "
            f"{'stream B':>10s} {'out B':>8s}"]
    for s in plan.steps:
        for i, j in enumerate(s.jobs):
            rows.append(f"{s.node[:28]:28s} {i:5d} {j.job.M:6d} {j.job.K:6d} {j.job.N:5d} {j.job.m_tile:6d} "
                        f"{math.ceil(j.job.M / j.job.m_tile):5d} {j.job.stream.size:10,d} {j.job.out_bytes:8,d}")
    return "\n".join(rows)
