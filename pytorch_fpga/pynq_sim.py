"""A virtual PYNQ-Z1: the real pynq driver stack (Overlay, allocate, the AXI DMA driver, MMIO) off-board.

    import pynq
    import pytorch_fpga as pf

    dev = pf.pynq_sim.virtual_pynq("z1")          # now pynq.Device.active_device
    ol = pynq.Overlay("conv_accel.bit")            # ip_dict from pytorch_fpga/hw/design.py
    buf = pynq.allocate((n,), dtype=np.uint8)      # a PynqBuffer in the simulated DDR
    ol.conv_accel_0.write(0x08, M)                 # AXI-Lite, through the Verilated RTL
    ol.axi_dma_0.sendchannel.transfer(buf)         # pynq's own DMA driver, against a model of PG021
    ol.axi_dma_0.sendchannel.wait()
    dev.print_trace()                              # every register access, with cycle and name

    with pf.pynq_sim.virtual_pynq("sim8") as dev:  # or as a context manager: restores the previous device
        ...

What is simulated:

* `VirtualDevice`, a `pynq.Device` with the REGISTER_RW capability (MMIO goes through read_registers /
  write_registers). Its address map is the overlay's (design.py): the AXI DMA and conv_accel register windows,
  the DDR window, and the few PS7 SLCR clock registers pynq.Clocks touches (so Overlay.download can "set" FCLK0).
  Any other address raises, where the board's bus would hang.
* The PL: conv_accel is the Verilated RTL (pytorch_fpga.hw.vsim, built once and cached in build/vsim); its
  AXI-Lite registers go straight to the RTL. The AXI DMA is `AxiDmaModel`, a register-level model of PG021 in
  direct register (simple) mode: MM2S streams DDR into conv_accel's s_axis (tlast on the transfer's last beat),
  S2MM writes m_axis into DDR, stops at tlast and reports the bytes received in its LENGTH register; error bits
  for what the IP flags (DMADecErr: an address outside DDR, DMAIntErr: a zero length or a packet longer than
  the S2MM length). S2MM holds tready low while no transfer is programmed, as the IP does, so an accelerator
  whose output is not collected stalls.
* Time: the model only runs when the PS touches the PL. Every read of a PL register samples it, then runs the
  simulation `poll_cycles` cycles (about one Python MMIO access on the board), stopping early when a DMA
  transfer finishes, so pynq's polling wait() loops see transfers progress. A transfer during which no beat
  moves on either stream for `budget_cycles` cycles is flagged DMAIntErr + halted with a log message, so
  wait() raises instead of spinning forever (a board would hang).
* Memory: pynq.allocate returns real PynqBuffers with physical addresses in design's DDR window. The buffer's
  own memory is the CPU's (cached) view; the simulated DDR (a numpy byte array) is what the DMA sees.
  flush() copies buffer -> DDR, invalidate() DDR -> buffer, so a missing flush or invalidate fails here as
  with cached buffers on a board (allocate(..., cacheable=False) gives a buffer that *is* DDR). MM2S logs a
  warning when it reads a buffer whose CPU copy differs from DDR (a likely missing flush).
* The bitstream: no .bit exists. `pynq.Overlay("conv_accel.bit")` (any path whose name is conv_accel.bit that
  pynq cannot find) resolves to a placeholder conv_accel.bit in a temporary directory, next to a .hwh generated
  from design.py (`overlay_hwh()`) that pynqmetadata parses into the ip_dict; `download` records the bitstream
  and resets the PL (a hard reset of the RTL, the DMA back to its reset state). The ip_dict has no interrupts,
  so pynq's DMA driver polls.

A register trace (`VirtualDevice.trace`, `print_trace`) records every PS access to the PL (and events of the
DMA model) with its cycle, IP, offset, register name, direction and value; identical consecutive reads (a
polling loop) are merged into one entry with a count.

pynq internals relied on (pynq 4.0): Device/DeviceMeta (active_device, set_bitfile_name, post_download,
capabilities), PynqBuffer's constructor and its flush/invalidate calls device.flush(bo, offset, ptr, size),
MMIO's REGISTER_RW path, pynqmetadata's HWH frontend and RuntimeMetadataParser, pynq.ps.Clocks (its cached
`_real_instance`, reset when a virtual device is activated), and pynq.bitstream._resolve_bitstream, which is
wrapped (only for VirtualDevice targets) so a missing conv_accel.bit resolves to the placeholder.

Torch-free: numpy, pynq and the Verilator harness.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import weakref
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import pynq
import pynq.bitstream
from pynq.buffer import PynqBuffer
from pynq.pl_server.device import Device

from . import accel
from .hw import design, regmap, vsim

log = logging.getLogger(__name__)

__all__ = ["VirtualDevice", "AxiDmaModel", "TraceEntry", "virtual_pynq", "overlay_hwh", "format_trace",
           "DMA_REGISTERS", "dma_status_text"]

# ------------------------------------------------------------------------------------------- constants
PS_INSTANCE = "processing_system7_0"
PS_VLNV = "xilinx.com:ip:processing_system7:5.5"
SLCR_BASE, SLCR_RANGE = 0xF800_0000, 0x1000      # PS7 System Level Control Registers (clocks)
PS_REF_CLK_MHZ = 50.0                             # PYNQ-Z1's PS_CLK
CMA_SIZE = 128 << 20                              # buffers are allocated from the top 128 MB of DDR
PAGE = 4096

# AXI DMA (PG021), direct register mode: channel base offsets and per-channel registers
MM2S_BASE, S2MM_BASE = 0x00, 0x30
DMACR, DMASR, ADDR, ADDR_MSB, LENGTH = 0x00, 0x04, 0x18, 0x1C, 0x28
CR_RS, CR_RESET = 0x1, 0x4
CR_RESET_VALUE = 0x0001_0002                      # IRQThreshold = 1; bit 1 reserved, reads as 1
SR_HALTED, SR_IDLE, SR_SGINCLD = 0x1, 0x2, 0x8
SR_INT_ERR, SR_SLV_ERR, SR_DEC_ERR = 0x10, 0x20, 0x40
SR_IOC_IRQ, SR_DLY_IRQ, SR_ERR_IRQ = 0x1000, 0x2000, 0x4000
SR_ERRORS = SR_INT_ERR | SR_SLV_ERR | SR_DEC_ERR
SR_IRQS = SR_IOC_IRQ | SR_DLY_IRQ | SR_ERR_IRQ
HALT_DELAY = 16          # cycles from RS = 0 (or an error) to DMASR.Halted (PG021: "there can be a lag")
SPIN_LIMIT = 2_000       # DMASR reads of a channel that refused RS = 1 before the model raises (see AxiDmaModel)

DMA_REGISTERS = {}       # offset -> (name, description, fields {name: (bit_offset, bit_width, access, doc)})
_CR_FIELDS = {"RS": (0, 1, "read-write", "Run / Stop"), "Reset": (2, 1, "read-write", "Soft reset of the DMA"),
              "IOC_IrqEn": (12, 1, "read-write", "Interrupt on complete enable"),
              "Dly_IrqEn": (13, 1, "read-write", "Delay interrupt enable (SG)"),
              "Err_IrqEn": (14, 1, "read-write", "Error interrupt enable"),
              "IRQThreshold": (16, 8, "read-write", "Interrupt threshold (SG)")}
_SR_FIELDS = {"Halted": (0, 1, "read-only", "Channel halted"), "Idle": (1, 1, "read-only", "Transfer completed"),
              "SGIncld": (3, 1, "read-only", "Scatter gather included"),
              "DMAIntErr": (4, 1, "read-only", "Internal error (zero length, S2MM packet longer than LENGTH)"),
              "DMASlvErr": (5, 1, "read-only", "Slave error on the memory-mapped side"),
              "DMADecErr": (6, 1, "read-only", "Decode error: an address nothing answers to"),
              "IOC_Irq": (12, 1, "read-write", "Transfer complete (write 1 to clear)"),
              "Dly_Irq": (13, 1, "read-write", "Delay interrupt (SG; write 1 to clear)"),
              "Err_Irq": (14, 1, "read-write", "Error interrupt (write 1 to clear)")}
for _ch, _base, _a in (("MM2S", MM2S_BASE, "SA"), ("S2MM", S2MM_BASE, "DA")):
    _what = "source" if _ch == "MM2S" else "destination"
    DMA_REGISTERS[_base + DMACR] = (f"{_ch}_DMACR", f"{_ch} DMA control register", _CR_FIELDS)
    DMA_REGISTERS[_base + DMASR] = (f"{_ch}_DMASR", f"{_ch} DMA status register", _SR_FIELDS)
    DMA_REGISTERS[_base + ADDR] = (f"{_ch}_{_a}", f"{_ch} {_what} address (low 32 bits)", {})
    DMA_REGISTERS[_base + ADDR_MSB] = (f"{_ch}_{_a}_MSB", f"{_ch} {_what} address (high 32 bits)", {})
    DMA_REGISTERS[_base + LENGTH] = (f"{_ch}_LENGTH", f"{_ch} transfer length in bytes; writing it starts "
                                     + ("the transfer" if _ch == "MM2S" else "the transfer, and it reads back "
                                        "the bytes received"), {"Length": (0, 26, "read-write", "bytes")})

_SR_NAMES = {SR_HALTED: "halted", SR_IDLE: "idle", SR_INT_ERR: "DMAIntErr", SR_SLV_ERR: "DMASlvErr",
             SR_DEC_ERR: "DMADecErr", SR_IOC_IRQ: "IOC_Irq", SR_ERR_IRQ: "Err_Irq"}


def dma_status_text(sr: int) -> str:
    """A DMASR value as text, e.g. '0x1002 (idle|IOC_Irq)'."""
    names = [n for b, n in _SR_NAMES.items() if sr & b]
    return f"{sr:#x} ({'|'.join(names) or 'running'})"


def _accel_reg_name(offset: int) -> str:
    for name, (off, _, _) in regmap.REGISTERS.items():
        if off == offset:
            return name
    return f"+{offset:#04x}"


def _slcr_names() -> dict:
    try:
        from pynq.ps import ZYNQ_SLCR_REGISTERS
        return {v["address_offset"]: k for k, v in ZYNQ_SLCR_REGISTERS.items()}
    except ImportError:                           # only the names in the trace depend on it
        return {}


def _fclk_divisors(src_mhz: float, mhz: float) -> tuple[int, int]:
    """FPGA clock divisors (6 bits each) giving the closest frequency to `mhz` from `src_mhz`."""
    best = min(((abs(src_mhz / (a * b) - mhz), b, a) for a in range(1, 64) for b in range(1, 64)))
    return best[2], best[1]                       # the closest; the first divider does most of the work


# ------------------------------------------------------------------------------------------- the .hwh
def _pynq_clock_freq_param(i: int) -> str:
    """The PS parameter pynqmetadata reads a PL clock's achieved frequency from (it has changed names)."""
    try:
        from pynqmetadata.models.zynq_proc_sys_core import ZynqProcSysCore
        return ZynqProcSysCore.clk_freq_param_name(None, i)
    except Exception:
        return f"PCW_ACT_FPGA{i}_PERIPHERAL_FREQMHZ"


def overlay_hwh(cfg=None) -> str:
    """The overlay's hardware handoff (.hwh XML), generated from pytorch_fpga/hw/design.py.

    Only what pynq and pynqmetadata read: the PS7 (its FCLK settings, its M_AXI_GP0 address map and the HP
    port), the AXI DMA (its parameters, register map and DDR address map) and conv_accel (its parameters and
    the register map of regmap.py), and the two AXI4-Stream connections. No interrupts: pynq's DMA driver polls.
    cfg: the accelerator build whose parameters go into conv_accel_0's entry (default design.CONFIG).
    """
    cfg = accel.config(cfg or design.CONFIG)
    m = re.match(r"xc(7z\d+)(\w+?)(-\d+)$", design.PART)
    device, package, speed = m.groups() if m else ("7z020", "clg400", "-1")
    root = ET.Element("EDKSYSTEM", EDWVERSION="1.2", TIMESTAMP="generated by pytorch_fpga.pynq_sim",
                      VIVADOVERSION=design.VIVADO_VERSION)
    ET.SubElement(root, "SYSTEMINFO", ARCH="zynq", DEVICE=device, NAME=design.OVERLAY, PACKAGE=package,
                  SPEEDGRADE=speed)
    ET.SubElement(root, "EXTERNALPORTS")
    ET.SubElement(root, "EXTERNALINTERFACES")
    mods = ET.SubElement(root, "MODULES")

    def module(inst, vlnv, modtype, params, **extra):
        el = ET.SubElement(mods, "MODULE", FULLNAME=f"/{inst}", HWVERSION=vlnv.rsplit(":", 1)[1], INSTANCE=inst,
                           IPTYPE="PERIPHERAL", IS_ENABLE="1", MODCLASS="PERIPHERAL", MODTYPE=modtype, VLNV=vlnv,
                           **extra)
        ps = ET.SubElement(el, "PARAMETERS")
        for k, v in params.items():
            ET.SubElement(ps, "PARAMETER", NAME=str(k), VALUE=str(v))
        return el

    def mem_range(parent, inst, block, base, size, master, slave, memtype):
        ET.SubElement(parent, "MEMRANGE", ADDRESSBLOCK=block, BASENAME="C_BASEADDR", BASEVALUE=f"0x{base:08X}",
                      HIGHNAME="C_HIGHADDR", HIGHVALUE=f"0x{base + size - 1:08X}", INSTANCE=inst, IS_DATA="TRUE",
                      IS_INSTRUCTION="TRUE", MASTERBUSINTERFACE=master, MEMTYPE=memtype, SLAVEBUSINTERFACE=slave)

    def registers(el, interface, regs):
        """regs: [(name, offset, access, description, reset, {field: (bit_offset, bit_width, access, doc)})]"""
        blocks = ET.SubElement(el, "ADDRESSBLOCKS")
        blk = ET.SubElement(blocks, "ADDRESSBLOCK", ACCESS="read-write", INTERFACE=interface, NAME="Reg",
                            RANGE="4096", USAGE="register")
        rs = ET.SubElement(blk, "REGISTERS")
        for name, off, access, doc, reset, fields in regs:
            r = ET.SubElement(rs, "REGISTER", NAME=name)
            for k, v in (("DESCRIPTION", doc), ("ADDRESS_OFFSET", f"{off:#x}"), ("SIZE", "32"),
                         ("ACCESS", access), ("IS_ENABLED", "true"), ("RESET_VALUE", f"{reset:#x}")):
                ET.SubElement(r, "PROPERTY", NAME=k, VALUE=v)
            fs = ET.SubElement(r, "FIELDS")
            for fname, (bit, width, faccess, fdoc) in fields.items():
                f = ET.SubElement(fs, "FIELD", NAME=fname)
                for k, v in (("DESCRIPTION", fdoc), ("ADDRESS_OFFSET", "0"), ("ACCESS", faccess),
                             ("BIT_OFFSET", str(bit)), ("BIT_WIDTH", str(width))):
                    ET.SubElement(f, "PROPERTY", NAME=k, VALUE=v)

    def busifs(el, aximm, streams):
        """aximm: [(name, MASTER|SLAVE)]; streams: [(name, INITIATOR|TARGET, {LOGICAL: (physical, width)})]"""
        b = ET.SubElement(el, "BUSINTERFACES")
        for name, kind in aximm:
            ET.SubElement(b, "BUSINTERFACE", BUSNAME=f"{el.get('INSTANCE')}_{name}", DATAWIDTH="32", NAME=name,
                          TYPE=kind, VLNV="xilinx.com:interface:aximm:1.0")
        for name, kind, sigs in streams:
            s = ET.SubElement(b, "BUSINTERFACE", BUSNAME=f"{el.get('INSTANCE')}_{name}", NAME=name, TYPE=kind,
                              VLNV="xilinx.com:interface:axis:1.0")
            pms = ET.SubElement(s, "PORTMAPS")
            for logical, (phys, width) in sigs.items():
                attrs = {"LEFT": str(width - 1), "RIGHT": "0"} if width > 1 else {}
                ET.SubElement(pms, "PORTMAP", LOGICAL=logical, PHYSICAL=phys, **attrs)

    # stream signals (physical port names as in the RTL and the AXI DMA IP), and who drives each
    def axis(prefix, keep):
        sigs = {"TDATA": (f"{prefix}_tdata", 64), "TVALID": (f"{prefix}_tvalid", 1),
                "TREADY": (f"{prefix}_tready", 1), "TLAST": (f"{prefix}_tlast", 1)}
        if keep:
            sigs["TKEEP"] = (f"{prefix}_tkeep", 8)
        return sigs

    dma_name, acc_name = design.DMA_IP["name"], design.ACCEL_IP["name"]
    bus_ports = {(dma_name, "M_AXIS_MM2S"): ("INITIATOR", axis("m_axis_mm2s", True)),
                 (dma_name, "S_AXIS_S2MM"): ("TARGET", axis("s_axis_s2mm", True)),
                 (acc_name, "s_axis"): ("TARGET", axis("s_axis", False)),
                 (acc_name, "m_axis"): ("INITIATOR", axis("m_axis", True))}
    links = {}                                     # (inst, physical port) -> (peer inst, peer port)
    for src, dst in design.CONNECTIONS:
        (si, sb), (di, db) = src.split("/"), dst.split("/")
        s_sigs, d_sigs = bus_ports[(si, sb)][1], bus_ports[(di, db)][1]
        for logical in s_sigs.keys() & d_sigs.keys():
            links[(si, s_sigs[logical][0])] = (di, d_sigs[logical][0])
            links[(di, d_sigs[logical][0])] = (si, s_sigs[logical][0])

    def ports(el):
        inst = el.get("INSTANCE")
        p = ET.SubElement(el, "PORTS")
        for (i, bname), (kind, sigs) in bus_ports.items():
            if i != inst:
                continue
            for logical, (phys, width) in sigs.items():
                out = (kind == "INITIATOR") != (logical == "TREADY")
                attrs = {"LEFT": str(width - 1), "RIGHT": "0"} if width > 1 else {}
                port = ET.SubElement(p, "PORT", DIR="O" if out else "I", NAME=phys, SIGIS="undef", **attrs)
                if (inst, phys) in links:
                    peer, peer_port = links[(inst, phys)]
                    cons = ET.SubElement(port, "CONNECTIONS")
                    ET.SubElement(cons, "CONNECTION", INSTANCE=peer, PORT=peer_port)

    # the PS7: FCLK0 at design.CLOCK_MHZ from the IO PLL, FCLK1-3 off
    io_pll = PS_REF_CLK_MHZ * 20
    ps_params = {}
    for i in range(4):
        on = i == 0
        d0, d1 = _fclk_divisors(io_pll, design.CLOCK_MHZ if on else 100.0)
        ps_params.update({f"PCW_FPGA_FCLK{i}_ENABLE": int(on), f"PCW_FCLK{i}_PERIPHERAL_CLKSRC": "IO PLL",
                          f"PCW_FCLK{i}_PERIPHERAL_DIVISOR0": d0, f"PCW_FCLK{i}_PERIPHERAL_DIVISOR1": d1})
        if on:
            mhz = f"{design.CLOCK_MHZ:.6f}"
            ps_params.update({f"PCW_FPGA{i}_PERIPHERAL_FREQMHZ": f"{design.CLOCK_MHZ:g}",
                              f"PCW_ACT_FPGA{i}_PERIPHERAL_FREQMHZ": mhz, _pynq_clock_freq_param(i): mhz})
    ps_params.update({"PCW_USE_" + design.HP_PORT: 1, "PCW_USE_M_AXI_GP0": 1, "PCW_UIPARAM_DDR_PARTNO": "PYNQ-Z1",
                      "PCW_CRYSTAL_PERIPHERAL_FREQMHZ": f"{PS_REF_CLK_MHZ:g}"})
    ps = module(PS_INSTANCE, PS_VLNV, "processing_system7", ps_params, IS_PL="FALSE", CONFIGURABLE="TRUE")
    busifs(ps, [("M_AXI_GP0", "MASTER"), (design.HP_PORT, "SLAVE")], [])
    mm = ET.SubElement(ps, "MEMORYMAP")
    mem_range(mm, dma_name, "Reg", design.DMA_IP["phys_addr"], design.DMA_IP["addr_range"], "M_AXI_GP0",
              "S_AXI_LITE", "REGISTER")
    mem_range(mm, acc_name, "Reg", design.ACCEL_IP["phys_addr"], design.ACCEL_IP["addr_range"], "M_AXI_GP0",
              "s_axil", "REGISTER")

    # the AXI DMA: every parameter twice (model parameter and user parameter), as Vivado writes them
    dma_params = {}
    for k, v in design.DMA_IP["parameters"].items():
        dma_params[k] = v
    for k, v in design.DMA_IP["parameters"].items():
        dma_params[k.lower()] = v
    dma_params["Component_Name"] = f"{design.OVERLAY}_{dma_name}_0"
    dma = module(dma_name, design.DMA_IP["vlnv"], "axi_dma", dma_params)
    resets = {MM2S_BASE + DMACR: CR_RESET_VALUE, S2MM_BASE + DMACR: CR_RESET_VALUE,
              MM2S_BASE + DMASR: SR_HALTED, S2MM_BASE + DMASR: SR_HALTED}
    registers(dma, "S_AXI_LITE", [(name, off, "read-write", doc, resets.get(off, 0), fields)
                                  for off, (name, doc, fields) in sorted(DMA_REGISTERS.items())])
    ports(dma)
    busifs(dma, [("S_AXI_LITE", "SLAVE"), ("M_AXI_MM2S", "MASTER"), ("M_AXI_S2MM", "MASTER")],
           [(b, bus_ports[(dma_name, b)][0], bus_ports[(dma_name, b)][1]) for b in ("M_AXIS_MM2S", "S_AXIS_S2MM")])
    mm = ET.SubElement(dma, "MEMORYMAP")
    for master in ("M_AXI_MM2S", "M_AXI_S2MM"):
        mem_range(mm, PS_INSTANCE, f"{design.HP_PORT[-3:]}_DDR_LOWOCM", design.DDR_BASE, design.DDR_SIZE, master,
                  design.HP_PORT, "MEMORY")

    # conv_accel: the build's Verilog parameters and regmap's registers
    acc_params = dict(cfg.params())
    acc_params["Component_Name"] = f"{design.OVERLAY}_{acc_name}_0"
    acc = module(acc_name, design.ACCEL_IP["vlnv"], "conv_accel", acc_params)
    access = {"R": "read-only", "W": "write-only", "RW": "read-write"}
    fields = {"STATUS": {"IDLE": (0, 1, "read-only", "no job running"),
                         "DONE": (1, 1, "read-only", "a job finished since the last START"),
                         "ERROR": (2, 1, "read-only", "the stream did not match the job")},
              "CTRL": {"START": (0, 1, "write-only", "start a job")},
              "FLAGS": {"RELU": (0, 1, "read-write", "ReLU on int8 outputs"),
                        "OUT_INT32": (1, 1, "read-write", "int32 accumulators + bias out")},
              "CONFIG": {"ROWS": (0, 8, "read-only", "array rows"), "COLS": (8, 8, "read-only", "array columns")}}
    registers(acc, "s_axil", [(name, off, access[mode], doc, 0, fields.get(name, {}))
                              for name, (off, mode, doc) in regmap.REGISTERS.items()])
    ports(acc)
    busifs(acc, [("s_axil", "SLAVE")],
           [(b, bus_ports[(acc_name, b)][0], bus_ports[(acc_name, b)][1]) for b in ("s_axis", "m_axis")])
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ------------------------------------------------------------------------------------------- trace
@dataclass
class TraceEntry:
    """One PS access to the PL (op 'R' read, 'W' write) or an event of the model (op 'E')."""
    cycle: int                  # simulated clock cycle (FCLK0) at the access
    ip: str                     # 'axi_dma_0', 'conv_accel_0', 'ps7_slcr', 'ddr', 'cache' (flush/invalidate)
    offset: int                 # byte offset in the IP's window (the buffer offset for cache events)
    reg: str                    # register name (regmap.REGISTERS, DMA_REGISTERS) or event name
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


def format_trace(entries, last: int | None = None, ip: str | None = None, ops: str = "RWE") -> str:
    """The trace as a table: cycle, time (us), IP, R/W/* (event), offset, register, value [x count] and notes."""
    rows = [e for e in entries if (ip is None or e.ip == ip) and e.op in ops]
    if last is not None:
        rows = rows[-last:]
    head = f"{'cycle':>10} {'time (us)':>11}  {'ip':<13} {'op':<2} {'offset':>7}  {'register':<14} value"
    return "\n".join([head, "-" * len(head)] + [str(e) for e in rows])


# ------------------------------------------------------------------------------------------- DDR
class _DDR:
    """The simulated DDR (what DMA masters see) and a first-fit allocator for pynq buffers."""

    def __init__(self, base: int, size: int, pool_base: int, pool_size: int):
        self.base, self.size = base, size
        self.mem = np.zeros(size, np.uint8)       # calloc'ed: only pages that are touched use memory
        self.free_list = [(pool_base, pool_size)]

    def contains(self, addr: int, n: int) -> bool:
        return self.base <= addr and addr + n <= self.base + self.size

    def view(self, addr: int, n: int) -> np.ndarray:
        return self.mem[addr - self.base:addr - self.base + n]

    def alloc(self, n: int) -> int:
        n = -(-max(n, 1) // PAGE) * PAGE
        for i, (a, s) in enumerate(self.free_list):
            if s >= n:
                self.free_list[i:i + 1] = [(a + n, s - n)] if s > n else []
                return a
        raise MemoryError(f"virtual PYNQ: no {n} contiguous bytes left in the {CMA_SIZE >> 20} MB buffer pool")

    def free(self, addr: int, n: int) -> None:
        n = -(-max(n, 1) // PAGE) * PAGE
        fl = sorted(self.free_list + [(addr, n)])
        merged = []
        for a, s in fl:
            if merged and merged[-1][0] + merged[-1][1] == a:
                merged[-1] = (merged[-1][0], merged[-1][1] + s)
            else:
                merged.append((a, s))
        self.free_list = merged


@dataclass
class _Alloc:
    phys: int
    size: int
    cacheable: bool
    backing: object             # weakref to the CPU-side bytes (cacheable buffers)


# ------------------------------------------------------------------------------------------- AXI DMA
class _Channel:
    """One direction of the AXI DMA: its registers and the transfer under way."""

    def __init__(self, name: str, base: int):
        self.name, self.base = name, base
        self.reset()

    def reset(self) -> None:
        self.cr = CR_RESET_VALUE
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
        return bool(self.cr & CR_RS)

    def sr(self) -> int:
        return ((SR_HALTED if self.halted else 0) | (SR_IDLE if self.idle and not self.halted else 0)
                | self.err | self.irq)


class AxiDmaModel:
    """The AXI DMA (PG021 v7.1) in direct register mode, at the register level, between DDR and conv_accel.

    MM2S (offset 0x00) reads [SA, SA + LENGTH) from DDR into s_axis with tlast on the last beat; S2MM (0x30)
    writes m_axis to DA until tlast (LENGTH then reads back the bytes received) or flags DMAIntErr when the
    packet is longer than LENGTH. Writing LENGTH starts a transfer (no effect while halted); a zero LENGTH is
    DMAIntErr, a range outside DDR DMADecErr; an error clears RS and the channel halts, HALT_DELAY cycles
    later (so a wait() already polling sees the error bit before the halt). CR bit 2 resets the whole DMA; until
    then a channel with error bits ignores RS = 1, and after SPIN_LIMIT status reads of such a channel the model
    raises (pynq's start() polls it forever). Transfers that stall longer than the device's budget_cycles are
    flagged DMAIntErr (the watchdog). Driven by VirtualDevice: read()/write() for the registers, sync() after
    the simulation ran, advance() to let time pass.
    """

    def __init__(self, dev: "VirtualDevice"):
        self.dev = dev
        p = design.DMA_IP["parameters"]
        self.len_mask = (1 << int(p["C_SG_LENGTH_WIDTH"])) - 1
        self.addr_width = int(p["C_ADDR_WIDTH"])
        self.align = {"MM2S": int(p["C_M_AXI_MM2S_DATA_WIDTH"]) // 8, "S2MM": int(p["C_M_AXI_S2MM_DATA_WIDTH"]) // 8}
        self.dre = {"MM2S": bool(p["C_INCLUDE_MM2S_DRE"]), "S2MM": bool(p["C_INCLUDE_S2MM_DRE"])}
        self.mm2s, self.s2mm = _Channel("MM2S", MM2S_BASE), _Channel("S2MM", S2MM_BASE)
        self.pushed = self.pulled = 0             # bytes into s_axis / out of m_axis, for the watchdog
        self._mark, self._last_progress = None, 0
        self._gate_s2mm()

    # -- helpers
    @property
    def sim(self) -> vsim.VerilatedAccel:
        return self.dev.sim

    def _now(self) -> int:
        return self.sim.cycles

    def _decode(self, offset: int):
        ch = self.s2mm if offset >= S2MM_BASE else self.mm2s
        return ch, offset - ch.base

    def _event(self, ch: _Channel, what: str, value: int = 0, note: str = "") -> None:
        self.dev._record(design.DMA_IP["name"], ch.base, f"{ch.name} {what}", "E", value, note)

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
        if reg == DMACR:
            return ch.cr
        if reg == DMASR:
            if ch.refused and ch.halted:
                ch.refused += 1
                if ch.refused > SPIN_LIMIT:
                    ch.refused = 1
                    raise RuntimeError(f"virtual PYNQ: {design.DMA_IP['name']} {ch.name} stays halted: an error "
                                       f"({dma_status_text(ch.sr())}) makes it ignore run/stop until the DMA is "
                                       "reset (write 4 to DMACR, then start the channels); pynq's start() would "
                                       "spin here forever on the board")
            return ch.sr()
        if reg == ADDR:
            return ch.addr
        if reg == ADDR_MSB:
            return ch.addr_msb if self.addr_width > 32 else 0
        if reg == LENGTH:
            return ch.length
        return 0

    def write(self, offset: int, value: int) -> None:
        ch, reg = self._decode(offset)
        value &= 0xFFFF_FFFF
        if reg == DMACR:
            if value & CR_RESET:
                self.soft_reset()
                return
            was = ch.running
            ch.cr = (value & ~CR_RESET) | 0x2
            if ch.running and not was:
                if ch.err:
                    ch.cr &= ~CR_RS
                    ch.refused = 1
                    log.warning("virtual PYNQ: %s %s cannot run with error bits set (%s): reset the DMA first "
                                "(DMACR bit 2)", design.DMA_IP["name"], ch.name, dma_status_text(ch.sr()))
                else:
                    ch.halted, ch.halt_at = False, None
            elif was and not ch.running:
                self._halt(ch, "run/stop cleared")
        elif reg == DMASR:
            ch.irq &= ~(value & SR_IRQS)
        elif reg == ADDR:
            ch.addr = value
        elif reg == ADDR_MSB:
            if self.addr_width > 32:
                ch.addr_msb = value
        elif reg == LENGTH:
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
    def _halt(self, ch: _Channel, why: str) -> None:
        """Stop a channel (RS = 0): a transfer under way is abandoned; Halted rises HALT_DELAY cycles later."""
        ch.cr &= ~CR_RS
        if ch.busy:
            if ch is self.mm2s:
                self.sim.clear_input(keep_current=False)
            ch.busy = False
            self._gate_s2mm()
            self._event(ch, "abort", ch.done, f"{why}: transfer abandoned after {ch.done} of {ch.xfer_len} bytes")
        ch.idle = False
        if not ch.halted and ch.halt_at is None:
            ch.halt_at = self._now() + HALT_DELAY

    def _error(self, ch: _Channel, bit: int, msg: str) -> None:
        ch.err |= bit
        ch.irq |= SR_ERR_IRQ
        log.warning("virtual PYNQ: %s %s %s: %s", design.DMA_IP["name"], ch.name, _SR_NAMES[bit], msg)
        self._event(ch, "error", bit, f"{_SR_NAMES[bit]}: {msg}")
        self._halt(ch, _SR_NAMES[bit])

    def _start(self, ch: _Channel, n: int) -> None:
        ch.length = n
        if not ch.running or ch.halted:
            log.info("virtual PYNQ: %s_LENGTH written while the channel is halted: no effect (PG021)", ch.name)
            return
        if ch.busy:
            log.warning("virtual PYNQ: %s_LENGTH written during a transfer (undefined on the IP): ignored", ch.name)
            return
        addr = ch.addr | (ch.addr_msb << 32 if self.addr_width > 32 else 0)
        if n == 0:
            self._error(ch, SR_INT_ERR, "transfer length 0")
            return
        if not self.dev.ddr.contains(addr, n):
            self._error(ch, SR_DEC_ERR, f"[{addr:#010x}, {addr + n:#010x}) is not in DDR "
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
            self.dev._check_flushed(addr, n)
            self.sim.push(self.dev.ddr.view(addr, n).copy(), last=True)
            self.pushed += n
        else:
            self.dev._check_owned(addr, n)
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
                self._error(ch, SR_INT_ERR, f"the packet is longer than S2MM_LENGTH = {ch.xfer_len} bytes "
                                            f"({data.size - room} more bytes arrived before its tlast)")
                return
        if last:
            ch.busy, ch.idle = False, True
            ch.irq |= SR_IOC_IRQ
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
                ch.irq |= SR_IOC_IRQ
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
            st = vsim.status_bits(self.sim.read_reg("STATUS"))
        except vsim.VsimError:
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
            self._error(ch, SR_INT_ERR, f"no beat moved on either stream for {idle} cycles (budget_cycles="
                                        f"{self.dev.budget_cycles}); {done}; conv_accel STATUS={st}. {hint} "
                                        "(the simulation's watchdog: a board would hang here)")

    def conditions(self) -> tuple[int, int]:
        """vsim.run_until conditions that end a transfer under way."""
        cond, n_last = 0, 0
        if self.mm2s.busy:
            cond |= vsim.COND_IN_EMPTY
        if self.s2mm.busy:
            cond |= vsim.COND_OUT_LAST
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


# ------------------------------------------------------------------------------------------- the device
_MISSING = object()
_orig_resolve = None
_SLCR_RESET = {0x100: 26 << 12, 0x104: 21 << 12, 0x108: 20 << 12,       # ARM / DDR / IO PLL feedback dividers
               0x120: (2 << 8) | 0x1F00_0000}                            # CPU clock: ARM PLL / 2


def _resolve_bitstream(path, device):
    """pynq.bitstream._resolve_bitstream, plus the virtual overlay for a VirtualDevice."""
    found = _orig_resolve(path, device)
    if found is None and isinstance(device, VirtualDevice):
        return device._virtual_bitfile(path)
    return found


def _install_resolver() -> None:
    global _orig_resolve
    if _orig_resolve is None:
        _orig_resolve = pynq.bitstream._resolve_bitstream
        pynq.bitstream._resolve_bitstream = _resolve_bitstream


def _overlay_ext_paths() -> list[str]:
    """Where pynq looks for overlays by name besides the working directory (Bitstream.__init__)."""
    try:
        import pynqutils
        mgr = pynqutils.setup_utils.ExtensionsManager(pynq.bitstream.OVERLAYS_GROUP)
        return [os.path.abspath(p) for p in [mgr.extension_path(pynq.bitstream.OVERLAYS_GROUP)] + list(mgr.paths)]
    except Exception:
        return []


class VirtualDevice(Device):
    """A PYNQ-Z1 in simulation: pynq's Device API over the Verilated conv_accel, a model of the AXI DMA, a
    simulated DDR and a register trace. See the module docstring.

    config: the accelerator build to simulate (a name in accel.CONFIGS or an AccelConfig; default the overlay's,
        design.CONFIG); its parameters go into conv_accel_0's ip_dict entry.
    poll_cycles: simulated cycles each PS read of a PL register lets pass (~ one Python MMIO access).
    budget_cycles: cycles a DMA transfer may go without a beat on either stream before the DMA model flags
        DMAIntErr and halts the channel (so pynq's wait() raises instead of spinning forever).
    trace_limit: entries kept in `trace` (the oldest are dropped); None keeps all.
    cacheable: the default of allocate(cacheable=...): True gives a CPU copy that needs flush/invalidate.
    quiet: no message when the Verilator library is built.
    """

    def __init__(self, config=None, *, poll_cycles: int = 100, budget_cycles: int = 1_000_000,
                 trace_limit: int | None = 10_000, cacheable: bool = True, quiet: bool = False):
        super().__init__(f"virtual_{design.BOARD.lower().replace('-', '_')}")
        self.name = f"{design.BOARD} (virtual)"
        self.arch = "armv7l"                     # pynq.ps.ZYNQ_ARCH: pynq.Clocks drives the emulated SLCR
        self.capabilities = {"REGISTER_RW": True, "MEMORY_MAPPED": False, "CALLABLE": False}
        self.cfg = accel.config(config or design.CONFIG)
        if self.cfg != design.CONFIG:
            log.info("virtual PYNQ: simulating accelerator build '%s' instead of the overlay's '%s'",
                     self.cfg.name, design.CONFIG.name)
        self.poll_cycles, self.budget_cycles = int(poll_cycles), int(budget_cycles)
        self.trace: list[TraceEntry] = []
        self.trace_limit, self.trace_enabled = trace_limit, True
        self.default_cacheable = bool(cacheable)
        self.quiet = quiet
        self.clear_dict()
        self.timestamp, self.bitfile_name = "", None
        self.sim: vsim.VerilatedAccel | None = None
        self.dma: AxiDmaModel | None = None
        self.programmed = False
        ddr_top = design.DDR_BASE + design.DDR_SIZE
        self.ddr = _DDR(design.DDR_BASE, design.DDR_SIZE, ddr_top - CMA_SIZE, CMA_SIZE)
        self._allocs: dict[int, _Alloc] = {}
        self._next_bo = 1
        self._slcr = dict(_SLCR_RESET)
        d0, d1 = _fclk_divisors(PS_REF_CLK_MHZ * 20, design.CLOCK_MHZ)
        for off in (0x170, 0x180, 0x190, 0x1A0):
            self._slcr[off] = (d1 << 20) | (d0 << 8)
        self._slcr_names = _slcr_names()
        self._backpressure = ("none", {})
        self._dir = tempfile.mkdtemp(prefix="pynq_sim_")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self._saved = None
        self.bitfile = os.path.join(self._dir, f"{design.OVERLAY}.bit")
        self.hwh_path = os.path.join(self._dir, f"{design.OVERLAY}.hwh")
        with open(self.bitfile, "w") as fh:
            fh.write("virtual PYNQ placeholder bitstream (pytorch_fpga.pynq_sim): the PL is the Verilated RTL\n")
        with open(self.hwh_path, "w") as fh:
            fh.write(overlay_hwh(self.cfg))
        _install_resolver()

    def __repr__(self):
        return f"<VirtualDevice {self.name} accel={self.cfg.name} bitfile={self.bitfile_name}>"

    # -- activation
    def activate(self) -> "VirtualDevice":
        """Make this pynq's active device (pynq.Device.active_device); deactivate() restores the previous one."""
        from pynq.ps import Clocks
        if self._saved is None:
            self._saved = (Device.__dict__.get("_active_device", _MISSING), Clocks.__dict__.get("device", _MISSING),
                           Clocks.__dict__.get("_real_instance", _MISSING))
        Device.active_device = self
        Clocks.set_device(self)
        self._drop_clocks()
        return self

    def deactivate(self) -> None:
        """Restore the active device (and pynq.Clocks' device) from before activate()."""
        from pynq.ps import Clocks
        if self._saved is None:
            return
        prev, clk_dev, clk_inst = self._saved
        self._saved = None
        if Device.__dict__.get("_active_device") is self:
            if prev is _MISSING:
                del Device._active_device
            else:
                Device.active_device = prev
        if Clocks.__dict__.get("device") is self:
            Clocks.device = None if clk_dev is _MISSING else clk_dev
        inst = Clocks.__dict__.get("_real_instance")
        if inst is not None and self._clocks_device(inst) is self:
            del Clocks._real_instance
            if clk_inst is not _MISSING:
                Clocks._real_instance = clk_inst

    @staticmethod
    def _clocks_device(inst):
        return getattr(getattr(inst, "_slcr_mmio", None), "device", None)

    def _drop_clocks(self) -> None:
        """Forget pynq.Clocks' cached implementation (it binds the device it was made for) unless it is ours."""
        from pynq.ps import Clocks
        inst = Clocks.__dict__.get("_real_instance")
        if inst is not None and self._clocks_device(inst) is not self:
            del Clocks._real_instance

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Deactivate, free the simulation and remove the generated files."""
        self.deactivate()
        if self.sim is not None:
            self.sim.close()
            self.sim = None
        self.programmed = False
        self._finalizer()

    # -- bitstream and metadata
    def _virtual_bitfile(self, path: str) -> str | None:
        """The placeholder .bit for a path naming the overlay that pynq could not find (None otherwise)."""
        path = os.path.abspath(path)
        if os.path.splitext(os.path.basename(path))[0] != design.OVERLAY:
            return None
        for p in _overlay_ext_paths():             # Bitstream.__init__ also tries the overlay packages: answer once
            if path.startswith(p + os.sep):
                return None
        return self.bitfile

    def get_bitfile_metadata(self, bitfile_name: str, partial: bool = False):
        """pynq's runtime metadata (ip_dict, mem_dict, clock_dict, ...) parsed from the .hwh of design.py.

        Whatever the bitfile, the virtual PL is the overlay of design.py (the generated hwh_path)."""
        from pynqmetadata.frontends import Metadata
        from pynqmetadata.views.runtime import RuntimeMetadataParser
        if partial:
            raise NotImplementedError("the virtual PYNQ has no partial reconfiguration")
        self._drop_clocks()
        parser = RuntimeMetadataParser(Metadata(input=self.hwh_path))
        parser.bin_data = parser.xclbin_data = parser.dtbo_data = None
        return parser

    def download(self, bitstream, parser=None):
        """'Program' the PL: a hard reset of the RTL and the DMA model (DDR keeps its contents)."""
        if getattr(bitstream, "partial", False):
            raise NotImplementedError("the virtual PYNQ has no partial reconfiguration")
        if parser is None:
            parser = self.get_bitfile_metadata(bitstream.bitfile_name)
        self.reset_pl()
        self._record("pl", 0, "download", "E", 0, os.path.basename(bitstream.bitfile_name))
        self.post_download(bitstream, parser, self.name)

    def gen_cache(self, bitstream, parser=None):
        """Nothing to cache off-board."""

    def reset_pl(self) -> None:
        """Reset the PL as programming it does: conv_accel hard reset, the DMA back to its reset state."""
        if self.sim is None:
            self.sim = vsim.VerilatedAccel(self.cfg, quiet=self.quiet)
        else:
            self.sim.reset()
        self.sim.set_idle("none")
        self.dma = AxiDmaModel(self)
        self.programmed = True

    # -- streams
    def set_backpressure(self, kind: str = "none", **kwargs) -> None:
        """S2MM's tready pattern while a receive transfer is programmed (vsim.set_backpressure's arguments)."""
        self._backpressure = (kind, kwargs)
        if self.dma is not None:
            self.dma._gate_s2mm()

    @property
    def cycles(self) -> int:
        """Simulated FCLK0 cycles since the PL was first programmed."""
        return self.sim.cycles if self.sim is not None else 0

    # -- registers (the REGISTER_RW capability)
    def _window(self, address: int, length: int):
        for ip in (design.DMA_IP, design.ACCEL_IP):
            base = ip["phys_addr"]
            if base <= address and address + length <= base + ip["addr_range"]:
                if not self.programmed:
                    raise RuntimeError(f"virtual PYNQ: {ip['name']} at {address:#010x} is in the PL, which is not "
                                       "programmed: load the overlay first (pynq.Overlay)")
                return ip["name"], address - base
        if SLCR_BASE <= address and address + length <= SLCR_BASE + SLCR_RANGE:
            return "ps7_slcr", address - SLCR_BASE
        if self.ddr.contains(address, length):
            return "ddr", address
        raise RuntimeError(f"virtual PYNQ: nothing answers at {address:#010x} (+{length} bytes); on the board "
                           "this access would hang the bus")

    def read_registers(self, address: int, length: int) -> bytes:
        ip, off = self._window(address, length)
        if ip == "ddr":
            return self.ddr.view(off, length).tobytes()
        if length % 4 or off % 4:
            raise MemoryError(f"virtual PYNQ: unaligned {length}-byte read at {address:#010x}")
        out = bytearray()
        for w in range(0, length, 4):
            out += self._read_word(ip, off + w).to_bytes(4, "little")
        return bytes(out)

    def write_registers(self, address: int, data) -> None:
        data = bytes(data)
        ip, off = self._window(address, len(data))
        if ip == "ddr":
            self.ddr.view(off, len(data))[:] = np.frombuffer(data, np.uint8)
            self._record("ddr", off, "", "W", int.from_bytes(data[:4], "little"), f"{len(data)} bytes")
            return
        if len(data) % 4 or off % 4:
            raise MemoryError(f"virtual PYNQ: unaligned {len(data)}-byte write at {address:#010x}")
        for w in range(0, len(data), 4):
            self._write_word(ip, off + w, int.from_bytes(data[w:w + 4], "little"))

    def _read_word(self, ip: str, off: int) -> int:
        if ip == "ps7_slcr":
            v = self._slcr.get(off, 0)
            self._record(ip, off, self._slcr_names.get(off, ""), "R", v)
            return v
        if ip == design.DMA_IP["name"]:
            self.dma.sync()
            v = self.dma.read(off)
            name = DMA_REGISTERS.get(off, (f"+{off:#04x}",))[0]
            self._record(ip, off, name, "R", v, dma_status_text(v) if off in (0x04, 0x34) else "")
        else:
            v = self.sim.read_reg(off)
            name = _accel_reg_name(off)
            self._record(ip, off, name, "R", v, vsim.status_bits(v) if name == "STATUS" else "")
        self.dma.advance(self.poll_cycles)        # the PS's next access comes this much later
        return v

    def _write_word(self, ip: str, off: int, value: int) -> None:
        if ip == "ps7_slcr":
            self._record(ip, off, self._slcr_names.get(off, ""), "W", value)
            self._slcr[off] = value
            return
        if ip == design.DMA_IP["name"]:
            self.dma.sync()
            self._record(ip, off, DMA_REGISTERS.get(off, (f"+{off:#04x}",))[0], "W", value)
            self.dma.write(off, value)
        else:
            self._record(ip, off, _accel_reg_name(off), "W", value)
            self.sim.write_reg(off, value)
            self.dma.sync()

    # -- memory
    def allocate(self, shape, dtype="u4", cacheable: bool | None = None, **kwargs) -> PynqBuffer:
        """A PynqBuffer at a physical address in DDR. cacheable (default: the device's): the buffer's memory is
        the CPU's copy, synchronised with DDR by flush()/invalidate(); cacheable=False: it is DDR itself."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = max(n, 1)
        phys = self.ddr.alloc(size)
        ddr = self.ddr.view(phys, size)
        ddr[:] = 0                                  # the kernel hands out zeroed memory
        cacheable = self.default_cacheable if cacheable is None else bool(cacheable)
        backing = np.zeros(size, np.uint8) if cacheable else ddr
        bo, self._next_bo = self._next_bo, self._next_bo + 1
        buf = PynqBuffer(shape, dtype, buffer=backing, device=self, device_address=phys, bo=bo, coherent=False)
        self._allocs[bo] = _Alloc(phys, size, cacheable, weakref.ref(backing) if cacheable else None)
        weakref.finalize(backing, self._free, bo)
        return buf

    def _free(self, bo: int) -> None:
        a = self._allocs.pop(bo, None)
        if a is not None:
            self.ddr.free(a.phys, a.size)

    def _sync_cache(self, bo, offset: int, size: int, to_ddr: bool) -> None:
        a = self._allocs.get(bo)
        if a is None:
            raise RuntimeError(f"virtual PYNQ: {'flush' if to_ddr else 'invalidate'} of a buffer that is not "
                               "allocated on this device")
        if not a.cacheable or size <= 0:
            return
        cpu = a.backing()
        if cpu is None:
            return
        ddr = self.ddr.view(a.phys + offset, size)
        if to_ddr:
            ddr[:] = cpu[offset:offset + size]
        else:
            cpu[offset:offset + size] = ddr
        self._record("cache", offset, "flush" if to_ddr else "invalidate", "E", size,
                     f"{'flush' if to_ddr else 'invalidate'} {size} bytes at {a.phys + offset:#010x}")

    def flush(self, bo, offset, ptr, size):
        """PynqBuffer.flush(): the CPU's copy -> DDR (what the DMA reads)."""
        self._sync_cache(bo, offset, size, True)

    def invalidate(self, bo, offset, ptr, size):
        """PynqBuffer.invalidate(): DDR (what the DMA wrote) -> the CPU's copy."""
        self._sync_cache(bo, offset, size, False)

    def _overlaps(self, addr: int, n: int):
        for a in list(self._allocs.values()):
            lo, hi = max(a.phys, addr), min(a.phys + a.size, addr + n)
            if lo < hi:
                yield a, lo, hi

    def _check_flushed(self, addr: int, n: int) -> None:
        """Warn when MM2S reads buffer bytes whose CPU copy differs from DDR (a missing flush)."""
        for a, lo, hi in self._overlaps(addr, n):
            cpu = a.backing() if a.cacheable else None
            if cpu is None:
                continue
            diff = int(np.count_nonzero(cpu[lo - a.phys:hi - a.phys] != self.ddr.view(lo, hi - lo)))
            if diff:
                msg = (f"MM2S reads [{lo:#010x}, {hi:#010x}) where {diff} bytes of the buffer at {a.phys:#010x} "
                       "differ between the CPU's copy and DDR: missing flush()? (the DMA sees DDR)")
                log.warning("virtual PYNQ: %s", msg)
                self._record(design.DMA_IP["name"], MM2S_BASE, "MM2S stale", "E", diff, msg)

    def _check_owned(self, addr: int, n: int) -> None:
        covered = sum(hi - lo for _, lo, hi in self._overlaps(addr, n))
        if covered < n:
            log.warning("virtual PYNQ: S2MM writes [%#010x, %#010x), not all of it in pynq buffers: on the board "
                        "this corrupts memory the kernel owns", addr, addr + n)

    # -- trace
    def _record(self, ip: str, offset: int, reg: str, op: str, value: int, note: str = "") -> None:
        if not self.trace_enabled:
            return
        cycle = self.cycles
        t = self.trace
        if op == "R" and t:
            e = t[-1]
            if e.op == "R" and e.ip == ip and e.offset == offset and e.value == value:
                e.count += 1
                e.last_cycle = cycle
                return
        t.append(TraceEntry(cycle, ip, offset, reg, op, int(value), 1, note))
        if self.trace_limit is not None and len(t) > self.trace_limit + max(16, self.trace_limit // 8):
            del t[:len(t) - self.trace_limit]

    def clear_trace(self) -> None:
        """Empty the register trace."""
        self.trace.clear()

    def format_trace(self, last: int | None = None, ip: str | None = None, ops: str = "RWE") -> str:
        """The trace as a table (see format_trace)."""
        return format_trace(self.trace, last=last, ip=ip, ops=ops)

    def print_trace(self, last: int | None = None, ip: str | None = None, ops: str = "RWE") -> None:
        """Print the trace: the last `last` entries, of one IP, of some ops ('R', 'W', 'E')."""
        print(self.format_trace(last=last, ip=ip, ops=ops))


def virtual_pynq(config=None, **kwargs) -> VirtualDevice:
    """A VirtualDevice, made pynq's active device. Use the result as a context manager to restore the previous
    active device (and free the simulation) at the end, or call .deactivate() / .close() yourself.

    config: the accelerator build ('z1', the overlay's, by default; 'sim8' simulates faster); kwargs: as
    VirtualDevice (poll_cycles, budget_cycles, trace_limit, cacheable, quiet).
    """
    return VirtualDevice(config, **kwargs).activate()
