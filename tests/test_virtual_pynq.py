"""The virtual PYNQ (pytorch_fpga.sim.virtual_pynq): pynq's own Overlay, allocate and AXI DMA driver against the
Verilated conv_accel, a register model of the AXI DMA and a simulated DDR.

Uses the z1 build (the overlay's), cached in build/verilated after its first ~20 s build.
"""
import numpy as np
import pytest

pynq = pytest.importorskip("pynq")

from pynq.lib.dma import DMA  # noqa: E402
from pynq.pl_server.device import Device  # noqa: E402

from pytorch_fpga.contract import accel, design, regmap  # noqa: E402
from pytorch_fpga.contract.axi_dma import (  # noqa: E402
    CR_RESET,
    CR_RESET_VALUE,
    CR_RS,
    DMACR,
    DMASR,
    LENGTH,
    MM2S,
    S2MM,
    SA,
    SA_MSB,
    SR_DMA_DEC_ERR,
    SR_DMA_INT_ERR,
    SR_ERRORS,
    SR_HALTED,
    SR_IDLE,
    SR_IOC_IRQ,
    status_text,
)
from pytorch_fpga.sim import virtual_pynq  # noqa: E402

CFG = "z1"
DMA_NAME, ACC_NAME = design.DMA_IP["name"], design.ACCEL_IP["name"]


@pytest.fixture
def dev():
    with virtual_pynq.start(CFG, quiet=True) as d:
        yield d


@pytest.fixture
def ol(dev):
    return pynq.Overlay(f"{design.OVERLAY}.bit")


def rand_job(rng, M, K, N, out_int32=False, relu=False, m_tile=None, cfg=CFG):
    X = rng.integers(-128, 128, (M, K), dtype=np.int8)
    W = rng.integers(-128, 128, (K, N), dtype=np.int8)
    args = dict(bias=rng.integers(-5000, 5000, N), out_int32=out_int32)
    if not out_int32:
        args.update(m=rng.integers(1 << 28, 1 << 30, N), shift=rng.integers(36, 40, N), relu=relu)
    job = accel.pack_job(X, W, cfg=cfg, m_tile=m_tile, **args)
    return job, accel.golden(X, W, **args)


def program_accel(ol, job):
    acc = getattr(ol, ACC_NAME)
    for name, value in job.registers().items():
        acc.write(regmap.offset(name), value)
    acc.write(regmap.offset("CTRL"), regmap.CTRL_START)


def run_by_hand(ol, job, out_bytes=None):
    """The job through pynq's DMA driver, as a notebook on the board would do it."""
    dma = getattr(ol, DMA_NAME)
    inb = pynq.allocate(job.stream.shape, dtype=np.uint8)
    outb = pynq.allocate((out_bytes or job.out_bytes,), dtype=np.uint8)
    inb[:] = job.stream
    inb.flush()
    program_accel(ol, job)
    dma.recvchannel.transfer(outb)
    dma.sendchannel.transfer(inb)
    dma.sendchannel.wait()
    dma.recvchannel.wait()
    outb.invalidate()
    return outb, dma


def raw_start(ol, base, addr, nbytes):
    """Program one DMA channel by its registers (no driver: no automatic flush or invalidate)."""
    dma = getattr(ol, DMA_NAME)
    dma.write(base + SA, addr)
    dma.write(base + SA_MSB, 0)
    dma.write(base + LENGTH, nbytes)


def poll(ol, base, mask=SR_IDLE | SR_ERRORS, reads=20_000):
    dma = getattr(ol, DMA_NAME)
    for _ in range(reads):
        sr = dma.read(base + DMASR)
        if sr & mask:
            return sr
    raise AssertionError(f"DMA channel {base:#x} never reached {mask:#x}: {status_text(sr)}")


# ------------------------------------------------------------------------------------------------
def test_overlay_loads_from_design(dev, ol):
    assert Device.active_device is dev and ol.device is dev and ol.is_loaded()
    assert {DMA_NAME, ACC_NAME} <= set(ol.ip_dict)
    d, a = ol.ip_dict[DMA_NAME], ol.ip_dict[ACC_NAME]
    assert d["type"] == design.DMA_IP["vlnv"] == "xilinx.com:ip:axi_dma:7.1"
    assert (d["phys_addr"], d["addr_range"]) == (design.DMA_IP["phys_addr"], design.DMA_IP["addr_range"])
    assert int(d["parameters"]["c_include_sg"]) == 0 and int(d["parameters"]["c_sg_length_width"]) == 26
    assert a["type"] == design.ACCEL_IP["vlnv"]
    assert (a["phys_addr"], a["addr_range"]) == (design.ACCEL_IP["phys_addr"], design.ACCEL_IP["addr_range"])
    assert {k: int(v) for k, v in a["parameters"].items() if k in design.CONFIG.params()} == design.CONFIG.params()
    assert set(regmap.REGISTERS) <= set(a["registers"])
    assert type(getattr(ol, DMA_NAME)) is DMA                      # pynq's own driver, simple mode
    assert getattr(ol, DMA_NAME).sendchannel is not None and getattr(ol, DMA_NAME).recvchannel is not None
    acc = getattr(ol, ACC_NAME)
    assert isinstance(acc, pynq.DefaultIP)
    assert acc.read(regmap.offset("ID")) == regmap.MAGIC
    assert acc.register_map.CONFIG.ROWS == design.CONFIG.rows and acc.register_map.STATUS.IDLE == 1
    assert ol.clock_dict[0]["enable"] and ol.clock_dict[0]["frequency"] == design.CLOCK_MHZ
    assert pynq.Clocks.fclk0_mhz == pytest.approx(design.CLOCK_MHZ)
    hwh = virtual_pynq.overlay_hwh()
    assert "EDKSYSTEM" in hwh and f"0x{design.DMA_IP['phys_addr']:08X}" in hwh
    with pytest.raises(OSError):
        pynq.Overlay("no_such_overlay.bit")


@pytest.mark.parametrize("M,K,N,out_int32,relu,m_tile,pauses", [
    (45, 40, 21, False, True, 8, False),        # int8 + ReLU, 6 X tiles, 3 k-folds, 2 n-folds
    (30, 17, 40, True, False, 7, False),        # int32 outputs, 5 X tiles, 3 n-folds
    (33, 20, 20, True, False, 16, True),        # S2MM back-pressure and MM2S pauses
    (1, 1, 1, False, False, None, False),
])
def test_gemm_by_hand_is_bit_exact(dev, ol, M, K, N, out_int32, relu, m_tile, pauses):
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    if pauses:
        dev.set_backpressure("random", prob=0.5)
        dev.sim.set_idle("periodic", on=3, off=2)
    job, gold = rand_job(rng, M, K, N, out_int32=out_int32, relu=relu, m_tile=m_tile)
    assert len(job.tiles()) == -(-M // (m_tile or M))
    jobs0 = getattr(ol, ACC_NAME).read(regmap.offset("JOBS"))
    outb, dma = run_by_hand(ol, job)
    np.testing.assert_array_equal(accel.unpack_output(outb, job), gold)
    assert dma.recvchannel.transferred == job.out_bytes
    acc = getattr(ol, ACC_NAME)
    assert acc.read(regmap.offset("STATUS")) & regmap.STATUS_DONE
    assert acc.read(regmap.offset("JOBS")) == jobs0 + 1
    assert acc.read(regmap.offset("MAC_CYCLES")) == M * job.fk * job.fn
    assert (acc.read(regmap.offset("STALL_OUT")) > 0) == pauses


def test_dma_register_semantics(dev, ol):
    dma = getattr(ol, DMA_NAME)
    send, recv = dma.sendchannel, dma.recvchannel
    assert dma.read(MM2S + DMACR) & CR_RS and dma.read(MM2S + DMASR) == 0   # started by the driver: running, not idle
    send.stop()                                                     # RS = 0 -> halted
    assert dma.read(MM2S + DMASR) & SR_HALTED and not send.running
    with pytest.raises(RuntimeError, match="not started"):
        send.transfer(pynq.allocate((64,), np.uint8))
    dma.write(MM2S + LENGTH, 64)                                       # LENGTH while halted: no effect (PG021)
    assert dma.read(MM2S + DMASR) == SR_HALTED
    send.start()
    assert send.running and not send.idle

    rng = np.random.default_rng(7)
    job, gold = rand_job(rng, 20, 30, 20, m_tile=8)
    outb, _ = run_by_hand(ol, job, out_bytes=job.out_bytes + 4096)  # S2MM programmed longer than the packet
    np.testing.assert_array_equal(accel.unpack_output(outb[:job.out_bytes], job), gold)
    assert dma.read(S2MM + LENGTH) == job.out_bytes == recv.transferred   # LENGTH reports the bytes received
    assert dma.read(MM2S + LENGTH) == job.stream.size
    for base in (MM2S, S2MM):
        sr = dma.read(base + DMASR)
        assert sr & SR_IDLE and sr & SR_IOC_IRQ and not sr & (SR_ERRORS | SR_HALTED), hex(sr)
        dma.write(base + DMASR, SR_IOC_IRQ)                   # write 1 to clear
        assert dma.read(base + DMASR) == SR_IDLE
    dma.write(MM2S + DMACR, CR_RESET)                      # soft reset: both channels halted
    assert dma.read(MM2S + DMACR) == dma.read(S2MM + DMACR) == CR_RESET_VALUE
    assert dma.read(MM2S + DMASR) == dma.read(S2MM + DMASR) == SR_HALTED


def test_dma_error_bits(dev, ol, caplog):
    dma = getattr(ol, DMA_NAME)
    buf = pynq.allocate((256,), np.uint8)
    # an address outside DDR: DMADecErr, the channel halts
    raw_start(ol, MM2S, design.ACCEL_IP["phys_addr"], 256)   # the PL's registers, not DDR
    assert poll(ol, MM2S, SR_HALTED) & SR_DMA_DEC_ERR
    assert not dma.read(MM2S + DMACR) & CR_RS
    with pytest.raises(RuntimeError, match="ignore run/stop"):
        dma.sendchannel.start()                                     # on the board: spins forever
    dma.write(MM2S + DMACR, CR_RESET)
    dma.sendchannel.start()
    dma.recvchannel.start()
    # the driver's wait() raises the matching error
    bad = pynq.allocate((256,), np.uint8)
    bad.device_address = design.DDR_BASE + design.DDR_SIZE          # just past the end of DDR
    dma.sendchannel.transfer(bad)
    with pytest.raises(RuntimeError, match="Decode Error"):
        dma.sendchannel.wait()
    dma.write(MM2S + DMACR, CR_RESET)
    dma.sendchannel.start()
    dma.recvchannel.start()
    # zero length: DMAIntErr
    raw_start(ol, S2MM, buf.physical_address, 0)
    assert dma.read(S2MM + DMASR) & SR_DMA_INT_ERR
    dma.write(S2MM + DMACR, CR_RESET)
    dma.sendchannel.start()
    dma.recvchannel.start()
    dma.recvchannel.transfer(pynq.allocate((0,), np.uint8))
    with pytest.raises(RuntimeError, match="Internal Error"):
        dma.recvchannel.wait()
    dma.write(S2MM + DMACR, CR_RESET)
    dma.sendchannel.start()
    dma.recvchannel.start()
    # a packet longer than the S2MM length: DMAIntErr (it comes while the driver waits for the send, so the
    # receive channel is already halted when its wait() starts, as it would be on the board)
    job, _ = rand_job(np.random.default_rng(3), 16, 16, 16)
    with pytest.raises(RuntimeError, match="Internal Error|not started"):
        run_by_hand(ol, job, out_bytes=job.out_bytes - 8)
    assert dma.read(S2MM + DMASR) & SR_DMA_INT_ERR
    assert dma.read(S2MM + LENGTH) == job.out_bytes - 8
    assert any("longer than S2MM_LENGTH" in r.message for r in caplog.records)


def test_missing_flush_and_invalidate(dev, ol, caplog):
    rng = np.random.default_rng(11)
    job, gold = rand_job(rng, 24, 20, 18, m_tile=8)
    inb = pynq.allocate(job.stream.shape, np.uint8)
    outb = pynq.allocate((job.out_bytes,), np.uint8)
    inb[:] = job.stream                                             # in the CPU's cache only: no flush
    for flushed in (False, True):
        if flushed:
            inb.flush()
        program_accel(ol, job)
        raw_start(ol, S2MM, outb.physical_address, outb.nbytes)
        raw_start(ol, MM2S, inb.physical_address, inb.nbytes)
        assert poll(ol, MM2S) & SR_IDLE and poll(ol, S2MM) & SR_IDLE
        assert not outb.any()                                       # no invalidate yet: the CPU sees stale zeros
        ddr = dev.ddr.view(outb.physical_address, outb.nbytes)      # ... while DDR has the result
        assert ddr.any()
        outb.invalidate()
        Y = accel.unpack_output(outb, job)
        if flushed:
            np.testing.assert_array_equal(Y, gold)
        else:                                                       # the DMA streamed stale DDR (zeros)
            assert not np.array_equal(Y, gold)
            assert any("missing flush()" in r.message for r in caplog.records)
            outb[:] = 0
            outb.flush()
            caplog.clear()
    assert not any("missing flush()" in r.message for r in caplog.records)


def test_never_ending_transfers_raise(dev, ol, caplog):
    dev.budget_cycles = 3000                                        # a tiny watchdog budget: fails fast
    dma = getattr(ol, DMA_NAME)
    job, gold = rand_job(np.random.default_rng(5), 30, 20, 20, m_tile=8)
    inb = pynq.allocate(job.stream.shape, np.uint8)
    outb = pynq.allocate((job.out_bytes,), np.uint8)
    inb[:] = job.stream
    # 1. the stream one beat short: MM2S finishes, conv_accel waits for its last beat, S2MM never sees tlast
    program_accel(ol, job)
    dma.recvchannel.transfer(outb)
    dma.sendchannel.transfer(inb, nbytes=inb.nbytes - 8)
    dma.sendchannel.wait()
    with pytest.raises(RuntimeError, match="Internal Error"):
        dma.recvchannel.wait()                                      # the watchdog ends the wait
    assert dma.read(S2MM + DMASR) & (SR_HALTED | SR_DMA_INT_ERR) == SR_HALTED | SR_DMA_INT_ERR
    assert any("watchdog" in r.message and "S2MM" in r.message for r in caplog.records)
    # 2. the accelerator never started: s_axis takes nothing, MM2S never finishes
    dev.reset_pl()                                                  # as reloading the bitstream
    dma.sendchannel.start()
    dma.recvchannel.start()
    dma.sendchannel.transfer(inb)
    with pytest.raises(RuntimeError, match="Internal Error"):
        dma.sendchannel.wait()
    assert any("CTRL.START" in r.message for r in caplog.records)
    # 3. waiting for the send before programming the receive: conv_accel's output backs up into its input
    big, _ = rand_job(np.random.default_rng(6), 256, 16, 64, m_tile=8)
    dma.write(MM2S + DMACR, CR_RESET)
    dma.sendchannel.start()
    dma.recvchannel.start()
    src = pynq.allocate(big.stream.shape, np.uint8)
    src[:] = big.stream
    program_accel(ol, big)
    dma.sendchannel.transfer(src)
    with pytest.raises(RuntimeError, match="Internal Error"):
        dma.sendchannel.wait()
    assert any("not programmed" in r.message for r in caplog.records)
    # after a reset of the PL the same overlay runs jobs again
    dev.reset_pl()
    dma.sendchannel.start()
    dma.recvchannel.start()
    outb, _ = run_by_hand(ol, job)
    np.testing.assert_array_equal(accel.unpack_output(outb, job), gold)


def test_trace_records_the_drivers_accesses(dev, ol):
    job, _ = rand_job(np.random.default_rng(2), 8, 8, 8)
    dev.clear_trace()
    outb, _ = run_by_hand(ol, job)                                  # the first use of the DMA makes its driver
    writes = [(e.ip, e.reg, e.value) for e in dev.trace if e.op == "W"]
    acc_writes = [(r, v) for ip, r, v in writes if ip == ACC_NAME]
    assert acc_writes == list(job.registers().items()) + [("CTRL", regmap.CTRL_START)]
    dma_writes = [(r, v) for ip, r, v in writes if ip == DMA_NAME]
    inb_addr = next(e.value for e in dev.trace if e.reg == "MM2S_SA")
    assert dma_writes == [("MM2S_DMACR", 1), ("S2MM_DMACR", 1),          # DMA(): both channels started
                          ("S2MM_DA", outb.physical_address), ("S2MM_DA_MSB", 0), ("S2MM_LENGTH", outb.nbytes),
                          ("MM2S_SA", inb_addr), ("MM2S_SA_MSB", 0), ("MM2S_LENGTH", job.stream.size)]
    assert [e.cycle for e in dev.trace] == sorted(e.cycle for e in dev.trace)
    events = [e.reg for e in dev.trace if e.op == "E"]
    assert events.index("S2MM start") < events.index("MM2S start") < events.index("MM2S done") < \
        events.index("S2MM done")
    assert "flush" in events and "invalidate" in events
    polls = [e for e in dev.trace if e.op == "R" and e.reg == "S2MM_DMASR"]
    assert polls and sum(e.count for e in polls) > len(polls) - 1     # repeated polls are merged
    text = dev.format_trace(ip=DMA_NAME)
    assert "MM2S_LENGTH" in text and status_text(SR_IDLE | SR_IOC_IRQ) in text and ACC_NAME not in text
    dev.trace_limit = 20
    for _ in range(100):
        getattr(ol, ACC_NAME).read(regmap.offset("M"))
        getattr(ol, ACC_NAME).read(regmap.offset("K"))
    assert 20 <= len(dev.trace) <= 40 and dev.trace[-1].reg == "K"
    dev.clear_trace()
    dev.trace_enabled = False
    getattr(ol, ACC_NAME).read(regmap.offset("ID"))
    assert dev.trace == []


def test_activation_and_buffers():
    before = Device.__dict__.get("_active_device", None)
    with virtual_pynq.start(CFG, quiet=True) as outer:
        assert Device.active_device is outer
        with virtual_pynq.start(CFG, quiet=True) as inner:
            assert Device.active_device is inner
            buf = pynq.allocate((3, 5), dtype=np.int32)
            assert isinstance(buf, pynq.buffer.PynqBuffer) and buf.device is inner
            lo, hi = design.DDR_BASE, design.DDR_BASE + design.DDR_SIZE
            assert lo <= buf.physical_address and buf.physical_address + buf.nbytes <= hi
            other = pynq.allocate((10,), np.uint8)
            assert other.physical_address >= buf.physical_address + buf.nbytes   # no overlap
            buf[:] = 7
            view = inner.ddr.view(buf.physical_address, buf.nbytes)
            assert not view.any()
            buf[1:].flush()                                         # a slice flushes its own bytes
            assert not view[:20].any() and view[20:].view(np.int32).tolist() == [7] * 10
            view[:] = 1
            buf.invalidate()
            assert (buf.view(np.uint8) == 1).all()
            raw = pynq.allocate((16,), np.uint8, cacheable=False)   # uncached: the buffer is DDR
            raw[:] = 5
            assert (inner.ddr.view(raw.physical_address, 16) == 5).all()
            mm = pynq.MMIO(raw.physical_address, 16)                # MMIO of DDR sees DDR
            assert mm.read(0) == 0x05050505
        assert Device.active_device is outer
    assert Device.__dict__.get("_active_device", None) is before
