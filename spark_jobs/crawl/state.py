"""Crawl progress kept on storage, so that a killed crawl resumes where it stopped.

A crawl of version V keeps its progress in ``{root}/raw/_crawl-v={V}/`` (beside the
version folder, never inside it: the published version stays all-or-nothing):

- ``rounds/r-{n:05d}-{h:04d}.warc.gz``: the pages stored by round ``n`` for its ``h``-th
  host, one gzip member per record (no warcinfo), so rounds can later be concatenated into
  WARC files. The Spark task that fetched the host writes it (:mod:`spark_jobs.crawl.store`):
  page bodies never pass through the driver;
- ``rounds/r-{n:05d}.json``: the round's fetch-log rows (with frontier position and
  outlinks) and its WARC files with their record counts. Written after the WARCs, it is the
  round's commit marker: WARCs without it are the leftovers of a killed round, ignored and
  overwritten;
- ``checkpoint.json``: the crawl between rounds: level, frontier, seen URLs, pages
  fetched before this level, robots rules, each host's last request, and a fingerprint
  of the settings that shape the crawl. Written at the start of a level (after new
  hosts' robots.txt) and at its end (with the next frontier).

Every file is written whole with temp + rename locally, or one PUT on S3
(:func:`ops.lake.storage.write_bytes`), so a kill leaves each file either old or new.

A round is a slice of one BFS level: at most ``checkpoint_every`` URLs per host, fetched
as one Spark job. A level's plan (which URLs are robots-disallowed, which fit the page
budget) is a pure function of the checkpoint, so a resumed crawl recomputes it, subtracts
the positions its committed rounds hold, and fetches only the rest: a kill costs at most
one round. After the crawl is published the rounds are deleted and the checkpoint is
marked ``published``; rerunning then returns the published manifest without fetching.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ops.lake import storage

CHECKPOINT = "checkpoint.json"
ROUNDS = "rounds"
FORMAT = 1
_ROUND_JSON = re.compile(r"r-(\d{5,})\.json$")


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of the settings a resumed crawl must share with the one it continues."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class StateMismatch(ValueError):
    """The saved progress belongs to a crawl with other seeds, scope or limits."""


class CrawlState:
    """Progress files of one crawl version (see the module docstring for the layout)."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")

    @classmethod
    def for_version(cls, root: str, version: str) -> "CrawlState":
        return cls(storage.join(root, "raw", f"_crawl-v={version}"))

    def _path(self, *parts: str) -> str:
        return storage.join(self.uri, *parts)

    # ---------------------------------------------------------------- checkpoint
    def load_checkpoint(self, expected_fingerprint: str | None = None) -> dict[str, Any] | None:
        uri = self._path(CHECKPOINT)
        if not storage.exists(uri):
            return None
        ckpt = json.loads(storage.read_text(uri))
        if ckpt.get("format") != FORMAT:
            raise StateMismatch(f"{uri} has format {ckpt.get('format')}, this code writes {FORMAT}; "
                                "rerun the crawl with --restart to discard the old progress")
        if expected_fingerprint and ckpt.get("fingerprint") != expected_fingerprint:
            raise StateMismatch(
                f"{uri} holds progress of a crawl with other seeds, scope, depth, page limit or user agent. "
                "Rerun with the same settings to resume it, with --restart to discard it, "
                "or use another --version.")
        return ckpt

    def save_checkpoint(self, ckpt: dict[str, Any]) -> None:
        storage.write_text(self._path(CHECKPOINT), json.dumps({**ckpt, "format": FORMAT}, sort_keys=True))

    # ---------------------------------------------------------------- rounds
    def round_warc(self, number: int, host_index: int) -> str:
        """Where round ``number``'s fetch task for its ``host_index``-th host writes stored pages."""
        return self._path(ROUNDS, f"r-{number:05d}-{host_index:04d}.warc.gz")

    def write_round(self, number: int, level: int, rows: list[dict[str, Any]],
                    warcs: list[tuple[str, int]] = (), last_request: dict[str, float] | None = None
                    ) -> dict[str, Any]:
        """Commit one round whose WARC files (URI, records) are already written: the JSON makes it count."""
        names = [[uri.rsplit("/", 1)[-1], records] for uri, records in warcs if records]
        entry = {"number": number, "level": level, "rows": rows, "warcs": names,
                 "records": sum(n for _, n in names), "last_request": last_request or {}}
        storage.write_text(self._path(ROUNDS, f"r-{number:05d}.json"), json.dumps(entry))
        return entry

    def round_warcs(self, entry: dict[str, Any]) -> list[tuple[str, int]]:
        """A committed round's WARC files as (URI, records), in the round's host order."""
        names = entry.get("warcs")
        if names is None:  # a round committed with one WARC for all its hosts
            names = [[f"r-{entry['number']:05d}.warc.gz", entry["records"]]] if entry["records"] else []
        return [(self._path(ROUNDS, name), records) for name, records in names]

    def rounds(self) -> list[dict[str, Any]]:
        """Committed rounds in order; leftovers of a killed round are ignored."""
        found = []
        for uri in storage.list_files(self._path(ROUNDS), suffix=".json"):
            match = _ROUND_JSON.search(uri)
            if match:
                found.append(json.loads(storage.read_text(uri)))
        return sorted(found, key=lambda r: r["number"])

    # ---------------------------------------------------------------- lifecycle
    def mark_published(self, ckpt: dict[str, Any]) -> None:
        """The version is out: keep only a checkpoint that says so, drop the rounds."""
        self.save_checkpoint({**ckpt, "published": True})
        storage.remove_tree(self._path(ROUNDS))

    def discard(self) -> None:
        storage.remove_tree(self.uri)
