"""A compiled program for one batch size: buffers allocated once, jobs replayed (numpy + a backend; no torch).

An inference quantizes the input into its NHWC buffer, and then, step by step, writes each accelerator job's X
tiles into its pre-packed stream (a DMA buffer on a board), runs the job in place, and reads its output into the
layer's NHWC buffer; host steps run the int8 kernels of pytorch_fpga.runtime.kernels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pytorch_fpga.contract import accel
from pytorch_fpga.graph.lower import Plan
from pytorch_fpga.runtime import kernels


@dataclass
class StepTime:
    """What one step cost in the last run: accelerator cycles (from the backend), host and backend seconds."""
    node: str
    kind: str
    jobs: int
    cycles: int
    host_s: float               # measured here: the step's time outside the backend's job execution
    backend_s: float            # measured here: inside backend.run_into (a simulator's time off-board)


class Program:
    """One plan on one backend: run(X) for X of the plan's batch size."""

    def __init__(self, plan: Plan, backend):
        self.plan, self.backend, self.cfg = plan, backend, plan.cfg
        if backend.cfg != plan.cfg:
            raise ValueError(f"backend runs config '{backend.cfg.name}', the plan was lowered for '{plan.cfg.name}'")
        self.t = {}
        for name, (shape, dtype) in plan.tensors.items():
            if name not in plan.aliases:
                self.t[name] = np.zeros(shape, dtype)
        for name, (base, off) in plan.aliases.items():
            C = plan.tensors[name][0][-1]
            self.t[name] = self.t[base][..., off:off + C]
        self.work = {}
        for s in plan.steps:
            if s.kind in ("accel", "host_layer"):
                self.work[s.node] = self._layer_buffers(s)
            elif s.kind == "flatten" and s.attrs["order"] == "nhwc":
                self.t[s.dst] = self.t[s.src[0]].reshape(self.t[s.dst].shape)      # a view: no copy
        for s in plan.steps:                              # host kernels with their buffers and views, once
            self.work.setdefault(s.node, self._host_kernel(s))
        self.times: list[StepTime] = []

    def _layer_buffers(self, s) -> dict:
        """The layer's buffers (padded input, im2col matrices, the jobs' in-place streams and outputs) and every
        copy an inference replays, as precomputed (dst, src) view pairs."""
        geo, R = s.attrs, self.cfg.rows
        x = self.t[s.src[0]]
        x4 = x.reshape(x.shape[0], 1, 1, -1) if x.ndim == 2 else x
        pt, pb, pl, pr = geo["pads"]
        windowed = bool(s.jobs) and all(jp.job.window is not None for jp in s.jobs)   # the engine pads
        xp = np.zeros((x4.shape[0], x4.shape[1] + pt + pb, x4.shape[2] + pl + pr, x4.shape[3]), np.int8) \
            if any(geo["pads"]) and not windowed else None
        pre = [(xp[:, pt:pt + x4.shape[1], pl:pl + x4.shape[2]], x4)] if xp is not None else []
        src = xp if xp is not None else x4
        M = geo["N"] * geo["Ho"] * geo["Wo"]
        dst = self.t[s.dst]
        dst2 = dst.reshape(-1, dst.shape[-1]) if dst.flags.c_contiguous or dst.ndim == 2 else _rows(dst)
        cols, jobs, first = {}, [], {}
        if s.kind == "host_layer":
            cols[(0, geo["C"])] = np.zeros((M, geo["kh"] * geo["kw"] * geo["C"]), np.int8)
            pre += kernels.im2col_copies(src, geo, 0, geo["C"], cols[(0, geo["C"])])
        for jp in s.jobs:
            stream = self.backend.allocate(jp.job.stream.size)
            stream[:] = jp.job.stream
            job = accel.Job(jp.job.M, jp.job.K, jp.job.N, jp.job.m_tile, jp.job.relu, jp.job.out_int32, self.cfg,
                            stream, window=jp.job.window, out_nhwc=jp.job.out_nhwc, dw_unit=jp.job.dw_unit)
            if job.window is not None:                # whole input rows of the NHWC map, channels [c0, c1)
                width = job.N if job.dw_unit else job.window.cb(self.cfg) * R      # bytes per pixel in the stream
                xs = kernels.x_row_copies(x4, stream, jp.regions, jp.c0, jp.c1, width)
                out = self.backend.allocate(jp.job.out_bytes)
                jobs.append((job, out, xs, kernels.output_copies(out, job, dst2[:, jp.o0:jp.o0 + job.N])))
                continue
            groups = kernels.tile_groups(job)
            key = (jp.c0, jp.c1, job.m_tile)
            if key in first:                          # same X as an earlier job of the layer: copy its tiles
                g0, s0 = first[key]
                xs = [(stream[o:o + n * job.fk * r * R], s0[o0:o0 + n * job.fk * r * R])
                      for (o, _, n, r), (o0, _, _, _) in zip(groups, g0, strict=True)]
            elif _direct_ok(geo, groups, jp, R):
                win = kernels.windows(kernels.rows_view(src, R), geo, jp.c0 // R, jp.c1 // R)
                xs = kernels.x_window_copies(win, stream, groups, R)
            else:
                if (jp.c0, jp.c1) not in cols:
                    Kp = -(-geo["kh"] * geo["kw"] * (jp.c1 - jp.c0) // R) * R
                    cols[(jp.c0, jp.c1)] = np.zeros((M, Kp), np.int8)
                    pre += kernels.im2col_copies(src, geo, jp.c0, jp.c1, cols[(jp.c0, jp.c1)])
                xs = kernels.x_tile_copies(cols[(jp.c0, jp.c1)], stream, groups, job.fk, R)
            first.setdefault(key, (groups, stream))
            out = self.backend.allocate(jp.job.out_bytes)
            jobs.append((job, out, xs, kernels.output_copies(out, job, dst2[:, jp.o0:jp.o0 + job.N])))
        return {"pre": pre, "jobs": jobs, "cols": cols, "dst2": dst2}

    def _layer(self, s) -> tuple[int, float]:
        w = self.work[s.node]
        kernels.run_copies(w["pre"])
        if s.kind == "host_layer":
            w["dst2"][...] = kernels.host_layer(w["cols"][(0, s.attrs["C"])], s.params, s.attrs["relu"],
                                                s.attrs["out_int32"], 0, w["dst2"].shape[-1])
            return 0, 0.0
        cycles, t_backend = 0, 0.0
        for job, out, xs, outs in w["jobs"]:
            kernels.run_copies(xs)
            t0 = time.perf_counter()
            cycles += self.backend.run_into(job, out)
            t_backend += time.perf_counter() - t0
            kernels.run_copies(outs)
        return cycles, t_backend

    def run(self, X) -> np.ndarray:
        """The graph's float output for the float input X (NCHW, the plan's batch size)."""
        p = self.plan
        self.times = []
        for s in p.steps:
            t0 = time.perf_counter()
            cycles, tb = 0, 0.0
            if s.kind == "quantize":
                self.work[s.node](X)
            elif s.kind in ("accel", "host_layer"):
                cycles, tb = self._layer(s)
            else:
                self._host(s)
            self.times.append(StepTime(s.node, s.kind, len(s.jobs), cycles, time.perf_counter() - t0 - tb, tb))
        t0 = time.perf_counter()
        out = p.graph.output
        src = p.graph[out.inputs[0]]
        scale = src.params["s_acc"] if src.dtype == "int32" else src.scale
        Y = kernels.dequantize(self.t[src.name], scale, nchw=True)
        self.times.append(StepTime(out.name, "dequantize", 0, 0, time.perf_counter() - t0, 0.0))
        return Y

    def _host_kernel(self, s):
        """The prepared kernel of a host step (its buffers and views made once), or None."""
        t, a = self.t, s.attrs
        if s.kind == "quantize":
            return kernels.Quantize(a["scale"], t[s.dst])
        if s.kind == "add":
            return kernels.Add(t[s.src[0]], t[s.src[1]], s.params["mult"], a["S"], a["relu"], t[s.dst])
        if s.kind == "maxpool":
            return kernels.Maxpool(t[s.src[0]], a, t[s.dst])
        if s.kind == "cat":
            parts, off = [], 0
            for i, src in enumerate(s.src):
                C = t[src].shape[-1]
                if self.plan.aliases.get(src, (None,))[0] != s.dst:      # not already written in place
                    parts.append(kernels.Add(t[src], None, (int(s.params["mult"][i]),), a["S"], False,
                                             t[s.dst][..., off:off + C]))
                off += C
            return parts
        return None

    def _host(self, s) -> None:
        t, a = self.t, s.attrs
        x = t[s.src[0]] if s.src else None
        dst = t[s.dst]
        if s.kind in ("add", "maxpool"):
            self.work[s.node]()
        elif s.kind == "cat":
            for k in self.work[s.node]:
                k()
        elif s.kind == "avgpool":
            kernels.avgpool(x, a, s.params["m"], s.params["shift"], dst)
        elif s.kind == "global_avgpool":
            kernels.global_avgpool(x, s.params["m"], s.params["shift"], dst)
        elif s.kind == "relu":
            np.maximum(x, 0, out=dst)
        elif s.kind == "clamp":
            np.clip(x, a["lo"], a["hi"], out=dst)
        elif s.kind == "flatten":
            if a["order"] != "nhwc":                      # torch's (C, H, W) order for a reader that needs it
                dst[...] = x.transpose(0, 3, 1, 2).reshape(dst.shape) if x.ndim == 4 else x.reshape(dst.shape)
        elif s.kind == "host_op":
            args = [kernels.dequantize(t[i], sc, nchw=True) for i, sc in zip(s.src, a["in_scales"], strict=True)]
            y = np.asarray(a["fn"](*args), np.float64)
            want = (dst.shape[0], dst.shape[3], dst.shape[1], dst.shape[2]) if dst.ndim == 4 else dst.shape
            if y.shape != want:
                raise ValueError(f"host op '{s.node}' returned shape {y.shape}, the graph expects {want}: it does not "
                                 "compute an activation of the captured shape (shape arithmetic?); export the model "
                                 "with a static shape or simplify that part")
            q = np.clip(np.rint(y / a["scale"]), -128, 127)
            dst[...] = q.transpose(0, 2, 3, 1) if q.ndim == 4 else q
        else:
            raise ValueError(f"step '{s.node}': no host kernel for {s.kind!r}")


def _rows(dst: np.ndarray) -> np.ndarray:
    """An (M, C) view of an NHWC slice of a wider buffer (a cat's channels): rows stride over the full width."""
    N, H, W, C = dst.shape
    return np.lib.stride_tricks.as_strided(dst, (N * H * W, C), (dst.strides[2], dst.strides[3]))


def _direct_ok(geo: dict, groups, jp, R: int) -> bool:
    """Whether a job's X tiles can be written straight from the feature map (R-channel rows, whole output rows)."""
    if R not in kernels._ROW or geo["C"] % R or jp.c0 % R or jp.c1 % R:
        return False
    Ho, Wo = geo["Ho"], geo["Wo"]
    for _, _, _, rows in groups:
        q, r = divmod(rows, Wo)
        if r or not (q % Ho == 0 or (q <= Ho and (geo["N"] == 1 or Ho % q == 0))):
            return False
    return True
