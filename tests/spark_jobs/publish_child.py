"""Publishing a small dataset version the way a stage does, with a fault at a chosen step.

Imported by test_publish_faults.py (in-process faults) and run as a child process that is
killed with SIGKILL at the chosen step:

    python publish_child.py ROOT VERSION SEED STEP MARKER [spark]

The child publishes ``files(SEED)`` to ``ROOT/clean/v=VERSION``; when it reaches STEP (``none``:
no fault) it writes MARKER and waits to be killed. The mode (local, ``stage``, ``s3a``) comes
from ROOT and ``C2M_SPARK_S3_IO``, as for a real stage; no Spark is needed to publish. With
``spark`` the version is written by Spark instead (:func:`publish_with_spark`: ``s3a://`` in
``s3a`` mode), as the stages write theirs.
"""
from __future__ import annotations

import os
import shutil
import sys
import time

from ops.lake import storage
from ops.lake.datasets import MANIFEST, STATS, DatasetVersion
from spark_jobs import staging as staging_mod
from spark_jobs.runner import KEPT, publish_version
from spark_jobs.staging import Staging

STAGE = "clean"
DRIVER_FILE = "tokenizer.json"  # written by the driver: uploaded at publish in every S3 mode


class InjectedFault(storage.StorageError):
    """The failure a test injects into one step of publishing (as the storage call would raise it)."""


def files(seed: int) -> dict[str, bytes]:
    """What run ``seed`` publishes: two data files, a dropped row, a driver-written file."""
    return {name: f"{name} written by run {seed}\n".encode() * 64 for name in
            ("part-00000.parquet", "part-00001.parquet", "removed/too_short/part-00000.parquet", DRIVER_FILE)}


def publish(root: str, version: str, seed: int) -> dict:
    """Stage ``files(seed)`` (Spark's output in the staging area, the driver's file locally) and
    publish them with the manifest, as every stage does through ``publish_version``."""
    out = DatasetVersion(root, STAGE, version)
    with Staging(out) as staging:
        for name, data in files(seed).items():
            if staging.direct and name != DRIVER_FILE:  # s3a mode: what Spark writes to s3a://
                storage.write_bytes(staging.spark_path(name), data)
            else:
                os.makedirs(os.path.dirname(staging.join(name)), exist_ok=True)
                with open(staging.join(name), "wb") as fh:
                    fh.write(data)
        return publish_version(staging, rows_in=3, counts={KEPT: 2, "too_short": 1}, parents=[],
                               config={"seed": seed})


def spark_rows(seed: int) -> list[tuple[str, str, str | None]]:
    """What run ``seed`` writes with Spark: (id, text, drop reason or None)."""
    return [(f"doc-{i}", f"text {i} of run {seed}", "too_short" if i % 3 == 0 else None) for i in range(12)]


def publish_with_spark(root: str, version: str, seed: int) -> dict:
    """Write and publish a version with Spark through the runner, as every stage does."""
    from spark_jobs.runner import DROP, get_spark, write_version

    spark = get_spark("publish-faults", master="local[1]")
    rows = spark_rows(seed)
    frame = spark.createDataFrame(rows, f"id string, text string, {DROP} string")
    return write_version(spark, frame, DatasetVersion(root, STAGE, version), rows_in=len(rows), parents=[],
                         config={"seed": seed})


def _is_manifest(uri, *_a, **_k) -> bool:
    return str(uri).endswith("/" + MANIFEST)


def _is_stats(uri, *_a, **_k) -> bool:
    return str(uri).endswith("/" + STATS)


def _is_version_tree(path, *_a, **_k) -> bool:
    return "/v=" in str(path)


# step -> (module, function name, which calls: a predicate on the arguments, and the n-th match)
STEPS = {
    "rename": (staging_mod.os, "rename", lambda src, *_a, **_k: "_tmp-v=" in str(src), 1),
    "upload": (storage, "upload_file", lambda *_a, **_k: True, 2),
    "upload_driver_file": (storage, "upload_file", lambda src, *_a, **_k: str(src).endswith(DRIVER_FILE), 1),
    "copy": (storage, "copy", lambda *_a, **_k: True, 2),
    "stats": (storage, "write_bytes", _is_stats, 1),
    "manifest": (storage, "write_bytes", _is_manifest, 1),
    "delete": (storage, "remove_files", lambda uris, *_a, **_k: bool(list(uris)), 1),
    "delete_tree": (shutil, "rmtree", _is_version_tree, 1),
}


def inject(step: str, action, setattr_=setattr) -> None:
    """Make the chosen call of ``step`` run ``action()`` instead of the real storage call."""
    module, name, matches, nth = STEPS[step]
    real = getattr(module, name)
    seen = [0]

    def wrapper(*args, **kwargs):
        if matches(*args, **kwargs):
            seen[0] += 1
            if seen[0] == nth:
                action()
        return real(*args, **kwargs)

    setattr_(module, name, wrapper)


def main(argv: list[str]) -> None:
    root, version, seed, step, marker = argv[:5]

    def pause():
        with open(marker, "w") as fh:
            fh.write(step)
        time.sleep(600)  # the test kills us here

    if step != "none":
        inject(step, pause)
    (publish_with_spark if argv[5:] == ["spark"] else publish)(root, version, int(seed))


if __name__ == "__main__":
    main(sys.argv[1:])
