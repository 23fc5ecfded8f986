"""A finished version survives a failed or killed rerun, in every publish mode.

Publishing (spark_jobs/staging.py) is exercised as the stages call it, on a local root and on
an s3:// root of a moto S3 server on 127.0.0.1 in both S3 I/O modes (``stage``: staged
through the driver and uploaded; ``s3a``: staged in the bucket and copied server-side).
Faults are injected into one storage call of each step (an exception in-process, or a
SIGKILL of a child process paused in that call); afterwards the previous finished version
must be whole (manifest present, every file it lists present with its content), and a
rerun must succeed and leave no staging area and no unreferenced generation behind.
The storage-level tests stage their files without Spark (publishing is the same code);
one test has Spark write through ``s3a://`` with the hadoop-aws test jars (``make s3a-jars``).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from ops.lake import storage
from ops.lake.datasets import GRACE_ENV, MANIFEST, DatasetVersion
from ops.lake.s3a_test_jars import cache_dir, cached_jars
from publish_child import DRIVER_FILE, STAGE, InjectedFault, files, inject, publish, spark_rows
from spark_jobs.runner import KEPT, publish_version

HERE = os.path.dirname(os.path.abspath(__file__))
BUCKET = "c2m-publish"
MODES = ("local", "stage", "s3a")
# Every storage call a publish makes, per mode; "delete" steps come after the manifest.
STEPS = {
    "local": ("rename", "stats", "manifest", "delete_tree"),
    "stage": ("upload", "stats", "manifest", "delete"),
    "s3a": ("copy", "upload_driver_file", "stats", "manifest", "delete"),
}
AFTER_COMMIT = ("delete", "delete_tree")
needs_jars = pytest.mark.skipif(cached_jars() is None,
                                reason=f"no hadoop-aws test jars in {cache_dir()}; run `make s3a-jars`")
KILL_STEPS = {"local": ("rename", "manifest"), "stage": ("upload", "manifest"),
              "s3a": ("copy", "upload_driver_file", "manifest")}


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on a free loopback port, with the AWS_* variables that reach it."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test-key",
           "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
                mp.delenv(name, raising=False)
            for name, value in env.items():
                mp.setenv(name, value)
            storage.ensure_bucket(BUCKET)
            yield env
    finally:
        server.stop()


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture
def root(mode, request, monkeypatch, tmp_path):
    """A fresh data root in ``mode``; $C2M_STAGING_DIR is a folder checked for leftovers."""
    monkeypatch.delenv(GRACE_ENV, raising=False)
    monkeypatch.setenv("C2M_STAGING_DIR", str(tmp_path / "staging"))
    if mode == "local":
        monkeypatch.delenv("C2M_SPARK_S3_IO", raising=False)
        return str(tmp_path / "data")
    request.getfixturevalue("s3")
    monkeypatch.setenv("C2M_SPARK_S3_IO", mode)
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}"


def assert_whole(root: str, version: str, seed: int) -> dict:
    """The version is finished and holds exactly what run ``seed`` published."""
    dv = DatasetVersion(root, STAGE, version)
    manifest = dv.read_manifest()
    assert manifest["config"] == {"seed": seed}
    expected = files(seed)
    listed = manifest["files"]
    assert listed == ["part-00000.parquet", "part-00001.parquet"]  # data: not removed/, not .json
    for name in expected:  # what the manifest lists, removed/ and the tokenizer too
        assert storage.read_bytes(dv.data_path(name)) == expected[name], name
    return manifest


def assert_clean(root: str, version: str, tmp_path) -> None:
    """Only the manifest and the generation it names are left: no staging, no other generation."""
    dv = DatasetVersion(root, STAGE, version)
    current = f"g={dv.read_manifest()['generation']}/"
    stage_dir = storage.join(root, STAGE)
    left = [u[len(stage_dir) + 1:] for u in storage.list_files(stage_dir)]
    unexpected = [rel for rel in left if rel != f"v={version}/{MANIFEST}"
                  and not rel.startswith(f"v={version}/{current}")]
    assert unexpected == [], unexpected
    staging_dir = tmp_path / "staging"
    assert not staging_dir.exists() or os.listdir(staging_dir) == []


# ---- exceptions at each step ----------------------------------------------------------------

@pytest.mark.parametrize("mode,step", [(m, s) for m, steps in STEPS.items() for s in steps])
def test_a_failed_rerun_leaves_the_finished_version_whole(mode, step, root, monkeypatch, tmp_path):
    publish(root, "1", seed=1)
    if step in AFTER_COMMIT:  # deleting happens only once nothing can need the old files
        monkeypatch.setenv(GRACE_ENV, "0")

    def fail():
        raise InjectedFault(f"injected at {step}")

    with monkeypatch.context() as mp:
        inject(step, fail, mp.setattr)
        if step in AFTER_COMMIT:  # the version is committed: cleaning up is retried by a later run
            publish(root, "1", seed=2)
        else:
            with pytest.raises(InjectedFault):
                publish(root, "1", seed=2)
    assert_whole(root, "1", seed=2 if step in AFTER_COMMIT else 1)
    monkeypatch.setenv(GRACE_ENV, "0")
    publish(root, "1", seed=3)
    assert_whole(root, "1", seed=3)
    assert_clean(root, "1", tmp_path)


# ---- SIGKILL at each step -------------------------------------------------------------------

def _child(root: str, version: str, seed: int, step: str, marker, spark: bool = False, **env):
    """publish_child.py in a process of its own; its output goes to ``{marker}.log``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]), **env}
    cmd = [sys.executable, os.path.join(HERE, "publish_child.py"), root, version, str(seed), step, str(marker)]
    cmd += ["spark"] if spark else []
    with open(f"{marker}.log", "w") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _output(marker) -> str:
    with open(f"{marker}.log") as fh:
        return fh.read()[-3000:]


def _kill_during(root: str, version: str, seed: int, step: str, tmp_path, spark: bool = False) -> None:
    marker = tmp_path / f"reached-{step}"
    child = _child(root, version, seed, step, marker, spark)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                child.wait(timeout=30)
                raise AssertionError(f"the child never reached {step}: {_output(marker)}")
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()


@pytest.mark.parametrize("mode,step", [(m, s) for m, steps in KILL_STEPS.items() for s in steps])
def test_a_rerun_killed_mid_publish_leaves_the_finished_version_whole(mode, step, root, monkeypatch,
                                                                      tmp_path):
    publish(root, "7", seed=1)
    _kill_during(root, "7", 2, step, tmp_path)
    assert_whole(root, "7", seed=1)
    stage_dir = storage.join(root, STAGE)
    current = DatasetVersion(root, STAGE, "7").read_manifest()["generation"]
    left = [u for u in storage.list_files(stage_dir)
            if "_tmp-v=7+" in u or "/v=7/g=" in u and current not in u]
    assert left or os.listdir(tmp_path / "staging"), "the killed run left nothing: it was killed too early"
    monkeypatch.setenv(GRACE_ENV, "0")
    publish(root, "7", seed=3)
    assert_whole(root, "7", seed=3)
    assert_clean(root, "7", tmp_path)


def _assert_spark_version(root: str, version: str, seed: int) -> None:
    """Whole and readable: every file the manifest lists holds the kept rows run ``seed`` wrote."""
    import io

    import pyarrow.parquet as pq

    dv = DatasetVersion(root, STAGE, version)
    manifest = dv.read_manifest()
    assert manifest["config"] == {"seed": seed} and manifest["files"]
    rows = []
    for name in manifest["files"]:
        rows += pq.read_table(io.BytesIO(storage.read_bytes(dv.data_path(name)))).to_pylist()
    kept = sorted((i, t) for i, t, reason in spark_rows(seed) if reason is None)
    assert sorted((r["id"], r["text"]) for r in rows) == kept
    assert manifest["rows_out"] == len(kept) and manifest["dropped"] == {"too_short": 12 - len(kept)}


@pytest.mark.spark
@needs_jars
def test_a_spark_s3a_rerun_killed_mid_publish_leaves_the_finished_version_whole(s3, tmp_path):
    """Spark writes through s3a:// (hadoop-aws test jars) into the staging prefix; the rerun is
    killed while copying it into the new generation, then while writing the manifest."""
    spark_env = {"C2M_SPARK_S3_IO": "s3a", "C2M_SPARK_S3A_COMPAT": "hadoop-aws-3.3",
                 "C2M_STAGING_DIR": str(tmp_path / "staging"), "SPARK_LOCAL_IP": "127.0.0.1",
                 "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    root = f"s3a://{BUCKET}/{uuid.uuid4().hex[:10]}"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in spark_env.items():
            mp.setenv(name, value)
        first = _child(root, "s", 1, "none", tmp_path / "first", spark=True)
        assert first.wait(timeout=300) == 0, _output(tmp_path / "first")
        for step in ("copy", "manifest"):
            _kill_during(root, "s", 2, step, tmp_path, spark=True)
            _assert_spark_version(root, "s", 1)
        rerun = _child(root, "s", 3, "none", tmp_path / "rerun", spark=True, **{GRACE_ENV: "0"})
        assert rerun.wait(timeout=300) == 0, _output(tmp_path / "rerun")
        _assert_spark_version(root, "s", 3)
        current = f"g={DatasetVersion(root, STAGE, 's').read_manifest()['generation']}/"
        left = [u.split(f"/{STAGE}/", 1)[1] for u in storage.list_files(storage.join(root, STAGE))]
        assert [r for r in left if r != f"v=s/{MANIFEST}" and not r.startswith(f"v=s/{current}")] == []


# ---- readers -------------------------------------------------------------------------------

def test_a_reader_that_started_before_a_rerun_finishes_its_read(root):
    publish(root, "r", seed=1)
    dv = DatasetVersion(root, STAGE, "r")
    data = dv.data_uri  # what a reader resolves once (read_version, the shard loader)
    listed = storage.list_files(data)
    first = storage.read_bytes(listed[0])
    publish(root, "r", seed=2)  # a rerun completes while the reader is mid-read
    old = files(1)
    got = {u[len(data) + 1:]: storage.read_bytes(u) for u in listed}
    assert got[listed[0][len(data) + 1:]] == first
    assert {k: v for k, v in got.items() if k in old} == old
    assert dv.data_uri != data
    assert_whole(root, "r", seed=2)  # and new readers see the new version


def test_a_superseded_generation_goes_once_the_grace_period_is_over(root, monkeypatch):
    from ops.lake.datasets import prune_generations

    publish(root, "p", seed=1)
    dv = DatasetVersion(root, STAGE, "p")
    first = dv.read_manifest()["generation"]
    publish(root, "p", seed=2)
    assert storage.exists(dv.generation_uri(first))  # kept for readers that resolved it
    assert prune_generations(dv, grace_s=3600) == []
    assert prune_generations(dv, grace_s=3600, now=time.time() + 3601) == [first]
    assert not storage.exists(dv.generation_uri(first))
    assert_whole(root, "p", seed=2)


def test_versions_written_before_generations_stay_readable_and_are_replaced(root, monkeypatch):
    """A manifest without a generation describes the files directly under v=V."""
    from spark_jobs.staging import local_input

    dv = DatasetVersion(root, STAGE, "old")
    for name, data in files(1).items():
        storage.write_bytes(dv.path(name), data)
    dv.write_manifest(rows_in=3, rows_out=2, dropped={"too_short": 1}, parents=[], config={"seed": 1})
    assert dv.read_manifest()["generation"] == "" and dv.data_uri == dv.uri
    assert_whole(root, "old", seed=1)
    if storage.is_s3(root) and os.environ.get("C2M_SPARK_S3_IO") == "stage":
        local = local_input(dv)
        assert sorted(os.listdir(local)) == sorted(["part-00000.parquet", "part-00001.parquet", DRIVER_FILE,
                                                    "stats.json"])
    publish(root, "old", seed=2)
    assert storage.read_bytes(dv.path("part-00000.parquet")) == files(1)["part-00000.parquet"]  # grace
    monkeypatch.setenv(GRACE_ENV, "0")
    publish(root, "old", seed=3)
    assert_whole(root, "old", seed=3)
    assert not storage.exists(dv.path("part-00000.parquet"))


def test_a_run_committed_meanwhile_keeps_its_generation_for_the_grace_period(s3, monkeypatch):
    """Two runs of one version at once (stage mode, staging in the system temp folder, where neither
    deletes the other's): the one started first, with no manifest yet, commits last. Its manifest
    wins, and the generation of the run that committed in between stays for the grace period."""
    from spark_jobs.staging import Staging

    monkeypatch.delenv(GRACE_ENV, raising=False)
    monkeypatch.delenv("C2M_STAGING_DIR", raising=False)
    monkeypatch.setenv("C2M_SPARK_S3_IO", "stage")
    root = f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}"
    dv = DatasetVersion(root, STAGE, "both")
    with Staging(dv) as late:  # starts first, while the version has no manifest
        publish(root, "both", seed=1)  # the other run starts and commits meanwhile
        first = dv.read_manifest()["generation"]
        reader = storage.list_files(dv.data_uri)  # a reader resolves that generation
        for name, data in files(2).items():
            os.makedirs(os.path.dirname(late.join(name)), exist_ok=True)
            with open(late.join(name), "wb") as fh:
                fh.write(data)
        publish_version(late, rows_in=3, counts={KEPT: 2, "too_short": 1}, parents=[], config={"seed": 2})
    assert_whole(root, "both", seed=2)  # the manifest written last wins
    assert dv.read_manifest()["generation"] != first
    got = {u.rsplit(f"g={first}/", 1)[1]: storage.read_bytes(u) for u in reader}  # the reader finishes
    assert {name: data for name, data in got.items() if name in files(1)} == files(1)


# ---- staging names -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ("local", "stage", "s3a"))
@pytest.mark.parametrize("first,second", [("a-b", "a"), ("a", "a-b")])
def test_staging_of_one_version_survives_the_start_of_another_whose_name_extends_it(
        first, second, root, mode):
    """In stage mode the staging areas are local folders under $C2M_STAGING_DIR."""
    from spark_jobs.staging import Staging

    one = Staging(DatasetVersion(root, STAGE, first))
    storage.write_text(one.spark_path("part-00000.parquet"), "first")
    two = Staging(DatasetVersion(root, STAGE, second))  # clears stale staging of `second` only
    storage.write_text(two.spark_path("part-00000.parquet"), "second")
    assert storage.read_text(one.spark_path("part-00000.parquet")) == "first"
    for staging in (one, two):
        staging.discard()


# ---- object keys ---------------------------------------------------------------------------

def test_a_traversal_key_in_the_bucket_is_refused_and_nothing_is_written_outside(s3, monkeypatch, tmp_path):
    from spark_jobs.staging import local_input

    monkeypatch.setenv("C2M_SPARK_S3_IO", "stage")
    staging_dir = tmp_path / "a" / "b" / "staging"
    monkeypatch.setenv("C2M_STAGING_DIR", str(staging_dir))
    root = f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}"
    dv = DatasetVersion(root, STAGE, "1")
    storage.write_text(dv.path("part-00000.parquet"), "data")
    dv.write_manifest(rows_in=1, rows_out=1, dropped={}, parents=[], config={})
    bucket, key = storage.split_s3(dv.path("x"))
    evil = key[:-1] + "../../../x"
    storage.s3_client().put_object(Bucket=bucket, Key=evil, Body=b"owned")
    assert f"s3://{bucket}/{evil}" in storage.list_files(dv.uri)  # the server kept the key as given
    with pytest.raises(storage.UnsafeKey, match=r"\.\./\.\./\.\./x"):
        local_input(dv)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], written


# ---- two runs of one version at once ----------------------------------------------------------

def _hand_over(staging, beat: float) -> None:
    """Make ``staging`` look like a run on another host whose lease was last renewed at ``beat``."""
    from spark_jobs import staging_lease

    for lease in staging._leases:
        lease._stop.set()
        staging_lease._HELD.discard(staging_lease._key(lease.uri))
        storage.write_text(lease.uri, json.dumps({"host": "another-host", "pid": 1, "start": "1", "beat": beat}))


def test_a_run_of_the_same_version_keeps_the_staging_of_a_run_still_writing(root):
    from spark_jobs.staging import Staging

    dv = DatasetVersion(root, STAGE, "7")
    one = Staging(dv)
    storage.write_text(one.spark_path("part-00000.parquet"), "first")
    two = Staging(dv)  # a retry while the first attempt is still alive
    assert storage.read_text(one.spark_path("part-00000.parquet")) == "first"
    _hand_over(one, beat=time.time())  # alive on another host: kept as well
    three = Staging(dv)
    assert storage.read_text(one.spark_path("part-00000.parquet")) == "first"
    for staging in (two, three):
        staging.discard()
    one.discard()


def test_the_staging_of_a_run_that_stopped_renewing_its_lease_is_deleted(root, monkeypatch):
    from spark_jobs.staging import Staging
    from spark_jobs.staging_lease import STALE_ENV

    monkeypatch.setenv(STALE_ENV, "60")
    dv = DatasetVersion(root, STAGE, "7")
    lost = Staging(dv)
    storage.write_text(lost.spark_path("part-00000.parquet"), "lost")
    _hand_over(lost, beat=time.time() - 61)  # killed on another host a minute ago
    Staging(dv).discard()
    assert not storage.exists(lost.spark_path("part-00000.parquet"))
    assert all(not storage.exists(lease.uri) for lease in lost._leases)
