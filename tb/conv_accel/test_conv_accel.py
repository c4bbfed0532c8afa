"""cocotb tests of rtl/conv_accel.v against the library's golden model (pf.accel.golden = pf.gemm + pf.quant)."""
import os
import random

import numpy as np
import pytest

from pytorch_fpga.contract import accel, jobspace, regmap, rtl, window

try:
    import cocotb
    from cocotb.triggers import ClockCycles

    from tb.common.accel_driver import AccelDriver, AxiStreamFrame
except ImportError:  # pragma: no cover
    cocotb = None

SEED = int(os.environ.get("TB_SEED", "1"))
QUICK = os.environ.get("TB_QUICK") == "1"   # Icarus runs ~200x slower than Verilator here: smaller jobs
CORNERS = os.environ.get("TB_CORNERS") == "1"   # the job-space corners, on a build small enough to reach them all
WINDOW = os.environ.get("TB_WINDOW") == "1"     # the window-mode tests (window_*), run by test_conv_accel_window


def rand_job(rng, M, K, N, cfg, relu=False, out_int32=False, extreme=0.1, m_tile=None):
    """(X, W, requant args, packed job) from the library's random operands (a share of -128/127 in X and W)."""
    ops = accel.random_operands(rng, M, K, N, relu=relu, out_int32=out_int32, extreme=extreme)
    X, W = ops.pop("X"), ops.pop("W")
    return X, W, ops, accel.pack_job(X, W, cfg=cfg, m_tile=m_tile, **ops)


def shapes(cfg):
    """(M, K, N): odd sizes, K = 1, several tiles, the largest K and N the buffers allow."""
    R, C = cfg.rows, cfg.cols
    kmax = cfg.x_depth // 2                     # leaves room for a 2-row tile
    two = cfg.x_depth // (4 * R)                # rows of a tile that fills an X bank when K = 4 * ROWS
    if QUICK:
        return [(1, 1, 1), (5, 3, C + 3), (cfg.acc_depth + 3, 2, 3), (9, 3 * R - 2, 2 * C + 1)]
    return [(1, 1, 1), (5, 3, C + 3), (2 * cfg.acc_depth + 7, R + 1, C - 1), (9, 3 * R - 2, 2 * C + 1),
            (two + 1, 4 * R, C), (2 * two - 3, 4 * R - 1, 3),
            (cfg.acc_depth, 2 * R, C), (3, kmax, min(cfg.n_max, C * (cfg.w_depth // kmax)))]


KERNELS = [(1, 1), (3, 3), (5, 5), (1, 3), (3, 1)]


def window_fits(win, Co, cfg) -> bool:
    """Window mode takes the layer on cfg in one job (weights in the W buffer, channels under N_MAX)."""
    fn = -(-Co // cfg.cols)
    return (window.unsupported(win, cfg, Co) is None and win.folds(cfg) * fn * cfg.rows <= cfg.w_depth
            and fn * cfg.cols <= cfg.n_max)


def window_geometry(rng, cfg, max_cost, depthwise=None, N=None):
    """(Window, Co): a random layer window mode takes, stride 1-3, dilation 1-2, asymmetric pads, channels mostly
    not a multiple of ROWS, batch 1-2, of at most max_cost MAC cycles (M * folds * n-folds)."""
    R = cfg.rows
    while True:
        kh, kw = KERNELS[rng.integers(len(KERNELS))]
        dw = bool(rng.integers(3) == 0) if depthwise is None else depthwise
        C = int(rng.integers(1, 3 * R))
        C += int(C % R == 0)
        win = window.Window(int(rng.integers(1, 3)) if N is None else N, int(rng.integers(2, 12)),
                            int(rng.integers(2, 12)), C, kh, kw, int(rng.integers(1, 4)), int(rng.integers(1, 3)),
                            tuple(int(p) for p in rng.integers(0, 3, 4)), dw)
        Co = C if dw else int(rng.integers(1, 2 * cfg.cols + 4))
        if window_fits(win, Co, cfg) and win.M * win.folds(cfg) * -(-Co // cfg.cols) <= max_cost:
            return win, Co


def window_job(rng, win, Co, cfg, relu=False, out_int32=False, tile_oh=None, extreme=0.1):
    """A packed window job of random int8 operands (a share of -128/127) with pf.accel.random_operands' requant."""
    X = rng.integers(-128, 128, (win.N, win.H, win.W, win.C)).astype(np.int8)
    Wt = rng.integers(-128, 128, (win.kh, win.kw, win.C) + (() if win.depthwise else (Co,))).astype(np.int8)
    for A in (X, Wt):
        mask = rng.random(A.shape) < extreme
        A[mask] = rng.choice(np.array([-128, 127], np.int8), int(mask.sum()))
    ops = accel.random_operands(rng, 1, win.kh * win.kw * (1 if win.depthwise else win.C), Co, relu=relu,
                                out_int32=out_int32)
    ops = {k: ops[k] for k in ("bias", "m", "shift") if k in ops}
    return window.pack_window_job(X, Wt, **ops, relu=relu, out_int32=out_int32, cfg=cfg, tile_oh=tile_oh,
                                  stride=win.stride, dilation=win.dilation, pads=win.pads)


def corner_layer(cfg, fits, kernels=((3, 3, 1), (1, 1, 0))):
    """(Window, tile_oh): a layer of several tiles (the first kernel, with its pad, that has one; the fewest MACs
    over channel blocks and widths; Co = COLS - 1) whose window.max_tile_oh tiling on cfg meets fits(win, T)."""
    for kh, kw, pad in kernels:
        found = []
        for cb in range(1, 9):
            for W in range(1, 65):
                C = cb * cfg.rows - cfg.rows // 2
                T = window.max_tile_oh(window.Window(1, 64, W, C, kh, kw, 1, 1, (pad,) * 4), cfg)
                win = window.Window(1, 2 * T + kh, W, C, kh, kw, 1, 1, (pad,) * 4)
                if window_fits(win, cfg.cols - 1, cfg) and window.max_tile_oh(win, cfg) == T and fits(win, T):
                    found.append((win.M * win.folds(cfg), win, T))
        if found:
            return min(found, key=lambda f: f[0])[1:]
    raise AssertionError(f"no layer meets the corner on {cfg}")


if cocotb is not None:

    async def check(drv, X, W, args, job, pauses=False, timing=True):
        out, status, cnt = await drv.run(job)
        assert status & regmap.STATUS_DONE and not status & regmap.STATUS_ERROR, f"STATUS={status:#x}"
        Y = accel.unpack_output(out, job)
        np.testing.assert_array_equal(Y, accel.golden(X, W, **args), err_msg=f"{job.M}x{job.K}x{job.N}")
        assert cnt["MAC_CYCLES"] == job.M * job.fk * job.fn, cnt
        if timing and not pauses:  # streams at full rate: the counters follow the library's cycle model
            assert cnt["STALL_OUT"] == 0, cnt
            model = accel.cycle_model(job)["cycles"]
            assert abs(cnt["CYCLES"] - model) <= 0.01 * model + 8, (cnt, model)
        return cnt

    @cocotb.test()
    async def random_jobs(dut):
        """Odd sizes, K = 1, several X tiles, the largest buffers: int8 (with and without ReLU) and int32."""
        drv = AccelDriver(dut)
        await drv.reset()
        assert await drv.read("ID") == regmap.MAGIC
        rng = np.random.default_rng(SEED)
        for i, (M, K, N) in enumerate(shapes(drv.cfg)):
            for relu, out32 in [(i % 2 == 1, False), (False, True)]:
                await check(drv, *rand_job(rng, M, K, N, drv.cfg, relu=relu, out_int32=out32))

    @cocotb.test()
    async def extremes_and_saturation(dut):
        """All -128 / 127 operands: sums at their limits, outputs saturating at -128 and 127, ReLU at 0."""
        drv = AccelDriver(dut)
        await drv.reset()
        M, K, N = 7, 3 * drv.cfg.rows, drv.cfg.cols
        for xv, wv in [(-128, -128), (127, -128), (-128, 127)]:
            X, W = np.full((M, K), xv, np.int8), np.full((K, N), wv, np.int8)
            for relu in (False, True):
                args = dict(bias=np.full(N, -5), m=np.full(N, 2**30), shift=np.full(N, 31), relu=relu)
                await check(drv, X, W, args, accel.pack_job(X, W, cfg=drv.cfg, **args))

    @cocotb.test()
    async def back_to_back_and_pauses(dut):
        """Jobs one after another with idle input and output backpressure at random: exact, nothing lost."""
        drv = AccelDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 1)
        pr = random.Random(SEED)
        drv.src.set_pause_generator(iter(lambda: pr.random() < 0.3, None))
        drv.sink.set_pause_generator(iter(lambda: pr.random() < 0.5, None))
        for M, K, N in shapes(drv.cfg)[1:4 if not QUICK else 2]:
            cnt = await check(drv, *rand_job(rng, M, K, N, drv.cfg, relu=True), pauses=True)
        assert cnt["STALL_OUT"] > 0 and cnt["STALL_IN"] > 0, cnt
        assert await drv.read("JOBS") == (3 if not QUICK else 1)

    @cocotb.test()
    async def reset_mid_job(dut):
        """A soft reset (CTRL bit 1) and a hard reset in the middle of jobs; the next jobs are exact."""
        drv = AccelDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 2)
        for soft in (True, False):
            _, _, _, job = rand_job(rng, 2 * drv.cfg.acc_depth, 2 * drv.cfg.rows, drv.cfg.cols, drv.cfg)
            await drv.start(job)
            drv.src.send_nowait(AxiStreamFrame(job.stream.tobytes()))
            await ClockCycles(dut.clk, job.stream.size // 16)
            if soft:
                drv.src.clear()
                await drv.write("CTRL", regmap.CTRL_SOFT_RESET)
                await ClockCycles(dut.clk, 4)
                drv.reset_output_channel()       # the aborted job's partial output packet goes too
            else:
                await drv.reset()
            assert await drv.read("STATUS") & regmap.STATUS_IDLE
            # (the aborted packet's remaining beats are swallowed first, so this job's CYCLES run longer)
            await check(drv, *rand_job(rng, 11, drv.cfg.rows + 3, drv.cfg.cols + 1, drv.cfg, relu=True),
                        timing=False)

    @cocotb.test()
    async def errors_are_reported(dut):
        """A stream shorter than the job sets STATUS.ERROR; dimensions the build cannot take refuse START."""
        drv = AccelDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 3)
        _, _, _, job = rand_job(rng, 4, drv.cfg.rows, drv.cfg.cols, drv.cfg)
        await drv.start(job)
        drv.src.send_nowait(AxiStreamFrame(job.stream[:-8].tobytes()))  # one beat short
        await ClockCycles(dut.clk, job.stream.size // 8 + 50)
        status = await drv.read("STATUS")
        assert status & regmap.STATUS_ERROR and not status & regmap.STATUS_IDLE, f"STATUS={status:#x}"
        await drv.write("CTRL", regmap.CTRL_SOFT_RESET)  # soft reset recovers
        await drv.write("M_TILE", drv.cfg.acc_depth + 1)
        await drv.write("CTRL", regmap.CTRL_START)
        status = await drv.read("STATUS")
        assert status & regmap.STATUS_ERROR and status & regmap.STATUS_IDLE, f"STATUS={status:#x}"
        await check(drv, *rand_job(rng, 6, 5, 3, drv.cfg))

    @cocotb.test(skip=not CORNERS)
    async def corner_jobs(dut):
        """Constrained-random jobs at the buffer limits (pf.contract.jobspace): every coverage bin is hit."""
        drv = AccelDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 10)
        shapes, cov = [], dict.fromkeys(jobspace.BINS, 0)
        while len(shapes) < 40 or (min(cov.values()) == 0 and len(shapes) < 400):
            shape = jobspace.sample(rng, drv.cfg, max_tiles=4, max_macs=12_000)
            shapes.append(shape)
            job = jobspace.job(rng, shape, drv.cfg)
            out, status, cnt = await drv.run(job)
            assert status & regmap.STATUS_DONE and not status & regmap.STATUS_ERROR, f"{shape}: STATUS={status:#x}"
            np.testing.assert_array_equal(accel.unpack_output(out, job), accel.job_golden(job), err_msg=str(shape))
            cov = jobspace.coverage(shapes, drv.cfg)
        dut._log.info("coverage over %d jobs: %s", len(shapes), ", ".join(f"{b} {n}" for b, n in cov.items()))
        missed = [b for b, n in cov.items() if n == 0]
        assert not missed, f"coverage bins never hit in {len(shapes)} jobs: {missed}"

    async def check_window(drv, job, pauses=False):
        """Run a window job: exact against pf.accel.job_golden; without pauses CYCLES within 2% of cycle_model."""
        out, status, cnt = await drv.run(job)
        assert status & regmap.STATUS_DONE and not status & regmap.STATUS_ERROR, f"{job.window}: STATUS={status:#x}"
        np.testing.assert_array_equal(accel.unpack_output(out, job), accel.job_golden(job), err_msg=str(job.window))
        assert cnt["MAC_CYCLES"] == job.M * job.fk * job.fn, (job.window, cnt)
        if not pauses:
            model = accel.cycle_model(job)["cycles"]
            drv.dut._log.info("%s: CYCLES %d, cycle_model %d (%+.2f%%)", job.window, cnt["CYCLES"], model,
                              100 * (cnt["CYCLES"] - model) / model)
            assert cnt["STALL_OUT"] == 0, cnt
            assert abs(cnt["CYCLES"] - model) <= 0.02 * model, (job.window, job.m_tile, cnt, model)
        return cnt

    @cocotb.test(skip=not WINDOW)
    async def window_random_jobs(dut):
        """Window jobs of random geometry (stride, pads, dilation, depthwise, batch 2, odd channels) at full rate."""
        drv = AccelDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 20)
        count, cost = (2, 300) if QUICK else (24, 12_000)     # Icarus: a smoke test, Verilator the rest
        wins = []
        for i in range(count):
            win, Co = window_geometry(rng, drv.cfg, cost, depthwise=i % 3 == 2, N=1 + i % 2)
            wins.append(win)
            await check_window(drv, window_job(rng, win, Co, drv.cfg, relu=i % 4 == 1, out_int32=i % 4 == 3))
        if not QUICK:                          # the draws cover what they should
            assert {w.stride for w in wins} == {1, 2, 3} and {w.dilation for w in wins} == {1, 2}
            assert any(w.pads[0] != w.pads[1] for w in wins) and any(w.pads[2] != w.pads[3] for w in wins)
            assert {(w.kh, w.kw) for w in wins} >= {(1, 3), (3, 3), (5, 5)}
            assert all(w.C % drv.cfg.rows for w in wins)

    @cocotb.test(skip=not WINDOW)
    async def window_backpressure(dut):
        """Window jobs with tvalid gaps on the input and tready low on the output at random: exact, nothing lost."""
        drv = AccelDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 21)
        pr = random.Random(SEED + 21)
        drv.src.set_pause_generator(iter(lambda: pr.random() < 0.3, None))
        drv.sink.set_pause_generator(iter(lambda: pr.random() < 0.5, None))
        jobs0 = await drv.read("JOBS")
        count, cost = 5, 6000
        for i in range(count):
            win, Co = window_geometry(rng, drv.cfg, cost, depthwise=i == 1, N=2 if i == 0 else None)
            cnt = await check_window(drv, window_job(rng, win, Co, drv.cfg, relu=True, out_int32=i == 2),
                                     pauses=True)
            assert cnt["STALL_OUT"] > 0 and cnt["STALL_IN"] > 0, cnt
        assert await drv.read("JOBS") == jobs0 + count

    @cocotb.test(skip=not WINDOW)
    async def window_buffer_corners(dut):
        """A tile whose input rows fill the X bank exactly, a tile of exactly ACC_DEPTH pixels, windows mostly in
        the padding, a 1x1 stride-2 layer; tile sizes from window.max_tile_oh on the DUT's own parameters."""
        drv = AccelDriver(dut)
        await drv.reset()
        cfg, rng = drv.cfg, np.random.default_rng(SEED + 22)
        R = cfg.rows

        def fills_x(w, T):                    # some tile's input rows take the whole X bank
            return max(w.tile(oy0, rows)[2] for _, oy0, rows in w.tiles(T * w.OW)) * w.row(cfg) == cfg.x_depth

        x_win, x_T = corner_layer(cfg, fills_x)
        acc_win, acc_T = corner_layer(cfg, lambda w, T: T * w.OW == cfg.acc_depth)
        layers = [(x_win, cfg.cols - 1, x_T), (acc_win, cfg.cols - 1, acc_T),
                  (window.Window(1, 3, 3, R - 1, 5, 5, 1, 1, (2, 2, 2, 2)), 3, None),     # mostly padding
                  (window.Window(1, 3, 3, R, 5, 5, 1, 1, (2, 2, 2, 2), True), R, None),
                  (window.Window(2, 7, 9, R + 3, 1, 1, 2), cfg.cols + 1, None)]          # 1x1, stride 2
        for i, (win, Co, T) in enumerate(layers):
            dut._log.info("window corner %s -> %d output channels, tile_oh %s", win, Co, T)
            job = window_job(rng, win, Co, cfg, out_int32=i % 2 == 1, tile_oh=T)
            if i == 0:
                assert max(win.tile_nrows(job)) * win.row(cfg) == cfg.x_depth
            if i == 1:
                assert job.m_tile == cfg.acc_depth and len(job.tiles()) > 1
            await check_window(drv, job)

    @cocotb.test(skip=not WINDOW)
    async def window_mode_switch(dut):
        """A window job, then a GEMM job (WIN_* registers left as they were), then window jobs again: all exact."""
        drv = AccelDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 23)
        cost = 250 if QUICK else 5000
        win, Co = window_geometry(rng, drv.cfg, cost, N=2)
        first = window_job(rng, win, Co, drv.cfg, relu=True)
        await check_window(drv, first)
        await check(drv, *rand_job(rng, 5 if QUICK else 13, 2 * drv.cfg.rows + 1, drv.cfg.cols + 2, drv.cfg,
                                   relu=True))
        win2, Co2 = window_geometry(rng, drv.cfg, cost, depthwise=True)
        await check_window(drv, window_job(rng, win2, Co2, drv.cfg, out_int32=True))
        if not QUICK:
            await check_window(drv, first)               # the first job again: every register rewritten
            await check(drv, *rand_job(rng, 5, 3, 2, drv.cfg, out_int32=True))


CONFIGS = [("icarus", "sim8"), ("verilator", "sim8"), ("verilator", "z1")]
WINDOW_CONFIGS = [("icarus", "sim8"), ("verilator", "sim8")]
WINDOW_QUICK = ("window_random_jobs", "window_mode_switch")     # Icarus is slow: these, with small jobs


def _run(sim, cfg, **env):
    """Build conv_accel in this configuration with this simulator and run the cocotb tests above."""
    from pytorch_fpga.sim import cocotb_runner, tools

    if not tools.available(sim):
        pytest.skip(f"{sim} is not installed; `make test` installs it or prints the command")
    cocotb_runner.run("conv_accel", rtl.RTL_MODULES, "test_conv_accel", sim,
                      parameters=accel.config(cfg).params(), test_dir=os.path.dirname(__file__),
                      extra_env={"TB_QUICK": "1" if sim == "icarus" else "0", **env})


@pytest.mark.parametrize("sim,cfg", CONFIGS, ids=[f"{s}-{c}" for s, c in CONFIGS])
def test_conv_accel(sim, cfg):
    """The cocotb tests above but the window_* ones, on this simulator and configuration."""
    _run(sim, cfg, TB_CORNERS="1" if (sim, cfg) == ("verilator", "sim8") else "0")


@pytest.mark.parametrize("sim,cfg", WINDOW_CONFIGS, ids=[f"{s}-{c}" for s, c in WINDOW_CONFIGS])
def test_conv_accel_window(sim, cfg):
    """The window-mode cocotb tests above (window_*) on this simulator and configuration."""
    _run(sim, cfg, TB_WINDOW="1", COCOTB_TEST_FILTER=r"\.(" + "|".join(WINDOW_QUICK) + ")$" if sim == "icarus"
         else r"\.window_\w+$")
