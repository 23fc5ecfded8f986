"""Shard files mapped side by side into one array (training/data/stitch.py) read exactly the
rows the per-file maps hold, never past a file's end, and outlive their dataset safely."""
from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

from training.data import shards as shards_module
from training.data.shards import ShardDataset, read_shard_info
from training.data.stitch import stitch

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="stitching maps with Linux's MAP_FIXED")


def _files(tmp_path, seq_len, counts, dtype="<u2"):
    rng = np.random.default_rng(seq_len)
    arrays = [rng.integers(0, 60_000, (n, seq_len)).astype(dtype) for n in counts]
    paths = []
    for i, a in enumerate(arrays):
        path = tmp_path / f"train-{i:05d}.bin"
        a.tofile(path)
        paths.append(path)
    return paths, np.concatenate(arrays)


@linux_only
@pytest.mark.parametrize("seq_len, dtype, contiguous", [
    (2048, "<u2", True),     # 4 KiB rows: every file ends on a page, no gaps
    (512, "<u2", False),     # 1 KiB rows: files of 7 and 13 rows end mid-page
    (129, "<u2", False),     # odd rows: files start at multiples of lcm(page, 258 bytes)
    (1000, "<u4", False),
])
def test_stitched_rows_equal_the_files_in_order(tmp_path, seq_len, dtype, contiguous):
    paths, expected = _files(tmp_path, seq_len, [7, 4, 1, 13], dtype)
    rows = stitch(paths, np.dtype(dtype), seq_len)
    assert rows is not None and rows.contiguous is contiguous
    every = np.arange(len(expected))
    assert (rows.rows[rows.virtual(every)] == expected).all()
    picked = np.random.default_rng(0).integers(0, len(expected), 500)
    assert (rows.rows[rows.virtual(picked)] == expected[picked]).all()
    assert not rows.rows.flags.writeable
    offsets = np.cumsum([0, 7, 4, 1, 13])
    assert all((f == expected[a:b]).all() for f, a, b in zip(rows.files(), offsets[:-1], offsets[1:]))


@linux_only
def test_a_view_outlives_the_stitched_map(tmp_path):
    paths, expected = _files(tmp_path, 512, [3, 5])
    rows = stitch(paths, np.dtype("<u2"), 512)
    view = rows.rows[4:6]  # a view, not a copy: it keeps the mapping alive
    del rows
    gc.collect()
    assert (view == expected[3:5]).all()


def test_one_file_or_partial_rows_are_not_stitched(tmp_path):
    paths, _ = _files(tmp_path, 512, [3, 2])
    assert stitch(paths[:1], np.dtype("<u2"), 512) is None
    with open(paths[0], "ab") as fh:  # half a row more: the per-file path reports it
        fh.write(b"\0\0")
    assert stitch(paths, np.dtype("<u2"), 512) is None


def test_dataset_gather_is_the_same_with_and_without_stitching(shards_uri, monkeypatch):
    info = read_shard_info(shards_uri)
    stitched = ShardDataset(info, "train")
    monkeypatch.setattr(shards_module, "stitch", lambda *a: None)
    per_file = ShardDataset(info, "train")
    assert per_file._stitched is None
    if sys.platform == "linux":
        assert stitched._stitched is not None
    n = len(stitched)
    rng = np.random.default_rng(1)
    for idx in [np.arange(n), rng.integers(0, n, 64), np.array([n - 1, 0]), np.array([], dtype=np.int64)]:
        assert (stitched.gather(idx) == per_file.gather(idx)).all()


@pytest.mark.parametrize("bad", [[0, 10**9], [-1, 0]])
def test_rows_outside_the_split_raise_instead_of_reading_past_a_file(shards_uri, bad):
    ds = ShardDataset(read_shard_info(shards_uri), "train")
    with pytest.raises(IndexError, match="row indices must lie in"):
        ds.gather(np.array(bad))
    with pytest.raises(IndexError):
        ds.gather(np.array([len(ds)]))
