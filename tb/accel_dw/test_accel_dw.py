"""cocotb tests of rtl/accel_dw.v, the depthwise unit, through conv_accel's AXI ports (FLAGS.DW_UNIT) against the
library's golden model (pf.accel.golden on the window rows: pf.gemm + pf.quant) and its cycle model."""
import dataclasses
import os
import random

import numpy as np
import pytest

from pytorch_fpga.contract import accel, dwunit, regmap, rtl, window

try:
    import cocotb

    from tb.common.accel_driver import AccelDriver
except ImportError:  # pragma: no cover
    cocotb = None

SEED = int(os.environ.get("TB_SEED", "1"))
QUICK = os.environ.get("TB_QUICK") == "1"   # Icarus runs ~200x slower than Verilator here: smaller jobs


def dw_geometry(rng, cfg, max_beats, N=None):
    """A random depthwise 3x3 layer the unit takes on cfg: stride 1 or 2, pads 0..2, C a multiple of 8, odd sizes,
    about max_beats input beats at most."""
    while True:
        s = int(rng.integers(1, 3))
        C = 8 * int(rng.integers(1, max(2, cfg.dw_ch // 8 // 2) + 1))
        H, W = (int(v) for v in rng.integers(1, 12, 2))
        pt, pl = (int(v) for v in rng.integers(0, 3, 2))
        pb, pr = (int(v) for v in rng.integers(0, 3, 2))
        win = window.Window(N or int(rng.integers(1, 3)), H, W, C, 3, 3, s, 1, (pt, pb, pl, pr), True)
        if win.OH >= 1 and win.OW >= 1 and dwunit.unsupported(win, cfg) is None \
                and win.N * H * W * C // 8 <= max_beats:
            return win


def dw_job(rng, win, cfg, relu=False, out_int32=False, extreme=0.1, X=None, Wt=None):
    """A packed depthwise-unit job of random int8 data (a share `extreme` of -128/127) and requant parameters."""
    def draw(shape):
        A = rng.integers(-128, 128, shape).astype(np.int8)
        mask = rng.random(shape) < extreme
        A[mask] = rng.choice(np.array([-128, 127], np.int8), int(mask.sum()))
        return A
    X = draw((win.N, win.H, win.W, win.C)) if X is None else X
    Wt = draw((3, 3, win.C)) if Wt is None else Wt
    ops = accel.random_operands(rng, 1, 9, win.C, out_int32=out_int32)
    return dwunit.pack_dw_job(X, Wt, ops["bias"], ops.get("m"), ops.get("shift"), relu, out_int32, cfg, win=win)


if cocotb is not None:

    async def check(drv, job, pauses=False):
        """Run a job: the output equals the golden model's, and at full rate the counters follow the cycle model."""
        out, status, cnt = await drv.run(job)
        assert status & regmap.STATUS_DONE and not status & regmap.STATUS_ERROR, f"STATUS={status:#x}"
        np.testing.assert_array_equal(accel.unpack_output(out, job), accel.job_golden(job), err_msg=str(job.window))
        assert cnt["MAC_CYCLES"] == job.M * job.N // 8, cnt          # one multiplier pass per output beat
        if not pauses:
            model = accel.cycle_model(job)["cycles"]
            drv.dut._log.info("%s: CYCLES %d, cycle_model %d", job.window, cnt["CYCLES"], model)
            assert cnt["STALL_OUT"] == 0, cnt
            assert abs(cnt["CYCLES"] - model) <= 0.02 * model, (job.window, cnt, model)
        return cnt

    @cocotb.test()
    async def dw_random_jobs(dut):
        """Random geometry (stride 1/2, pads 0..2 each side, batch 2, odd sizes), int8 with and without ReLU, int32."""
        drv = AccelDriver(dut)
        await drv.reset()
        assert regmap.field("DW_CONFIG", "CH", await drv.read("DW_CONFIG")) == drv.cfg.dw_ch
        rng = np.random.default_rng(SEED + 30)
        count, beats = (2, 40) if QUICK else (30, 3000)
        wins = []
        for i in range(count):
            wins.append(dw_geometry(rng, drv.cfg, beats, N=1 + i % 2))
            await check(drv, dw_job(rng, wins[-1], drv.cfg, relu=i % 3 == 1, out_int32=i % 3 == 2))
        if not QUICK:                          # the draws cover what they should
            assert {w.stride for w in wins} == {1, 2} and {w.N for w in wins} == {1, 2}
            assert {w.pads[0] for w in wins} == {0, 1, 2} and {w.pads[2] for w in wins} == {0, 1, 2}

    @cocotb.test()
    async def dw_extremes(dut):
        """All -128 / 127 maps and weights: sums at their limits, outputs saturating at -128 and 127, ReLU at 0."""
        drv = AccelDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 31)
        win = window.Window(1, 3, 4, 16, 3, 3, 1, 1, (1, 1, 1, 1), True)
        for xv, wv in [(-128, -128), (127, -128), (-128, 127)]:
            X, Wt = np.full((1, 3, 4, 16), xv, np.int8), np.full((3, 3, 16), wv, np.int8)
            for relu, out32 in [(False, False), (True, False), (False, True)]:
                await check(drv, dw_job(rng, win, drv.cfg, relu, out32, X=X, Wt=Wt))

    @cocotb.test()
    async def dw_backpressure(dut):
        """tvalid gaps on the input and tready low on the output at random: exact, nothing lost."""
        drv = AccelDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 32)
        pr = random.Random(SEED + 32)
        drv.src.set_pause_generator(iter(lambda: pr.random() < 0.3, None))
        drv.sink.set_pause_generator(iter(lambda: pr.random() < 0.5, None))
        jobs0 = await drv.read("JOBS")
        count = 1 if QUICK else 5
        for i in range(count):
            win = dw_geometry(rng, drv.cfg, 40 if QUICK else 1500)
            cnt = await check(drv, dw_job(rng, win, drv.cfg, relu=True, out_int32=i == 2), pauses=True)
            assert cnt["STALL_OUT"] > 0 and cnt["STALL_IN"] > 0, cnt
        assert await drv.read("JOBS") == jobs0 + count

    @cocotb.test(skip=QUICK)
    async def dw_buffer_corners(dut):
        """An input row exactly as long as the line buffer, the most channels a job takes, a 1x1 map, a 2-beat row;
        then a row one beat too long is flagged (STATUS.ERROR), and the next job is exact again."""
        drv = AccelDriver(dut)
        await drv.reset()
        cfg, rng = drv.cfg, np.random.default_rng(SEED + 33)
        C = cfg.dw_ch
        full = window.Window(1, 3, cfg.dw_lb_depth * 8 // C, C, 3, 3, 1, 1, (1, 1, 1, 1), True)
        assert full.W * C // 8 == cfg.dw_lb_depth
        for win in [full, window.Window(2, 1, 1, 16, 3, 3, 1, 1, (1, 1, 1, 1), True),
                    window.Window(1, 4, 1, 16, 3, 3, 2, 1, (2, 2, 2, 2), True),
                    window.Window(1, 5, 2, 8, 3, 3, 1, 1, (0, 0, 1, 1), True)]:
            await check(drv, dw_job(rng, win, cfg, out_int32=win.N == 2))
        big = dataclasses.replace(full, W=full.W + 1)        # packed for a build with a longer line buffer
        job = dw_job(rng, big, dataclasses.replace(cfg, dw_lb_depth=2 * cfg.dw_lb_depth))
        out, status, _ = await drv.run(job)
        assert status & regmap.STATUS_ERROR, f"a row of {big.W * C // 8} beats passed: STATUS={status:#x}"
        await check(drv, dw_job(rng, full, cfg, relu=True))

    @cocotb.test()
    async def dw_unused_rows(dut):
        """Stride-2 jobs whose last outputs come before the map's last rows stream in: the job is done only when
        its input is consumed too, so the next job starts clean (the input-side tlast check would catch it)."""
        drv = AccelDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 35)
        C = min(drv.cfg.dw_ch, 64)
        for win, out32 in [(window.Window(1, 6, 10, C, 3, 3, 2, 1, (2, 0, 2, 0), True), False),
                           (window.Window(2, 8, 4, 16, 3, 3, 2, 1, (2, 2, 1, 0), True), True),
                           (window.Window(2, 7, 7, 16, 3, 3, 2, 1, (0, 0, 0, 0), True), False)]:
            if QUICK and win.N == 2:
                continue
            last_row = (win.OH - 1) * win.stride - win.pads[0] + 2      # the last window's bottom row
            assert last_row < win.H - 1 or win.N == 2                    # input rows stream in after it
            await check(drv, dw_job(rng, win, drv.cfg, out_int32=out32))

    @cocotb.test()
    async def dw_mode_switch(dut):
        """A depthwise-unit job, a GEMM job, a window job, the first job again: all exact."""
        drv = AccelDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 34)
        first = dw_job(rng, dw_geometry(rng, drv.cfg, 40 if QUICK else 800), drv.cfg, relu=True)
        await check(drv, first)
        ops = accel.random_operands(rng, 5, drv.cfg.rows + 1, drv.cfg.cols + 2, relu=True)
        job = accel.pack_job(**ops, cfg=drv.cfg)
        out, status, _ = await drv.run(job)
        np.testing.assert_array_equal(accel.unpack_output(out, job), accel.job_golden(job))
        win = window.Window(1, 4, 5, drv.cfg.rows, 3, 3, 1, 1, (1, 1, 1, 1), True)
        X = rng.integers(-128, 128, (1, 4, 5, drv.cfg.rows)).astype(np.int8)
        Wt = rng.integers(-128, 128, (3, 3, drv.cfg.rows)).astype(np.int8)
        job = window.pack_window_job(X, Wt, cfg=drv.cfg, win=win, out_int32=True)
        out, status, _ = await drv.run(job)
        np.testing.assert_array_equal(accel.unpack_output(out, job), accel.job_golden(job))
        await check(drv, first)


CONFIGS = [("icarus", "sim8"), ("verilator", "sim8"), ("verilator", "z1dw")]


@pytest.mark.parametrize("sim,cfg", CONFIGS, ids=[f"{s}-{c}" for s, c in CONFIGS])
def test_accel_dw(sim, cfg):
    """The cocotb tests above on this simulator and configuration (the DUT is the whole conv_accel)."""
    from pytorch_fpga.sim import cocotb_runner, tools

    if not tools.available(sim):
        pytest.skip(f"{sim} is not installed; `make test` installs it or prints the command")
    cocotb_runner.run("conv_accel", rtl.RTL_MODULES, "test_accel_dw", sim, parameters=accel.config(cfg).params(),
                      test_dir=os.path.dirname(__file__), extra_env={"TB_QUICK": "1" if sim == "icarus" else "0"})

