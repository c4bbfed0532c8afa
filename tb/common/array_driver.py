"""cocotb driver for rtl/systolic_array.v: push a whole GEMM through its three AXI streams, count cycles.

Used by tb/systolic_array (the tests) and by the demo; the packing and fold plan come from pf.systolic.
Imports cocotb, so it runs only inside a simulation.
"""
from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from pytorch_fpga.arch import systolic


class ArrayDriver:
    """Drives one systolic_array DUT: clock, reset, weight/activation sources, result sink, cycle monitor."""

    def __init__(self, dut, period_ns: int = 10):
        self.dut = dut
        self.rows = int(dut.ROWS.value)
        self.cols = int(dut.COLS.value)
        self.acc_w = int(dut.ACC_W.value)
        cocotb.start_soon(Clock(dut.clk, period_ns, unit="ns").start())
        self.w_src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_w"), dut.clk, dut.rst)
        self.x_src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_x"), dut.clk, dut.rst)
        self.y_sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_y"), dut.clk, dut.rst)
        for src in (self.w_src, self.x_src, self.y_sink):
            src.log.setLevel("WARNING")
        self.cycle = 0                # falling edges seen: the current cycle's index
        self.w_beats: list[int] = []  # cycles in which a weight beat was accepted
        self.y_beats: list[int] = []  # cycles in which a result row was accepted
        cocotb.start_soon(self._monitor())

    async def _monitor(self):
        """Sample the handshakes mid-cycle (signals are stable at the falling edge)."""
        d = self.dut
        while True:
            await FallingEdge(d.clk)
            self.cycle += 1
            if d.s_axis_w_tvalid.value == 1 and d.s_axis_w_tready.value == 1:
                self.w_beats.append(self.cycle)
            if d.m_axis_y_tvalid.value == 1 and d.m_axis_y_tready.value == 1:
                self.y_beats.append(self.cycle)

    async def reset(self, cycles: int = 2):
        """Hold rst high for `cycles` clock cycles, dropping whatever the streams held."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def set_pauses(self, w=None, x=None, y=None):
        """Install pause generators (iterables of bools) on the weight, activation and result streams."""
        for port, gen in ((self.w_src, w), (self.x_src, x), (self.y_sink, y)):
            port.set_pause_generator(gen) if gen is not None else port.clear_pause_generator()

    def queue_gemm(self, X, W) -> int:
        """Queue every fold of X @ W on the input streams (nothing waits); return the number of folds."""
        n = 0
        for _, wbeats, xbeats in systolic.ws_streams(X, W, self.rows, self.cols):
            self.w_src.send_nowait(AxiStreamFrame(wbeats.tobytes()))
            self.x_src.send_nowait(AxiStreamFrame(xbeats.tobytes()))
            n += 1
        return n

    async def recv_folds(self, folds: int, M: int, timeout_cycles: int) -> list[np.ndarray]:
        """Collect `folds` result frames (each M rows of COLS int32) within a cycle budget."""
        outs = []
        for _ in range(folds):
            frame = await with_timeout(self.y_sink.recv(), timeout_cycles * 10, "ns")
            y = np.frombuffer(bytes(frame.tdata), dtype="<i4").reshape(-1, self.cols)
            if y.shape[0] != M:
                raise AssertionError(f"result frame has {y.shape[0]} rows, expected {M} (tlast misplaced?)")
            outs.append(y)
        return outs

    async def gemm(self, X, W, timeout_cycles: int | None = None):
        """Run Y = X @ W to completion; return (Y int32, cycles from first weight beat to last result row)."""
        M, K = np.shape(X)
        N = np.shape(W)[1]
        budget = timeout_cycles or 4 * systolic.ws_cycles(M, K, N, self.rows, self.cols) + 100
        w0, y0 = len(self.w_beats), len(self.y_beats)
        folds = self.queue_gemm(X, W)
        outs = await self.recv_folds(folds, M, budget)
        Y = systolic.ws_assemble(outs, M, K, N, self.rows, self.cols)
        cycles = self.y_beats[-1] - self.w_beats[w0] + 1
        assert len(self.y_beats) - y0 == folds * M, "result rows lost or duplicated"
        return Y, cycles
