"""Which dataset version a DAG run writes, and the names derived from it (crawl shards, WARC
ingest, file names): a retry of the same run always gets the same names, so it replaces
rather than duplicates."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime

from ops.lake.datasets import check_version

# CLI stage -> the dataset stage folder it writes.
OUTPUT_STAGE = {
    "crawl": "raw", "ingest": "raw", "extract": "extracted", "clean": "clean", "dedup": "corpus",
    "tokenize": "shards",
}


def derive_version(logical_date: datetime | None, run_id: str) -> str:
    """A dataset version for a DAG run: its logical date when it has one, else its run_id.

    Weekly runs get readable versions (``2026-11-29``); manual runs without a logical date get
    their sanitised run_id, which is unique per DAG. Either way a retry of the same run writes
    the same version, so it replaces rather than duplicates.
    """
    if logical_date is not None:
        if (logical_date.hour, logical_date.minute, logical_date.second) == (0, 0, 0):
            return logical_date.strftime("%Y-%m-%d")
        return logical_date.strftime("%Y-%m-%dT%H%M%S")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_.-")
    if len(text) > 64:  # keep the unique tail (timestamps, random suffixes)
        text = text[-64:].lstrip("_.-")
    return check_version(text or "run")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _suffixed(version: str, suffix: str) -> str:
    """``version + suffix``; a version too long for it keeps its head and a hash of the whole, so
    derived versions stay unique and valid."""
    if len(version) + len(suffix) > 64:
        digest = hashlib.sha1(version.encode()).hexdigest()[:8]
        version = f"{version[:64 - len(suffix) - 9].rstrip('._-')}-{digest}"
    return check_version(version + suffix)


def shard_version(version: str, index: int) -> str:
    """Raw version of crawl shard ``index``: ``{version}-c{index}``, shortened by :func:`_suffixed`."""
    return _suffixed(version, f"-c{index}")


def ingest_version(version: str, source: str) -> str:
    """Raw version the WARC ingest writes: the run's ``version`` when it is the only source,
    ``{version}-w`` beside a crawl (``source`` both), shortened like a shard version."""
    return version if source != "both" else _suffixed(version, "-w")
