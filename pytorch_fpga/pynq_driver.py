"""The conv_accel overlay's pynq driver (numpy + pynq, no torch): the same code on a PYNQ-Z1 and on the virtual PYNQ.

    ol = ConvAccelOverlay()                    # overlays/conv_accel/conv_accel.bit (or $PYTORCH_FPGA_OVERLAY)
    out, status, counters = ol.run_job(pf.accel.pack_job(X, W, ...))

Waits never spin forever: DMA channels are polled against a deadline and a timeout names the channel and its
status bits.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pynq

from . import accel
from .hw import design, regmap

OVERLAY_DIR = Path(__file__).resolve().parents[1] / "overlays" / "conv_accel"
ENV_OVERLAY = "PYTORCH_FPGA_OVERLAY"
DMA_SR_BITS = {0x1: "halted", 0x2: "idle", 0x10: "DMAIntErr", 0x20: "DMASlvErr", 0x40: "DMADecErr",
               0x1000: "IOC_Irq", 0x4000: "Err_Irq"}


def bitfile() -> str:
    """The overlay's .bit: $PYTORCH_FPGA_OVERLAY, else overlays/conv_accel/conv_accel.bit."""
    return os.environ.get(ENV_OVERLAY) or str(OVERLAY_DIR / f"{design.OVERLAY}.bit")


def dma_status_text(sr: int) -> str:
    """Names of the set bits of an AXI DMA status register."""
    return ", ".join(name for bit, name in DMA_SR_BITS.items() if sr & bit) or "running, not idle"


class ConvAccelIP(pynq.DefaultIP):
    """conv_accel's AXI-Lite registers by name (pytorch_fpga.hw.regmap)."""
    bindto = [design.ACCEL_IP["vlnv"]]

    def write_reg(self, name: str, value: int):
        self.write(regmap.offset(name), int(value))

    def read_reg(self, name: str) -> int:
        return int(self.read(regmap.offset(name)))

    def counters(self) -> dict:
        """The performance counters of the last job."""
        return {n: self.read_reg(n) for n in ("CYCLES", "MAC_CYCLES", "STALL_IN", "STALL_OUT", "JOBS")}

    def config(self) -> accel.AccelConfig:
        """The build's parameters, read back from the hardware."""
        c = self.read_reg("CONFIG")
        return accel.AccelConfig("hw", rows=c & 0xFF, cols=(c >> 8) & 0xFF, x_depth=self.read_reg("X_DEPTH"),
                                 w_depth=self.read_reg("W_DEPTH"), acc_depth=self.read_reg("ACC_DEPTH"),
                                 n_max=self.read_reg("N_MAX"))


class ConvAccelOverlay(pynq.Overlay):
    """The conv_accel overlay: the AXI DMA (axi_dma_0) and the accelerator (conv_accel_0)."""

    def __init__(self, bitfile_name: str | None = None, timeout_s: float = 10.0, **kwargs):
        super().__init__(bitfile_name or bitfile(), **kwargs)
        self.accel = getattr(self, design.ACCEL_IP["name"])
        self.dma = getattr(self, design.DMA_IP["name"])
        self.timeout_s = timeout_s
        if self.accel.read_reg("ID") != regmap.MAGIC:
            raise RuntimeError(f"{design.ACCEL_IP['name']} does not answer with the conv_accel ID "
                               f"({self.accel.read_reg('ID'):#x} != {regmap.MAGIC:#x}): wrong bitstream?")
        self._bufs = {}

    def _buffer(self, key: str, nbytes: int):
        """A cached contiguous buffer of at least nbytes (allocation is slow on the board)."""
        buf = self._bufs.get(key)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.freebuffer()
            # on this overlay's device, not pynq's active one (they differ once another device is activated)
            buf = pynq.allocate((max(nbytes, 4096),), dtype=np.uint8, target=self.device)
            self._bufs[key] = buf
        return buf

    def _wait(self, channel, name: str, deadline: float):
        """Poll a DMA channel until idle; raise on its error bits or at the deadline (never spins forever)."""
        while True:
            sr = channel._mmio.read(channel._offset + 4)
            if sr & 0x70:
                raise RuntimeError(f"AXI DMA {name} channel error: status {sr:#x} ({dma_status_text(sr)})")
            if sr & 0x2:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"AXI DMA {name} channel did not finish within {self.timeout_s:g} s: "
                                   f"status {sr:#x} ({dma_status_text(sr)}); accelerator STATUS "
                                   f"{self.accel.read_reg('STATUS'):#x}")

    def run_job(self, job: accel.Job, timeout_s: float | None = None):
        """Run one packed job: returns (output bytes, accelerator STATUS, performance counters)."""
        timeout = timeout_s or self.timeout_s
        src = self._buffer("in", job.stream.size)
        dst = self._buffer("out", job.out_bytes)
        src[:job.stream.size] = job.stream
        deadline = time.monotonic() + timeout
        # Both DMA transfers first: the stream waits (tready low) until START, so CYCLES counts only the job.
        self.dma.recvchannel.transfer(dst, nbytes=job.out_bytes)
        self.dma.sendchannel.transfer(src, nbytes=job.stream.size)     # flushes the source buffer
        for name, value in job.registers().items():
            self.accel.write_reg(name, value)
        self.accel.write_reg("CTRL", regmap.CTRL_START)
        self._wait(self.dma.sendchannel, "MM2S (send)", deadline)
        self._wait(self.dma.recvchannel, "S2MM (receive)", deadline)
        dst.invalidate()
        status = self.accel.read_reg("STATUS")
        while not status & (regmap.STATUS_DONE | regmap.STATUS_ERROR):
            if time.monotonic() > deadline:
                raise TimeoutError(f"conv_accel did not report DONE within {timeout:g} s (STATUS {status:#x})")
            status = self.accel.read_reg("STATUS")
        if status & regmap.STATUS_ERROR:
            raise RuntimeError(f"conv_accel reported an error (STATUS {status:#x}): the stream did not match "
                               f"the job {job.M}x{job.K}x{job.N}")
        return bytes(dst[:job.out_bytes]), status, self.accel.counters()

    def close(self):
        """Free the cached DMA buffers."""
        for buf in self._bufs.values():
            buf.freebuffer()
        self._bufs.clear()
