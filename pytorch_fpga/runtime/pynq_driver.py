"""The conv_accel overlay's pynq driver (numpy + pynq, no torch): the same code on a PYNQ-Z1 and on the virtual PYNQ.

    ol = ConvAccelOverlay()                    # overlays/conv_accel/conv_accel.bit (or $PYTORCH_FPGA_OVERLAY)
    out, status, counters = ol.run_job(pf.accel.pack_job(X, W, ...))

Waits never spin forever: DMA channels are polled (pynq's public channel API) against a deadline, and an error or
a timeout names the channel and its status bits (decoded by pytorch_fpga.contract.axi_dma).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pynq

from pytorch_fpga.contract import accel, axi_dma, design, regmap

OVERLAY_DIR = Path(__file__).resolve().parents[2] / "overlays" / "conv_accel"
ENV_OVERLAY = "PYTORCH_FPGA_OVERLAY"
log = logging.getLogger(__name__)


def bitfile() -> str:
    """The overlay's .bit: $PYTORCH_FPGA_OVERLAY, else overlays/conv_accel/conv_accel.bit."""
    return os.environ.get(ENV_OVERLAY) or str(OVERLAY_DIR / f"{design.OVERLAY}.bit")


class ConvAccelIP(pynq.DefaultIP):
    """conv_accel's AXI-Lite registers by name (pytorch_fpga.contract.regmap)."""
    bindto = [design.ACCEL_IP["vlnv"]]

    def write_reg(self, name: str, value: int):
        self.write(regmap.offset(name), int(value))

    def read_reg(self, name: str) -> int:
        return int(self.read(regmap.offset(name)))

    def counters(self) -> dict:
        """The performance counters of the last job."""
        return {n: self.read_reg(n) for n in regmap.COUNTERS}

    def config(self) -> accel.AccelConfig:
        """The build's parameters, read back from the hardware."""
        c, dw = self.read_reg("CONFIG"), self.read_reg("DW_CONFIG")
        return accel.AccelConfig("hw", rows=regmap.field("CONFIG", "ROWS", c), cols=regmap.field("CONFIG", "COLS", c),
                                 x_depth=self.read_reg("X_DEPTH"),
                                 w_depth=self.read_reg("W_DEPTH"), acc_depth=self.read_reg("ACC_DEPTH"),
                                 n_max=self.read_reg("N_MAX"), out_lanes=regmap.field("CONFIG", "OUT_LANES", c),
                                 out_depth=self.read_reg("OUT_DEPTH"),
                                 dw_lb_depth=regmap.field("DW_CONFIG", "LB_DEPTH", dw),
                                 dw_ch=regmap.field("DW_CONFIG", "CH", dw))


class ConvAccelOverlay(pynq.Overlay):
    """The conv_accel overlay: the AXI DMA (axi_dma_0) and the accelerator (conv_accel_0)."""

    def __init__(self, bitfile_name: str | None = None, timeout_s: float = 10.0, **kwargs):
        super().__init__(bitfile_name or bitfile(), **kwargs)
        for ip in (design.ACCEL_IP, design.DMA_IP):
            if ip["name"] not in self.ip_dict:
                raise RuntimeError(f"the overlay {self.bitfile_name} has no IP named {ip['name']!r} (it has "
                                   f"{sorted(self.ip_dict)}): load the conv_accel overlay built from overlays/")
        self.accel = getattr(self, design.ACCEL_IP["name"])
        self.dma = getattr(self, design.DMA_IP["name"])
        if not isinstance(self.accel, ConvAccelIP):
            found = self.ip_dict[design.ACCEL_IP["name"]].get("type", "?")
            raise RuntimeError(f"{design.ACCEL_IP['name']} in {self.bitfile_name} is {found}, not "
                               f"{design.ACCEL_IP['vlnv']}, so the conv_accel driver does not bind to it: rebuild "
                               "the overlay from overlays/conv_accel (its .hwh must match the bitstream)")
        self.timeout_s = timeout_s
        if self.accel.read_reg("ID") != regmap.MAGIC:
            raise RuntimeError(f"{design.ACCEL_IP['name']} does not answer with the conv_accel ID "
                               f"({self.accel.read_reg('ID'):#x} != {regmap.MAGIC:#x}): wrong bitstream?")
        self._bufs = {}
        self.recoveries = []                 # what recover() did, oldest first

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

    def dma_status(self, channel: str) -> str:
        """A DMA channel's ('MM2S' or 'S2MM') status register, read and decoded, e.g. '0x1002 (Idle, IOC_Irq)'."""
        sr = int(self.dma.read(axi_dma.CHANNELS[channel] + axi_dma.DMASR))
        return f"{sr:#x} ({axi_dma.status_text(sr)})"

    def _wait(self, name: str, deadline: float, timeout: float):
        """Poll a DMA channel ('MM2S' = sendchannel, 'S2MM' = recvchannel) until idle; raise on an error or at the
        deadline (never spins forever, unlike the channel's own wait())."""
        ch = self.dma.sendchannel if name == "MM2S" else self.dma.recvchannel
        what = f"{name} ({'send' if name == 'MM2S' else 'receive'})"
        while True:
            if ch.error:
                raise RuntimeError(f"AXI DMA {what} channel error: status {self.dma_status(name)}")
            if ch.idle:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"AXI DMA {what} channel did not finish within {timeout:g} s: "
                                   f"status {self.dma_status(name)}; accelerator STATUS "
                                   f"{self.accel.read_reg('STATUS'):#x}")

    def _reset_dma(self, deadline: float, timeout_s: float) -> None:
        """PG021 soft reset of the whole AXI DMA (both channels, aborting their transfers), then restart both."""
        self.dma.write(axi_dma.CHANNELS["MM2S"] + axi_dma.DMACR, axi_dma.CR_RESET)
        while self.dma.read(axi_dma.CHANNELS["MM2S"] + axi_dma.DMACR) & axi_dma.CR_RESET:
            if time.monotonic() > deadline:
                raise RuntimeError(f"recovery failed: the AXI DMA did not come out of reset within {timeout_s:g} s "
                                   "(is the PL clock running?); reload the overlay (ConvAccelOverlay())")
        for name, ch in (("MM2S", self.dma.sendchannel), ("S2MM", self.dma.recvchannel)):
            self.dma.write(axi_dma.CHANNELS[name] + axi_dma.DMACR, axi_dma.CR_RS)
            while not ch.running:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"recovery failed: AXI DMA {name} did not restart within {timeout_s:g} s "
                                       f"(status {self.dma_status(name)}); reload the overlay")
            ch.start()                                   # pynq's own bookkeeping (the channel already runs)

    def _settle(self, ch, until: float) -> bool:
        """Poll a channel until it is idle or in error, or `until` passes; True when idle."""
        while time.monotonic() < until:
            if ch.error:
                return False
            if ch.idle:
                return True
        return False

    def recover(self, why: str, timeout_s: float = 2.0) -> str:
        """Bring the overlay back to a clean state after a failed job; returns (and logs) what it did.

        1. soft-reset conv_accel: it aborts the job and drops the rest of an input packet up to its tlast;
        2. let the MM2S transfer drain into it (bounded), then reset the whole AXI DMA (aborting S2MM) and restart
           both channels;
        3. if MM2S could not finish its packet, conv_accel may still wait for that tlast: send it one beat with
           tlast (swallowed only in that case; otherwise it is not accepted and a second DMA reset drops it).
        """
        deadline = time.monotonic() + timeout_s
        self.accel.write_reg("CTRL", regmap.CTRL_SOFT_RESET)
        drained = self._settle(self.dma.sendchannel, time.monotonic() + timeout_s / 4)
        self._reset_dma(deadline, timeout_s)
        steps = ["soft-reset conv_accel", "reset the AXI DMA and restarted both channels"]
        if not drained:
            beat = self._buffer("tlast", regmap.BEAT_BYTES)
            beat[:regmap.BEAT_BYTES] = 0
            self.dma.sendchannel.transfer(beat, nbytes=regmap.BEAT_BYTES)
            if self._settle(self.dma.sendchannel, time.monotonic() + timeout_s / 4):
                steps.append("ended conv_accel's unfinished input packet with one tlast beat")
            else:
                self._reset_dma(deadline, timeout_s)
        done = f"recovered from: {why} -- {', '.join(steps)}; the next job starts clean"
        log.warning(done)
        self.recoveries.append(done)
        return done

    def run_job(self, job: accel.Job, timeout_s: float | None = None, out=None):
        """Run one packed job: returns (output bytes, accelerator STATUS, performance counters).

        A job whose stream is a DMA buffer (pynq.allocate) is sent in place, and with `out` (a DMA buffer) the
        output lands there and is returned as is: the model compiler's programs copy nothing here.

        On a DMA error, an accelerator error or a timeout it raises (naming the job, the channel and the decoded
        status) after recover() has reset the DMA and the accelerator, so the next job runs clean."""
        try:
            return self._run_job(job, timeout_s, out)
        except (RuntimeError, TimeoutError) as e:
            done = self.recover(str(e).split(":")[0])
            raise type(e)(f"job {job.M}x{job.K}x{job.N}: {e}. {done}") from e

    def _run_job(self, job: accel.Job, timeout_s: float | None = None, out=None):
        timeout = timeout_s or self.timeout_s
        if hasattr(job.stream, "physical_address"):          # already in a DMA buffer
            src = job.stream
        else:
            src = self._buffer("in", job.stream.size)
            src[:job.stream.size] = job.stream
        dst = out if hasattr(out, "physical_address") else self._buffer("out", job.out_bytes)
        deadline = time.monotonic() + timeout
        # Both DMA transfers first: the stream waits (tready low) until START, so CYCLES counts only the job.
        self.dma.recvchannel.transfer(dst, nbytes=job.out_bytes)
        self.dma.sendchannel.transfer(src, nbytes=job.stream.size)     # flushes the source buffer
        for name, value in job.registers().items():
            self.accel.write_reg(name, value)
        self.accel.write_reg("CTRL", regmap.CTRL_START)
        self._wait("MM2S", deadline, timeout)
        self._wait("S2MM", deadline, timeout)
        dst.invalidate()
        status = self.accel.read_reg("STATUS")
        while not status & (regmap.STATUS_DONE | regmap.STATUS_ERROR):
            if time.monotonic() > deadline:
                raise TimeoutError(f"conv_accel did not report DONE within {timeout:g} s (STATUS {status:#x})")
            status = self.accel.read_reg("STATUS")
        if status & regmap.STATUS_ERROR:
            raise RuntimeError(f"conv_accel reported an error (STATUS {status:#x}): the stream did not match "
                               f"the job {job.M}x{job.K}x{job.N}")
        if dst is out:
            return out, status, self.accel.counters()
        if out is not None:
            out[:job.out_bytes] = dst[:job.out_bytes]
            return out, status, self.accel.counters()
        return bytes(dst[:job.out_bytes]), status, self.accel.counters()

    def close(self):
        """Free the cached DMA buffers."""
        for buf in self._bufs.values():
            buf.freebuffer()
        self._bufs.clear()
