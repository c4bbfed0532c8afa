"""Output lanes and NHWC output on the Verilated RTL: builds with 2, 4 and 8 requantization lanes, int8 and int32
outputs, tile-major and NHWC order, against the numpy model bit for bit and the cycle model within 2% (8 cycles
for tiny jobs)."""
import dataclasses

import numpy as np
import pytest

from pytorch_fpga.contract import accel, regmap, stream_codec, window
from pytorch_fpga.core import quant
from pytorch_fpga.runtime import backends

SIM8 = accel.config("sim8")
BUILDS = [SIM8, dataclasses.replace(SIM8, name="sim8-l4", out_lanes=4),
          dataclasses.replace(SIM8, name="sim8-l8", out_lanes=8)]


def check(be, job):
    Y, rep = be.run(job)
    np.testing.assert_array_equal(Y, accel.job_golden(job))
    model = accel.cycle_model(job)["cycles"]
    assert abs(rep.cycles - model) <= max(0.02 * rep.cycles, 8), (job, rep.cycles, model)   # tiny jobs: 8


@pytest.mark.slow
@pytest.mark.parametrize("cfg", BUILDS, ids=lambda c: c.name)
def test_lanes_int8_int32_and_nhwc_are_bit_exact(rng, cfg):
    be = backends.get("verilator", cfg)
    assert regmap.field("CONFIG", "OUT_LANES", be.sim.read_reg("CONFIG")) == cfg.out_lanes
    assert be.sim.read_reg("OUT_DEPTH") == cfg.out_depth
    for M, K, N, o32 in [(50, 20, 20, False), (50, 20, 20, True), (33, 64, 40, False), (7, 5, 3, True),
                         (64, 8, 16, False), (1, 1, 1, False)]:
        check(be, accel.random_job(rng, M, K, N, cfg=cfg, out_int32=o32, relu=bool(M % 2)))
    for Nb, H, C, Co, k, s, p in [(1, 9, 8, 24, 3, 1, 1), (2, 8, 16, 12, 3, 2, 1), (1, 6, 5, 8, 1, 1, 0)]:
        X = rng.integers(-128, 128, (Nb, H, H, C)).astype(np.int8)
        X[rng.random(X.shape) < 0.1] = -128
        Wt = rng.integers(-128, 128, (k, k, C, Co)).astype(np.int8)
        m, shift = quant.quantize_multiplier(rng.uniform(32, 256, Co) / (5461 * np.sqrt(k * k * C)))
        bias = rng.integers(-5000, 5000, Co)
        for nhwc in (True, False):
            job = window.pack_window_job(X, Wt, bias, m, shift, relu=True, cfg=cfg, stride=s, pads=(p,) * 4,
                                         out_nhwc=nhwc)
            assert job.out_nhwc == nhwc and bool(job.flags & regmap.FLAG_OUT_NHWC) == nhwc
            check(be, job)


def test_nhwc_output_is_the_next_layers_input_layout(rng):
    X = rng.integers(-128, 128, (1, 6, 6, 8)).astype(np.int8)
    Wt = rng.integers(-128, 128, (3, 3, 8, 16)).astype(np.int8)
    job = window.pack_window_job(X, Wt, None, np.full(16, 2**20), np.full(16, 30), cfg=SIM8, pads=(1, 1, 1, 1))
    assert job.out_nhwc
    Y = accel.job_golden(job)                                   # (36 pixels, 16 channels)
    raw = stream_codec.pack_output(Y, job)
    np.testing.assert_array_equal(raw.view(np.int8).reshape(1, 6, 6, 16), Y.reshape(1, 6, 6, 16))
    np.testing.assert_array_equal(accel.unpack_output(raw, job), Y)
    nxt = window.pack_window_job(raw.view(np.int8).reshape(1, 6, 6, 16), rng.integers(-128, 128, (3, 3, 16, 8))
                                 .astype(np.int8), None, np.full(8, 2**20), np.full(8, 30), cfg=SIM8,
                                 pads=(1, 1, 1, 1))
    off, b, lo, n = stream_codec.x_regions(nxt)[0]
    np.testing.assert_array_equal(nxt.stream[off:off + n * 6 * 16], raw[lo * 6 * 16:(lo + n) * 6 * 16])


def test_nhwc_refuses_int32_and_rows_beyond_the_buffer():
    X = np.zeros((1, 4, 4, 8), np.int8)
    with pytest.raises(ValueError, match="NHWC output needs int8"):
        window.pack_window_job(X, np.zeros((1, 1, 8, 8), np.int8), out_int32=True, cfg=SIM8, out_nhwc=True)
    wide = np.zeros((1, 1, 200, 8), np.int8)                   # a 200-pixel row of 64 channels: 1600 rows > 128
    with pytest.raises(ValueError, match="output row"):
        window.pack_window_job(wide, np.zeros((1, 1, 8, 64), np.int8), None, np.ones(64), np.ones(64), cfg=SIM8,
                               out_nhwc=True)
