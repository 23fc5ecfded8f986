"""A local, content-addressed cache of shard files that live on S3: each one is fetched once per host.

Why: shards are read by memory map, which needs a local file, and a job on ``s3://`` shards
must not pull the same gigabytes again on every run or every rank. The manifest's sha256 of
each file is the cache key, so a re-tokenized version (new bytes, new digest) can never hit
a stale entry, and bytes shared by two versions are stored once.

Layout: ``$C2M_SHARD_CACHE/<sha256[:2]>/<sha256>.bin`` (default ``~/.cache/crawl2model/shards``).

Concurrency: ranks on one host take a per-digest ``flock`` before downloading, so one
downloads and the others then find the file. A download lands under a temp name, is
checked against the digest and only then renamed into place, so a cache path only ever
holds bytes that matched once. Each process still hashes a cached file once before
trusting it (a bit flipped on disk, or a file someone edited, is fetched again, never
trained on); later reads in the same process skip the hash.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ops import storage

log = logging.getLogger(__name__)

DEFAULT_ROOT = "~/.cache/crawl2model/shards"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# (path, size, mtime_ns) -> the digest that file was hashed to in this process.
_VERIFIED: dict[tuple[str, int, int], str] = {}


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
    """Drop the per-process memo (tests use it to act as a fresh process)."""
    _VERIFIED.clear()


def fetch(uri: str, sha256: str, *, verify: bool = True,
          matches: Callable[[Path, str], bool] | None = None) -> Path:
    """The local cache path of ``uri``'s bytes, downloading them first when the cache lacks them.

    ``verify=False`` trusts an existing cache entry without hashing it (a download is always
    checked). ``matches(path, sha256)`` replaces the plain file digest check, for files whose
    recorded digest is of a canonical form (the tokenizer).
    """
    if not _SHA256.match(sha256 or ""):
        raise DigestMismatch(f"{uri}: the manifest's digest {sha256!r} is not a sha256; re-run the tokenize "
                             "stage for this version")
    check = matches or _same_digest
    path = cache_path(sha256)
    if _trusted(path, sha256, verify, check):
        return path
    with _digest_lock(path):
        if _trusted(path, sha256, verify, check):  # another rank on this host fetched it meanwhile
            return path
        _download(uri, path, sha256, check)
    return path


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


@contextmanager
def _digest_lock(path: Path) -> Iterator[None]:
    """An exclusive flock per digest, shared by every process (and thread) on this host."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f"{path.name}.lock"), "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
