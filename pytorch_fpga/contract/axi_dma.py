"""The Xilinx AXI DMA's register contract (PG021 v7.1, simple / direct register mode): defined once, here.

Offsets are bytes from the DMA's base address; a channel's register is its base plus the register's offset
(`MM2S + DMASR` is MM2S_DMASR at 0x04). Used by the board-side driver (runtime/pynq_driver.py), the virtual
PYNQ's DMA model, its .hwh and its register trace, the tests and notebook 09. pynq's own DMA driver
(pynq/lib/dma.py) reads and writes the same bits; tests/test_axi_dma.py checks them against it.
"""
from __future__ import annotations

# Channel base offsets: MM2S (memory to stream, pynq's sendchannel), S2MM (stream to memory, recvchannel)
MM2S, S2MM = 0x00, 0x30
CHANNELS = {"MM2S": MM2S, "S2MM": S2MM}

# Registers of a channel (offsets from its base); S2MM's destination address is where MM2S's source address is
DMACR, DMASR = 0x00, 0x04
SA, SA_MSB = 0x18, 0x1C          # MM2S source address, low and high 32 bits
DA, DA_MSB = SA, SA_MSB          # S2MM destination address, low and high 32 bits
LENGTH = 0x28                    # bytes to transfer: writing it starts the transfer; S2MM reads back the bytes received

# DMACR bits
CR_RS = 1 << 0                   # Run / Stop
CR_RESET = 1 << 2                # soft reset of the whole DMA (both channels)
CR_IOC_IRQ_EN = 1 << 12
CR_DLY_IRQ_EN = 1 << 13
CR_ERR_IRQ_EN = 1 << 14
CR_RESERVED_ONE = 1 << 1         # reserved, reads as 1
CR_IRQ_THRESHOLD_SHIFT = 16      # IRQThreshold [23:16] (scatter gather)
CR_RESET_VALUE = (1 << CR_IRQ_THRESHOLD_SHIFT) | CR_RESERVED_ONE    # IRQThreshold = 1

# DMASR bits
SR_HALTED = 1 << 0
SR_IDLE = 1 << 1
SR_SG_INCLD = 1 << 3
SR_DMA_INT_ERR = 1 << 4
SR_DMA_SLV_ERR = 1 << 5
SR_DMA_DEC_ERR = 1 << 6
SR_SG_INT_ERR = 1 << 8
SR_SG_SLV_ERR = 1 << 9
SR_SG_DEC_ERR = 1 << 10
SR_IOC_IRQ = 1 << 12
SR_DLY_IRQ = 1 << 13
SR_ERR_IRQ = 1 << 14

SR_BITS = {   # mask: (PG021 name, access, description), in bit order
    SR_HALTED: ("Halted", "read-only", "Channel halted (Run/Stop = 0, or stopped by an error)"),
    SR_IDLE: ("Idle", "read-only", "Transfer completed"),
    SR_SG_INCLD: ("SGIncld", "read-only", "Scatter gather included"),
    SR_DMA_INT_ERR: ("DMAIntErr", "read-only", "Internal error (zero length, S2MM packet longer than LENGTH)"),
    SR_DMA_SLV_ERR: ("DMASlvErr", "read-only", "Slave error on the memory-mapped side"),
    SR_DMA_DEC_ERR: ("DMADecErr", "read-only", "Decode error: an address nothing answers to"),
    SR_SG_INT_ERR: ("SGIntErr", "read-only", "Scatter gather internal error (a completed descriptor re-used)"),
    SR_SG_SLV_ERR: ("SGSlvErr", "read-only", "Scatter gather slave error (descriptor fetch or update)"),
    SR_SG_DEC_ERR: ("SGDecErr", "read-only", "Scatter gather decode error (invalid descriptor address)"),
    SR_IOC_IRQ: ("IOC_Irq", "read-write", "Transfer complete (write 1 to clear)"),
    SR_DLY_IRQ: ("Dly_Irq", "read-write", "Delay interrupt (scatter gather; write 1 to clear)"),
    SR_ERR_IRQ: ("Err_Irq", "read-write", "Error interrupt (write 1 to clear)"),
}
SR_DMA_ERRORS = SR_DMA_INT_ERR | SR_DMA_SLV_ERR | SR_DMA_DEC_ERR    # the errors of simple mode
SR_ERRORS = SR_DMA_ERRORS | SR_SG_INT_ERR | SR_SG_SLV_ERR | SR_SG_DEC_ERR
SR_IRQS = SR_IOC_IRQ | SR_DLY_IRQ | SR_ERR_IRQ                      # write 1 to clear

CR_FIELDS = {   # name: (bit offset, bit width, access, description), as in the .hwh
    "RS": (0, 1, "read-write", "Run / Stop"),
    "Reset": (2, 1, "read-write", "Soft reset of the DMA"),
    "IOC_IrqEn": (12, 1, "read-write", "Interrupt on complete enable"),
    "Dly_IrqEn": (13, 1, "read-write", "Delay interrupt enable (SG)"),
    "Err_IrqEn": (14, 1, "read-write", "Error interrupt enable"),
    "IRQThreshold": (CR_IRQ_THRESHOLD_SHIFT, 8, "read-write", "Interrupt threshold (SG)"),
}
SR_FIELDS = {name: (mask.bit_length() - 1, 1, access, doc) for mask, (name, access, doc) in SR_BITS.items()}


def _registers() -> dict:
    regs = {}
    for ch, base in CHANNELS.items():
        a, what = ("SA", "source") if ch == "MM2S" else ("DA", "destination")
        regs[base + DMACR] = (f"{ch}_DMACR", f"{ch} DMA control register", CR_FIELDS)
        regs[base + DMASR] = (f"{ch}_DMASR", f"{ch} DMA status register", SR_FIELDS)
        regs[base + SA] = (f"{ch}_{a}", f"{ch} {what} address (low 32 bits)", {})
        regs[base + SA_MSB] = (f"{ch}_{a}_MSB", f"{ch} {what} address (high 32 bits)", {})
        regs[base + LENGTH] = (f"{ch}_LENGTH", f"{ch} transfer length in bytes; writing it starts the transfer"
                               + ("" if ch == "MM2S" else ", and it reads back the bytes received"),
                               {"Length": (0, 26, "read-write", "bytes")})
    return dict(sorted(regs.items()))


REGISTERS = _registers()   # offset: (name, description, {field: (bit offset, bit width, access, description)})
RESET_VALUES = {MM2S + DMACR: CR_RESET_VALUE, S2MM + DMACR: CR_RESET_VALUE,
                MM2S + DMASR: SR_HALTED, S2MM + DMASR: SR_HALTED}
STATUS_REGISTERS = frozenset(base + DMASR for base in CHANNELS.values())


def offset(name: str) -> int:
    """Byte offset of register `name` ('MM2S_DMASR', 'S2MM_LENGTH', ...)."""
    for off, (n, _, _) in REGISTERS.items():
        if n == name:
            return off
    raise KeyError(f"no AXI DMA register {name!r}: {[n for n, _, _ in REGISTERS.values()]}")


def register_name(off: int) -> str:
    """The name of the register at byte offset `off` ('+0x08' for an offset with none)."""
    return REGISTERS[off][0] if off in REGISTERS else f"+{off:#04x}"


def decode(sr: int) -> list[str]:
    """The PG021 names of the set bits of a DMASR value, in bit order; other set bits as one '+0x...' entry."""
    names = [name for mask, (name, _, _) in SR_BITS.items() if sr & mask]
    rest = sr & ~sum(SR_BITS)
    return names + ([f"+{rest:#x}"] if rest else [])


def status_text(sr: int) -> str:
    """A DMASR value as text, e.g. 'Idle, IOC_Irq'; 'running, not idle' when no bit is set (a transfer under way)."""
    return ", ".join(decode(sr)) or "running, not idle"
