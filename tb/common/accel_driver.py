"""cocotb driver for rtl/conv_accel.v: AXI-Lite registers, the job's input stream and its output stream.

Used by tb/conv_accel. Every wait is bounded by a cycle budget. Imports cocotb: runs inside a simulation.
"""
from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from pytorch_fpga.contract import accel, regmap

COUNTERS = regmap.COUNTERS


class AccelDriver:
    """Clock, reset, AXI-Lite master and the two AXI streams of one conv_accel DUT."""

    def __init__(self, dut, period_ns: int = 10):
        self.dut = dut
        self.period_ns = period_ns
        # the build as the DUT's parameters say (AccelConfig's fields are the parameters' names in lower case)
        self.cfg = accel.AccelConfig("dut", **{p.lower(): int(getattr(dut, p).value)
                                               for p in accel.AccelConfig("dut").params() if hasattr(dut, p)})
        cocotb.start_soon(Clock(dut.clk, period_ns, unit="ns").start())
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        for port in (self.axil.write_if, self.axil.read_if, self.src, self.sink):
            port.log.setLevel("WARNING")

    async def reset(self, cycles: int = 4):
        """Pulse the hard reset; drop anything queued on the streams."""
        self.src.clear()
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        self.sink.clear()

    def reset_output_channel(self):
        """Drop a partly received output packet, as resetting the DMA's S2MM channel does after an abort."""
        self.sink._handle_reset(True)
        self.sink._handle_reset(False)
        self.sink.clear()

    async def write(self, name: str, value: int):
        """Write a register by name."""
        await self.axil.write_dword(regmap.offset(name), int(value))

    async def read(self, name: str) -> int:
        """Read a register by name."""
        return await self.axil.read_dword(regmap.offset(name))

    async def start(self, job: accel.Job):
        """Program the job's registers and START it (the stream is sent separately)."""
        for name, value in job.registers().items():
            await self.write(name, value)
        await self.write("CTRL", regmap.CTRL_START)

    async def wait_done(self, budget_cycles: int) -> int:
        """Poll STATUS until DONE (or ERROR) within a cycle budget; return the last STATUS."""
        for _ in range(max(1, budget_cycles // 16)):
            status = await self.read("STATUS")
            if status & (regmap.STATUS_DONE | regmap.STATUS_ERROR):
                return status
            await ClockCycles(self.dut.clk, 16)
        raise TimeoutError(f"conv_accel did not finish within {budget_cycles} cycles "
                           f"(STATUS={status:#x}: {regmap.status_text(status)})")

    async def counters(self) -> dict:
        """The performance counters of the last job."""
        return {name: await self.read(name) for name in COUNTERS}

    async def run(self, job: accel.Job, budget_cycles: int | None = None):
        """Run one job to completion: returns (output bytes, STATUS, counters)."""
        budget = budget_cycles or 20 * (job.stream.size // 8 + job.out_bytes // 8 + job.M * job.fk * job.fn) + 2000
        await self.start(job)
        self.src.send_nowait(AxiStreamFrame(job.stream.tobytes()))
        frame = await with_timeout(self.sink.recv(), budget * self.period_ns, "ns")
        status = await self.wait_done(budget)
        return bytes(frame.tdata), status, await self.counters()
