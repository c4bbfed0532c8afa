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

The names live in two modules and are all reachable here: pf.arch.dataflow_counts (closed-form cycles, access
counts, conv layers as GEMMs) and pf.arch.dataflow_stepped (the stepped models: simulate, ArrayTrace, timeline).
"""
from __future__ import annotations

from pytorch_fpga.arch.dataflow_counts import (
    DATAFLOWS,
    Access,
    ConvLayer,
    GemmShape,
    MemConfig,
    access_counts,
    conv_cycles,
    conv_gemm,
    conv_utilization,
    cycles,
    is_cycles,
    layer_table,
    num_folds,
    os_cycles,
    utilization_formula,
    utilization_sweep,
)
from pytorch_fpga.arch.dataflow_stepped import ArrayTrace, DataflowResult, simulate, timeline

__all__ = ["DATAFLOWS", "Access", "ArrayTrace", "ConvLayer", "DataflowResult", "GemmShape", "MemConfig",
           "access_counts", "conv_cycles", "conv_gemm", "conv_utilization", "cycles", "is_cycles", "layer_table",
           "num_folds", "os_cycles", "simulate", "timeline", "utilization_formula", "utilization_sweep"]
