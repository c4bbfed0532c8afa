"""cocotb tests of rtl/systolic_array.v against the library's golden GEMM and exact cycle formula."""
import os
import random

import numpy as np
import pytest

import pytorch_fpga as pf

try:  # cocotb parts load only inside the simulator (and when cocotb is installed)
    import cocotb
    from cocotb.triggers import ClockCycles

    from tb.common.array_driver import ArrayDriver
except ImportError:  # pragma: no cover - plain pytest collection without cocotb
    cocotb = None

SEED = int(os.environ.get("TB_SEED", "1"))


def rand_int8(rng, shape, extreme=0.2):
    """Random int8 with a share of -128 and 127 (the extremes)."""
    a = rng.integers(-128, 128, size=shape)
    mask = rng.random(shape) < extreme
    a[mask] = rng.choice([-128, 127], size=int(mask.sum()))
    return a.astype(np.int8)


def job_shapes(rows, cols):
    """(M, K, N) shapes: K = 1, K not a multiple of rows, N not a multiple of cols, M = 1, several folds."""
    return [(1, 1, 1), (5, 1, cols), (3, rows + 1, cols - 1 or 1), (2 * rows + 3, 2 * rows + 1, 2 * cols - 1),
            (1, 3 * rows, cols + 1), (4 * rows + cols, rows, cols)]


if cocotb is not None:

    @cocotb.test()
    async def gemm_random_and_cycles(dut):
        """Random GEMMs (odd shapes, K=1, M=1): bit-exact vs pf.gemm_int8 and cycles == pf.systolic.ws_cycles."""
        drv = ArrayDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED)
        for M, K, N in job_shapes(drv.rows, drv.cols):
            X, W = rand_int8(rng, (M, K)), rand_int8(rng, (K, N))
            await drv.reset()   # start each measured job from an idle array
            Y, cycles = await drv.gemm(X, W)
            np.testing.assert_array_equal(Y, pf.gemm_int8(X, W), err_msg=f"M,K,N={M},{K},{N}")
            expect = pf.systolic.ws_cycles(M, K, N, drv.rows, drv.cols)
            assert cycles == expect, f"M,K,N={M},{K},{N}: RTL took {cycles} cycles, formula says {expect}"

    @cocotb.test()
    async def gemm_extremes(dut):
        """All -128 (the largest product, 16384), 127 x -128 and alternating extremes, over several K-folds."""
        drv = ArrayDriver(dut)
        await drv.reset()
        M, K, N = drv.rows + 2, 3 * drv.rows - 1, drv.cols
        alt = np.where(np.indices((M, K)).sum(0) % 2 == 0, -128, 127).astype(np.int8)
        for X, W in [(np.full((M, K), -128, np.int8), np.full((K, N), -128, np.int8)),
                     (np.full((M, K), 127, np.int8), np.full((K, N), -128, np.int8)),
                     (alt, np.full((K, N), 127, np.int8))]:
            Y, _ = await drv.gemm(X, W)
            np.testing.assert_array_equal(Y, pf.gemm_int8(X, W))

    @cocotb.test()
    async def back_to_back_jobs(dut):
        """Jobs queued back to back with no reset or gap: each exact, total cycles from the fold schedule."""
        drv = ArrayDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 1)
        shapes = [(7, drv.rows + 3, drv.cols), (2, 1, 3), (drv.rows * 3, 2 * drv.rows, drv.cols + 2), (1, 5, 1)]
        jobs = [(rand_int8(rng, (M, K)), rand_int8(rng, (K, N))) for M, K, N in shapes]
        fold_ms = []
        for X, W in jobs:
            fold_ms += [X.shape[0]] * drv.queue_gemm(X, W)
        for X, W in jobs:
            M, K = X.shape
            N = W.shape[1]
            folds = len(pf.systolic.fold_plan(K, N, drv.rows, drv.cols))
            outs = await drv.recv_folds(folds, M, timeout_cycles=100_000)
            np.testing.assert_array_equal(pf.systolic.ws_assemble(outs, M, K, N, drv.rows, drv.cols),
                                          pf.gemm_int8(X, W))
        cycles = drv.y_beats[-1] - drv.w_beats[0] + 1
        assert cycles == pf.systolic.ws_cycles_for_folds(fold_ms, drv.rows, drv.cols)

    @cocotb.test()
    async def reset_mid_job(dut):
        """A reset in the middle of a job drops it; the next job is still exact and takes the formula's cycles."""
        drv = ArrayDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 2)
        X, W = rand_int8(rng, (3 * drv.rows, 2 * drv.rows)), rand_int8(rng, (2 * drv.rows, drv.cols))
        drv.queue_gemm(X, W)
        await ClockCycles(dut.clk, 2 * drv.rows + 5)  # weights loaded, activations streaming, results pending
        for port in (drv.w_src, drv.x_src):
            port.clear()
        await drv.reset()
        await ClockCycles(dut.clk, 2)
        drv.y_sink.clear()
        assert dut.m_axis_y_tvalid.value == 0, "results survived the reset"
        X, W = rand_int8(rng, (drv.rows + 1, drv.rows + 2)), rand_int8(rng, (drv.rows + 2, drv.cols))
        Y, cycles = await drv.gemm(X, W)
        np.testing.assert_array_equal(Y, pf.gemm_int8(X, W))
        assert cycles == pf.systolic.ws_cycles(*X.shape, W.shape[1], drv.rows, drv.cols)

    @cocotb.test()
    async def random_pauses(dut):
        """Idle inputs and output backpressure at random: results still exact, nothing lost or reordered."""
        drv = ArrayDriver(dut)
        await drv.reset()
        rng = np.random.default_rng(SEED + 3)
        pr = random.Random(SEED)
        gen = lambda p: iter(lambda: pr.random() < p, None)   # noqa: E731 - endless pause pattern
        drv.set_pauses(w=gen(0.3), x=gen(0.3), y=gen(0.4))
        for M, K, N in job_shapes(drv.rows, drv.cols)[2:]:
            X, W = rand_int8(rng, (M, K)), rand_int8(rng, (K, N))
            Y, _ = await drv.gemm(X, W, timeout_cycles=50 * pf.systolic.ws_cycles(M, K, N, drv.rows, drv.cols))
            np.testing.assert_array_equal(Y, pf.gemm_int8(X, W))


# ---------------------------------------------------------------------------------------------- pytest runner
SIZES = [(2, 2, 0), (4, 4, 0), (8, 8, 0), (3, 5, 0), (4, 4, 2)]
# (simulator, rows, cols, LUT rows): every size on both simulators, and 16x16 on Verilator (Icarus is ~20x slower)
CASES = [(sim, *size) for sim in ("icarus", "verilator") for size in SIZES] + [("verilator", 16, 16, 0)]


@pytest.mark.parametrize("sim,rows,cols,lut_rows", CASES,
                         ids=[f"{s}-{r}x{c}" + (f"-lut{lut}" if lut else "") for s, r, c, lut in CASES])
def test_systolic_array(sim, rows, cols, lut_rows):
    """Build the array at this size with this simulator and run the cocotb tests above."""
    from pytorch_fpga.sim import cocotb_runner, tools

    if not tools.available(sim):
        pytest.skip(f"{sim} is not installed; `make test` installs it or prints the command")
    cocotb_runner.run("systolic_array", ["systolic_array", "pe"], "test_systolic_array", sim,
                   parameters={"ROWS": rows, "COLS": cols, "LUT_ROWS": lut_rows}, test_dir=os.path.dirname(__file__))
