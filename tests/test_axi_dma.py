"""The AXI DMA register contract (pytorch_fpga.contract.axi_dma) against pynq's own DMA driver (pynq/lib/dma.py).

pynq's simple- and scatter-gather-mode channels run on a recording MMIO: the offsets they write and the status bits
their properties (running, idle, error, halted) and wait() test are the oracle for the contract's offsets, masks
and decoder.
"""
import numpy as np
import pytest

pytest.importorskip("pynq")

from pynq.lib.dma import DMA_TYPE_RX, DMA_TYPE_TX, _SDMAChannel, _SGDMAChannel  # noqa: E402

from pytorch_fpga.contract import axi_dma  # noqa: E402

MAX = (1 << 26) - 1
BITS = [1 << b for b in range(32)]
ERROR_WORDS = {"DMAIntErr": "Internal", "DMASlvErr": "Slave", "DMADecErr": "Decode",
               "SGIntErr": "Internal", "SGSlvErr": "Slave", "SGDecErr": "Decode"}


class RecordingMMIO:
    """An MMIO whose registers are a dict; every write is recorded."""

    def __init__(self, regs=None):
        self.regs = dict(regs or {})
        self.writes = []

    def read(self, offset):
        return self.regs.get(offset, 0)

    def write(self, offset, value):
        self.writes.append((offset, value))
        self.regs[offset] = value


class Buffer:
    """What pynq's transfer() needs of a PynqBuffer."""
    physical_address = 0x1_2345_6780         # above 4 GB: the high word goes to *_MSB
    nbytes = 4096

    def flush(self):
        pass

    def invalidate(self):
        pass


def simple(tx_rx, interrupt=None):
    mmio = RecordingMMIO()
    return _SDMAChannel(mmio, MAX, 8, tx_rx, dre=True, interrupt=interrupt), mmio


def scatter_gather(tx_rx):
    base = axi_dma.MM2S if tx_rx == DMA_TYPE_TX else axi_dma.S2MM
    mmio = RecordingMMIO({base + axi_dma.DMASR: axi_dma.SR_HALTED})   # its constructor stops the channel
    return _SGDMAChannel(mmio, MAX, 8, tx_rx, dre=True), mmio


@pytest.mark.parametrize("tx_rx,base", [(DMA_TYPE_TX, axi_dma.MM2S), (DMA_TYPE_RX, axi_dma.S2MM)])
def test_pynq_programs_the_contracts_registers(tx_rx, base):
    ch, mmio = simple(tx_rx)
    assert mmio.writes == [(base + axi_dma.DMACR, axi_dma.CR_RS)]              # start(): Run/Stop
    _, mmio_irq = simple(tx_rx, interrupt=object())
    assert mmio_irq.writes == [(base + axi_dma.DMACR, axi_dma.CR_RS | axi_dma.CR_IOC_IRQ_EN)]
    mmio.writes.clear()
    buf = Buffer()
    ch.transfer(buf, nbytes=1000)
    addr, addr_msb = (axi_dma.SA, axi_dma.SA_MSB) if tx_rx == DMA_TYPE_TX else (axi_dma.DA, axi_dma.DA_MSB)
    assert mmio.writes == [(base + addr, buf.physical_address & 0xFFFF_FFFF),
                           (base + addr_msb, buf.physical_address >> 32), (base + axi_dma.LENGTH, 1000)]
    mmio.regs[base + axi_dma.DMASR] = axi_dma.SR_IDLE | axi_dma.SR_IOC_IRQ
    mmio.regs[base + axi_dma.LENGTH] = 640                                    # S2MM: the bytes received
    ch.wait()
    assert ch.transferred == 640
    mmio.writes.clear()
    ch._clear_interrupt()
    assert mmio.writes == [(base + axi_dma.DMASR, axi_dma.SR_IOC_IRQ)]         # write 1 to clear
    mmio.regs[base + axi_dma.DMASR] = axi_dma.SR_HALTED
    mmio.writes.clear()
    ch.stop()
    assert mmio.writes == [(base + axi_dma.DMACR, 0)]
    names = {n for n, _, _ in axi_dma.REGISTERS.values()}
    ch_name = "MM2S" if tx_rx == DMA_TYPE_TX else "S2MM"
    assert {f"{ch_name}_{r}" for r in ("DMACR", "DMASR", "LENGTH")} <= names
    assert axi_dma.CHANNELS[ch_name] == base


def test_pynq_soft_reset_is_dmacr_reset():
    ch, mmio = scatter_gather(DMA_TYPE_TX)
    ch._cyclic = True                                   # a cyclic SG channel needs a reset to stop
    mmio.writes.clear()
    ch.stop()
    assert mmio.writes == [(axi_dma.MM2S + axi_dma.DMACR, 0), (axi_dma.MM2S + axi_dma.DMACR, axi_dma.CR_RESET),
                           (axi_dma.MM2S + axi_dma.DMACR, 0)]


@pytest.mark.parametrize("tx_rx", [DMA_TYPE_TX, DMA_TYPE_RX])
def test_status_bits_match_pynqs_channel_properties(tx_rx):
    sd, sd_mmio = simple(tx_rx)
    sg, sg_mmio = scatter_gather(tx_rx)
    rng = np.random.default_rng(0)
    words = BITS + [0, (1 << 32) - 1, sum(axi_dma.SR_BITS)] + [int(v) for v in rng.integers(0, 1 << 32, 300)]
    for sr in words:
        for mmio, ch in ((sd_mmio, sd), (sg_mmio, sg)):
            mmio.regs[ch._offset + axi_dma.DMASR] = sr
        names = axi_dma.decode(sr)
        assert sd.running == sg.running == (not sr & axi_dma.SR_HALTED) == ("Halted" not in names), hex(sr)
        assert sg.halted == bool(sr & axi_dma.SR_HALTED)
        assert sd.idle == sg.idle == bool(sr & axi_dma.SR_IDLE) == ("Idle" in names), hex(sr)
        assert sd.error == bool(sr & axi_dma.SR_DMA_ERRORS), hex(sr)            # simple mode: DMA errors only
        assert sg.error == bool(sr & axi_dma.SR_ERRORS) == any(n in ERROR_WORDS for n in names), hex(sr)


def test_error_masks_are_exactly_pynqs():
    sd, sd_mmio = simple(DMA_TYPE_TX)
    sg, sg_mmio = scatter_gather(DMA_TYPE_TX)
    sd_bits, sg_bits = 0, 0
    for b in BITS:
        sd_mmio.regs[axi_dma.MM2S + axi_dma.DMASR] = sg_mmio.regs[axi_dma.MM2S + axi_dma.DMASR] = b
        sd_bits |= b if sd.error else 0
        sg_bits |= b if sg.error else 0
    assert (sd_bits, sg_bits) == (axi_dma.SR_DMA_ERRORS, axi_dma.SR_ERRORS)
    assert {axi_dma.SR_BITS[b][0] for b in BITS if b & axi_dma.SR_ERRORS} == set(ERROR_WORDS)
    assert not axi_dma.SR_ERRORS & (axi_dma.SR_IRQS | axi_dma.SR_HALTED | axi_dma.SR_IDLE)


@pytest.mark.parametrize("mask", [b for b in axi_dma.SR_BITS if b & axi_dma.SR_ERRORS])
def test_pynqs_wait_reports_each_error_bit_as_the_contract_names_it(mask):
    name, _, doc = axi_dma.SR_BITS[mask]
    sg_bit = bool(mask & (axi_dma.SR_ERRORS & ~axi_dma.SR_DMA_ERRORS))
    if sg_bit:
        ch, mmio = scatter_gather(DMA_TYPE_TX)
        ch._transfer_started = True
    else:
        ch, mmio = simple(DMA_TYPE_TX)
    mmio.regs[axi_dma.MM2S + axi_dma.DMASR] = mask | axi_dma.SR_ERR_IRQ           # running, with the error
    word = ERROR_WORDS[name]
    with pytest.raises(RuntimeError, match=("Scatter-Gather " if sg_bit else "DMA ") + word) as e:
        ch.wait()
    assert word.lower() in doc.lower(), (name, doc, str(e.value))
    assert axi_dma.decode(mask | axi_dma.SR_ERR_IRQ) == [name, "Err_Irq"]


def test_every_named_bit_is_decoded():
    names = [name for name, _, _ in axi_dma.SR_BITS.values()]
    assert names == ["Halted", "Idle", "SGIncld", "DMAIntErr", "DMASlvErr", "DMADecErr", "SGIntErr", "SGSlvErr",
                     "SGDecErr", "IOC_Irq", "Dly_Irq", "Err_Irq"]
    positions = [m.bit_length() - 1 for m in axi_dma.SR_BITS]
    assert positions == [0, 1, 3, 4, 5, 6, 8, 9, 10, 12, 13, 14]                  # PG021, table DMASR
    for mask, (name, _, _) in axi_dma.SR_BITS.items():
        assert mask & (mask - 1) == 0
        assert axi_dma.decode(mask) == [name] and axi_dma.status_text(mask) == name
        assert axi_dma.SR_FIELDS[name][:2] == (mask.bit_length() - 1, 1)
    assert axi_dma.decode(sum(axi_dma.SR_BITS)) == names
    assert axi_dma.decode(0) == [] and axi_dma.status_text(0) == "running, not idle"
    assert axi_dma.status_text(axi_dma.SR_IDLE | axi_dma.SR_IOC_IRQ) == "Idle, IOC_Irq"
    assert axi_dma.decode(axi_dma.SR_HALTED | 1 << 2 | 1 << 20) == ["Halted", "+0x100004"]   # unnamed bits shown


def test_register_table():
    offsets = {n: off for off, (n, _, _) in axi_dma.REGISTERS.items()}
    for ch, base in axi_dma.CHANNELS.items():
        a = "SA" if ch == "MM2S" else "DA"
        want = {f"{ch}_DMACR": base + axi_dma.DMACR, f"{ch}_DMASR": base + axi_dma.DMASR,
                f"{ch}_{a}": base + axi_dma.SA, f"{ch}_{a}_MSB": base + axi_dma.SA_MSB,
                f"{ch}_LENGTH": base + axi_dma.LENGTH}
        assert {n: offsets[n] for n in want} == want
        assert all(axi_dma.offset(n) == off and axi_dma.register_name(off) == n for n, off in want.items())
    assert len(offsets) == len(axi_dma.REGISTERS) == 10
    assert axi_dma.STATUS_REGISTERS == {axi_dma.offset("MM2S_DMASR"), axi_dma.offset("S2MM_DMASR")}
    assert axi_dma.register_name(axi_dma.S2MM + 0x08) == "+0x38"
    with pytest.raises(KeyError):
        axi_dma.offset("MM2S_DA")
    cr = axi_dma.CR_FIELDS
    assert {n: 1 << cr[n][0] for n in ("RS", "Reset", "IOC_IrqEn", "Dly_IrqEn", "Err_IrqEn")} == {
        "RS": axi_dma.CR_RS, "Reset": axi_dma.CR_RESET, "IOC_IrqEn": axi_dma.CR_IOC_IRQ_EN,
        "Dly_IrqEn": axi_dma.CR_DLY_IRQ_EN, "Err_IrqEn": axi_dma.CR_ERR_IRQ_EN}
    assert axi_dma.RESET_VALUES[axi_dma.offset("MM2S_DMASR")] == axi_dma.SR_HALTED
