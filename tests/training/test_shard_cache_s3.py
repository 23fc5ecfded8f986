"""Shards on s3:// (a real S3 API, moto's server): read exactly as local ones, cached by digest.

The cache must fetch each file once per host (a second run downloads nothing, several
ranks at once download once), refuse bytes that do not match the manifest's sha256 (naming
the object), and fetch again a cached file that was damaged on disk.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from ops.lake import storage
from s3_test_server import DownloadSpy, s3_bucket, s3_env, upload_tree  # noqa: F401  (fixtures)
from training.data import shard_cache
from training.data.shards import ShardDataset, ShardError, ShardLoader, read_shard_info


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache, and a process that has verified nothing yet."""
    root = tmp_path / "cache"
    monkeypatch.setenv("C2M_SHARD_CACHE", str(root))
    shard_cache.forget_verified()
    yield root
    shard_cache.forget_verified()


@pytest.fixture
def s3_shards(shards_uri, s3_bucket) -> str:
    return upload_tree(shards_uri, storage.join(s3_bucket, "shards", "v=t1"))


def _files(info) -> list[str]:
    return [name for split in ("train", "val") for name in info.splits[split]["files"]]


def test_s3_shards_read_exactly_as_local_ones(shards_uri, s3_shards, cache):
    local, remote = read_shard_info(shards_uri), read_shard_info(s3_shards)
    assert remote.uri == s3_shards and remote.manifest == local.manifest
    assert (remote.special_tokens, remote.sentinel_ids) == (local.special_tokens, local.sentinel_ids)
    for split in ("train", "val"):
        a, b = ShardDataset(local, split), ShardDataset(remote, split)
        everything = np.arange(len(a))
        assert len(a) == len(b) > 0 and (a.rows(everything) == b.rows(everything)).all()
    la, lb = (ShardLoader(ShardDataset(i, "train"), batch_size=4, seed=7) for i in (local, remote))
    for _ in range(10):
        (xa, ya), (xb, yb) = la.next_batch(), lb.next_batch()
        assert (xa == xb).all() and (ya == yb).all()
    # Content-addressed layout: <root>/<sha[:2]>/<sha>.bin, one file per digest.
    sums = {n: d for s in local.splits.values() for n, d in s["sha256"].items()}
    for name, digest in sums.items():
        cached = cache / digest[:2] / f"{digest}.bin"
        assert cached.read_bytes() == (Path(read_shard_info(shards_uri).data_uri) / name).read_bytes()
    assert remote.tokenizer_path.parent.parent == cache
    assert json.loads(remote.tokenizer_path.read_text()) == json.loads(local.tokenizer_path.read_text())


def test_second_run_downloads_nothing(s3_shards, cache, monkeypatch):
    spy = DownloadSpy(monkeypatch)
    info = read_shard_info(s3_shards)
    first = [ShardDataset(info, split).rows(np.arange(3)) for split in ("train", "val")]
    tokenizer = info.tokenizer_path
    assert info.data_uri == storage.join(s3_shards, f"g={info.manifest['generation']}")
    assert sorted(spy.uris) == sorted(storage.join(info.data_uri, n) for n in _files(info) + ["tokenizer.json"])

    shard_cache.forget_verified()  # as a new process: cached files are hashed again, not downloaded
    spy.uris.clear()
    info = read_shard_info(s3_shards)
    again = [ShardDataset(info, split).rows(np.arange(3)) for split in ("train", "val")]
    assert info.tokenizer_path == tokenizer
    assert len(spy) == 0 and all((a == b).all() for a, b in zip(first, again))


def test_damaged_cache_file_is_fetched_again(s3_shards, cache, monkeypatch):
    info = read_shard_info(s3_shards)
    expected = ShardDataset(info, "train").rows(np.arange(5))
    name = info.splits["train"]["files"][0]
    digest = info.splits["train"]["sha256"][name]
    cached = cache / digest[:2] / f"{digest}.bin"
    damaged = bytearray(cached.read_bytes())
    damaged[0] ^= 0xFF  # a flipped bit on the local disk
    cached.write_bytes(bytes(damaged))

    shard_cache.forget_verified()
    spy = DownloadSpy(monkeypatch)
    assert (ShardDataset(info, "train").rows(np.arange(5)) == expected).all()
    assert spy.uris == [storage.join(info.data_uri, name)]
    assert shard_cache.file_sha256(cached) == digest


def test_object_not_matching_its_digest_is_refused_by_name(s3_shards, cache):
    info = read_shard_info(s3_shards)
    name = info.splits["train"]["files"][1]
    obj = storage.join(info.data_uri, name)
    data = bytearray(storage.read_bytes(obj))
    data[-1] ^= 0x01  # same size, different bytes: changed on the server after tokenizing
    storage.write_bytes(obj, bytes(data))

    with pytest.raises(ShardError, match=rf"{obj}: the downloaded bytes do not hash.*Re-run the tokenize"):
        ShardDataset(info, "train")
    digest = info.splits["train"]["sha256"][name]
    left = [p.name for p in (cache / digest[:2]).iterdir()] if (cache / digest[:2]).exists() else []
    assert [n for n in left if not n.endswith(".lock")] == []  # nothing unverified left in the cache


def test_ranks_fetching_at_once_download_each_file_once(s3_shards, cache, monkeypatch):
    """Threads stand in for ranks: flock() locks per open file, so it excludes threads as processes."""
    info = read_shard_info(s3_shards)
    name = info.splits["train"]["files"][0]
    digest = info.splits["train"]["sha256"][name]
    spy = DownloadSpy(monkeypatch)
    start, paths, errors = threading.Barrier(4), [], []

    def rank():
        try:
            start.wait()
            paths.append(shard_cache.fetch(storage.join(info.data_uri, name), digest))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=rank) for _ in range(4)]
    [t.start() for t in threads]
    [t.join(timeout=60) for t in threads]
    assert not errors and len(paths) == 4 and len(set(paths)) == 1
    assert len(spy) == 1 and shard_cache.file_sha256(paths[0]) == digest


def test_unfinished_s3_version_has_a_clear_error(s3_bucket, cache):
    with pytest.raises(ShardError, match="tokenize stage has not finished"):
        read_shard_info(storage.join(s3_bucket, "shards", "v=missing"))
