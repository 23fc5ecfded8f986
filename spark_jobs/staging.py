"""Assemble a dataset version privately, then publish it in one move.

A stage writes everything (data, removed/, logs) into a staging folder. ``publish()``
then swaps it in for ``{root}/{stage}/v={version}``: locally by rename, so readers never
see half a version and a rerun replaces rather than appends. The manifest is written
after publishing (by :meth:`ops.datasets.DatasetVersion.write_manifest`), and only a
folder with a manifest counts as finished.

For ``s3://`` roots the staging folder is a local temp dir that ``publish()`` uploads
(after deleting the old objects) through :func:`ops.storage.upload_file` (multipart for
large files, retried on throttling); inputs on S3 are downloaded the same way. The temp
dir is under ``$C2M_STAGING_DIR`` when set: on a cluster that must be a volume every
Spark executor mounts (executors write their part files into it), locally the system
temp dir is fine. Readers trust a version only once its manifest exists, so a publish
that dies half-way is never read; the next run deletes and rewrites the version.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from ops import storage
from ops.datasets import MANIFEST, REMOVED, DatasetVersion

# Files Spark's committer leaves behind that are not data.
_JUNK_NAMES = ("_SUCCESS",)
_JUNK_SUFFIXES = (".crc",)


class Staging:
    """A private folder where one dataset version is assembled before publishing."""

    def __init__(self, out: DatasetVersion):
        self.out = out
        self.remote = storage.is_s3(out.root)
        if self.remote:
            self.path = tempfile.mkdtemp(prefix=f"c2m-{out.stage}-v{out.version}-", dir=staging_dir())
        else:
            stage_dir = Path(out.root, out.stage)
            stage_dir.mkdir(parents=True, exist_ok=True)
            for stale in stage_dir.glob(f"_tmp-v={out.version}-*"):
                shutil.rmtree(stale, ignore_errors=True)  # a crashed earlier attempt of this version
            self.path = str(stage_dir / f"_tmp-v={out.version}-{uuid.uuid4().hex[:8]}")
            os.makedirs(self.path)
        self.published = False

    def join(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.published:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def publish(self) -> str:
        """Replace the version folder with the staged one; return its URI."""
        remove_junk(self.path)
        if os.path.exists(self.join(MANIFEST)):
            raise RuntimeError("staging must not contain a manifest: it is written after publishing")
        if self.remote:
            storage.remove_tree(self.out.uri)
            for local in sorted(Path(self.path).rglob("*")):
                if local.is_file():
                    rel = local.relative_to(self.path).as_posix()
                    storage.upload_file(local, self.out.path(rel))
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            target = Path(self.out.uri)
            old = None
            if target.exists():
                old = target.with_name(f"_old-{target.name}-{uuid.uuid4().hex[:8]}")
                os.rename(target, old)
            os.rename(self.path, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        self.published = True
        return self.out.uri


def remove_junk(folder: str) -> None:
    """Drop _SUCCESS markers and .crc checksums: the manifest is the completion marker."""
    for path in Path(folder).rglob("*"):
        if path.is_file() and (path.name in _JUNK_NAMES or path.name.endswith(_JUNK_SUFFIXES)):
            path.unlink()


def local_input(dv: DatasetVersion) -> str:
    """A local folder holding a finished version's files (downloaded first when on S3)."""
    dv.read_manifest()  # raises with a hint when the version is unfinished
    if not storage.is_s3(dv.root):
        return dv.uri
    local = tempfile.mkdtemp(prefix=f"c2m-in-{dv.stage}-v{dv.version}-", dir=staging_dir())
    atexit.register(shutil.rmtree, local, True)  # Spark reads it lazily: keep it until the job ends
    for uri in storage.list_files(dv.uri):
        rel = uri[len(dv.uri):].lstrip("/")
        if rel.startswith(f"{REMOVED}/"):
            continue
        storage.download_file(uri, Path(local, rel))
    return local


def staging_dir() -> str | None:
    """Where S3 versions are staged and downloaded: ``$C2M_STAGING_DIR`` or the system temp dir."""
    folder = os.environ.get("C2M_STAGING_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
    return folder or None
