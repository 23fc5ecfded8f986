"""Every data stage on a Spark standalone cluster (a master, two one-core workers in other JVMs
and their own mount namespaces), through the real entry point (``ops.launch.local.spark_submit``
with ``C2M_SPARK_MASTER=spark://…``), compared row for row with ``local[*]``.

Roots: a local folder on the volume the workers share, and ``s3://`` on moto's S3 server in
both S3 I/O modes (``stage`` through ``C2M_STAGING_DIR`` on the shared volume, ``s3a``
with Spark and the executors writing the bucket themselves). The local root's chain is
compared with the same jobs on ``local[2]`` in this process, and so are the S3 chains.

The last test is the reason the workers are isolated: a stage that writes an executor file to
a driver-local temp folder and reads it back on the driver passes on ``local[*]`` and must
fail on the cluster.
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import textwrap
import time

import pytest

from ops.lake import storage
from ops.lake.datasets import DatasetVersion
from ops.lake.s3a_test_jars import cached_jars
from ops.launch.local import spark_submit
from ops.launch.settings import get_settings
from ops.stack import spark_standalone
from s3_cluster_env import BUCKET
from warc_test_files import write_warc

# Each chain is six spark-submits with executors in other JVMs: minutes on a busy 2-core machine.
pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.timeout(3600), pytest.mark.distributed]
CRAWL, WARC = "c", "w"
CHAIN_STAGES = ("raw", "extracted", "clean", "corpus", "shards")
TOKENIZE = ["--vocab-size", "400", "--seq-len", "16", "--val-fraction", "0.3"]


def crawl_args(site: str) -> list[str]:
    # A timeout far above the slow page's 2 s: the set of fetched pages must not depend on load.
    return ["--seeds", site + "/", "--allow-private", "--delay", "0", "--max-retries", "0",
            "--timeout", "20", "--max-depth", "2"]


def stage_args(warc_glob: str) -> list[tuple[str, list[str], str]]:
    """(job, its flags, version) for the whole chain: a crawl, then ingest → … → tokenize."""
    return [("ingest", ["--warc-glob", warc_glob], WARC), ("extract", [], WARC),
            ("clean", ["--filter-profile", "docs"], WARC), ("dedup", ["--bands", "10", "--rows", "4"], WARC),
            ("tokenize", TOKENIZE, WARC)]


@pytest.fixture(scope="module")
def inputs(spark_cluster):
    """WARC files on the shared volume (the executors read them): pages 0-5, two exact copies."""
    folder = spark_cluster.shared / "warcs"
    folder.mkdir(exist_ok=True)
    write_warc(folder / "a.warc.gz", pages=6)
    write_warc(folder / "b.warc", pages=2, gzip=False, start=2)  # the same URLs and text as a's 2, 3
    return str(folder / "*.warc*")


def _no_tracking(mp: pytest.MonkeyPatch) -> None:
    """A closed loopback port: the stages log no data card (not what these tests are about)."""
    mp.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{spark_standalone.free_port()}")
    for name in ("C2M_S3", "C2M_SPARK_S3_IO", "C2M_SPARK_S3A_COMPAT", "C2M_STAGING_DIR"):
        mp.delenv(name, raising=False)


def run_on_cluster(cluster, root: str, site: str, warc_glob: str, mode: str | None = None) -> dict:
    """The chain through spark_submit on the cluster; returns each version's snapshot and timings."""
    seconds = {}
    with pytest.MonkeyPatch.context() as mp:
        _no_tracking(mp)
        mp.setenv("C2M_SPARK_MASTER", cluster.master_url)
        mp.setenv("C2M_DATA_ROOT", root)
        if mode:
            for name, value in cluster.s3_env.items():
                mp.setenv(name, value)
            mp.setenv("C2M_SPARK_S3_IO", mode)
            staging = cluster.shared / "staging"
            staging.mkdir(exist_ok=True)
            mp.setenv("C2M_STAGING_DIR", str(staging))
            if mode == "s3a":
                mp.setenv("C2M_SPARK_S3A_COMPAT", "hadoop-aws-3.3")
        jobs = [("crawl", crawl_args(site), CRAWL)] + stage_args(warc_glob)
        for job, flags, version in jobs:
            t0 = time.monotonic()
            spark_submit(job, ["--root", root, "--version", version, *flags], get_settings())
            seconds[job] = round(time.monotonic() - t0, 1)
        snaps = {"crawl": snapshot(root, "raw", CRAWL)}
        snaps.update({stage: snapshot(root, stage, WARC) for stage in CHAIN_STAGES})
    print(f"cluster chain on {root} ({mode or 'local'}): {seconds}")
    return snaps


def run_local(spark, root: str, site: str, warc_glob: str) -> dict:
    """The same jobs' main() on the test session's local[2] SparkSession."""
    from spark_jobs.jobs import clean, crawl, dedup, extract, ingest, tokenize

    mains = {"ingest": ingest, "extract": extract, "clean": clean, "dedup": dedup, "tokenize": tokenize}
    with pytest.MonkeyPatch.context() as mp:
        _no_tracking(mp)
        crawl.main(["--root", root, "--version", CRAWL, *crawl_args(site)], spark=spark)
        for job, flags, version in stage_args(warc_glob):
            mains[job].main(["--root", root, "--version", version, *flags], spark=spark)
        snaps = {"crawl": snapshot(root, "raw", CRAWL)}
        snaps.update({stage: snapshot(root, stage, WARC) for stage in CHAIN_STAGES})
    return snaps


def snapshot(root: str, stage: str, version: str) -> dict:
    """What must not depend on where the tasks ran: the manifest's counts, the kept rows (id,
    url, a hash of the text), the rows kept under removed/<reason>/, and the shard files' bytes."""
    dv = DatasetVersion(root, stage, version)
    manifest = dv.read_manifest()
    assert manifest is not None, f"{dv.uri} has no manifest"
    snap = {"rows_in": manifest["rows_in"], "rows_out": manifest["rows_out"],
            "dropped": manifest["dropped"], "kept": _rows(dv.data_uri), "removed": {}}
    if stage in ("extracted", "clean", "corpus"):  # parquet rows (raw keeps WARC files, shards binaries)
        assert len(snap["kept"]) == manifest["rows_out"], f"{dv.uri}: kept rows not found"
    for reason in manifest["dropped"]:
        folder = dv.data_path("removed", reason)
        snap["removed"][reason] = len(_rows(folder, top_only=False))
    if stage == "shards":
        snap["tokenizer"] = manifest["tokenizer_sha256"]
        snap["splits"] = manifest["splits"]
        names = [name for split in manifest["splits"].values() for name in split["files"]]
        snap["shard_sha256"] = {n: hashlib.sha256(storage.read_bytes(dv.data_path(n))).hexdigest()
                                for n in names}
    return snap


def _rows(uri: str, top_only: bool = True) -> list[tuple]:
    import pyarrow.parquet as pq

    rows = []
    for obj in storage.list_files(uri, suffix=".parquet"):
        if top_only and "/" in obj[len(uri):].strip("/"):
            continue
        table = pq.read_table(io.BytesIO(storage.read_bytes(obj)))
        cols = [c for c in ("id", "url", "text") if c in table.column_names]
        for rec in table.select(cols).to_pylist():
            if "text" in rec:
                rec["text"] = hashlib.sha1((rec["text"] or "").encode()).hexdigest()
            rows.append(tuple(rec[c] for c in cols))
    return sorted(rows)


@pytest.fixture(scope="module")
def local_chain(spark, site, inputs, tmp_path_factory):
    return run_local(spark, str(tmp_path_factory.mktemp("local-root")), site, inputs)


@pytest.fixture(scope="module")
def cluster_chain(spark_cluster, site, inputs):
    root = spark_cluster.shared / "data"
    root.mkdir(exist_ok=True)
    return run_on_cluster(spark_cluster, str(root), site, inputs)


def test_the_cluster_has_two_one_core_workers_on_loopback(spark_cluster):
    workers = spark_standalone.alive_workers(spark_cluster.ui_url)
    assert len(workers) == 2 and all(w["cores"] == 1 and w["host"] == "127.0.0.1" for w in workers)
    assert spark_cluster.master_url.startswith("spark://127.0.0.1:")


def test_every_stage_on_the_cluster_matches_local(cluster_chain, local_chain, spark_cluster):
    for stage in ("crawl",) + CHAIN_STAGES:
        assert cluster_chain[stage] == local_chain[stage], stage
    # the chain did something worth comparing: pages kept, copies dropped, shards written
    assert cluster_chain["crawl"]["rows_out"] == 5 and cluster_chain["corpus"]["dropped"]
    assert cluster_chain["shards"]["shard_sha256"]
    apps = spark_standalone.master_state(spark_cluster.ui_url)["completedapps"]
    names = {a["name"] for a in apps}
    jobs = ("crawl", "ingest", "extract", "clean", "dedup", "tokenize")
    assert {f"crawl2model-{job}" for job in jobs} <= names


@pytest.mark.parametrize("mode", ["stage", "s3a"])
def test_every_stage_on_an_s3_root_matches(mode, local_chain, spark_cluster, site, inputs):
    if mode == "s3a" and cached_jars() is None:
        pytest.skip("no hadoop-aws test jars for s3a mode; run `make s3a-jars`")
    root = f"s3://{BUCKET}/{mode}" if mode == "stage" else f"s3a://{BUCKET}/{mode}"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in spark_cluster.s3_env.items():
            mp.setenv(name, value)
        got = run_on_cluster(spark_cluster, root, site, inputs, mode)
    for stage in ("crawl",) + CHAIN_STAGES:
        assert got[stage] == local_chain[stage], (mode, stage)


# ------------------------------------------------------------------ what local[*] hides

WRONG_STAGE = textwrap.dedent('''
    """A wrong stage: executors write their part to a temp folder made on the driver."""
    import os, sys, tempfile
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("wrong-driver-local-write").getOrCreate()
    out = tempfile.mkdtemp(prefix="c2m-driver-local-")  # on the driver's disk only

    def write_part(index, rows):
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, f"part-{index}.txt"), "w") as fh:
            fh.write("\\n".join(str(r) for r in rows))
        yield index

    written = spark.sparkContext.parallelize(range(40), 4).mapPartitionsWithIndex(write_part).collect()
    found = sorted(os.listdir(out))
    print(f"executors wrote {len(written)} parts; the driver sees {found}", flush=True)
    spark.stop()
    sys.exit(0 if len(found) == len(written) else 3)
''')


def _submit(script: str, master: str) -> subprocess.CompletedProcess:
    s = get_settings()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=str(s.jobs_python),
               PYSPARK_DRIVER_PYTHON=str(s.jobs_python))
    cmd = [str(s.jobs_venv / "bin" / "spark-submit"), "--master", master, "--conf", "spark.ui.enabled=false",
           "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1", script]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_a_driver_local_write_passes_on_local_but_fails_on_the_cluster(spark_cluster, tmp_path):
    script = tmp_path / "wrong_stage.py"
    script.write_text(WRONG_STAGE)
    local = _submit(str(script), "local[2]")
    assert local.returncode == 0, local.stdout[-2000:] + local.stderr[-3000:]
    assert "the driver sees ['part-0.txt', 'part-1.txt', 'part-2.txt', 'part-3.txt']" in local.stdout
    on_cluster = _submit(str(script), spark_cluster.master_url)
    assert on_cluster.returncode == 3, on_cluster.stdout[-2000:] + on_cluster.stderr[-3000:]
    assert "executors wrote 4 parts; the driver sees []" in on_cluster.stdout
