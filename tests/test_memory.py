"""The DDR memory model (pytorch_fpga.sim.memory) on the Verilated RTL (sim8).

Oracles: the golden model (accel.job_golden) for every output; for cycles, arithmetic independent of the harness:
a job cannot take fewer cycles than its stream's bytes / (bandwidth / clock); the ideal stream matches
accel.cycle_model (within 1% + 8 cycles, as the model backend promises); a first-beat delay of L cycles costs L.
"""
import math

import numpy as np
import pytest

from pytorch_fpga import bench
from pytorch_fpga.contract import accel
from pytorch_fpga.runtime import backends
from pytorch_fpga.sim import tools
from pytorch_fpga.sim.memory import IDEAL, MemoryModel, rate_pattern

pytestmark = pytest.mark.skipif(not tools.available("verilator"), reason="needs Verilator")

CFG = accel.config("sim8")
SHAPES = [(20, 24, 20), (64, 8, 8), (37, 70, 19), (256, 64, 8)]
MODELS = {
    "ideal": IDEAL,
    "800": MemoryModel.at(800),
    "600": MemoryModel.at(600),
    "533 (credit)": MemoryModel.at(533),
    "400": MemoryModel.at(400),
    "400, S2MM 100": MemoryModel.at(400, s2mm_bandwidth_mb_s=100),
    "latency-bound": MemoryModel.at(800, burst_bytes=8, outstanding_bursts=1, burst_latency_cycles=20),
}


def sim_with(memory):
    """A fresh sim8 model with `memory` applied (None: as built)."""
    from pytorch_fpga.sim.verilated import VerilatedAccel
    sim = VerilatedAccel(CFG, quiet=True)
    if memory is not None:
        memory.apply(sim)
    return sim


def run(sim, job):
    out, status, counters = sim.run_job(job)
    return accel.unpack_output(out, job), counters["CYCLES"]


@pytest.fixture(scope="module")
def jobs():
    rng = np.random.default_rng(7)
    return [accel.random_job(rng, M, K, N, cfg=CFG, relu=bool(i % 2), out_int32=(i == 2))
            for i, (M, K, N) in enumerate(SHAPES)]


def test_rate_patterns_follow_the_arithmetic():
    # 100 MHz: 400 MB/s = 4 B/cycle = 1 beat in 2; 600 = 3 in 4; 500 = 5 in 8; 533 = 533/800 beats: credit
    assert rate_pattern(MemoryModel.at(400).bytes_per_cycle) == ("periodic", {"on": 1, "off": 1})
    assert MemoryModel.at(600).input_pattern() == ("periodic", {"on": 3, "off": 1})
    assert MemoryModel.at(500).input_pattern() == ("periodic", {"on": 5, "off": 3})
    assert MemoryModel.at(533).input_pattern() == ("credit", {"bytes_per_cycle": 5.33})
    assert IDEAL.input_pattern() == ("none", {}) and IDEAL.is_ideal and IDEAL.first_beat_cycles == 0
    assert MemoryModel.at(1600).bytes_per_cycle == 8               # the 64-bit stream moves a beat a cycle at most
    # Little's law: 1 outstanding 8-byte burst per 20 cycles of latency = 0.4 B/cycle, whatever the bandwidth
    assert MODELS["latency-bound"].bytes_per_cycle == pytest.approx(0.4)
    assert MemoryModel().first_beat_cycles == 28 and MemoryModel().burst_bytes == 16 * 8


def test_output_is_bit_exact_under_every_memory_model(jobs):
    for name, memory in MODELS.items():
        sim = sim_with(memory)                     # one model for all jobs: the settings hold across jobs
        for job in jobs:
            Y, cycles = run(sim, job)
            assert np.array_equal(Y, accel.job_golden(job)), f"{name}: job {job.M}x{job.K}x{job.N}"


def test_ideal_is_todays_stream(jobs):
    plain, ideal = sim_with(None), sim_with(IDEAL)
    for job in jobs:
        c_plain, c_ideal = run(plain, job)[1], run(ideal, job)[1]
        assert c_ideal == c_plain
        model = accel.cycle_model(job)["cycles"]
        assert abs(c_ideal - model) <= 0.01 * model + 8, (job.M, job.K, job.N, c_ideal, model)


def test_cycles_never_drop_with_bandwidth_and_respect_the_stream_bound(jobs):
    for job in jobs:
        cycles = {mb: run(sim_with(MemoryModel.at(mb)), job)[1] for mb in (800, 600, 533, 450, 400, 200)}
        seq = list(cycles.values())
        assert seq == sorted(seq), f"job {job.M}x{job.K}x{job.N}: {cycles}"
        for mb, c in cycles.items():
            assert c >= job.stream.size / (mb / CFG.clock_mhz), (mb, c)     # bytes / (bytes per cycle)


def test_a_stream_bound_job_halves_its_speed_at_half_the_bandwidth():
    job = accel.random_job(np.random.default_rng(3), 256, 64, 8, cfg=CFG)   # 8 beats in per row, 4 cycles out
    c800 = run(sim_with(MemoryModel.at(800)), job)[1]
    c400 = run(sim_with(MemoryModel.at(400)), job)[1]
    bound = job.stream.size / 4                    # 400 MB/s at 100 MHz = 4 bytes a cycle
    assert bound <= c400 <= 1.10 * bound           # slack: 10% for the pipeline's fill and drain
    assert 1.7 <= c400 / c800 <= 2.0


def test_latency_and_setup_cost_at_least_their_cycles(jobs):
    job = jobs[0]
    for mb in (800, 400):
        base = run(sim_with(MemoryModel.at(mb, burst_latency_cycles=0, setup_cycles=0)), job)[1]
        for lat, setup in ((20, 0), (0, 7), (30, 12)):
            mem = MemoryModel.at(mb, burst_latency_cycles=lat, setup_cycles=setup)
            c = run(sim_with(mem), job)[1]
            assert lat + setup <= c - base <= lat + setup + 8, (mb, lat, setup, base, c)


def test_output_limit_slows_int32_outputs_only_when_below_their_rate():
    rng = np.random.default_rng(11)
    job = accel.random_job(rng, 64, 8, 16, cfg=CFG, out_int32=True)      # 4 bytes an output: output-bound
    free = run(sim_with(MemoryModel.at(800)), job)[1]
    slow = run(sim_with(MemoryModel.at(800, s2mm_bandwidth_mb_s=100)), job)[1]
    assert slow >= job.out_bytes / 1.0 > free       # 100 MB/s = 1 byte a cycle


def test_backends_pass_the_memory_model_through(jobs):
    job = jobs[3]
    mem = MemoryModel.at(400)
    b = backends.get("verilator", "sim8", memory=mem)
    assert b.memory is mem
    Y, rep = b.run(job)
    assert np.array_equal(Y, accel.job_golden(job))
    assert rep.cycles == run(sim_with(mem), job)[1]
    assert backends.get("model", "sim8", memory=mem).run(job)[1].cycles == accel.cycle_model(job)["cycles"]


def test_a_very_slow_memory_stretches_the_backends_budget(jobs):
    job = jobs[0]
    mem = MemoryModel.at(10)                       # 0.1 B/cycle: 80 cycles a beat, beyond run_job's default budget
    Y, rep = backends.get("verilator", "sim8", memory=mem).run(job)
    assert np.array_equal(Y, accel.job_golden(job))
    assert rep.cycles >= job.stream.size / 0.1 > sim_with(None).default_budget(job)


def test_the_virtual_pynq_streams_through_the_memory_model(jobs):
    pytest.importorskip("pynq")
    from pytorch_fpga.sim import virtual_pynq
    job = jobs[3]
    b = backends.get("pynq", "sim8", memory=MemoryModel.at(400))
    import pynq
    dev = pynq.Device.active_device
    try:
        assert isinstance(dev, virtual_pynq.VirtualDevice) and dev.memory == MemoryModel.at(400)
        Y, slow = b.run(job)
        assert np.array_equal(Y, accel.job_golden(job))
        assert slow.cycles >= job.stream.size / 4
        dev.set_memory(None)
        Y, fast = b.run(job)
        assert np.array_equal(Y, accel.job_golden(job))
        assert fast.cycles < 0.7 * slow.cycles
        dev.set_memory(MemoryModel.at(800, s2mm_bandwidth_mb_s=100))
        assert dev._backpressure == ("periodic", {"on": 1, "off": 7})        # 1 B/cycle = a beat in 8
        dev.set_memory(None)
        assert dev._backpressure == ("none", {})
    finally:
        dev.close()


def test_bench_reports_cycles_at_each_bandwidth():
    layer = ("tiny", 8, 8, 8, 8, 3, 1, 1, 1)
    rec = bench.run("verilator", "sim8", layers=[layer], synth=False, progress=False, bandwidths=(800, 400))
    row = rec["layers"][0]
    assert set(row["cycles_at_mb_s"]) == {"800", "400"} and row["bit_exact_at_mb_s"]
    c = row["cycles_at_mb_s"]
    assert row["rtl_cycles"] <= c["800"] <= c["400"]
    assert c["400"] >= row["bytes_in"] / 4
    pes = CFG.rows * CFG.cols
    assert row["pe_utilization_at_mb_s"]["400"] == pytest.approx(row["macs"] / (pes * c["400"]))
    assert rec["memory_models"]["400"]["bytes_per_cycle"] == 4.0
    assert "cyc@400" in bench.table(rec)


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="bandwidth_mb_s"):
        MemoryModel.at(0)
    with pytest.raises(ValueError, match="multiple"):
        MemoryModel(burst_bytes=100)
    with pytest.raises(ValueError, match="setup_cycles"):
        MemoryModel(setup_cycles=-1)
    with pytest.raises(ValueError, match="clock_mhz=100"):
        MemoryModel.at(400, clock_mhz=150).check_clock(CFG)
    with pytest.raises(TypeError, match="MemoryModel"):
        backends.get("verilator", "sim8", memory="fast")
    sim = sim_with(None)
    with pytest.raises(ValueError, match="port"):
        sim.set_credit("both", 4)
    with pytest.raises(ValueError, match="bytes_per_cycle"):
        sim.set_credit("in", 9)
    with pytest.raises(ValueError, match="bytes_per_cycle"):
        sim.set_idle("credit")
    assert math.isclose(float(MemoryModel.at(450).bytes_per_cycle), 4.5)
