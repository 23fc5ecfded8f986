"""Assemble a dataset version privately, then publish it as a new generation.

A stage writes everything (data, removed/, logs) into a staging area. :meth:`Staging.commit`
then puts the staged files into a fresh generation folder ``{root}/{stage}/v={V}/g={G}/``
(:mod:`ops.lake.datasets`), writes the manifest ``v={V}/_manifest.json`` naming ``G`` (the commit
point: atomic locally by temp file + rename, and an S3 PUT is atomic), and only then
drops what is no longer needed. Nothing of the previous generation is touched before the
new manifest exists, so a failure or a kill at any step leaves the finished version whole
and readable; readers resolve files through the manifest, so they never see half a version.
Stages address staged files by their final relative names:

- :meth:`Staging.spark_path` is where Spark writers and executors put output;
- :meth:`Staging.join` is a driver-local path for small files the driver writes itself;
- :meth:`Staging.files`, :meth:`Staging.move` and :meth:`Staging.remove` list, rename and
  delete staged files, so a stage never touches ``os.path`` for staged output.

Where the staging area is depends on the root and on :func:`spark_jobs.s3io.mode`:

- **local root**: the folder ``{root}/{stage}/_tmp-v={V}+{id}``, published by renaming it to
  the generation folder.
- **s3:// root, ``stage`` mode**: a local temp dir ``c2m-{stage}-_tmp-v={V}+{id}`` (under
  ``$C2M_STAGING_DIR`` when set; on a cluster that must be a volume every executor mounts),
  published by uploading it into the
  generation (:func:`ops.lake.storage.upload_file`: multipart, retried). Inputs are downloaded
  the same way (:func:`local_input`).
- **s3:// root, ``s3a`` mode**: the prefix ``{root}/{stage}/_tmp-v={V}+{id}/`` in the bucket,
  which Spark writes through ``s3a://``; executors that write files themselves upload them
  there. S3 has no rename, so :meth:`~Staging.move` only records the new name, and
  publishing copies each staged object server-side into the generation (once) and uploads
  the driver's local files; the prefix is deleted after the manifest is written.
  Inputs are handed to Spark as ``s3a://`` paths, never downloaded.

``+`` cannot occur in a version name, so ``_tmp-v={V}+`` names the staging areas of exactly
one version. Cleaning up, at the start of a run and after each commit:

- a run starts by deleting the staging areas of the same version that no live run holds:
  each area has a lease its run renews (:mod:`spark_jobs.staging_lease`), so a crashed or
  killed attempt's area goes, and a concurrent run's stays; a publish that failed releases
  its lease and keeps its area until then (``stage`` mode's local areas only under
  ``$C2M_STAGING_DIR``);
- generations other than the one the manifest names go once they are
  ``$C2M_GENERATION_GRACE_S`` old (default 3600 s; :func:`ops.lake.datasets.prune_generations`):
  a superseded one counted from when it was superseded, so a reader that resolved it
  before a rerun finishes its read; an uncommitted one (a publish that died) counted from
  its creation, so a concurrent publish still uploading is not deleted under it.
  The same rule holds for local and S3 roots.
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
from typing import Any, Callable, Iterator

from ops.lake import storage
from ops.lake.datasets import (GENERATION_PREFIX, MANIFEST, REMOVED, DatasetVersion, data_uri_of, new_generation,
                          prune_generations)
from spark_jobs import s3io
from spark_jobs.staging_lease import LEASE_SUFFIX, Lease, stale_areas

# Files Spark's committer leaves behind that are not data.
_JUNK_NAMES = ("_SUCCESS",)
_JUNK_SUFFIXES = (".crc",)
_JUNK_DIRS = ("_temporary",)  # a failed job's attempt folders
COPY_THREADS = 16  # concurrent server-side copies when publishing in s3a mode
TMP_PREFIX = "_tmp-v="
TMP_SEP = "+"  # never in a version name (ops.lake.datasets._VERSION_RE): one version's staging only


def staging_prefix(version: str) -> str:
    """The start of every staging area's name for ``version`` (and of no other version's)."""
    return f"{TMP_PREFIX}{version}{TMP_SEP}"


class Staging:
    """A private area where one dataset version is assembled before publishing."""

    def __init__(self, out: DatasetVersion):
        self.out = out
        self.remote = storage.is_s3(out.root)
        self.direct = s3io.direct(out.root)
        self._renamed: dict[str, str] = {}  # direct mode: staged object (relative) -> its final name
        self.generation = ""  # set by publish(): the generation the staged files went to
        self.published = False  # the manifest naming that generation is written
        self._publishing = False
        self._had_manifest = out.is_complete()  # if not, no reader holds any of its files
        _prune(out)  # what earlier runs left, past the grace period
        tmp_name = staging_prefix(out.version) + uuid.uuid4().hex[:8]
        stage_dir = storage.join(out.root, out.stage)
        if self.remote:
            local_prefix = f"c2m-{out.stage}-{staging_prefix(out.version)}"
            if staging_dir():  # a dedicated folder; the system temp dir is the OS's to clean
                clear_stale_areas(staging_dir(), local_prefix)
            self.path = os.path.join(staging_dir() or tempfile.gettempdir(), f"c2m-{out.stage}-{tmp_name}")
            self._leases = [Lease.of(self.path).take()]  # taken before the area exists: never unowned
            os.makedirs(self.path)
            self.uri = self.path
        if self.direct:
            clear_stale_areas(stage_dir, staging_prefix(out.version))
            self._leases.append(Lease.of(storage.join(stage_dir, tmp_name)).take())
            self.uri = storage.to_s3a(storage.join(stage_dir, tmp_name))
        if not self.remote:
            Path(stage_dir).mkdir(parents=True, exist_ok=True)
            clear_stale_areas(stage_dir, staging_prefix(out.version))
            self.path = str(Path(stage_dir, tmp_name))
            self._leases = [Lease.of(self.path).take()]
            os.makedirs(self.path)
            self.uri = self.path

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
        if self.published:
            return
        if self._publishing and not (self.remote and not self.direct):
            self._release()
            local_generation = self.generation and not self.remote  # the staging folder was renamed to it
            where = self.out.generation_uri(self.generation) if local_generation else self.uri
            print(f"[crawl2model] publishing {self.out.uri} failed; the previous version is untouched and "
                  f"the staged copy stays at {where} until the next run of this version", flush=True)
            return
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._release()
        if self.direct:
            try:
                storage.remove_tree(self.uri)
            except storage.StorageError as err:  # do not hide the error that got us here
                print(f"[crawl2model] could not delete the staging prefix {self.uri}: {err}; "
                      "the next run of this version deletes it", flush=True)

    def commit(self, write_manifest: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        """Publish the staged files as a new generation, commit it with ``write_manifest(generation)``
        (which writes the manifest naming it), then clean up; return the manifest."""
        self.publish()
        # A run of this version that committed since this one started has readers too: its
        # generation then keeps the grace period like any superseded one.
        self._had_manifest = self._had_manifest or self.out.is_complete()
        manifest = write_manifest(self.generation)
        self.published = True
        self._finish()
        return manifest

    def publish(self) -> str:
        """Put the staged files into a fresh generation of the version; return its URI.

        Nothing reads it until a manifest names it (:meth:`commit`); the version's current
        files are not touched."""
        self._publishing = True
        remove_junk(self.path)
        staged = self._staged() if self.direct else {}
        if os.path.exists(self.join(MANIFEST)) or MANIFEST in staged.values():
            raise RuntimeError("staging must not contain a manifest: it is written after publishing")
        generation = new_generation()
        dest = self.out.generation_uri(generation)
        if self.remote:
            storage.upload_tree(self.path, dest)  # the driver's files (all of them in stage mode)

            def copy(item: tuple[str, str]) -> None:  # s3a mode: server-side, once per object
                storage.copy(storage.join(self.uri, item[0]), storage.join(dest, item[1]))

            with ThreadPoolExecutor(max_workers=COPY_THREADS) as pool:
                list(pool.map(copy, sorted(staged.items())))
        else:
            os.makedirs(self.out.uri, exist_ok=True)
            os.rename(self.path, dest)
        self.generation = generation
        return dest

    def _finish(self) -> None:
        """After the commit: drop the staging area and the generations past their grace period.
        A failure here is reported, not raised: the version is already committed."""
        shutil.rmtree(self.path, ignore_errors=True)
        self._release()
        try:
            if self.direct:
                storage.remove_tree(self.uri)
        except storage.StorageError as err:
            print(f"[crawl2model] {self.out.uri} is published, but deleting the staging prefix {self.uri} "
                  f"failed: {err}; the next run of this version deletes it", flush=True)
        _prune(self.out, superseded_grace_s=None if self._had_manifest else 0)


    def _release(self) -> None:
        for lease in self._leases:
            lease.release()


def clear_stale_areas(parent: str, prefix: str) -> None:
    """Delete the staging areas under ``parent`` named ``prefix*`` that no live run holds
    (:mod:`spark_jobs.staging_lease`): what a crashed or killed earlier attempt left."""
    base = str(parent).rstrip("/") + "/"
    if storage.is_s3(parent):  # an area is a prefix, named by its objects' keys
        uris = storage.list_files(storage.join(parent, prefix), name_prefix=True)
        names = sorted({uri[len(base):].split("/", 1)[0] for uri in uris if uri.startswith(base)})
    else:  # an area is a folder (an empty one too), its lease a file beside it
        uris, names = [], sorted(p.name for p in Path(parent).glob(prefix + "*"))
    for area in stale_areas(names, parent):
        if storage.is_s3(parent):
            storage.remove_files([u for u in uris if u.startswith(base + area + "/")])
        else:
            shutil.rmtree(os.path.join(parent, area), ignore_errors=True)
        storage.remove_files([storage.join(parent, area + LEASE_SUFFIX)])
        print(f"[crawl2model] deleted the staging area {storage.join(parent, area)}: no live run holds it",
              flush=True)


def _prune(out: DatasetVersion, superseded_grace_s: float | None = None) -> None:
    try:
        gone = prune_generations(out, superseded_grace_s=superseded_grace_s)
    except storage.StorageError as err:
        print(f"[crawl2model] could not delete old generations of {out.uri}: {err}; "
              "a later run of this version deletes them", flush=True)
        return
    if gone:
        print(f"[crawl2model] {out.uri}: deleted generations no longer needed: "
              + ", ".join(g or "(files directly in the version folder)" for g in gone), flush=True)


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
    """A finished version's files for Spark to read (the generation its manifest names): that
    folder when local, its ``s3a://`` URI in ``s3a`` mode, else a local copy (downloaded;
    ``removed/`` is skipped)."""
    data = data_uri_of(dv.uri, dv.read_manifest())  # raises with a hint when the version is unfinished
    if not storage.is_s3(dv.root):
        return data
    if s3io.direct(dv.root):
        return storage.to_s3a(data)
    legacy = data.rstrip("/") == dv.uri.rstrip("/")  # files directly in v=V: skip the g= folders

    def keep(rel: str) -> bool:
        return not rel.startswith(f"{REMOVED}/") and not (
            legacy and (rel == MANIFEST or rel.startswith(GENERATION_PREFIX)))

    return download_copy(data, f"c2m-in-{dv.stage}-v{dv.version}-", keep=keep)[0]


def download_copy(uri: str, prefix: str, keep=lambda rel: True) -> tuple[str, list[str]]:
    """A local copy of the files under ``uri`` whose relative path passes ``keep``, for Spark to
    read: (the folder, the files in it, sorted). It lies under :func:`staging_dir` and is removed
    when the job's process ends (Spark reads lazily, so not before). Every key is checked
    (:func:`ops.lake.storage.safe_join`) before anything is written: one that would land outside
    the folder stops the copy."""
    sources = storage.list_files(uri)
    local = tempfile.mkdtemp(prefix=prefix, dir=staging_dir())
    atexit.register(shutil.rmtree, local, True)
    base = uri.rstrip("/") + "/"
    wanted = []
    for src in sources:
        rel = src[len(base):] if src.startswith(base) else src
        if keep(rel):
            wanted.append((src, storage.safe_join(local, rel)))
    for src, dest in wanted:
        storage.download_file(src, dest)
    return local, sorted(str(dest) for _, dest in wanted)


def staging_dir() -> str | None:
    """Where S3 versions are staged and downloaded: ``$C2M_STAGING_DIR`` or the system temp dir."""
    folder = os.environ.get("C2M_STAGING_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
    return folder or None
