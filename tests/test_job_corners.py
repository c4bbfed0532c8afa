"""Jobs at the corners of the job space on the Verilated RTL, bit-exact against the numpy golden model.

Regression: a tile of one row whose k-folds' results left the array in consecutive cycles read its accumulator
row before the previous fold's write had landed (a read-after-write hazard), so the last output row of long-K
jobs (K >= 23 folds with m_tile 1, or a last tile of one row) was wrong, differently from run to run.
"""
import numpy as np
import pytest

from pytorch_fpga.contract import accel
from pytorch_fpga.sim import tools

pytestmark = [pytest.mark.skipif(not tools.available("verilator"), reason="Verilator is not installed"),
              pytest.mark.xdist_group("z1")]


@pytest.fixture(scope="module")
def z1():
    from pytorch_fpga.runtime import backends
    return backends.get("verilator", "z1")


CORNERS = [  # (M, K, N, m_tile): one-row tiles after long reductions, around the depth where it first failed
    (2, 352, 16, 1), (2, 368, 16, 1), (2, 400, 16, 1), (3, 600, 16, 1), (3, 384, 16, 2), (9, 4096, 10, 8),
    (17, 1024, 33, 16), (5, 4096, 16, 1),
]


@pytest.mark.parametrize("M,K,N,m_tile", CORNERS)
def test_one_row_tiles_after_long_reductions_are_exact(z1, M, K, N, m_tile):
    rng = np.random.default_rng(M * 100_003 + K * 7 + N)
    for relu, out_int32 in ((False, False), (True, False), (False, True)):
        job = accel.random_job(rng, M, K, N, cfg="z1", m_tile=m_tile, relu=relu, out_int32=out_int32)
        for _ in range(2):                                   # the same job twice: no state left between jobs
            Y, _ = z1.run(job)
            np.testing.assert_array_equal(Y, accel.job_golden(job), err_msg=f"M={M} K={K} N={N} m_tile={m_tile}")
