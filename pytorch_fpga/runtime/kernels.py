"""The host's int8 kernels of a compiled program, on NHWC numpy tensors (numpy only; runs on the board).

Their integer semantics are pytorch_fpga.graph.quantize's. The X-tile writer and output reader move whole
array rows (R int8 channels) as one 8- or 16-byte element, so numpy copies them without a per-byte loop.
"""
from __future__ import annotations

import numpy as np

from pytorch_fpga.core import quant

_ROW = {8: np.uint64, 16: np.complex128}          # one array row of int8s as a single numpy element


def rows_view(a: np.ndarray, R: int) -> np.ndarray | None:
    """a (..., k*R) int8 viewed as (..., k) elements of R bytes, or None when it cannot be."""
    dt = _ROW.get(R)
    if dt is None or a.shape[-1] % R or a.strides[-1] != 1:
        return None
    if a.ndim > 1 and any(s % R for s in a.strides[:-1]):
        return None
    try:
        return a.view(dt)
    except ValueError:
        return None


class Quantize:
    """out (N, H, W, C) int8 = clip(rint(x / scale)) of x (N, C, H, W) float (or (N, F) into (N, F))."""

    def __init__(self, scale: float, out: np.ndarray):
        self.scale, self.out = float(scale), out
        shape = (out.shape[0], out.shape[3], out.shape[1], out.shape[2]) if out.ndim == 4 else out.shape
        self.f = np.empty(shape, np.float64)
        if out.ndim == 4 and out.shape[3] <= 16:          # a few channels: one strided copy each is faster
            self.copies = [(out[..., c], self.f[:, c]) for c in range(out.shape[3])]
        else:                                             # NCHW view of the NHWC buffer
            self.copies = [(out.transpose(0, 3, 1, 2) if out.ndim == 4 else out, self.f)]

    def __call__(self, x) -> None:
        np.divide(x, self.scale, out=self.f)
        np.rint(self.f, out=self.f)
        np.maximum(self.f, -128, out=self.f)
        np.minimum(self.f, 127, out=self.f)
        for dst, src in self.copies:
            np.copyto(dst, src, casting="unsafe")


def quantize_input(x: np.ndarray, scale: float, out: np.ndarray) -> None:
    """One-off Quantize(scale, out)(x)."""
    Quantize(scale, out)(x)


def pad_into(x: np.ndarray, pads, out: np.ndarray) -> np.ndarray:
    """Copy x (N, H, W, C) into the interior of out (its border was zeroed once); returns out."""
    pt, _, pl, _ = pads
    out[:, pt:pt + x.shape[1], pl:pl + x.shape[2]] = x
    return out


def windows(xp: np.ndarray, geo: dict, c0: int, c1: int) -> np.ndarray:
    """The conv windows of a padded map xp (N, Hp, Wp, C), channels [c0, c1): a (N, Ho, Wo, kh, kw, c) view."""
    sN, sH, sW, sC = xp.strides
    (sh, sw), (dh, dw) = geo["stride"], geo["dilation"]
    base = xp[:, :, :, c0:c1]
    return np.lib.stride_tricks.as_strided(
        base, (xp.shape[0], geo["Ho"], geo["Wo"], geo["kh"], geo["kw"], c1 - c0),
        (sN, sh * sH, sw * sW, dh * sH, dw * sW, sC), writeable=False)


def _as(a: np.ndarray, shape) -> np.ndarray:
    """a reshaped without a copy (raises if it would need one)."""
    v = a.view()
    v.shape = shape
    return v


def merge_runs(dst: np.ndarray, src: np.ndarray):
    """(dst, src) with their last axis fused into one element when it is contiguous in both (a run of bytes
    numpy then moves in one step), else unchanged."""
    if dst.ndim < 2 or dst.shape != src.shape or dst.strides[-1] != dst.itemsize or src.strides[-1] != src.itemsize:
        return dst, src
    dt = np.dtype((np.void, dst.itemsize * dst.shape[-1]))
    out = []
    for v in (dst, src):
        root, b = v, v.base
        while b is not None:                      # through views and as_strided's wrapper to the owner
            if isinstance(b, np.ndarray):
                root = b
            b = getattr(b, "base", None)
        if not root.flags.c_contiguous:
            return dst, src
        off = v.__array_interface__["data"][0] - root.__array_interface__["data"][0]
        out.append(np.ndarray(v.shape[:-1], dt, buffer=root, offset=off, strides=v.strides[:-1]))
    return tuple(out)


def run_copies(pairs) -> None:
    """Replay precomputed copies: dst[...] = src for every (dst, src) pair of views."""
    for dst, src in pairs:
        np.copyto(dst, src)


def im2col_copies(xp: np.ndarray, geo: dict, c0: int, c1: int, cols: np.ndarray) -> list:
    """The copies that fill cols[:, :K] (M x K, K in (kh, kw, c) order) with the windows of xp; columns beyond K
    stay zero. A window row's kw*c channels lie back to back in an NHWC map (no horizontal dilation, all
    channels), so they move as one element."""
    K = geo["kh"] * geo["kw"] * (c1 - c0)
    win = windows(xp, geo, c0, c1)
    if geo["dilation"][1] == 1 and (c0, c1) == (0, xp.shape[3]) and xp.base is None and xp.flags.c_contiguous \
            and geo["kw"] > 1:
        dt = np.dtype((np.void, geo["kw"] * (c1 - c0)))
        try:
            src = np.ndarray(win.shape[:4], dt, buffer=xp, offset=0, strides=win.strides[:4])
            return [(_as(cols[:, :K].view(dt), win.shape[:4]), src)]
        except (ValueError, TypeError):
            pass
    return [(_as(cols[:, :K], win.shape), win)]


def tile_groups(job) -> list[tuple[int, int, int, int]]:
    """(byte offset, first row, tiles, rows per tile) of runs of equal X tiles lying back to back in the stream:
    tile 0 (before W), the full tiles after it, and a last, shorter tile."""
    from pytorch_fpga.contract import stream_codec
    regions = stream_codec.x_regions(job)
    groups = [(regions[0][0], 0, 1, regions[0][2])]
    full = [r for r in regions[1:] if r[2] == job.m_tile]
    if full:
        groups.append((full[0][0], full[0][1], len(full), job.m_tile))
    if len(regions) > 1 and regions[-1][2] != job.m_tile:
        groups.append((regions[-1][0], regions[-1][1], 1, regions[-1][2]))
    return groups


def x_tile_copies(cols: np.ndarray, stream: np.ndarray, groups, fk: int, R: int) -> list:
    """The copies that move X tiles (rows of cols, fold by fold: an (fk, rows, R) block each) into a job's stream."""
    cv, pairs = rows_view(cols, R), []
    for off, row0, nt, rows in groups:
        dst = stream[off:off + nt * fk * rows * R]
        dv = rows_view(dst, R)
        if cv is not None and dv is not None:
            pairs.append((_as(dv, (nt, fk, rows)), _as(cv[row0:row0 + nt * rows], (nt, rows, fk)).transpose(0, 2, 1)))
        else:
            src = cols[row0:row0 + nt * rows].reshape(nt, rows, fk, R).transpose(0, 2, 1, 3)
            pairs.append((_as(dst.view(np.int8), (nt, fk, rows, R)), src))
    return pairs


def x_window_copies(win: np.ndarray, stream: np.ndarray, groups, R: int) -> list:
    """The copies that move X tiles straight from the conv windows of an NHWC map (no im2col matrix): win is the
    (N, Ho, Wo, kh, kw, Cb) view in R-channel elements, and every tile holds whole output rows (m_tile a multiple
    of Wo; tiles inside one image, or of whole images)."""
    N, Ho, Wo, kh, kw, Cb = win.shape
    pairs = []
    for off, row0, nt, rows in groups:
        q = rows // Wo
        dst = _as(rows_view(stream[off:off + nt * kh * kw * Cb * rows * R], R), (nt, kh, kw, Cb, q, Wo))
        r, r1, t = row0 // Wo, row0 // Wo + nt * q, 0
        while r < r1:
            n, oh = divmod(r, Ho)
            if q % Ho == 0:                                        # tiles of k whole images
                k = q // Ho
                src = _as(win[n:n + nt * k], (nt, k, Ho, Wo, kh, kw, Cb)).transpose(0, 4, 5, 6, 1, 2, 3)
                pairs.append(merge_runs(_as(dst, (nt, kh, kw, Cb, k, Ho, Wo)), src))
                break
            if oh == 0 and r1 - r >= Ho and Ho % q == 0:          # whole images, several tiles each
                nn = (r1 - r) // Ho
                src = _as(win[n:n + nn], (nn, Ho // q, q, Wo, kh, kw, Cb)).transpose(0, 1, 4, 5, 6, 2, 3)
                pairs.append(merge_runs(_as(dst[t:t + nn * (Ho // q)], (nn, Ho // q, kh, kw, Cb, q, Wo)), src))
                t, r = t + nn * (Ho // q), r + nn * Ho
            else:                                                  # whole tiles inside image n
                k = min((Ho - oh) // q, (r1 - r) // q)
                if k == 0:
                    raise ValueError(f"X tile of {rows} rows straddles an image: m_tile must be whole output rows")
                src = _as(win[n, oh:oh + k * q], (k, q, Wo, kh, kw, Cb)).transpose(0, 3, 4, 5, 1, 2)
                pairs.append(merge_runs(dst[t:t + k], src))
                t, r = t + k, r + k * q
    return pairs


def x_row_copies(x: np.ndarray, stream: np.ndarray, regions, c0: int, c1: int, width: int) -> list:
    """The copies that move a window job's X tiles into its stream: per tile, input rows [lo, lo + n) of image b of
    the NHWC map x, channels [c0, c1), into rows of `width` bytes per pixel (the padding channels stay zero)."""
    pairs = []
    for off, b, lo, n in regions:
        dst = _as(stream[off:off + n * x.shape[2] * width].view(np.int8), (n, x.shape[2], width))
        pairs.append((dst if c1 - c0 == width else dst[..., :c1 - c0], x[b, lo:lo + n, :, c0:c1]))
    return pairs


def output_copies(out: np.ndarray, job, dst: np.ndarray) -> list:
    """The copies that move a job's output stream (per tile: fn blocks of rows x C) into dst (M x job.N), a view
    of the layer's output."""
    C, fn, N = job.cfg.cols, job.fn, job.N
    dt = np.dtype("<i4") if job.out_int32 else np.dtype(np.int8)
    vals = out[:job.out_bytes].view(dt)
    if job.dw_unit:                                   # a depthwise-unit job: NHWC rows of exactly N channels
        return [(dst, _as(vals, (job.M, N)))]
    if job.out_nhwc:                                  # already rows of channels: one (strided) row copy
        return [(dst, _as(vals, (job.M, fn * C))[:, :N])]
    T, last = divmod(job.M, job.m_tile)
    pos, pairs = 0, []
    for nt, rows in ((T, job.m_tile), (1 if last else 0, last)):
        if not nt:
            continue
        row0 = pos // (fn * C)
        block = _as(vals[pos:pos + nt * fn * rows * C], (nt, fn, rows, C))
        d = dst[row0:row0 + nt * rows]
        dv = rows_view(d, C) if dt.itemsize == 1 and N == fn * C else None
        if dv is not None:
            pairs.append((_as(dv, (nt, rows, fn)), _as(rows_view(block, C), (nt, fn, rows)).transpose(0, 2, 1)))
        else:
            full = N // C
            if full:
                pairs.append((_as(d[:, :full * C], (nt, rows, full, C)), block[:, :full].transpose(0, 2, 1, 3)))
            if N % C:
                pairs.append((_as(d[:, full * C:], (nt, rows, N % C)), block[:, full, :, :N % C]))
        pos += nt * fn * rows * C
    return pairs


class Add:
    """out = clip((a * ma + b * mb + 2**(S-1)) >> S): two int8 tensors at their scales, rescaled to out's
    (with an activation the low clip is 0). One input alone (b=None) is a rescale (a concatenation's input)."""

    def __init__(self, a, b, mult, S: int, relu: bool, out):
        self.a, self.b, self.out, self.S = a, b, out, int(S)
        self.ma, self.mb = np.int32(mult[0]), np.int32(mult[1] if b is not None else 0)
        self.lo = 0 if relu else -128
        self.acc = np.empty(a.shape, np.int32)
        self.tmp = np.empty(a.shape, np.int32) if b is not None else None

    def __call__(self) -> None:
        acc = self.acc
        np.copyto(acc, self.a)
        acc *= self.ma
        if self.b is not None:
            np.copyto(self.tmp, self.b)
            self.tmp *= self.mb
            acc += self.tmp
        if self.S:
            acc += np.int32(1 << (self.S - 1))
            acc >>= self.S
        np.clip(acc, self.lo, 127, out=acc)
        np.copyto(self.out, acc, casting="unsafe")


def add(a, b, mult, S: int, relu: bool, out) -> None:
    """One-off Add(a, b, mult, S, relu, out)()."""
    Add(a, b, mult, S, relu, out)()


def rescale(a, m: int, S: int, out) -> None:
    """out = clip((a * m + 2**(S-1)) >> S): one int8 tensor moved to another scale."""
    Add(a, None, (m,), S, False, out)()


class Maxpool:
    """out (N, Ho, Wo, C) = the max of each window of x, rows first, then columns (padding is -128: never wins)."""

    def __init__(self, x, geo: dict, out):
        pt, pb, pl, pr = geo["pads"]
        self.x, self.out = x, out
        self.xp = np.full((x.shape[0], x.shape[1] + pt + pb, x.shape[2] + pl + pr, x.shape[3]), -128, np.int8) \
            if any(geo["pads"]) else x
        self.pad = [(self.xp[:, pt:pt + x.shape[1], pl:pl + x.shape[2]], x)] if self.xp is not x else []
        (sh, sw), (dh, dw), Ho, Wo = geo["stride"], geo["dilation"], geo["Ho"], geo["Wo"]
        self.rows = np.empty((x.shape[0], Ho, self.xp.shape[2], x.shape[3]), np.int8)
        self.row_views = [self.xp[:, i * dh:i * dh + (Ho - 1) * sh + 1:sh] for i in range(geo["kh"])]
        self.col_views = [self.rows[:, :, j * dw:j * dw + (Wo - 1) * sw + 1:sw] for j in range(geo["kw"])]

    def __call__(self) -> None:
        run_copies(self.pad)
        np.copyto(self.rows, self.row_views[0])
        for v in self.row_views[1:]:
            np.maximum(self.rows, v, out=self.rows)
        np.copyto(self.out, self.col_views[0])
        for v in self.col_views[1:]:
            np.maximum(self.out, v, out=self.out)


def maxpool(x, geo: dict, out) -> None:
    """One-off Maxpool(x, geo, out)()."""
    Maxpool(x, geo, out)()


def avgpool(x, geo: dict, m, shift, out) -> None:
    """out = requant(window sums, s_in / (count * s_out)) with the window counts folded into (m, shift)."""
    xp = np.zeros((x.shape[0], x.shape[1] + geo["pads"][0] + geo["pads"][1],
                   x.shape[2] + geo["pads"][2] + geo["pads"][3], x.shape[3]), np.int8)
    pad_into(x, geo["pads"], xp)
    win = windows(xp, geo, 0, x.shape[3])
    acc = win.astype(np.int32).sum(axis=(3, 4))
    out[...] = quant.requantize(acc, m[None, :, :, None], shift[None, :, :, None])


def global_avgpool(x, m, shift, out) -> None:
    """out (N, 1, 1, C) = requant(sum over H and W, s_in / (H * W * s_out))."""
    acc = x.sum(axis=(1, 2), dtype=np.int32, keepdims=True)
    out[...] = quant.requantize(acc, m, shift)


def host_layer(cols, params: dict, relu: bool, out_int32: bool, o0: int, o1: int) -> np.ndarray:
    """A layer the accelerator build cannot take, run by the numpy golden model (bit-exact with the hardware)."""
    from pytorch_fpga.contract import accel
    w = params["w_int8"]
    W2 = w.reshape(w.shape[0], -1, *w.shape[2:]).transpose(0, 2, 3, 1).reshape(w.shape[0], -1).T if w.ndim == 4 \
        else w.T
    o = slice(o0, o1)
    return accel.golden(cols, W2[:, o], params["bias_int32"][o], params["m"][o], params["shift"][o], relu, out_int32)


def dequantize(q, scale, nchw: bool) -> np.ndarray:
    """float32 q * scale (scale per channel for int32 accumulators), NHWC maps returned as NCHW."""
    y = (q.astype(np.float64) * np.asarray(scale, np.float64)).astype(np.float32)
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if nchw and y.ndim == 4 else y
