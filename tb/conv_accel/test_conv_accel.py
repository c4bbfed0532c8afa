"""cocotb tests of rtl/conv_accel.v against the library's golden model (pf.accel.golden = pf.gemm + pf.quant)."""
import os
import random

import numpy as np
import pytest

from pytorch_fpga.contract import accel, jobspace, regmap, rtl

try:
    import cocotb
    from cocotb.triggers import ClockCycles

    from tb.common.accel_driver import AccelDriver, AxiStreamFrame
except ImportError:  # pragma: no cover
    cocotb = None

SEED = int(os.environ.get("TB_SEED", "1"))
QUICK = os.environ.get("TB_QUICK") == "1"   # Icarus runs ~200x slower than Verilator here: smaller jobs
CORNERS = os.environ.get("TB_CORNERS") == "1"   # the job-space corners, on a build small enough to reach them all


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


CONFIGS = [("icarus", "sim8"), ("verilator", "sim8"), ("verilator", "z1")]


@pytest.mark.parametrize("sim,cfg", CONFIGS, ids=[f"{s}-{c}" for s, c in CONFIGS])
def test_conv_accel(sim, cfg):
    """Build conv_accel in this configuration with this simulator and run the cocotb tests above."""
    from pytorch_fpga.sim import cocotb_runner, tools

    if not tools.available(sim):
        pytest.skip(f"{sim} is not installed; `make test` installs it or prints the command")
    cocotb_runner.run("conv_accel", rtl.RTL_MODULES, "test_conv_accel", sim,
                   parameters=accel.config(cfg).params(), test_dir=os.path.dirname(__file__),
                   extra_env={"TB_QUICK": "1" if sim == "icarus" else "0",
                              "TB_CORNERS": "1" if (sim, cfg) == ("verilator", "sim8") else "0"})
