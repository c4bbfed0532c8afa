"""The soak: random jobs over the whole job space agree on every backend with an independent int64 oracle."""
import numpy as np
import pytest

from pytorch_fpga import soak
from pytorch_fpga.contract import accel, jobspace
from pytorch_fpga.sim import tools


def test_oracle_agrees_with_the_golden_model_on_random_corner_jobs():
    for i in range(200):
        rng = soak.job_rng(7, i)
        job = jobspace.job(rng, jobspace.sample(rng, "sim8"), "sim8")
        np.testing.assert_array_equal(soak.oracle(job), accel.job_golden(job))


def test_sampled_shapes_fit_and_hit_every_corner():
    rng = np.random.default_rng(3)
    shapes = [jobspace.sample(rng, cfg) for cfg in ("sim8",) for _ in range(2000)]
    for s in shapes[:200]:
        accel.check_job(s.M, s.K, s.N, s.m_tile, accel.config("sim8"))
    cov = jobspace.coverage(shapes, "sim8")
    assert set(cov) == set(jobspace.BINS)
    assert all(n > 0 for n in cov.values()), cov


def test_bins_name_the_corners_of_a_shape():
    cfg = accel.config("sim8")                               # 8x8, X bank 256 rows, W 512 rows, 64 channels
    b = jobspace.bins(jobspace.Shape(M=9, K=8 * 64, N=8, m_tile=4), cfg)
    assert {"last_tile=1", "K=max", "fk>=23", "w_buffer_full", "fn=1", "m_tile=max"} <= b
    assert "one_tile" not in b and "relu" not in b
    assert jobspace.bins(jobspace.Shape(1, 3, 64, 1, relu=True), cfg) >= {"fk=1", "N=n_max", "K%rows!=0", "relu"}


def test_a_job_replays_alone():
    a = soak.job_rng(5, 17)
    b = soak.job_rng(5, 17)
    ja = jobspace.job(a, jobspace.sample(a, "sim8"), "sim8")
    jb = jobspace.job(b, jobspace.sample(b, "sim8"), "sim8")
    np.testing.assert_array_equal(ja.stream, jb.stream)


def test_a_wrong_backend_is_counted(monkeypatch):
    """A backend that flips one output value is reported as a mismatch, with the job to replay."""
    from pytorch_fpga.runtime import backends

    class Broken(backends.ModelBackend):
        name = "model"

        def _run(self, job):
            Y, cycles = super()._run(job)
            Y = Y.copy()
            Y.flat[-1] ^= 1
            return Y, cycles

    monkeypatch.setattr(backends, "ModelBackend", Broken)
    rec = soak.run(jobs=5, seed=1, names=("model",), progress=False)
    assert rec["mismatches"] == 5 and rec["failures"][0]["index"] == 0
    assert "MISMATCH on model: job 0" in soak.report(rec)


@pytest.mark.skipif(not tools.available("verilator"), reason="Verilator is not installed")
@pytest.mark.xdist_group("pynq")
def test_a_thousand_random_jobs_on_three_backends_have_no_mismatch():
    rec = soak.run(jobs=1000, seed=2026, names=("model", "verilator", "pynq"), progress=False)
    assert {n: s["jobs"] for n, s in rec["backends"].items()} == {"model": 1000, "verilator": 1000, "pynq": 1000}
    assert rec["mismatches"] == 0, soak.report(rec)
    assert all(n > 0 for n in rec["coverage"].values()), rec["coverage"]
