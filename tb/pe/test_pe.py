"""cocotb tests of rtl/pe.v: every cycle's outputs against pf.gemm.mac (the library's PE model)."""
import os

import numpy as np
import pytest

import pytorch_fpga as pf

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge, RisingEdge
except ImportError:  # pragma: no cover
    cocotb = None

SEED = int(os.environ.get("TB_SEED", "1"))
INT32 = (-(2**31), 2**31 - 1)


def signed(handle) -> int:
    """A signal's value as a signed integer."""
    return handle.value.to_signed()


if cocotb is not None:

    async def start(dut):
        """Start the clock, enable the PE, idle its inputs; return the parameters read from the DUT."""
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        for s in (dut.w_shift, dut.w_bank, dut.w_in, dut.a_in, dut.a_sel_in, dut.psum_in):
            s.value = 0
        dut.ce.value = 1
        await RisingEdge(dut.clk)
        return int(dut.A_W.value), int(dut.W_W.value), int(dut.ACC_W.value)

    async def load(dut, bank, w):
        """Shift weight w into a bank in one cycle."""
        dut.w_shift.value, dut.w_bank.value, dut.w_in.value = 1, bank, int(w)
        await RisingEdge(dut.clk)
        dut.w_shift.value = 0

    @cocotb.test()
    async def mac_random_and_extremes(dut):
        """Random and extreme a, w, psum_in (incl. int32 overflow): psum_out == pf.gemm.mac one cycle later."""
        a_w, w_w, acc_w = await start(dut)
        assert (a_w, w_w, acc_w) == (8, 8, 32), "pf.gemm.mac models the int8 x int8 -> int32 PE"
        rng = np.random.default_rng(SEED)
        n = 400
        a = rng.integers(-128, 128, n)
        sel = rng.integers(0, 2, n)
        psum = rng.integers(*INT32, n, endpoint=True)
        a[:40] = rng.choice([-128, 127], 40)                    # extremes
        psum[:20] = rng.choice(INT32, 20)                       # accumulator at its limits -> wraps
        banks = [-128, 127]
        await load(dut, 0, banks[0])
        await load(dut, 1, banks[1])
        for i in range(n):
            if i % 50 == 25:                                    # reload a bank now and then
                banks[i % 2] = int(rng.integers(-128, 128))
                await load(dut, i % 2, banks[i % 2])
            dut.a_in.value, dut.a_sel_in.value, dut.psum_in.value = int(a[i]), int(sel[i]), int(psum[i])
            await RisingEdge(dut.clk)
            await FallingEdge(dut.clk)
            expect = int(pf.gemm.mac(psum[i], a[i], banks[sel[i]]))
            assert signed(dut.psum_out) == expect, f"step {i}: {psum[i]} + {a[i]} * {banks[sel[i]]}"
            assert signed(dut.a_out) == a[i] and int(dut.a_sel_out.value) == sel[i]

    @cocotb.test()
    async def weight_chain_and_enable(dut):
        """w_out shows the loading bank's weight (for the PE below); ce=0 freezes every register."""
        await start(dut)
        await load(dut, 0, -7)
        await load(dut, 1, 100)
        dut.w_bank.value = 0
        await FallingEdge(dut.clk)
        assert signed(dut.w_out) == -7
        dut.w_bank.value = 1
        await FallingEdge(dut.clk)
        assert signed(dut.w_out) == 100
        dut.a_in.value, dut.a_sel_in.value, dut.psum_in.value = 3, 1, 5
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        held = signed(dut.psum_out)
        assert held == int(pf.gemm.mac(5, 3, 100))
        dut.ce.value = 0
        dut.a_in.value, dut.psum_in.value, dut.w_shift.value, dut.w_in.value = -128, 99, 1, 1
        for _ in range(3):
            await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        assert signed(dut.psum_out) == held and signed(dut.a_out) == 3 and signed(dut.w_out) == 100


@pytest.mark.parametrize("use_dsp", [1, 0], ids=["dsp", "lut"])
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_pe(sim, use_dsp):
    """Build the PE (DSP or LUT multiplier) with this simulator and run the cocotb tests above."""
    from pytorch_fpga.sim import cocotb_runner, tools

    if not tools.available(sim):
        pytest.skip(f"{sim} is not installed; `make test` installs it or prints the command")
    cocotb_runner.run("pe", ["pe"], "test_pe", sim, parameters={"USE_DSP": use_dsp}, test_dir=os.path.dirname(__file__))
