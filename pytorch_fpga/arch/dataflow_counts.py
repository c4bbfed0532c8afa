"""Closed-form cycle and memory-access counts of the ws/os/is dataflows, and conv layers as GEMMs.

The timing and counting rules are in pf.dataflow's docstring; pf.arch.dataflow_stepped checks every formula here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pytorch_fpga.arch import systolic
from pytorch_fpga.core.conv import conv_output_size

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
    O: int  # noqa: E741  (torch's name for output channels; a key of data/scalesim_16x16.json)
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


def conv_gemm(C: int, H: int, W: int, O: int, kernel_size,  # noqa: E741  (ConvLayer's field)
              stride=1, padding=0, dilation=1, groups: int = 1,
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


