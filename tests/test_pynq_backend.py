"""The `pynq` backend (pytorch_fpga.runtime.pynq_driver) on the virtual PYNQ: bit-identical to `model` and
`verilator`."""
import re

import numpy as np
import pytest
import torch

import pytorch_fpga as pf
from pytorch_fpga.contract import accel, axi_dma, regmap
from pytorch_fpga.runtime import backends
from pytorch_fpga.sim import tools

pytestmark = pytest.mark.skipif(not tools.available("verilator"), reason="the virtual PYNQ needs Verilator")
pynq = pytest.importorskip("pynq")


@pytest.fixture(scope="module")
def trio():
    """The same accelerator build behind the three backends (the pynq one on a virtual PYNQ)."""
    b = {name: backends.get(name, "sim8") for name in ("model", "verilator", "pynq")}
    assert b["pynq"].virtual
    yield b
    from pytorch_fpga.sim import virtual_pynq
    dev = pynq.Device.active_device
    if isinstance(dev, virtual_pynq.VirtualDevice):
        dev.close()


def random_job(rng, cfg):
    M, K, N = (int(v) for v in rng.integers(1, [80, 70, 40]))
    X = rng.integers(-128, 128, (M, K)).astype(np.int8)
    W = rng.integers(-128, 128, (K, N)).astype(np.int8)
    if rng.random() < 0.2:
        X[rng.random(X.shape) < 0.5] = rng.choice([-128, 127])
    out32 = rng.random() < 0.25
    m, shift = pf.quant.quantize_multiplier(rng.uniform(0.5, 8, N) / (64 * 128 * np.sqrt(K)))
    return accel.pack_job(X, W, bias=rng.integers(-2**16, 2**16, N), m=m, shift=shift,
                          relu=bool(rng.random() < 0.5), out_int32=out32, cfg=cfg)


def test_thousand_random_jobs_are_bit_identical_across_backends(trio):
    rng = np.random.default_rng(2026)
    cfg = trio["model"].cfg
    for i in range(1000):
        job = random_job(rng, cfg)
        Ym, rm = trio["model"].run(job)
        Yv, rv = trio["verilator"].run(job)
        Yp, rp = trio["pynq"].run(job)
        assert np.array_equal(Ym, Yv) and np.array_equal(Ym, Yp), f"job {i}: {job.M}x{job.K}x{job.N}"
        assert rv.bytes_in == rp.bytes_in == job.stream.size


def test_the_driver_reads_the_build_and_names_a_timeout(trio):
    ol = trio["pynq"].overlay
    hw = ol.accel.config()
    assert (hw.rows, hw.cols, hw.x_depth) == (8, 8, 256)
    assert ol.accel.read_reg("ID") == regmap.MAGIC
    job = accel.pack_job(np.ones((4, 4), np.int8), np.ones((4, 4), np.int8), out_int32=True, cfg="sim8")
    job.stream = job.stream[:-8]                                  # one beat short: the job can never finish
    with pytest.raises((TimeoutError, RuntimeError), match=r"AXI DMA S2MM \(receive\) channel") as e:
        ol.run_job(job, timeout_s=0.5)                            # MM2S finishes, S2MM never sees tlast
    m = re.search(r"status (0x[0-9a-f]+) \((.+?)\)", str(e.value))    # the channel's status, decoded
    assert m and m[2] == axi_dma.status_text(int(m[1], 16)), str(e.value)
    ol.accel.write_reg("CTRL", regmap.CTRL_SOFT_RESET)                                 # soft reset, then a fresh DMA
    trio["pynq"].overlay = type(ol)()
    Y, _ = trio["pynq"].run(accel.pack_job(np.ones((4, 4), np.int8), np.ones((4, 4), np.int8),
                                           out_int32=True, cfg="sim8"))
    np.testing.assert_array_equal(Y, np.full((4, 4), 4))


def test_offload_on_the_pynq_backend_matches_the_model(trio):
    from pytorch_fpga.core.datasets import load_digits_split
    from pytorch_fpga.nn import digits_cnn
    Xtr, _, Xte, yte = load_digits_split()
    model = digits_cnn.load_pretrained()
    on_pynq = pf.offload(model, torch.from_numpy(Xtr[:200]), backend="pynq", config="z1")
    on_model = pf.offload(model, torch.from_numpy(Xtr[:200]), backend="model", config="z1")
    assert on_pynq.compiled.backend.name == "pynq" and on_pynq.compiled.backend.virtual
    assert on_model.compiled.backend.name == "model"
    with torch.no_grad():
        a, b = on_pynq(torch.from_numpy(Xte[:60])), on_model(torch.from_numpy(Xte[:60]))
    assert torch.equal(a, b)
    assert (a.argmax(1).numpy() == yte[:60]).mean() >= 0.9
