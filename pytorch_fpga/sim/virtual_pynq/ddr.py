"""The virtual PYNQ's DDR: the bytes DMA masters see, a page allocator for pynq buffers and their CPU-side copies."""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from pynq.buffer import PynqBuffer

CMA_SIZE = 128 << 20                              # buffers are allocated from the top 128 MB of DDR
PAGE = 4096


@dataclass
class Allocation:
    """One pynq buffer in DDR."""
    phys: int
    size: int
    cacheable: bool
    backing: object             # weakref to the CPU-side bytes (cacheable buffers), else None


class DDR:
    """The simulated DDR (what DMA masters see), a first-fit page allocator, and the pynq buffers allocated in it.

    A cacheable buffer's memory is the CPU's copy, synchronised with DDR only by sync() (flush / invalidate);
    an uncached one is a view of DDR itself.
    """

    def __init__(self, base: int, size: int, pool_base: int, pool_size: int):
        self.base, self.size = base, size
        self.mem = np.zeros(size, np.uint8)       # calloc'ed: only pages that are touched use memory
        self.free_list = [(pool_base, pool_size)]
        self.allocs: dict[int, Allocation] = {}   # pynq buffer object (bo) -> its allocation
        self._next_bo = 1

    def contains(self, addr: int, n: int) -> bool:
        return self.base <= addr and addr + n <= self.base + self.size

    def view(self, addr: int, n: int) -> np.ndarray:
        return self.mem[addr - self.base:addr - self.base + n]

    def alloc(self, n: int) -> int:
        n = -(-max(n, 1) // PAGE) * PAGE
        for i, (a, s) in enumerate(self.free_list):
            if s >= n:
                self.free_list[i:i + 1] = [(a + n, s - n)] if s > n else []
                return a
        raise MemoryError(f"virtual PYNQ: no {n} contiguous bytes left in the {CMA_SIZE >> 20} MB buffer pool")

    def free(self, addr: int, n: int) -> None:
        n = -(-max(n, 1) // PAGE) * PAGE
        fl = sorted(self.free_list + [(addr, n)])
        merged = []
        for a, s in fl:
            if merged and merged[-1][0] + merged[-1][1] == a:
                merged[-1] = (merged[-1][0], merged[-1][1] + s)
            else:
                merged.append((a, s))
        self.free_list = merged

    # -- pynq buffers
    def buffer(self, device, shape, dtype, cacheable: bool) -> PynqBuffer:
        """A PynqBuffer of `device` at a fresh, zeroed physical address; freed when its memory is collected."""
        dtype = np.dtype(dtype)
        size = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
        phys = self.alloc(size)
        ddr = self.view(phys, size)
        ddr[:] = 0                                  # the kernel hands out zeroed memory
        backing = np.zeros(size, np.uint8) if cacheable else ddr
        bo, self._next_bo = self._next_bo, self._next_bo + 1
        buf = PynqBuffer(shape, dtype, buffer=backing, device=device, device_address=phys, bo=bo, coherent=False)
        self.allocs[bo] = Allocation(phys, size, cacheable, weakref.ref(backing) if cacheable else None)
        weakref.finalize(backing, self._release, bo)
        return buf

    def _release(self, bo: int) -> None:
        a = self.allocs.pop(bo, None)
        if a is not None:
            self.free(a.phys, a.size)

    def sync(self, bo, offset: int, size: int, to_ddr: bool) -> int | None:
        """Flush (to_ddr) or invalidate bytes of a buffer; the physical address synchronised, None if nothing was."""
        a = self.allocs.get(bo)
        if a is None:
            raise RuntimeError(f"virtual PYNQ: {'flush' if to_ddr else 'invalidate'} of a buffer that is not "
                               "allocated on this device")
        cpu = a.backing() if a.cacheable and size > 0 else None
        if cpu is None:
            return None
        ddr = self.view(a.phys + offset, size)
        if to_ddr:
            ddr[:] = cpu[offset:offset + size]
        else:
            cpu[offset:offset + size] = ddr
        return a.phys + offset

    def _overlaps(self, addr: int, n: int):
        for a in list(self.allocs.values()):
            lo, hi = max(a.phys, addr), min(a.phys + a.size, addr + n)
            if lo < hi:
                yield a, lo, hi

    def stale(self, addr: int, n: int) -> list[tuple[int, str]]:
        """(bytes, where) for each buffer whose bytes in [addr, addr + n) differ between the CPU's copy and DDR."""
        found = []
        for a, lo, hi in self._overlaps(addr, n):
            cpu = a.backing() if a.cacheable else None
            if cpu is None:
                continue
            diff = int(np.count_nonzero(cpu[lo - a.phys:hi - a.phys] != self.view(lo, hi - lo)))
            if diff:
                found.append((diff, f"[{lo:#010x}, {hi:#010x}) where {diff} bytes of the buffer at {a.phys:#010x} "
                             "differ between the CPU's copy and DDR"))
        return found

    def owned(self, addr: int, n: int) -> bool:
        """Whether all of [addr, addr + n) lies in pynq buffers."""
        return sum(hi - lo for _, lo, hi in self._overlaps(addr, n)) >= n
