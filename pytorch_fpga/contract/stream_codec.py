"""A job's stream read back: where its X tiles sit, its operands decoded, and its output packed (numpy only).

The inverse of pf.accel.pack_job and pf.accel.unpack_output, for code that writes streams in place (the model
compiler's programs fill X tiles straight into pre-packed job buffers) and for the numpy model, which then runs
on exactly the bytes the hardware would see.
"""
from __future__ import annotations

import numpy as np

from pytorch_fpga.contract import dwunit, window
from pytorch_fpga.contract.accel import Job


def params_bytes(job: Job) -> int:
    """Bytes of the parameter block at the stream's start (bias and m as int32 pairs, then shifts, per n-fold)."""
    C = job.cfg.cols
    return job.fn * (C * 8 + C)


def w_bytes(job: Job) -> int:
    """Bytes of the packed weights."""
    return job.fn * job.fk * job.cfg.rows * job.cfg.cols


def stream_bytes(job: Job) -> int:
    """Bytes of the whole input stream."""
    return params_bytes(job) + w_bytes(job) + 8 * sum(job.x_tile_beats())


def x_regions(job: Job) -> list[tuple[int, int, int]]:
    """(byte offset, first row, rows) of each X tile in the stream: tile 0 after the parameters, the rest after W.

    Tile t holds its rows' K columns fold by fold: an (fk, rows, R) int8 block. Window jobs: window.x_regions;
    depthwise-unit jobs: dwunit.x_regions.
    """
    if job.dw_unit:
        return dwunit.x_regions(job)
    if job.window is not None:
        return window.x_regions(job)
    R, pos, out, row0 = job.cfg.rows, params_bytes(job), [], 0
    for t, rows in enumerate(job.tiles()):
        out.append((pos, row0, rows))
        pos += job.fk * rows * R + (w_bytes(job) if t == 0 else 0)
        row0 += rows
    return out


def decode_x(job: Job, stream=None) -> np.ndarray:
    """X (M x K) int8 from the stream's X tiles (window and depthwise-unit jobs: the windows formed, M x kh*kw*C)."""
    if job.dw_unit:
        return dwunit.decode_x(job, stream)
    if job.window is not None:
        return window.decode_x(job, stream)
    s = np.asarray(job.stream if stream is None else stream).view(np.int8)
    R, X = job.cfg.rows, np.empty((job.M, job.fk * job.cfg.rows), np.int8)
    for off, row0, rows in x_regions(job):
        block = s[off:off + job.fk * rows * R].reshape(job.fk, rows, R)
        X[row0:row0 + rows] = block.transpose(1, 0, 2).reshape(rows, -1)
    return X[:, :job.K]


def decode_params(job: Job, stream=None) -> dict:
    """W (K x N) int8, bias, m and shift (int64) from the stream's parameter block and packed weights."""
    s = np.asarray(job.stream if stream is None else stream).view(np.uint8)
    R, C, fk, fn = job.cfg.rows, job.cfg.cols, job.fk, job.fn
    bias, m, shift, pos = [], [], [], 0
    for _ in range(fn):
        mb = s[pos:pos + C * 8].view("<u4").reshape(C, 2)
        bias.append(mb[:, 0].view("<i4").astype(np.int64))
        m.append(mb[:, 1].astype(np.int64))
        shift.append(s[pos + C * 8:pos + C * 9].astype(np.int64))
        pos += C * 9
    N = job.N
    if job.dw_unit:                                  # W right after the parameters, tap rows in order
        W = window.dense_weights(dwunit.decode_w(job, stream), job.window)
    else:
        w0 = x_regions(job)[0]
        w0 = w0[0] + (w0[3] * job.window.row(job.cfg) if job.window is not None else fk * w0[2]) * R
        # pf.systolic.pack_weights sends a fold's rows bottom first: beat i is row R-1-i
        blocks = s[w0:w0 + w_bytes(job)].view(np.int8).reshape(fn, fk, R, C)[:, :, ::-1, :]
        W = window.decode_params_w(job, blocks) if job.window is not None else \
            blocks.transpose(1, 2, 0, 3).reshape(fk * R, fn * C)[:job.K, :N]
    return {"W": W, "bias": np.concatenate(bias)[:N], "m": np.concatenate(m)[:N],
            "shift": np.concatenate(shift)[:N]}


def pack_output(Y, job: Job) -> np.ndarray:
    """The output stream bytes (uint8) of a job whose result is Y (M x N): the inverse of pf.accel.unpack_output."""
    dt = np.dtype("<i4") if job.out_int32 else np.dtype(np.int8)
    if job.dw_unit:                                  # NHWC rows of exactly N channels
        return np.ascontiguousarray(np.asarray(Y).astype(dt).reshape(job.M, job.N)).view(np.uint8).ravel()
    C, Np = job.cfg.cols, job.fn * job.cfg.cols
    Yp = np.zeros((job.M, Np), dt)
    Yp[:, :job.N] = Y
    if job.out_nhwc:
        return Yp.view(np.uint8).ravel()
    parts, row0 = [], 0
    for rows in job.tiles():
        tile = Yp[row0:row0 + rows].reshape(rows, job.fn, C).transpose(1, 0, 2)
        parts.append(np.ascontiguousarray(tile).view(np.uint8).ravel())
        row0 += rows
    return np.concatenate(parts)
