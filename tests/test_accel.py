"""pf.accel's job packing and random jobs, against an independent integer oracle (Python ints)."""
import numpy as np
import pytest

from pytorch_fpga.contract import accel


def oracle(X, W, bias, m=None, shift=None, relu=False, out_int32=False):
    """Y = requant(wrap32(X @ W + bias)) in Python integers, element by element."""
    M, K = X.shape
    N = W.shape[1]
    Y = np.empty((M, N), np.int64)
    for i in range(M):
        for j in range(N):
            acc = sum(int(X[i, k]) * int(W[k, j]) for k in range(K)) + int(bias[j])
            acc = (acc + 2**31) % 2**32 - 2**31
            if out_int32:
                Y[i, j] = acc
                continue
            y = (acc * int(m[j]) + (1 << (int(shift[j]) - 1))) >> int(shift[j])
            y = min(127, max(-128, y))
            Y[i, j] = max(0, y) if relu else y
    return Y


@pytest.mark.parametrize("out_int32", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_random_job_golden_matches_the_integer_oracle(rng, relu, out_int32):
    M, K, N = (int(v) for v in rng.integers(1, [12, 40, 20]))
    job = accel.random_job(rng, M, K, N, cfg="sim8", relu=relu, out_int32=out_int32)
    ops = job.operands
    assert (job.M, job.K, job.N, job.relu, job.out_int32) == (M, K, N, relu, out_int32)
    expect = oracle(ops["X"], ops["W"], ops["bias"], ops.get("m"), ops.get("shift"), relu, out_int32)
    np.testing.assert_array_equal(accel.job_golden(job), expect)


def test_random_operands_hit_the_extremes_and_saturate(rng):
    ops = accel.random_operands(rng, 64, 64, 16, extreme=0.2)
    for A in (ops["X"], ops["W"]):
        assert A.dtype == np.int8 and A.min() == -128 and A.max() == 127
        share = np.mean((A == -128) | (A == 127))
        assert 0.15 < share < 0.3
    Y = accel.golden(**ops)
    saturated = np.mean((Y == 127) | (Y == -128))        # the scales are chosen so that some outputs saturate
    assert 0.005 < saturated < 0.7, saturated
    assert accel.random_operands(rng, 4, 4, 4, extreme=0.0)["X"].dtype == np.int8


def test_random_job_respects_m_tile_and_packs_the_whole_stream(rng):
    job = accel.random_job(rng, 10, 9, 8, cfg="sim8", m_tile=3)
    assert job.m_tile == 3 and list(job.tiles()) == [3, 3, 3, 1]
    again = accel.pack_job(**{k: job.operands[k] for k in ("X", "W", "bias", "m", "shift")}, cfg="sim8", m_tile=3)
    np.testing.assert_array_equal(job.stream, again.stream)
