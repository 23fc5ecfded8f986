"""Versioned dataset folders and their manifests: the data contract every stage writes and reads.

A dataset version is named by ``{root}/{stage}/v={version}/`` (its URI, what parents, XCom and
lineage record). Its files live in a *generation* below it, ``v={version}/g={generation}/``,
one per publish, and its ``_manifest.json`` (directly under ``v={version}/``) is written last
and atomically and names the generation it describes: the manifest is the commit point.
Readers resolve files through it (:attr:`DatasetVersion.data_uri`,
:meth:`DatasetVersion.data_path`, :func:`data_uri_of`), so a rerun that dies before its
manifest exists leaves the previous version untouched, and a reader that resolved the
previous generation keeps its files for the grace period (:func:`prune_generations`).

A manifest without a ``generation`` (written before generations existed) describes the files
directly under ``v={version}/``: generation ``""`` is the version folder itself.

A version without a manifest is an unfinished attempt that readers ignore and a rerun
replaces. The manifest records what went in and out, so every later artefact (shards,
models) can point back to the data and code that made it.
"""
from __future__ import annotations

import calendar
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from ops.lake import storage
from ops.lake.roots import REPO_ROOT

MANIFEST = "_manifest.json"
STATS = "stats.json"
REMOVED = "removed"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

STAGES = ("raw", "extracted", "clean", "corpus", "shards")

GENERATION_PREFIX = "g="
GRACE_ENV = "C2M_GENERATION_GRACE_S"
DEFAULT_GRACE_S = 3600  # how long a superseded generation stays for readers that resolved it
_GENERATION_RE = re.compile(r"^(\d{8}T\d{6})(\d{3})-[0-9a-f]{8}$")


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

    @property
    def data_uri(self) -> str:
        """Where the finished version's files are: the generation its manifest names."""
        return data_uri_of(self.uri, self.read_manifest())

    def data_path(self, *parts: str) -> str:
        """A file or folder of the finished version (resolved through its manifest)."""
        return storage.join(self.data_uri, *parts)

    def generation_uri(self, generation: str) -> str:
        return generation_uri(self.uri, generation)

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
        generation: str = "",
    ) -> dict[str, Any]:
        """Check the accounting invariant, then commit ``generation`` by writing the manifest
        that names it (last, atomically). ``files`` and ``bytes`` count that generation's data;
        ``stats.json`` is written into the generation first, so it always matches its manifest."""
        check_accounting(rows_in, rows_out, dropped, where=self.uri)
        data = self.generation_uri(generation)
        files = [f for f in _generation_files(self.uri, generation)
                 if f"/{REMOVED}/" not in f and not f.endswith(".json")]
        manifest = {
            "stage": self.stage,
            "version": self.version,
            "uri": self.uri,
            "generation": generation,
            "rows_in": rows_in,
            "rows_out": rows_out,
            "dropped": dict(sorted(dropped.items())),
            "parents": parents,
            "files": [f[len(data):].lstrip("/") for f in files],
            "bytes": sum(_size(f) for f in files),
            "schema": schema or {},
            "code_sha": code_sha(),
            "config": config,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if extra:
            manifest.update(extra)
        storage.write_text(storage.join(data, STATS), json.dumps(
            {"rows_in": rows_in, "rows_out": rows_out, "dropped": manifest["dropped"]}, indent=2))
        storage.write_text(self.manifest_uri, json.dumps(manifest, indent=2, sort_keys=True))
        return manifest


def new_generation() -> str:
    """A fresh generation id: UTC time to the millisecond (so ids sort by age) and 32 random bits."""
    now = time.time()
    return (time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}-"
            + secrets.token_hex(4))


def generation_uri(version_uri: str, generation: str) -> str:
    """The folder of one generation of a version (``""``: the version folder itself)."""
    return storage.join(version_uri, GENERATION_PREFIX + generation) if generation else str(version_uri)


def data_uri_of(version_uri: str, manifest: dict[str, Any]) -> str:
    """Where the files a manifest lists are (for readers that hold the manifest already)."""
    return generation_uri(version_uri, str(manifest.get("generation") or ""))


def _generation_of(rel: str) -> str:
    """The generation a file under a version folder belongs to, from its relative name."""
    head = rel.split("/", 1)[0]
    return head[len(GENERATION_PREFIX):] if head.startswith(GENERATION_PREFIX) and "/" in rel else ""


def _generation_files(version_uri: str, generation: str) -> list[str]:
    """The files of one generation (for ``""``: those directly in the version folder, not in a
    ``g=`` folder, and not the manifest)."""
    if generation:
        return storage.list_files(generation_uri(version_uri, generation))
    base = str(version_uri).rstrip("/")
    return [f for f in storage.list_files(base)
            if _generation_of(f[len(base):].lstrip("/")) == "" and not f.endswith("/" + MANIFEST)]


def _generation_time(generation: str) -> float | None:
    """When a generation was made (its id's timestamp), or None for a name this code did not make."""
    match = _GENERATION_RE.match(generation)
    if not match:
        return None
    return calendar.timegm(time.strptime(match.group(1), "%Y%m%dT%H%M%S")) + int(match.group(2)) / 1000


def grace_seconds() -> float:
    """How long superseded and unreferenced generations are kept (``$C2M_GENERATION_GRACE_S``)."""
    return float(os.environ.get(GRACE_ENV, DEFAULT_GRACE_S))


def prune_generations(dv: "DatasetVersion", grace_s: float | None = None, now: float | None = None,
                      superseded_grace_s: float | None = None) -> list[str]:
    """Delete the generations of ``dv`` that no reader may still need; return their names.

    Never the one the manifest names. A generation older than it was superseded at the latest
    when the manifest was written, so it goes once the manifest is ``grace_s`` old; a newer one
    (a publish that died before its manifest, or one still uploading) goes once its own id is
    ``grace_s`` old. Without a manifest nothing is deleted: a rerun will commit one. Names this
    code did not make (other than the legacy ``""``) are left alone. ``superseded_grace_s``
    (default ``grace_s``) is for the older ones alone: 0 when no manifest named them, so no
    reader can hold them.
    """
    grace = grace_seconds() if grace_s is None else grace_s
    older_grace = grace if superseded_grace_s is None else superseded_grace_s
    now = time.time() if now is None else now
    try:
        manifest = json.loads(storage.read_text(dv.manifest_uri))
    except FileNotFoundError:  # storage.MissingObject too
        return []
    current = str(manifest.get("generation") or "")
    committed = calendar.timegm(time.strptime(manifest.get("created_at", "1970-01-01T00:00:00Z"),
                                              "%Y-%m-%dT%H:%M:%SZ"))
    base = dv.uri.rstrip("/")
    by_generation: dict[str, list[str]] = {}
    for uri in storage.list_files(base):
        rel = uri[len(base):].lstrip("/")
        if rel != MANIFEST:
            by_generation.setdefault(_generation_of(rel), []).append(uri)
    gone = []
    for generation, uris in sorted(by_generation.items()):
        made = _generation_time(generation) if generation else 0.0
        if generation == current or made is None:
            continue
        if generation < current and now - committed >= older_grace or (
                generation > current and now - made >= grace):
            _remove_generation(base, generation, uris)
            gone.append(generation)
    return gone


def _remove_generation(base: str, generation: str, uris: list[str]) -> None:
    if storage.is_s3(base):
        storage.remove_files(uris)
    elif generation:
        shutil.rmtree(generation_uri(base, generation), ignore_errors=True)
    else:  # the legacy files directly in the version folder, then their emptied folders
        storage.remove_files(uris)
        for name in os.listdir(base):
            top = os.path.join(base, name)
            if not name.startswith(GENERATION_PREFIX) and os.path.isdir(top):
                for folder, _, _ in sorted(os.walk(top), key=lambda item: -len(item[0])):
                    try:
                        os.rmdir(folder)
                    except OSError:
                        pass  # not empty: something else lives there


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
