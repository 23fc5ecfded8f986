"""The shard cache's size cap (``C2M_SHARD_CACHE_MAX_GB``): least recently used files go first.

Files of 4 KB fetched from a real S3 API (moto), caps of a few such files expressed in GB.
``forget_verified()`` stands for a new process (a new job): a process spares every digest it
fetched, so LRU order only shows across jobs.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time

import pytest

from ops.lake import storage
from s3_test_server import s3_bucket, s3_env  # noqa: F401  (fixtures)
from training.data import shard_cache

SIZE = 4000  # bytes per file; a cap of 0.00001 GB (10,000 bytes) holds two of them
GB_PER_FILE = SIZE / 1e9


@pytest.fixture
def cache(tmp_path, monkeypatch, caplog):
    """An empty cache, no cap yet (tests set one), and a process that has fetched nothing."""
    monkeypatch.setenv("C2M_SHARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(shard_cache.MAX_GB_VAR, "0")
    caplog.set_level(logging.INFO, logger=shard_cache.__name__)
    shard_cache.forget_verified()
    yield tmp_path / "cache"
    shard_cache.forget_verified()


@pytest.fixture
def blobs(s3_bucket) -> list[tuple[str, str]]:
    """Six 4 KB objects with distinct bytes, as (uri, sha256)."""
    out = []
    for i in range(6):
        data = bytes([i + 1]) * SIZE
        uri = storage.join(s3_bucket, "shards", f"f{i}.bin")
        storage.write_bytes(uri, data)
        out.append((uri, hashlib.sha256(data).hexdigest()))
    return out


def _fetch(blobs, i: int, keep: tuple[int, ...] = ()) -> None:
    uri, digest = blobs[i]
    shard_cache.fetch(uri, digest, keep=[blobs[k][1] for k in keep])


def _present(blobs) -> set[int]:
    return {i for i, (_, digest) in enumerate(blobs) if shard_cache.cache_path(digest).is_file()}


def _last_used(blobs, ages: dict[int, int]) -> None:
    """Set each file's LRU clock (its mtime) to ``ages[i]`` seconds ago."""
    now = time.time()
    for i, age in ages.items():
        os.utime(shard_cache.cache_path(blobs[i][1]), (now - age, now - age))


def _prior_job(blobs, monkeypatch, ages: dict[int, int]) -> None:
    """An earlier job (no cap) left these files, last used ``ages`` seconds ago."""
    monkeypatch.setenv(shard_cache.MAX_GB_VAR, "0")
    for i in ages:
        _fetch(blobs, i)
    _last_used(blobs, ages)
    shard_cache.forget_verified()


def _cap(monkeypatch, files: float) -> None:
    monkeypatch.setenv(shard_cache.MAX_GB_VAR, repr(files * GB_PER_FILE))


def _evicted(caplog) -> list[str]:
    return [r.args[0] for r in caplog.records if r.getMessage().startswith("evicted ")]


def test_least_recently_used_goes_first_and_a_hit_counts_as_use(blobs, cache, monkeypatch, caplog):
    _cap(monkeypatch, 4.5)
    for i in range(4):
        _fetch(blobs, i)
    assert _present(blobs) == {0, 1, 2, 3} and _evicted(caplog) == []  # 16 KB fit under 18 KB
    _last_used(blobs, {0: 400, 1: 300, 2: 200, 3: 100})

    shard_cache.forget_verified()  # a later job reads file 0 from the cache: now the most recent
    _fetch(blobs, 0)
    shard_cache.forget_verified()
    _fetch(blobs, 4)  # 20 KB > 18 KB: the oldest (1, not 0) goes
    assert _present(blobs) == {0, 2, 3, 4}
    _fetch(blobs, 5)  # the same job: 4 is its own, so 2 goes
    assert _present(blobs) == {0, 3, 4, 5}
    assert _evicted(caplog) == [blobs[1][1], blobs[2][1]]
    message = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("evicted "))
    assert message.startswith(f"evicted {blobs[1][1]} ({SIZE} bytes)")


def test_keep_spares_files_the_job_has_not_fetched_yet(blobs, cache, monkeypatch, caplog):
    _prior_job(blobs, monkeypatch, {0: 300, 1: 200})
    _cap(monkeypatch, 2.5)
    _fetch(blobs, 2, keep=(0,))  # 0 is the oldest, but this job's manifest lists it
    assert _present(blobs) == {0, 2} and _evicted(caplog) == [blobs[1][1]]


def test_a_job_whose_own_files_exceed_the_cap_evicts_nothing_and_says_what_to_raise(
        blobs, cache, monkeypatch, caplog):
    _prior_job(blobs, monkeypatch, {0: 300, 1: 200, 2: 100})
    _cap(monkeypatch, 2.5)
    _fetch(blobs, 3, keep=(1, 2))  # needs 12 KB under a 10 KB cap: even unrelated file 0 stays
    assert _present(blobs) == {0, 1, 2, 3} and _evicted(caplog) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "over its cap of 1e-05 GB" in warnings[0]
    assert f"Raise {shard_cache.MAX_GB_VAR} above 1.2e-05" in warnings[0]


def test_a_file_locked_by_another_process_is_skipped(blobs, cache, monkeypatch, caplog):
    _prior_job(blobs, monkeypatch, {0: 300, 1: 200})
    busy = shard_cache.cache_path(blobs[0][1])
    with open(busy.with_name(f"{busy.name}.lock"), "a+b") as lock:  # another rank is fetching file 0
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        _cap(monkeypatch, 2.5)
        _fetch(blobs, 2)
    assert _present(blobs) == {0, 2} and _evicted(caplog) == [blobs[1][1]]


def test_a_cap_of_zero_never_evicts(blobs, cache, monkeypatch, caplog):
    _prior_job(blobs, monkeypatch, {0: 300, 1: 200, 2: 100})
    for i in range(3, 6):
        _fetch(blobs, i)
        shard_cache.forget_verified()
    assert _present(blobs) == set(range(6)) and _evicted(caplog) == []


def test_a_concurrent_evictor_freeing_a_file_first_is_fine(blobs, cache, monkeypatch, caplog):
    _prior_job(blobs, monkeypatch, {0: 300, 1: 200, 2: 100})
    real = shard_cache._entries

    def listing_then_another_evictor(root):  # fault injection: file 0 vanishes after the listing
        entries = real(root)
        shard_cache.cache_path(blobs[0][1]).unlink()
        return entries

    monkeypatch.setattr(shard_cache, "_entries", listing_then_another_evictor)
    _cap(monkeypatch, 2.5)
    _fetch(blobs, 3)  # 16 KB listed: 0 is gone already (counted as freed), then 1 goes
    assert _present(blobs) == {2, 3} and _evicted(caplog) == [blobs[1][1]]


def test_the_cap_variable(monkeypatch):
    monkeypatch.delenv(shard_cache.MAX_GB_VAR, raising=False)
    assert shard_cache.max_bytes() == 50 * 10**9
    monkeypatch.setenv(shard_cache.MAX_GB_VAR, "0")
    assert shard_cache.max_bytes() is None
    monkeypatch.setenv(shard_cache.MAX_GB_VAR, "0.5")
    assert shard_cache.max_bytes() == 5 * 10**8
    for bad in ("-1", "nan", "lots"):
        monkeypatch.setenv(shard_cache.MAX_GB_VAR, bad)
        with pytest.raises(ValueError, match=rf"{shard_cache.MAX_GB_VAR}=.*cap in GB.*0 for no cap"):
            shard_cache.max_bytes()
