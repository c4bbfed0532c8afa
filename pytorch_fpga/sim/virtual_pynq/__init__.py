"""The virtual PYNQ-Z1: the real pynq driver stack (Overlay, allocate, the AXI DMA driver, MMIO) off-board.

    import pynq
    import pytorch_fpga as pf

    dev = pf.virtual_pynq.start("z1")                  # now pynq.Device.active_device
    ol = pynq.Overlay("conv_accel.bit")                # ip_dict from pytorch_fpga/contract/design.py
    buf = pynq.allocate((n,), dtype=np.uint8)          # a PynqBuffer in the simulated DDR
    ol.conv_accel_0.write(pf.regmap.offset("M"), M)    # AXI-Lite, through the Verilated RTL
    ol.axi_dma_0.sendchannel.transfer(buf)             # pynq's own DMA driver, against a model of PG021
    ol.axi_dma_0.sendchannel.wait()
    dev.print_trace()                                  # every register access, with cycle and name

    with pf.virtual_pynq.start("sim8") as dev:         # or as a context manager: restores the previous device
        ...

What is simulated:

* `VirtualDevice`, a `pynq.Device` with the REGISTER_RW capability (MMIO goes through read_registers /
  write_registers). Its address map is the overlay's (design.py): the AXI DMA and conv_accel register windows,
  the DDR window, and the few PS7 SLCR clock registers pynq.Clocks touches (so Overlay.download can "set" FCLK0).
  Any other address raises, where the board's bus would hang.
* The PL: conv_accel is the Verilated RTL (pytorch_fpga.sim.verilated, built once and cached in build/verilated); its
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
* DDR bandwidth: by default MM2S delivers a beat every cycle. `start(cfg, memory=MemoryModel.at(400))` (or
  `dev.set_memory(...)`; pytorch_fpga.sim.memory) limits it to the model's bandwidth and holds each transfer's
  first beat for the DMA's set-up and the first read's latency (optionally it limits S2MM too).
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

A register trace (`VirtualDevice.trace`, `print_trace`: a list of `BusAccess`) records every PS access to the PL
(and events of the DMA model) with its cycle, IP, offset, register name, direction and value; identical
consecutive reads (a polling loop) are merged into one entry with a count.

Modules: device (VirtualDevice, start, ensure), dma (AxiDmaModel), ddr (DDR and pynq buffers), hwh (overlay_hwh),
trace (BusAccess, format_trace). The AXI DMA's registers and bits are pytorch_fpga.contract.axi_dma.

pynq internals relied on (pynq 4.0): Device/DeviceMeta (active_device, set_bitfile_name, post_download,
capabilities), PynqBuffer's constructor and its flush/invalidate calls device.flush(bo, offset, ptr, size),
MMIO's REGISTER_RW path, pynqmetadata's HWH frontend and RuntimeMetadataParser, pynq.ps.Clocks (its cached
`_real_instance`, reset when a virtual device is activated), and pynq.bitstream._resolve_bitstream, which is
wrapped (only for VirtualDevice targets) so a missing conv_accel.bit resolves to the placeholder.

Torch-free: numpy, pynq and the Verilator harness.
"""
from pytorch_fpga.sim.virtual_pynq.ddr import DDR
from pytorch_fpga.sim.virtual_pynq.device import VirtualDevice, ensure, start
from pytorch_fpga.sim.virtual_pynq.dma import AxiDmaModel, DmaChannel
from pytorch_fpga.sim.virtual_pynq.hwh import overlay_hwh
from pytorch_fpga.sim.virtual_pynq.trace import BusAccess, format_trace

__all__ = ["VirtualDevice", "start", "ensure", "AxiDmaModel", "DmaChannel", "DDR", "overlay_hwh", "BusAccess",
           "format_trace"]
