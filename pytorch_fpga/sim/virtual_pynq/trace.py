"""The virtual PYNQ's bus trace: one `BusAccess` per PS access to the PL (or model event), and its table."""
from __future__ import annotations

from dataclasses import dataclass

from pytorch_fpga.contract import axi_dma, design, regmap
from pytorch_fpga.sim import verilated


@dataclass
class BusAccess:
    """One PS access to the PL (op 'R' read, 'W' write) or an event of the model (op 'E')."""
    cycle: int                  # simulated clock cycle (FCLK0) at the access
    ip: str                     # 'axi_dma_0', 'conv_accel_0', 'ps7_slcr', 'ddr', 'cache' (flush/invalidate)
    offset: int                 # byte offset in the IP's window (the buffer offset for cache events)
    reg: str                    # register name (regmap.REGISTERS, axi_dma.REGISTERS) or event name
    op: str                     # 'R', 'W' or 'E'
    value: int                  # the value read or written (bytes for events)
    count: int = 1              # identical consecutive reads merged into one entry
    note: str = ""              # decoded status bits, or the event's description
    last_cycle: int | None = None   # cycle of the last merged read

    @property
    def time_us(self) -> float:
        """Simulated time in microseconds (at design.CLOCK_MHZ)."""
        return self.cycle / design.CLOCK_MHZ

    def __str__(self) -> str:
        rep = f" x{self.count}" if self.count > 1 else ""
        if self.op == "E":
            return f"{self.cycle:>10} {self.time_us:>11.2f}  {self.ip:<13} {'*':<2} {'':>7}  {self.reg:<14} {self.note}"
        return (f"{self.cycle:>10} {self.time_us:>11.2f}  {self.ip:<13} {self.op:<2} {self.offset:#07x}  "
                f"{self.reg:<14} {self.value:#010x}{rep}" + (f"  {self.note}" if self.note else ""))


def accel_register_name(offset: int) -> str:
    """conv_accel's register at `offset` (regmap.REGISTERS), '+0x..' for an offset with none."""
    for name, (off, _, _) in regmap.REGISTERS.items():
        if off == offset:
            return name
    return f"+{offset:#04x}"


def register_name(ip: str, offset: int) -> str:
    """The name of a register of the DMA or of conv_accel."""
    return axi_dma.register_name(offset) if ip == design.DMA_IP["name"] else accel_register_name(offset)


def read_note(ip: str, offset: int, value: int) -> str:
    """What a register read means: the status bits of DMASR and of conv_accel's STATUS, else ''."""
    if ip == design.DMA_IP["name"]:
        return axi_dma.status_text(value) if offset in axi_dma.STATUS_REGISTERS else ""
    return verilated.status_bits(value) if offset == regmap.offset("STATUS") else ""


def append_access(trace: list, entry: BusAccess, limit: int | None) -> None:
    """Add an entry, merging a read identical to the previous one (a polling loop); keep about `limit` entries."""
    if entry.op == "R" and trace:
        e = trace[-1]
        if e.op == "R" and e.ip == entry.ip and e.offset == entry.offset and e.value == entry.value:
            e.count += 1
            e.last_cycle = entry.cycle
            return
    trace.append(entry)
    if limit is not None and len(trace) > limit + max(16, limit // 8):
        del trace[:len(trace) - limit]


def format_trace(entries, last: int | None = None, ip: str | None = None, ops: str = "RWE") -> str:
    """The trace as a table: cycle, time (us), IP, R/W/* (event), offset, register, value [x count] and notes."""
    rows = [e for e in entries if (ip is None or e.ip == ip) and e.op in ops]
    if last is not None:
        rows = rows[-last:]
    head = f"{'cycle':>10} {'time (us)':>11}  {'ip':<13} {'op':<2} {'offset':>7}  {'register':<14} value"
    return "\n".join([head, "-" * len(head)] + [str(e) for e in rows])
