"""Assemble a dataset version privately, then publish it in one move.

A stage writes everything (data, removed/, logs) into a staging area, then ``publish()``
swaps it in for ``{root}/{stage}/v={version}``, so readers never see half a version and a
rerun replaces rather than appends. The manifest is written after publishing (by
:meth:`ops.datasets.DatasetVersion.write_manifest`), and only a version with a manifest
counts as finished. Stages address staged files by their final relative names:

- :meth:`Staging.spark_path` is where Spark writers and executors put output;
- :meth:`Staging.join` is a driver-local path for small files the driver writes itself;
- :meth:`Staging.files`, :meth:`Staging.move` and :meth:`Staging.remove` list, rename and
  delete staged files, so a stage never touches ``os.path`` for staged output.

Where the staging area is depends on the root and on :func:`spark_jobs.s3io.mode`:

- **local root**: the folder ``{root}/{stage}/_tmp-v={V}-{id}``, published by rename.
- **s3:// root, ``stage`` mode**: a local temp dir (under ``$C2M_STAGING_DIR`` when set; on a
  cluster that must be a volume every executor mounts), published by deleting the old
  objects and uploading (:func:`ops.storage.upload_file`: multipart, retried). Inputs are
  downloaded the same way (:func:`local_input`).
- **s3:// root, ``s3a`` mode**: the prefix ``{root}/{stage}/_tmp-v={V}-{id}/`` in the bucket,
  which Spark writes through ``s3a://``; executors that write files themselves upload them
  there. S3 has no rename, so :meth:`~Staging.move` only records the new name, and
  ``publish()`` deletes the old version's objects, copies each staged object server-side to
  its final name (once), uploads the driver's local files, then deletes the prefix.
  Inputs are handed to Spark as ``s3a://`` paths, never downloaded.

Readers trust a version only once its manifest exists, so a publish that dies half-way is
never read; the next run deletes and rewrites the version (and stale ``_tmp-`` folders).
"""
from __future__ import annotations

import atexit
import fnmatch
import os
import shutil
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ops import storage
from ops.datasets import MANIFEST, REMOVED, DatasetVersion
from spark_jobs import s3io

# Files Spark's committer leaves behind that are not data.
_JUNK_NAMES = ("_SUCCESS",)
_JUNK_SUFFIXES = (".crc",)
_JUNK_DIRS = ("_temporary",)  # a failed job's attempt folders
COPY_THREADS = 16  # concurrent server-side copies when publishing in s3a mode


class Staging:
    """A private area where one dataset version is assembled before publishing."""

    def __init__(self, out: DatasetVersion):
        self.out = out
        self.remote = storage.is_s3(out.root)
        self.direct = s3io.direct(out.root)
        self._renamed: dict[str, str] = {}  # direct mode: staged object (relative) -> its final name
        tmp_name = f"_tmp-v={out.version}-"
        stage_dir = storage.join(out.root, out.stage)
        if self.direct:  # first delete what a crashed earlier attempt of this version left
            storage.remove_files(storage.list_files(storage.join(stage_dir, tmp_name), name_prefix=True))
            self.uri = storage.to_s3a(storage.join(stage_dir, tmp_name + uuid.uuid4().hex[:8]))
            self.path = tempfile.mkdtemp(prefix=f"c2m-{out.stage}-v{out.version}-", dir=staging_dir())
        elif self.remote:
            self.path = tempfile.mkdtemp(prefix=f"c2m-{out.stage}-v{out.version}-", dir=staging_dir())
            self.uri = self.path
        else:
            Path(stage_dir).mkdir(parents=True, exist_ok=True)
            for stale in Path(stage_dir).glob(f"{tmp_name}*"):
                shutil.rmtree(stale, ignore_errors=True)  # a crashed earlier attempt of this version
            self.path = str(Path(stage_dir, tmp_name + uuid.uuid4().hex[:8]))
            os.makedirs(self.path)
            self.uri = self.path
        self.published = False

    def join(self, *parts: str) -> str:
        """A driver-local path in the staging area (uploaded at publish when the root is on S3)."""
        return os.path.join(self.path, *parts)

    def spark_path(self, *parts: str) -> str:
        """Where Spark and executors write staged output (``s3a://`` in ``s3a`` mode)."""
        return storage.join(self.uri, *parts) if parts else self.uri

    def files(self, pattern: str = "*") -> dict[str, str]:
        """Staged output whose final relative name matches ``pattern`` (fnmatch; ``*`` spans
        folders): final name -> where it is now (a path Spark can read)."""
        return {name: storage.join(self.uri, rel) for rel, name in self._staged().items()
                if fnmatch.fnmatchcase(name, pattern)}

    def move(self, src: str, dest: str) -> None:
        """Rename a staged file or folder (relative names). On S3 only the name is recorded:
        the copy that publishing makes anyway applies it."""
        if not self.direct:
            os.makedirs(os.path.dirname(self.join(dest)) or self.path, exist_ok=True)
            os.rename(self.join(src), self.join(dest))
            return
        moved = False
        for rel, name in self._staged().items():
            if name == src or name.startswith(src + "/"):
                self._renamed[rel] = dest + name[len(src):]
                moved = True
        if not moved:
            raise FileNotFoundError(f"nothing staged as {src} under {self.uri}")

    def remove(self, name: str) -> None:
        """Delete a staged file or folder (by final relative name); missing is fine."""
        if not self.direct:
            target = self.join(name)
            if os.path.isdir(target):
                shutil.rmtree(target, ignore_errors=True)
            elif os.path.exists(target):
                os.remove(target)
            return
        gone = [rel for rel, final in self._staged().items() if final == name or final.startswith(name + "/")]
        storage.remove_files([storage.join(self.uri, rel) for rel in gone])
        for rel in gone:
            self._renamed.pop(rel, None)

    def _staged(self) -> dict[str, str]:
        """Every staged output file that is data: relative location -> final relative name."""
        if self.direct:
            uris = storage.list_files(self.uri)
        else:
            uris = [str(p) for p in Path(self.path).rglob("*") if p.is_file()]
        out = {}
        for uri in uris:
            rel = uri[len(self.uri):].lstrip("/").replace(os.sep, "/")
            if not _is_junk(rel):
                out[rel] = self._renamed.get(rel, rel)
        return out

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.published:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.direct:
            try:
                storage.remove_tree(self.uri)
            except storage.StorageError as err:  # do not hide the error that got us here
                print(f"[crawl2model] could not delete the staging prefix {self.uri}: {err}; "
                      "the next run of this version deletes it", flush=True)

    def publish(self) -> str:
        """Replace the version with the staged one; return its URI."""
        remove_junk(self.path)
        staged = self._staged() if self.direct else {}
        if os.path.exists(self.join(MANIFEST)) or MANIFEST in staged.values():
            raise RuntimeError("staging must not contain a manifest: it is written after publishing")
        if self.remote:
            storage.remove_tree(self.out.uri)
            storage.upload_tree(self.path, self.out.uri)  # the driver's files (all of them in stage mode)
            def copy(item: tuple[str, str]) -> None:  # s3a mode: server-side, once per object
                storage.copy(storage.join(self.uri, item[0]), self.out.path(item[1]))

            with ThreadPoolExecutor(max_workers=COPY_THREADS) as pool:
                list(pool.map(copy, sorted(staged.items())))
            if self.direct:
                storage.remove_tree(self.uri)
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


def _is_junk(rel: str) -> bool:
    parts = rel.split("/")
    return (parts[-1] in _JUNK_NAMES or parts[-1].endswith(_JUNK_SUFFIXES)
            or any(p in _JUNK_DIRS for p in parts[:-1]))


def remove_junk(folder: str) -> None:
    """Drop _SUCCESS markers, .crc checksums and committer leftovers (the rule publishing to S3
    skips by, :func:`_is_junk`): the manifest is the completion marker."""
    for path in Path(folder).rglob("*"):
        if path.is_file() and _is_junk(path.relative_to(folder).as_posix()):
            path.unlink()


@contextmanager
def local_output(dest: str) -> Iterator[str]:
    """For executors writing a staged file themselves: a local path to write, uploaded to
    ``dest`` when the block ends without error (``dest`` itself when it is local)."""
    if not storage.is_s3(dest):
        yield dest
        return
    parent, name = dest.rsplit("/", 1)
    with local_folder(parent) as folder:
        yield os.path.join(folder, name)


@contextmanager
def local_folder(dest: str) -> Iterator[str]:
    """Like :func:`local_output` for a task that writes several files: every file in the
    yielded folder is uploaded under ``dest`` on success."""
    if not storage.is_s3(dest):
        yield dest
        return
    folder = tempfile.mkdtemp(prefix="c2m-out-")
    try:
        yield folder
        storage.upload_tree(folder, dest)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def local_input(dv: DatasetVersion) -> str:
    """A finished version's folder for Spark to read: itself when local, its ``s3a://`` URI in
    ``s3a`` mode, else a local copy (downloaded; ``removed/`` is skipped)."""
    dv.read_manifest()  # raises with a hint when the version is unfinished
    if not storage.is_s3(dv.root):
        return dv.uri
    if s3io.direct(dv.root):
        return storage.to_s3a(dv.uri)
    return download_copy(dv.uri, f"c2m-in-{dv.stage}-v{dv.version}-",
                         keep=lambda rel: not rel.startswith(f"{REMOVED}/"))[0]


def download_copy(uri: str, prefix: str, keep=lambda rel: True) -> tuple[str, list[str]]:
    """A local copy of the files under ``uri`` whose relative path passes ``keep``, for Spark to
    read: (the folder, the files in it, sorted). It lies under :func:`staging_dir` and is removed
    when the job's process ends (Spark reads lazily, so not before)."""
    local = tempfile.mkdtemp(prefix=prefix, dir=staging_dir())
    atexit.register(shutil.rmtree, local, True)
    files = []
    for src in storage.list_files(uri):
        rel = src[len(uri):].lstrip("/")
        if keep(rel):
            storage.download_file(src, Path(local, rel))
            files.append(str(Path(local, rel)))
    return local, sorted(files)


def staging_dir() -> str | None:
    """Where S3 versions are staged and downloaded: ``$C2M_STAGING_DIR`` or the system temp dir."""
    folder = os.environ.get("C2M_STAGING_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
    return folder or None
