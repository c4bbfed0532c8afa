"""The virtual PYNQ's pynq.Device: the PL's address map over the Verilated conv_accel, the DMA model and DDR."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref

import numpy as np
import pynq
import pynq.bitstream
from pynq.buffer import PynqBuffer
from pynq.pl_server.device import Device

from pytorch_fpga.contract import accel, design
from pytorch_fpga.sim import memory as mem
from pytorch_fpga.sim import verilated
from pytorch_fpga.sim.virtual_pynq.ddr import CMA_SIZE, DDR
from pytorch_fpga.sim.virtual_pynq.dma import AxiDmaModel
from pytorch_fpga.sim.virtual_pynq.hwh import PS_REF_CLK_MHZ, fclk_divisors, overlay_hwh
from pytorch_fpga.sim.virtual_pynq.trace import BusAccess, append_access, format_trace, read_note, register_name

log = logging.getLogger(__name__)

SLCR_BASE, SLCR_RANGE = 0xF800_0000, 0x1000      # PS7 System Level Control Registers (clocks)

_MISSING = object()
_orig_resolve = None
_SLCR_RESET = {0x100: 26 << 12, 0x104: 21 << 12, 0x108: 20 << 12,       # ARM / DDR / IO PLL feedback dividers
               0x120: (2 << 8) | 0x1F00_0000}                            # CPU clock: ARM PLL / 2


def _slcr_names() -> dict:
    try:
        from pynq.ps import ZYNQ_SLCR_REGISTERS
        return {v["address_offset"]: k for k, v in ZYNQ_SLCR_REGISTERS.items()}
    except ImportError:                           # only the names in the trace depend on it
        return {}


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
    simulated DDR and a register trace. See the docstring of pytorch_fpga.sim.virtual_pynq.

    config: the accelerator build to simulate (a name in accel.CONFIGS or an AccelConfig; default the overlay's,
        design.CONFIG); its parameters go into conv_accel_0's ip_dict entry.
    poll_cycles: simulated cycles each PS read of a PL register lets pass (~ one Python MMIO access).
    budget_cycles: cycles a DMA transfer may go without a beat on either stream before the DMA model flags
        DMAIntErr and halts the channel (so pynq's wait() raises instead of spinning forever).
    trace_limit: entries kept in `trace` (the oldest are dropped); None keeps all.
    cacheable: the default of allocate(cacheable=...): True gives a CPU copy that needs flush/invalidate.
    quiet: no message when the Verilator library is built.
    memory: the DDR the DMA streams from (pytorch_fpga.sim.memory.MemoryModel: bandwidth, latency, set-up); None:
        ideal, a beat every cycle. See set_memory.
    """

    def __init__(self, config=None, *, poll_cycles: int = 100, budget_cycles: int = 1_000_000,
                 trace_limit: int | None = 10_000, cacheable: bool = True, quiet: bool = False, memory=None):
        super().__init__(f"virtual_{design.BOARD.lower().replace('-', '_')}")
        self.name = f"{design.BOARD} (virtual)"
        self.arch = "armv7l"                     # pynq.ps.ZYNQ_ARCH: pynq.Clocks drives the emulated SLCR
        self.capabilities = {"REGISTER_RW": True, "MEMORY_MAPPED": False, "CALLABLE": False}
        self.cfg = accel.config(config or design.CONFIG)
        if self.cfg != design.CONFIG:
            log.info("virtual PYNQ: simulating accelerator build '%s' instead of the overlay's '%s'",
                     self.cfg.name, design.CONFIG.name)
        self.poll_cycles, self.budget_cycles = int(poll_cycles), int(budget_cycles)
        self.trace: list[BusAccess] = []
        self.trace_limit, self.trace_enabled = trace_limit, True
        self.default_cacheable = bool(cacheable)
        self.quiet = quiet
        self.clear_dict()
        self.timestamp, self.bitfile_name = "", None
        self.sim: verilated.VerilatedAccel | None = None
        self.dma: AxiDmaModel | None = None
        self.programmed = False
        ddr_top = design.DDR_BASE + design.DDR_SIZE
        self.ddr = DDR(design.DDR_BASE, design.DDR_SIZE, ddr_top - CMA_SIZE, CMA_SIZE)
        self._slcr = dict(_SLCR_RESET)
        d0, d1 = fclk_divisors(PS_REF_CLK_MHZ * 20, design.CLOCK_MHZ)
        for off in (0x170, 0x180, 0x190, 0x1A0):
            self._slcr[off] = (d1 << 20) | (d0 << 8)
        self._slcr_names = _slcr_names()
        self._backpressure = ("none", {})
        self.memory, self._bp_from_memory = None, False
        self.set_memory(memory)
        self._dir = tempfile.mkdtemp(prefix="pynq_sim_")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self._saved = None
        self.bitfile = os.path.join(self._dir, f"{design.OVERLAY}.bit")
        self.hwh_path = os.path.join(self._dir, f"{design.OVERLAY}.hwh")
        with open(self.bitfile, "w") as fh:
            fh.write("virtual PYNQ placeholder bitstream (pytorch_fpga.sim.virtual_pynq): the PL is the Verilated "
                     "RTL\n")
        with open(self.hwh_path, "w") as fh:
            fh.write(overlay_hwh(self.cfg))
        _install_resolver()

    def __repr__(self):
        return f"<VirtualDevice {self.name} accel={self.cfg.name} bitfile={self.bitfile_name}>"

    # -- activation
    def activate(self) -> VirtualDevice:
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
            self.sim = verilated.VerilatedAccel(self.cfg, quiet=self.quiet)
        else:
            self.sim.reset()
        self._apply_memory()
        self.dma = AxiDmaModel(self)
        self.programmed = True

    # -- streams
    def set_backpressure(self, kind: str = "none", **kwargs) -> None:
        """S2MM's tready pattern while a receive transfer is programmed (verilated.set_backpressure's arguments)."""
        self._backpressure, self._bp_from_memory = (kind, kwargs), False
        if self.dma is not None:
            self.dma._gate_s2mm()

    def set_memory(self, memory=None) -> None:
        """The memory model MM2S streams through (a MemoryModel; None: ideal). Its S2MM limit, if it has one,
        becomes S2MM's tready pattern (a later set_backpressure overrides it). Holds across PL downloads."""
        memory = mem.check(memory)
        if memory is not None:
            memory.check_clock(self.cfg)
        out = memory.output_pattern() if memory is not None else None
        if out is not None or self._bp_from_memory:
            self._backpressure, self._bp_from_memory = out or ("none", {}), out is not None
        self.memory = memory
        if self.sim is not None:
            self._apply_memory()
        if self.dma is not None:
            self.dma._gate_s2mm()

    def _apply_memory(self) -> None:
        """The memory model's input pattern and first-beat delay on the harness (S2MM goes through the DMA)."""
        if self.memory is None:
            self.sim.set_idle("none")
            self.sim.set_input_delay(0)
        else:
            self.memory.apply(self.sim, output=False)

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
        else:
            v = self.sim.read_reg(off)
        self._record(ip, off, register_name(ip, off), "R", v, read_note(ip, off, v))
        self.dma.advance(self.poll_cycles)        # the PS's next access comes this much later
        return v

    def _write_word(self, ip: str, off: int, value: int) -> None:
        if ip == "ps7_slcr":
            self._record(ip, off, self._slcr_names.get(off, ""), "W", value)
            self._slcr[off] = value
            return
        if ip == design.DMA_IP["name"]:
            self.dma.sync()
            self._record(ip, off, register_name(ip, off), "W", value)
            self.dma.write(off, value)
        else:
            self._record(ip, off, register_name(ip, off), "W", value)
            self.sim.write_reg(off, value)
            self.dma.sync()

    # -- memory
    def allocate(self, shape, dtype="u4", cacheable: bool | None = None, **kwargs) -> PynqBuffer:
        """A PynqBuffer at a physical address in DDR. cacheable (default: the device's): the buffer's memory is
        the CPU's copy, synchronised with DDR by flush()/invalidate(); cacheable=False: it is DDR itself."""
        cacheable = self.default_cacheable if cacheable is None else bool(cacheable)
        return self.ddr.buffer(self, shape, dtype, cacheable)

    def _sync_cache(self, bo, offset: int, size: int, to_ddr: bool) -> None:
        phys = self.ddr.sync(bo, offset, size, to_ddr)
        if phys is not None:
            what = "flush" if to_ddr else "invalidate"
            self._record("cache", offset, what, "E", size, f"{what} {size} bytes at {phys:#010x}")

    def flush(self, bo, offset, ptr, size):
        """PynqBuffer.flush(): the CPU's copy -> DDR (what the DMA reads)."""
        self._sync_cache(bo, offset, size, True)

    def invalidate(self, bo, offset, ptr, size):
        """PynqBuffer.invalidate(): DDR (what the DMA wrote) -> the CPU's copy."""
        self._sync_cache(bo, offset, size, False)

    # -- trace
    def _record(self, ip: str, offset: int, reg: str, op: str, value: int, note: str = "") -> None:
        if self.trace_enabled:
            append_access(self.trace, BusAccess(self.cycles, ip, offset, reg, op, int(value), 1, note),
                         self.trace_limit)

    def clear_trace(self) -> None:
        """Empty the register trace."""
        self.trace.clear()

    def format_trace(self, last: int | None = None, ip: str | None = None, ops: str = "RWE") -> str:
        """The trace as a table (see format_trace)."""
        return format_trace(self.trace, last=last, ip=ip, ops=ops)

    def print_trace(self, last: int | None = None, ip: str | None = None, ops: str = "RWE") -> None:
        """Print the trace: the last `last` entries, of one IP, of some ops ('R', 'W', 'E')."""
        print(self.format_trace(last=last, ip=ip, ops=ops))


def start(config=None, **kwargs) -> VirtualDevice:
    """A VirtualDevice, made pynq's active device. Use the result as a context manager to restore the previous
    active device (and free the simulation) at the end, or call .deactivate() / .close() yourself.

    config: the accelerator build ('z1', the overlay's, by default; 'sim8' simulates faster); kwargs: as
    VirtualDevice (poll_cycles, budget_cycles, trace_limit, cacheable, quiet, memory).
    """
    return VirtualDevice(config, **kwargs).activate()


def ensure(config=None, memory=None, **kwargs) -> VirtualDevice:
    """The active virtual PYNQ if it is of this build, else a new one started with `start`. memory: a MemoryModel
    set on the device (the active one too); None leaves an active device's memory model as it is."""
    cfg = accel.config(config or design.CONFIG)
    dev = getattr(pynq.Device, "_active_device", None)
    if isinstance(dev, VirtualDevice) and dev.cfg == cfg:
        if memory is not None:
            dev.set_memory(memory)
        return dev
    return start(cfg, memory=memory, **kwargs)
