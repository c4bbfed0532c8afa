"""pf.Accelerator: int8 GEMM and conv2d on conv_accel through a backend, with a per-layer report. Torch-free."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pytorch_fpga.contract import accel
from pytorch_fpga.core import conv
from pytorch_fpga.core.gemm import check_int8
from pytorch_fpga.runtime import backends, compiler


@dataclass
class LayerReport:
    """A layer's cost on the accelerator: its jobs' cycles and bytes, and the layer's own MACs."""
    macs: int
    jobs: list = field(default_factory=list)
    clock_mhz: float = 100.0
    pes: int = 256

    @property
    def cycles(self) -> int:
        """Accelerator cycles, jobs one after another."""
        return sum(j.cycles for j in self.jobs)

    @property
    def utilization(self) -> float:
        """Useful MACs / (PEs x cycles)."""
        return self.macs / (self.pes * self.cycles) if self.cycles else 0.0

    @property
    def bytes_in(self) -> int:
        return sum(j.bytes_in for j in self.jobs)

    @property
    def bytes_out(self) -> int:
        return sum(j.bytes_out for j in self.jobs)

    @property
    def time_us(self) -> float:
        """Projected time at clock_mhz."""
        return self.cycles / self.clock_mhz

    def as_dict(self) -> dict:
        return {"macs": self.macs, "jobs": len(self.jobs), "cycles": self.cycles,
                "utilization": self.utilization, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "time_us": self.time_us}


class Accelerator:
    """conv_accel behind a backend ('model', 'verilator'; default $PYTORCH_FPGA_BACKEND or 'model')."""

    def __init__(self, backend: str | backends.Backend | None = None, config="z1"):
        self.cfg = accel.config(config)
        self._backend = backend if isinstance(backend, backends.Backend) else backends.get(backend, self.cfg)
        self._backend_name = self._backend.name
        if self._backend.cfg != self.cfg:
            raise ValueError(f"backend runs config '{self._backend.cfg.name}', not '{self.cfg.name}'")

    @property
    def backend(self) -> backends.Backend:
        """The backend; after a copy or unpickling, a new one of the same kind, attached on first use."""
        if self._backend is None:
            self._backend = backends.get(self._backend_name, self.cfg)
        return self._backend

    def __getstate__(self):
        return {"cfg": self.cfg, "_backend_name": self._backend_name, "_backend": None}   # no simulator handle

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        return f"Accelerator(backend={self._backend_name!r}, config={self.cfg.name!r})"

    def _report(self, macs):
        return LayerReport(macs, clock_mhz=self.cfg.clock_mhz, pes=self.cfg.rows * self.cfg.cols)

    def _run(self, parts, M, N, out_int32, report):
        outs = []
        for p in parts:
            Y, rep = self.backend.run(p.job)
            outs.append(Y)
            report.jobs.append(rep)
        return compiler.assemble(parts, outs, M, N, np.int32 if out_int32 else np.int8)

    def gemm(self, X, W, bias=None, m=None, shift=None, relu=False, out_int32=False):
        """Y = requant(X @ W + bias) (int8), or X @ W + bias (int32 with out_int32); returns (Y, LayerReport)."""
        X, W = check_int8("X", X), check_int8("W", W)
        if X.ndim == 2 and W.ndim == 2 and X.shape[0] == 0 and X.shape[1] == W.shape[0]:   # an empty batch
            compiler.gemm_parts(np.zeros((1, X.shape[1]), np.int8), W, bias, m, shift, relu, out_int32, self.cfg)
            return np.zeros((0, W.shape[1]), np.int32 if out_int32 else np.int8), self._report(0)
        parts = compiler.gemm_parts(X, W, bias, m, shift, relu, out_int32, self.cfg)
        report = self._report(X.shape[0] * X.shape[1] * W.shape[1])
        return self._run(parts, X.shape[0], W.shape[1], out_int32, report), report

    def conv2d(self, X, W, bias=None, m=None, shift=None, relu=False, out_int32=False, stride=1, padding=0,
               dilation=1, groups=1, padding_mode="zeros", mode="auto"):
        """A quantized conv2d (torch.nn.functional.conv2d's arguments, plus padding_mode, and mode: 'auto',
        'window' or 'gemm', see pf.compiler.conv2d_parts); (Y, LayerReport)."""
        X, W = check_int8("X", X), check_int8("W", W)
        if X.ndim == 4 and X.shape[0] == 0:                  # an empty batch: check the layer, run nothing
            _, shape = compiler.conv2d_parts(np.zeros((1, *X.shape[1:]), np.int8), W, bias, m, shift, relu,
                                             out_int32, stride, padding, dilation, groups, padding_mode, self.cfg)
            return np.zeros((0, *shape[1:]), np.int32 if out_int32 else np.int8), self._report(0)
        parts, shape = compiler.conv2d_parts(X, W, bias, m, shift, relu, out_int32, stride, padding, dilation,
                                             groups, padding_mode, self.cfg, mode)
        Nb, Co, Ho, Wo = shape
        # padding modes change the padded values, not the amount: the MAC count is the zero-padding one
        report = self._report(conv.conv2d_macs((Nb or 1, *X.shape[-3:]), W.shape, stride, padding, dilation,
                                               groups))
        Y = self._run(parts, (Nb or 1) * Ho * Wo, Co, out_int32, report)
        return compiler.to_nchw(Y, shape), report

    def conv2d_layer(self, X, layer, **conv_args):
        """conv2d with a pf.quant.QuantLayer's int8 weights, int32 bias and requantization."""
        return self.conv2d(X, layer.w_int8, layer.bias_int32, layer.m, layer.shift, layer.relu, **conv_args)

