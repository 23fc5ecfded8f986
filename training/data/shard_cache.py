"""A local, content-addressed cache of shard files that live on S3: each one is fetched once per host.

Why: shards are read by memory map, which needs a local file, and a job on ``s3://`` shards
must not pull the same gigabytes again on every run or every rank. The manifest's sha256 of
each file is the cache key, so a re-tokenized version (new bytes, new digest) can never hit
a stale entry, and bytes shared by two versions are stored once.

Layout: ``$C2M_SHARD_CACHE/<sha256[:2]>/<sha256>.bin`` (default ``~/.cache/crawl2model/shards``).
Checkpoints resumed from S3 are fetched through it too (keyed by their digest object), so the
ranks on one host download one copy; they take their share of the cap like shards.

Concurrency: ranks on one host take a per-digest ``flock`` before downloading, so one
downloads and the others then find the file. A download lands under a temp name, is
checked against the digest and only then renamed into place, so a cache path only ever
holds bytes that matched once. Each process still hashes a cached file once before
trusting it (a bit flipped on disk, or a file someone edited, is fetched again, never
trained on); later reads in the same process skip the hash.

Eviction: the cache is capped at ``$C2M_SHARD_CACHE_MAX_GB`` (10**9 bytes; default 50, 0 = no
cap). Only after a download lands, least-recently-used entries go until the total fits. "Used"
is the file's mtime, which every cache hit refreshes (atime is unreliable under ``noatime`` or
``relatime`` mounts). Never evicted: a file whose digest lock another process holds (it is
being fetched), and the files this job needs (every digest this process fetched, plus the
``keep`` digests a caller passes, e.g. its whole manifest). If those alone exceed the cap,
nothing is evicted and a warning says which variable to raise: evicting other jobs' files
could not make this one fit. Unlinking a file that another process has memory-mapped is safe
on Linux (the mapping holds the inode until unmapped); the space returns when it is unmapped.
Another job's files are spared only while their lock is held or by recency: one it has just
fetched but not yet opened is the newest entry, so the last to go.
Several evictors may run at once: a file that vanishes between listing and unlinking was
freed by another one, which is fine. Lock files (empty) are never removed: unlinking a lock
file while another process waits on it would let two processes hold "the" lock at once.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

from ops.lake import storage

log = logging.getLogger(__name__)

DEFAULT_ROOT = "~/.cache/crawl2model/shards"
MAX_GB_VAR = "C2M_SHARD_CACHE_MAX_GB"
DEFAULT_MAX_GB = 50.0
# A hit refreshes the mtime only when it is older than this: LRU needs no finer clock, and each
# touch changes the (size, mtime) key other processes memoise their hash under.
TOUCH_AFTER_S = 60
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# (path, size, mtime_ns) -> the digest that file was hashed to in this process.
_VERIFIED: dict[tuple[str, int, int], str] = {}
# Digests this process fetched (hits included): its job needs them, so its evictions keep them.
_NEEDED: set[str] = set()
_WARNED_OVER_CAP: set[int] = set()  # caps already warned about


class DigestMismatch(RuntimeError):
    """A file's bytes do not hash to the digest its manifest records."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_root() -> Path:
    return Path(os.environ.get("C2M_SHARD_CACHE") or DEFAULT_ROOT).expanduser()


def cache_path(sha256: str) -> Path:
    return cache_root() / sha256[:2] / f"{sha256}.bin"


def _stat_key(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (str(path), st.st_size, st.st_mtime_ns)


def is_verified(path: Path, sha256: str) -> bool:
    """True when this process already hashed this very file (same size and mtime) to ``sha256``."""
    key = _stat_key(path)
    return key is not None and _VERIFIED.get(key) == sha256


def mark_verified(path: Path, sha256: str) -> None:
    key = _stat_key(path)
    if key is not None:
        _VERIFIED[key] = sha256


def forget_verified() -> None:
    """Drop the per-process memos: hashes, needed digests, warnings (tests use it to act as a fresh process)."""
    _VERIFIED.clear()
    _NEEDED.clear()
    _WARNED_OVER_CAP.clear()


def fetch(uri: str, sha256: str, *, verify: bool = True,
          matches: Callable[[Path, str], bool] | None = None, keep: Iterable[str] = ()) -> Path:
    """The local cache path of ``uri``'s bytes, downloading them first when the cache lacks them.

    ``verify=False`` trusts an existing cache entry without hashing it (a download is always
    checked). ``matches(path, sha256)`` replaces the plain file digest check, for files whose
    recorded digest is of a canonical form (the tokenizer). ``keep``: digests the job will
    need (beyond those it already fetched), which a download's eviction must spare.
    """
    if not _SHA256.match(sha256 or ""):
        raise DigestMismatch(f"{uri}: the manifest's digest {sha256!r} is not a sha256; re-run the tokenize "
                             "stage for this version")
    check = matches or _same_digest
    path = cache_path(sha256)
    _NEEDED.add(sha256)
    if _trusted(path, sha256, verify, check):
        _touch(path, sha256)
        return path
    with _digest_lock(path):
        if _trusted(path, sha256, verify, check):  # another rank on this host fetched it meanwhile
            _touch(path, sha256)
            return path
        _download(uri, path, sha256, check)
    evict(keep)
    return path


def _touch(path: Path, sha256: str) -> None:
    """Mark a hit as recently used (the LRU clock), keeping this process's hash memo valid."""
    try:
        if path.stat().st_mtime > time.time() - TOUCH_AFTER_S:
            return
        verified = is_verified(path, sha256)
        os.utime(path)
    except OSError:  # evicted meanwhile, or a read-only shared cache: the LRU order is best-effort
        return
    if verified:
        mark_verified(path, sha256)


def _same_digest(path: Path, sha256: str) -> bool:
    return file_sha256(path) == sha256


def _trusted(path: Path, sha256: str, verify: bool, check: Callable[[Path, str], bool]) -> bool:
    if not path.is_file():
        return False
    if is_verified(path, sha256) or not verify:
        return True
    if check(path, sha256):
        mark_verified(path, sha256)
        return True
    log.warning("cached %s does not match its digest; fetching it again", path)
    return False  # replaced (atomically) under the lock by _download


def _download(uri: str, path: Path, sha256: str, check: Callable[[Path, str], bool]) -> None:
    """Download to a temp name, check the digest, rename into place (callers hold the digest lock)."""
    for stale in path.parent.glob(f"*.{path.name}.*"):  # temp files of a crashed download of this digest
        stale.unlink(missing_ok=True)
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        storage.download_file(uri, part)
        if not check(part, sha256):
            raise DigestMismatch(
                f"{uri}: the downloaded bytes do not hash to the manifest's sha256 {sha256[:16]}...; the "
                "object is corrupt or was changed after tokenizing. Re-run the tokenize stage for this "
                "version (or restore the object)."
            )
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    mark_verified(path, sha256)
    log.info("cached %s as %s", uri, path)


def _lock_file(path: Path) -> Path:
    """The per-digest lock file beside a cache file (downloads wait on it, eviction tries it)."""
    return path.with_name(f"{path.name}.lock")


@contextmanager
def _digest_lock(path: Path) -> Iterator[None]:
    """An exclusive flock per digest, shared by every process (and thread) on this host."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_file(path), "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def max_bytes() -> int | None:
    """The cache's cap in bytes from ``$C2M_SHARD_CACHE_MAX_GB``; None when it is 0 (no cap)."""
    raw = os.environ.get(MAX_GB_VAR, "").strip()
    try:
        gb = float(raw) if raw else DEFAULT_MAX_GB
    except ValueError:
        gb = -1.0
    if not gb >= 0 or gb == float("inf"):
        raise ValueError(f"{MAX_GB_VAR}={raw!r} is not a size: set it to the shard cache's cap in GB "
                         "(e.g. 50 or 0.5), or 0 for no cap")
    return int(gb * 1e9) if gb else None


class Entry(NamedTuple):
    digest: str
    path: Path
    size: int
    mtime_ns: int


def _entries(root: Path) -> list[Entry]:
    """Every finished cache file (not temp parts, not locks), as it stands now."""
    found = []
    for path in root.glob("??/*.bin"):
        digest = path.name[:-len(".bin")]
        if not _SHA256.match(digest):
            continue
        try:
            st = path.stat()
        except FileNotFoundError:  # evicted by another process meanwhile
            continue
        found.append(Entry(digest, path, st.st_size, st.st_mtime_ns))
    return found


def evict(keep: Iterable[str] = ()) -> list[str]:
    """Unlink least-recently-used files until the cache fits its cap; return the digests evicted.

    Spares the digests in ``keep`` and every digest this process fetched, and files whose
    digest lock is held elsewhere. Evicts nothing when the spared files alone exceed the cap.
    """
    cap = max_bytes()
    if cap is None:
        return []
    entries = _entries(cache_root())
    total = sum(e.size for e in entries)
    if total <= cap:
        return []
    needed = _NEEDED | set(keep)
    needed_bytes = sum(e.size for e in entries if e.digest in needed)
    if needed_bytes > cap:
        if cap not in _WARNED_OVER_CAP:
            _WARNED_OVER_CAP.add(cap)
            log.warning("the files this job needs take %.4g GB of the shard cache %s, over its cap of %.4g GB: "
                        "evicting nothing. Raise %s above %.4g (or set it to 0 for no cap).",
                        needed_bytes / 1e9, cache_root(), cap / 1e9, MAX_GB_VAR, needed_bytes / 1e9)
        return []
    evicted = []
    for entry in sorted((e for e in entries if e.digest not in needed), key=lambda e: e.mtime_ns):
        if total <= cap:
            break
        outcome = _evict_one(entry)
        if outcome == _SKIPPED:
            continue
        total -= entry.size  # evicted by us or by a concurrent evictor: gone either way
        if outcome == _EVICTED:
            evicted.append(entry.digest)
    return evicted


_EVICTED, _GONE, _SKIPPED = "evicted", "gone", "skipped"


def _evict_one(entry: Entry) -> str:
    """Unlink one entry under its digest lock, taken without waiting (a held lock means: skip it)."""
    try:
        fh = open(_lock_file(entry.path), "a+b")
    except OSError:  # e.g. a read-only shared cache: leave the file
        return _SKIPPED
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.debug("shard cache: %s is locked by another process; not evicting it", entry.digest)
            return _SKIPPED
        try:
            if entry.path.stat().st_mtime_ns != entry.mtime_ns:
                return _SKIPPED  # a hit (or a fresh download) since the listing: used recently after all
            entry.path.unlink()
        except FileNotFoundError:
            return _GONE  # another evictor freed it first
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    log.info("evicted %s (%d bytes) from the shard cache %s", entry.digest, entry.size, cache_root())
    return _EVICTED
