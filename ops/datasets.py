"""Versioned dataset folders and their manifests (ARCHITECTURE.md §3).

A dataset version lives at ``{root}/{stage}/v={version}/``. Its ``_manifest.json`` is
written last and atomically; a folder without one is an unfinished attempt that readers
ignore and a rerun replaces. The manifest records what went in and out, so every later
artefact (shards, models) can point back to the data and code that made it.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from ops import storage
from ops.settings import REPO_ROOT

MANIFEST = "_manifest.json"
STATS = "stats.json"
REMOVED = "removed"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

STAGES = ("raw", "extracted", "clean", "corpus", "shards")


class ManifestError(RuntimeError):
    """A dataset version is missing, unfinished or inconsistent."""


def check_version(version: str) -> str:
    if not _VERSION_RE.match(version or ""):
        raise ValueError(
            f"dataset version {version!r} is invalid: use 1-64 letters, digits, '.', '_' or '-' "
            "(e.g. 2026-11-29 or demo)"
        )
    return version


def code_sha() -> str:
    """The git SHA of the code that ran, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", "-q", "HEAD"],
            capture_output=True, text=True, timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(frozen=True)
class DatasetVersion:
    """One version of one stage's output under a data root."""

    root: str
    stage: str
    version: str

    def __post_init__(self):
        check_version(self.version)
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; expected one of {', '.join(STAGES)}")

    @classmethod
    def from_uri(cls, uri: str) -> "DatasetVersion":
        """Parse ``{root}/{stage}/v={version}`` back into its parts."""
        uri = str(uri).rstrip("/")
        head, _, leaf = uri.rpartition("/")
        root, _, stage = head.rpartition("/")
        if not leaf.startswith("v="):
            raise ValueError(f"{uri} is not a dataset version folder ({{root}}/{{stage}}/v={{version}})")
        return cls(root or ".", stage, leaf[2:])

    @property
    def uri(self) -> str:
        return storage.join(self.root, self.stage, f"v={self.version}")

    def path(self, *parts: str) -> str:
        return storage.join(self.uri, *parts)

    @property
    def manifest_uri(self) -> str:
        return self.path(MANIFEST)

    def is_complete(self) -> bool:
        return storage.exists(self.manifest_uri)

    def read_manifest(self) -> dict[str, Any]:
        if not self.is_complete():
            raise ManifestError(
                f"{self.uri} has no {MANIFEST}: the {self.stage} stage for version {self.version} "
                "has not finished. Run that stage first (crawl2model <stage> --version ...)."
            )
        return json.loads(storage.read_text(self.manifest_uri))

    def write_manifest(
        self,
        *,
        rows_in: int,
        rows_out: int,
        dropped: dict[str, int],
        parents: list[str],
        config: dict[str, Any],
        schema: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Check the accounting invariant, then publish the manifest (last, atomically)."""
        check_accounting(rows_in, rows_out, dropped, where=self.uri)
        files = [f for f in storage.list_files(self.uri) if f"/{REMOVED}/" not in f and not f.endswith(".json")]
        manifest = {
            "stage": self.stage,
            "version": self.version,
            "uri": self.uri,
            "rows_in": rows_in,
            "rows_out": rows_out,
            "dropped": dict(sorted(dropped.items())),
            "parents": parents,
            "files": [f[len(self.uri):].lstrip("/") for f in files],
            "bytes": sum(_size(f) for f in files),
            "schema": schema or {},
            "code_sha": code_sha(),
            "config": config,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if extra:
            manifest.update(extra)
        storage.write_text(self.path(STATS), json.dumps(
            {"rows_in": rows_in, "rows_out": rows_out, "dropped": manifest["dropped"]}, indent=2))
        storage.write_text(self.manifest_uri, json.dumps(manifest, indent=2, sort_keys=True))
        return manifest


def check_accounting(rows_in: int, rows_out: int, dropped: dict[str, int], where: str = "") -> None:
    """rows in = rows out + sum of drops by reason; anything else means a lost document."""
    total = rows_out + sum(dropped.values())
    if rows_in != total:
        raise ManifestError(
            f"accounting broken at {where}: {rows_in} rows in, but {rows_out} out + "
            f"{sum(dropped.values())} dropped {dict(dropped)} = {total}. This is a bug in the stage."
        )


def _size(uri: str) -> int:
    if storage.is_s3(uri):
        return 0  # sizes of S3 objects are not fetched one by one; the manifest lists the files
    import os

    return os.path.getsize(uri)


def latest_version(root: str, stage: str) -> str | None:
    """The newest complete version of a stage (by manifest created_at, then name)."""
    base = storage.join(root, stage)
    best: tuple[str, str] | None = None
    for manifest_uri in storage.list_files(base, suffix=MANIFEST):
        rel = manifest_uri[len(base):].strip("/").split("/")
        if len(rel) != 2 or not rel[0].startswith("v="):
            continue
        created = json.loads(storage.read_text(manifest_uri)).get("created_at", "")
        key = (created, rel[0][2:])
        if best is None or key > best:
            best = key
    return best[1] if best else None
