"""The pynq driver recovers: after every fault the virtual PYNQ can inject, it resets the DMA and conv_accel,
says so, and the next job on the same Accelerator is bit-exact; several models share one overlay."""
import dataclasses
import shutil

import numpy as np
import pynq
import pytest
import torch
from torch import nn

import pytorch_fpga as pf
from pytorch_fpga.contract import accel, design
from pytorch_fpga.runtime import backends
from pytorch_fpga.sim import tools

pytestmark = [pytest.mark.skipif(not tools.available("verilator"), reason="Verilator is not installed"),
              pytest.mark.xdist_group("pynq")]


@pytest.fixture(scope="module")
def hw():
    acc = pf.Accelerator("pynq", "sim8")
    assert acc.backend.virtual
    yield acc
    dev = pynq.Device.active_device
    if isinstance(dev, pf.virtual_pynq.VirtualDevice):
        dev.close()


def short_stream(job):
    return dataclasses.replace(job, stream=job.stream[:-8])          # one beat short: S2MM never sees tlast


def long_stream(job):
    return dataclasses.replace(job, stream=np.concatenate([job.stream, np.zeros(8, np.uint8)]))


def small_job():
    rng = np.random.default_rng(1)
    return accel.random_job(rng, 9, 12, 7, cfg="sim8", out_int32=True)


FAULTS = {
    "stream one beat short (watchdog)": lambda ol, job: (setattr(ol.device, "budget_cycles", 3000),
                                                         ol.run_job(short_stream(job), timeout_s=5)),
    "stream one beat long (accelerator error)": lambda ol, job: ol.run_job(long_stream(job), timeout_s=5),
    "timeout": lambda ol, job: ol.run_job(accel.random_job(np.random.default_rng(2), 200, 64, 64, cfg="sim8"),
                                          timeout_s=1e-4),
    "S2MM length short (DMAIntErr)": "s2mm_short",
    "destination outside DDR (DMADecErr)": "decode",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_next_job_after_a_fault_is_exact(hw, fault, monkeypatch):
    ol = hw.backend.overlay
    job = small_job()
    budget = ol.device.budget_cycles
    with pytest.raises((RuntimeError, TimeoutError)) as e:
        inject = FAULTS[fault]
        if inject == "s2mm_short":
            real = ol.dma.recvchannel.transfer
            monkeypatch.setattr(ol.dma.recvchannel, "transfer", lambda buf, nbytes=0: real(buf, nbytes=nbytes - 8))
            ol.run_job(job, timeout_s=5)
        elif inject == "decode":
            bad = pynq.allocate((4096,), np.uint8, target=ol.device)
            bad.device_address = design.DDR_BASE + design.DDR_SIZE   # just past the end of DDR
            monkeypatch.setitem(ol._bufs, "out", bad)
            ol.run_job(job, timeout_s=5)
        else:
            inject(ol, job)
    monkeypatch.undo()
    ol.device.budget_cycles = budget
    ol._bufs.pop("out", None) if fault.startswith("destination") else None
    msg = str(e.value)
    assert msg.startswith(f"job {job.M}x{job.K}x{job.N}:") or msg.startswith("job 200x64x64:"), msg
    assert "recovered from" in msg and "reset the AXI DMA" in msg, msg
    assert ol.recoveries and ol.recoveries[-1] in msg
    for seed in range(3):                                            # the same Accelerator, clean again
        rng = np.random.default_rng(seed)
        X = rng.integers(-128, 128, (23, 19)).astype(np.int8)
        W = rng.integers(-128, 128, (19, 11)).astype(np.int8)
        b = rng.integers(-999, 999, 11)
        Y, _ = hw.gemm(X, W, b, out_int32=True)
        np.testing.assert_array_equal(Y, X.astype(np.int64) @ W.astype(np.int64) + b)


def test_two_offloaded_models_share_one_overlay(hw):
    dev = pynq.Device.active_device
    downloads = []
    real = type(dev).download
    torch.manual_seed(0)
    m1 = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    m2 = nn.Sequential(nn.Linear(6, 4)).eval()
    x = torch.randn(16, 6)
    try:
        type(dev).download = lambda self, *a, **k: (downloads.append(1), real(self, *a, **k))[1]
        o1 = pf.offload(m1, x, backend="pynq", config="sim8")
        o2 = pf.offload(m2, x, backend="pynq", config="sim8")
        with torch.no_grad():
            y1, y2 = o1(x), o2(x)                                    # a compiled model attaches its backend here
    finally:
        type(dev).download = real
    assert downloads == []                                           # the module's overlay was reused
    assert o1.compiled.backend.name == o2.compiled.backend.name == "pynq"
    assert o1.compiled.backend.overlay is o2.compiled.backend.overlay is hw.backend.overlay
    with torch.no_grad():
        assert torch.equal(y1, pf.offload(m1, x, backend="model", config="sim8")(x))
        assert torch.equal(y2, pf.offload(m2, x, backend="model", config="sim8")(x))


def test_auto_falls_back_to_the_model_without_make(monkeypatch, capsys):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "make" else real(name, *a, **k))
    monkeypatch.setattr(backends, "board_present", lambda: False)
    monkeypatch.setattr(backends, "_announced", set())
    assert backends.auto() == "model"
    assert "make" in capsys.readouterr().err


def test_a_timeout_names_the_timeout_it_was_given(hw):
    ol = hw.backend.overlay
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.0002 s") as e:
        ol.run_job(accel.random_job(np.random.default_rng(3), 200, 64, 64, cfg="sim8"), timeout_s=2e-4)
    assert "within 10 s" not in str(e.value)


def test_a_driver_that_does_not_bind_says_why(hw, monkeypatch):
    """An overlay whose conv_accel VLNV has no driver gives a clear error, not pynq's AttributeError."""
    import pynq.overlay

    from pytorch_fpga.runtime import pynq_driver
    monkeypatch.delitem(pynq.overlay._ip_drivers, design.ACCEL_IP["vlnv"])
    with pytest.raises(RuntimeError, match=r"so the conv_accel driver does not bind to it: rebuild the overlay"):
        pynq_driver.ConvAccelOverlay(download=False)
