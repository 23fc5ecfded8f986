"""Several shard files mapped side by side into one address range, read as one 2-D array.

Why: a split is many bounded shard files, and a random batch touches several of them. With
one ``np.memmap`` per file each batch must be split by file in Python (18-31 µs for 32 rows
over 2 files, bench/tokens.py), where one array takes one fancy index (~10 µs). Here the
files are mapped with ``MAP_FIXED`` one after another into an address range reserved up
front, so NumPy sees one array; nothing is copied and pages still come from the page cache.

Each file starts at a multiple of lcm(page size, row bytes), so rows stay aligned; when a
file's size is not such a multiple, the rows between its end and the next file's start are
a gap that no index maps to (:meth:`StitchedRows.virtual`). Linux only (``MAP_FIXED`` and the
flags below through libc); :func:`stitch` returns None elsewhere or when any call fails, and
callers keep their per-file path.
"""
from __future__ import annotations

import ctypes
import math
import mmap
import os
import sys
import weakref
from pathlib import Path

import numpy as np

PROT_NONE, PROT_READ = 0, mmap.PROT_READ
MAP_SHARED, MAP_PRIVATE = mmap.MAP_SHARED, mmap.MAP_PRIVATE
MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 0x10, 0x20, 0x4000  # Linux values
MAP_FAILED = ctypes.c_void_p(-1).value


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


class StitchedRows:
    """``rows``: a read-only (virtual_rows, seq_len) array over all files; :meth:`virtual`
    turns global row indices (file after file, no gaps) into its row indices."""

    def __init__(self, rows: np.ndarray, starts: np.ndarray, gaps: np.ndarray):
        self.rows = rows
        self._starts = starts  # first global row of each file, and the total at the end
        self._gaps = gaps  # gap rows before each file's first row
        self.contiguous = not gaps.any()

    def files(self) -> list[np.ndarray]:
        """Each file's rows, as views of the one array (no mapping of their own)."""
        first = self._starts[:-1] + self._gaps
        return [self.rows[a:a + n] for a, n in zip(first.tolist(), np.diff(self._starts).tolist())]

    def virtual(self, indices: np.ndarray) -> np.ndarray:
        if self.contiguous:
            return indices
        files = np.searchsorted(self._starts, indices, side="right") - 1
        return indices + self._gaps[files]


def stitch(paths: list[Path], dtype: np.dtype, seq_len: int) -> StitchedRows | None:
    """Map ``paths`` (non-empty, whole rows each) into one range; None where this cannot be done."""
    if sys.platform != "linux" or len(paths) < 2:
        return None
    try:
        libc = _libc()
    except (OSError, AttributeError):
        return None
    row_bytes = dtype.itemsize * seq_len
    align = math.lcm(mmap.PAGESIZE, row_bytes)
    sizes = [os.path.getsize(p) for p in paths]
    if not all(sizes) or any(size % row_bytes for size in sizes):
        return None
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += -(-size // align) * align
    base = libc.mmap(None, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if base in (None, MAP_FAILED):
        return None
    for path, offset, size in zip(paths, offsets, sizes):
        fd = os.open(path, os.O_RDONLY)
        try:
            got = libc.mmap(base + offset, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0)
        finally:
            os.close(fd)  # the mapping keeps the file open
        if got != base + offset:
            libc.munmap(base, total)  # the whole range: the reservation and the files mapped so far
            return None
    buffer = (ctypes.c_char * total).from_address(base)
    rows = np.frombuffer(buffer, dtype=dtype).reshape(-1, seq_len)
    rows.flags.writeable = False
    # Every view of the array keeps this buffer alive: unmapped only after the last one is gone.
    weakref.finalize(buffer, libc.munmap, base, total)
    counts = np.array(sizes) // row_bytes
    starts = np.concatenate([[0], np.cumsum(counts)])
    gaps = np.array(offsets) // row_bytes - starts[:-1]
    return StitchedRows(rows, starts, gaps)
