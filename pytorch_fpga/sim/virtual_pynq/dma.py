"""The virtual PYNQ's AXI DMA: a register-level model of PG021 (simple mode) between DDR and conv_accel."""
from __future__ import annotations

import logging

from pytorch_fpga.contract import axi_dma, design
from pytorch_fpga.sim import verilated

log = logging.getLogger(__name__)

HALT_DELAY = 16          # cycles from RS = 0 (or an error) to DMASR.Halted (PG021: "there can be a lag")
SPIN_LIMIT = 2_000       # DMASR reads of a channel that refused RS = 1 before the model raises (see AxiDmaModel)


class DmaChannel:
    """One direction of the AXI DMA: its registers and the transfer under way."""

    def __init__(self, name: str, base: int):
        self.name, self.base = name, base
        self.reset()

    def reset(self) -> None:
        self.cr = axi_dma.CR_RESET_VALUE
        self.halted, self.halt_at = True, None
        self.idle = False
        self.err = 0                # DMASR error bits
        self.irq = 0                # DMASR interrupt bits (write 1 to clear)
        self.addr = self.addr_msb = 0
        self.length = 0             # LENGTH as it reads back
        self.busy = False
        self.xfer_addr = self.xfer_len = self.done = 0
        self.refused = 0            # DMASR reads since RS = 1 was refused (error bits set)

    @property
    def running(self) -> bool:
        return bool(self.cr & axi_dma.CR_RS)

    def sr(self) -> int:
        return ((axi_dma.SR_HALTED if self.halted else 0) | (axi_dma.SR_IDLE if self.idle and not self.halted else 0)
                | self.err | self.irq)


class AxiDmaModel:
    """The AXI DMA (PG021 v7.1) in direct register mode, at the register level, between DDR and conv_accel.

    MM2S reads [SA, SA + LENGTH) from DDR into s_axis with tlast on the last beat; S2MM writes m_axis to DA
    until tlast (LENGTH then reads back the bytes received) or flags DMAIntErr when the packet is longer than
    LENGTH. Writing LENGTH starts a transfer (no effect while halted); a zero LENGTH is
    DMAIntErr, a range outside DDR DMADecErr; an error clears RS and the channel halts, HALT_DELAY cycles
    later (so a wait() already polling sees the error bit before the halt). DMACR.Reset resets the whole DMA; until
    then a channel with error bits ignores RS = 1, and after SPIN_LIMIT status reads of such a channel the model
    raises (pynq's start() polls it forever). Transfers that stall longer than the device's budget_cycles are
    flagged DMAIntErr (the watchdog). Driven by VirtualDevice: read()/write() for the registers, sync() after
    the simulation ran, advance() to let time pass.
    """

    def __init__(self, dev):
        self.dev = dev                            # the VirtualDevice: its simulation, DDR, trace and settings
        p = design.DMA_IP["parameters"]
        self.len_mask = (1 << int(p["C_SG_LENGTH_WIDTH"])) - 1
        self.addr_width = int(p["C_ADDR_WIDTH"])
        self.align = {"MM2S": int(p["C_M_AXI_MM2S_DATA_WIDTH"]) // 8, "S2MM": int(p["C_M_AXI_S2MM_DATA_WIDTH"]) // 8}
        self.dre = {"MM2S": bool(p["C_INCLUDE_MM2S_DRE"]), "S2MM": bool(p["C_INCLUDE_S2MM_DRE"])}
        self.mm2s, self.s2mm = DmaChannel("MM2S", axi_dma.MM2S), DmaChannel("S2MM", axi_dma.S2MM)
        self.pushed = self.pulled = 0             # bytes into s_axis / out of m_axis, for the watchdog
        self._mark, self._last_progress = None, 0
        self._gate_s2mm()

    # -- helpers
    @property
    def sim(self) -> verilated.VerilatedAccel:
        return self.dev.sim

    def _now(self) -> int:
        return self.sim.cycles

    def _decode(self, offset: int):
        ch = self.s2mm if offset >= axi_dma.S2MM else self.mm2s
        return ch, offset - ch.base

    def _event(self, ch: DmaChannel, what: str, value: int = 0, note: str = "") -> None:
        self.dev._record(design.DMA_IP["name"], ch.base, f"{ch.name} {what}", "E", value, note)

    def _check_flushed(self, addr: int, n: int) -> None:
        """Warn when MM2S reads buffer bytes whose CPU copy differs from DDR (a missing flush)."""
        for diff, where in self.dev.ddr.stale(addr, n):
            msg = f"MM2S reads {where}: missing flush()? (the DMA sees DDR)"
            log.warning("virtual PYNQ: %s", msg)
            self._event(self.mm2s, "stale", diff, msg)

    def _check_owned(self, addr: int, n: int) -> None:
        if not self.dev.ddr.owned(addr, n):
            log.warning("virtual PYNQ: S2MM writes [%#010x, %#010x), not all of it in pynq buffers: on the board "
                        "this corrupts memory the kernel owns", addr, addr + n)

    def _gate_s2mm(self) -> None:
        """tready of the S2MM side: the user's pattern while a transfer is programmed, else held low."""
        if self.s2mm.busy:
            kind, kwargs = self.dev._backpressure
            self.sim.set_backpressure(kind, **kwargs)
        else:
            self.sim.set_backpressure("random", prob=1.0)

    # -- registers
    def read(self, offset: int) -> int:
        ch, reg = self._decode(offset)
        if reg == axi_dma.DMACR:
            return ch.cr
        if reg == axi_dma.DMASR:
            if ch.refused and ch.halted:
                ch.refused += 1
                if ch.refused > SPIN_LIMIT:
                    ch.refused = 1
                    raise RuntimeError(f"virtual PYNQ: {design.DMA_IP['name']} {ch.name} stays halted: an error "
                                       f"({axi_dma.status_text(ch.sr())}) makes it ignore run/stop until the DMA is "
                                       "reset (DMACR.Reset, then start the channels); pynq's start() would "
                                       "spin here forever on the board")
            return ch.sr()
        if reg == axi_dma.SA:
            return ch.addr
        if reg == axi_dma.SA_MSB:
            return ch.addr_msb if self.addr_width > 32 else 0
        if reg == axi_dma.LENGTH:
            return ch.length
        return 0

    def write(self, offset: int, value: int) -> None:
        ch, reg = self._decode(offset)
        value &= 0xFFFF_FFFF
        if reg == axi_dma.DMACR:
            if value & axi_dma.CR_RESET:
                self.soft_reset()
                return
            was = ch.running
            ch.cr = (value & ~axi_dma.CR_RESET) | axi_dma.CR_RESERVED_ONE
            if ch.running and not was:
                if ch.err:
                    ch.cr &= ~axi_dma.CR_RS
                    ch.refused = 1
                    log.warning("virtual PYNQ: %s %s cannot run with error bits set (%s): reset the DMA first "
                                "(DMACR.Reset)", design.DMA_IP["name"], ch.name, axi_dma.status_text(ch.sr()))
                else:
                    ch.halted, ch.halt_at = False, None
            elif was and not ch.running:
                self._halt(ch, "run/stop cleared")
        elif reg == axi_dma.DMASR:
            ch.irq &= ~(value & axi_dma.SR_IRQS)
        elif reg == axi_dma.SA:
            ch.addr = value
        elif reg == axi_dma.SA_MSB:
            if self.addr_width > 32:
                ch.addr_msb = value
        elif reg == axi_dma.LENGTH:
            self._start(ch, value & self.len_mask)

    def soft_reset(self) -> None:
        """DMACR.Reset: both channels back to their reset state; data in flight is dropped."""
        for ch in (self.mm2s, self.s2mm):
            ch.reset()
        self.sim.clear_input(keep_current=False)
        self.pulled += self.sim.pull().size
        self._gate_s2mm()
        self._event(self.mm2s, "reset", note="soft reset of the whole DMA (both channels halted)")

    # -- transfers
    def _halt(self, ch: DmaChannel, why: str) -> None:
        """Stop a channel (RS = 0): a transfer under way is abandoned; Halted rises HALT_DELAY cycles later."""
        ch.cr &= ~axi_dma.CR_RS
        if ch.busy:
            if ch is self.mm2s:
                self.sim.clear_input(keep_current=False)
            ch.busy = False
            self._gate_s2mm()
            self._event(ch, "abort", ch.done, f"{why}: transfer abandoned after {ch.done} of {ch.xfer_len} bytes")
        ch.idle = False
        if not ch.halted and ch.halt_at is None:
            ch.halt_at = self._now() + HALT_DELAY

    def _error(self, ch: DmaChannel, bit: int, msg: str) -> None:
        ch.err |= bit
        ch.irq |= axi_dma.SR_ERR_IRQ
        log.warning("virtual PYNQ: %s %s %s: %s", design.DMA_IP["name"], ch.name, axi_dma.SR_BITS[bit][0], msg)
        self._event(ch, "error", bit, f"{axi_dma.SR_BITS[bit][0]}: {msg}")
        self._halt(ch, axi_dma.SR_BITS[bit][0])

    def _start(self, ch: DmaChannel, n: int) -> None:
        ch.length = n
        if not ch.running or ch.halted:
            log.info("virtual PYNQ: %s_LENGTH written while the channel is halted: no effect (PG021)", ch.name)
            return
        if ch.busy:
            log.warning("virtual PYNQ: %s_LENGTH written during a transfer (undefined on the IP): ignored", ch.name)
            return
        addr = ch.addr | (ch.addr_msb << 32 if self.addr_width > 32 else 0)
        if n == 0:
            self._error(ch, axi_dma.SR_DMA_INT_ERR, "transfer length 0")
            return
        if not self.dev.ddr.contains(addr, n):
            self._error(ch, axi_dma.SR_DMA_DEC_ERR, f"[{addr:#010x}, {addr + n:#010x}) is not in DDR "
                                        f"[{design.DDR_BASE:#010x}, {design.DDR_BASE + design.DDR_SIZE:#010x})")
            return
        if addr % self.align[ch.name] and not self.dre[ch.name]:
            log.warning("virtual PYNQ: %s address %#x is not %d-byte aligned and the DMA has no DRE: undefined on "
                        "the board", ch.name, addr, self.align[ch.name])
        ch.busy, ch.idle = True, False
        ch.xfer_addr, ch.xfer_len, ch.done = addr, n, 0
        self._last_progress = self._now()
        self._event(ch, "start", n, f"{n} bytes {'from' if ch is self.mm2s else 'to'} {addr:#010x}")
        if ch is self.mm2s:
            self._check_flushed(addr, n)
            self.sim.push(self.dev.ddr.view(addr, n).copy(), last=True)
            self.pushed += n
        else:
            self._check_owned(addr, n)
            self._gate_s2mm()
            self._collect()

    def _collect(self) -> None:
        """Move what S2MM received (up to the packet's tlast) into DDR; finish or flag an over-long packet."""
        ch = self.s2mm
        pkt = self.sim.pull_packet()
        data, last = (pkt, True) if pkt is not None else (self.sim.pull(), False)
        if data.size:
            self.pulled += data.size
            room = ch.xfer_len - ch.done
            take = min(room, data.size)
            self.dev.ddr.view(ch.xfer_addr + ch.done, take)[:] = data[:take]
            ch.done += take
            if data.size > room:
                ch.length = ch.done
                self._error(ch, axi_dma.SR_DMA_INT_ERR, f"the packet is longer than S2MM_LENGTH = {ch.xfer_len} bytes "
                                            f"({data.size - room} more bytes arrived before its tlast)")
                return
        if last:
            ch.busy, ch.idle = False, True
            ch.irq |= axi_dma.SR_IOC_IRQ
            ch.length = ch.done                   # the IP reports the bytes actually received
            self._gate_s2mm()
            self._event(ch, "done", ch.done, f"tlast after {ch.done} bytes (of {ch.xfer_len} programmed)")

    def sync(self) -> None:
        """Bring the channels up to date with the simulation: completions, S2MM data, halts, the watchdog."""
        now = self._now()
        if self.mm2s.busy:
            self.mm2s.done = self.mm2s.xfer_len - self.sim.in_pending
            if self.sim.in_pending == 0:
                ch = self.mm2s
                ch.busy, ch.idle = False, True
                ch.irq |= axi_dma.SR_IOC_IRQ
                self._event(ch, "done", ch.xfer_len, f"{ch.xfer_len} bytes sent, tlast on the last beat")
        if self.s2mm.busy:
            self._collect()
        mark = (self.pushed - self.sim.in_pending, self.pulled)
        if mark != self._mark:
            self._mark, self._last_progress = mark, now
        elif (self.mm2s.busy or self.s2mm.busy) and now - self._last_progress >= self.dev.budget_cycles:
            self._watchdog(now)
        for ch in (self.mm2s, self.s2mm):
            if ch.halt_at is not None and now >= ch.halt_at:
                ch.halted, ch.halt_at = True, None

    def _watchdog(self, now: int) -> None:
        try:
            st = verilated.status_bits(self.sim.read_reg("STATUS"))
        except verilated.VsimError:
            st = "unknown"
        idle = now - self._last_progress
        for ch in (self.mm2s, self.s2mm):
            if not ch.busy:
                continue
            if ch is self.mm2s:
                hint = ("s_axis takes no data: conv_accel not started (CTRL.START)? or its output is not drained "
                        "(S2MM " + ("waiting" if self.s2mm.busy else "not programmed: start the receive "
                                    "transfer before waiting for the send") + ")")
                done = f"{self.sim.in_pending} of {ch.xfer_len} bytes not sent"
            else:
                hint = ("no tlast from conv_accel: the input stream shorter than the job? the job not started? "
                        "MM2S not started?")
                done = f"{ch.done} of {ch.xfer_len} bytes received"
            self._error(ch, axi_dma.SR_DMA_INT_ERR, f"no beat moved on either stream for {idle} cycles (budget_cycles="
                                        f"{self.dev.budget_cycles}); {done}; conv_accel STATUS={st}. {hint} "
                                        "(the simulation's watchdog: a board would hang here)")

    def conditions(self) -> tuple[int, int]:
        """verilated.run_until conditions that end a transfer under way."""
        cond, n_last = 0, 0
        if self.mm2s.busy:
            cond |= verilated.COND_IN_EMPTY
        if self.s2mm.busy:
            cond |= verilated.COND_OUT_LAST
            n_last = self.sim.out_lasts + 1
        return cond, n_last

    def advance(self, cycles: int) -> None:
        """Let `cycles` cycles pass, stopping early when a transfer finishes."""
        self.sync()
        if cycles > 0:
            cond, n_last = self.conditions()
            if cond:
                self.sim.run_until(cond, cycles, n_last=n_last)
            else:
                self.sim.run(cycles)
        self.sync()
