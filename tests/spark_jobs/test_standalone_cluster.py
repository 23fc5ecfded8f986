"""Every data stage on a Spark standalone cluster (a master, two one-core workers in other JVMs
and their own mount namespaces), compared row for row with ``local[*]``.

One Spark application (tests/spark_jobs/cluster_chain.py, submitted with the launcher's own
``spark-submit`` command and ``--master spark://…``) runs the whole chain three times: on a
local root on the volume the workers share, and on ``s3://`` roots on moto's S3 server in
both S3 I/O modes (``stage`` through ``C2M_STAGING_DIR`` on the shared volume, ``s3a`` with
Spark and the executors writing the bucket themselves). Each chain is compared with the same
jobs on the test session's ``local[2]`` with a local root. One application, not eighteen:
each start costs a driver JVM and two executor JVMs, tens of seconds on 2 busy cores.

The last test is the reason the workers are isolated: a stage that writes an executor file to
a driver-local temp folder and reads it back on the driver (cluster_chain.driver_local_write,
run by the same application) passes on ``local[*]`` and must fail on the cluster.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from cluster_chain import CRAWL, WARC, driver_local_write, jobs
from ops.stack import spark_standalone
from ops.lake import storage
from ops.lake.datasets import DatasetVersion
from ops.launch.local import entry_file, job_env, run, spark_submit_command
from ops.lake.s3a_test_jars import cached_jars
from ops.launch.settings import get_settings
from s3_cluster_env import BUCKET
from warc_test_files import write_warc

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.timeout(1200), pytest.mark.distributed]
CHAIN_STAGES = ("raw", "extracted", "clean", "corpus", "shards")
CHAIN_SCRIPT = Path(__file__).with_name("cluster_chain.py")


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


def chain_roots(shared: Path) -> dict[str, str]:
    """mode -> root of each chain the cluster runs (s3a only where the hadoop-aws test jars are)."""
    roots = {"local": str(shared / "data"), "stage": f"s3://{BUCKET}/stage"}
    if cached_jars() is not None:
        roots["s3a"] = f"s3a://{BUCKET}/s3a"
    return roots


def run_on_cluster(cluster, site: str, warc_glob: str, roots: dict[str, str], out: Path) -> dict:
    """One application on the cluster runs every chain (cluster_chain.py); returns its result."""
    with pytest.MonkeyPatch.context() as mp:
        _no_tracking(mp)
        for name, value in cluster.s3_env.items():
            mp.setenv(name, value)
        mp.setenv("C2M_SPARK_MASTER", cluster.master_url)
        staging = cluster.shared / "staging"  # stage mode's local copies: on the shared volume
        staging.mkdir(exist_ok=True)
        mp.setenv("C2M_STAGING_DIR", str(staging))
        if "s3a" in roots:
            mp.setenv("C2M_SPARK_S3A_COMPAT", "hadoop-aws-3.3")  # --jars for the driver and executors
        s = get_settings()
        cmd = spark_submit_command("crawl", [], s)  # the launcher's command, with this driver instead
        cmd[cmd.index("--name") + 1] = "crawl2model-cluster-chain"
        # It ends with the stages' entry file and the stage; this application's file replaces both.
        assert cmd[-2:] == [str(entry_file(s.repo_root)), "crawl"], cmd[-2:]
        cmd[-2:] = [str(CHAIN_SCRIPT), str(out), site, warc_glob, *(f"{r}={m}" for m, r in roots.items())]
        run(cmd, env=job_env(s), what="the chains on the cluster")
    result = json.loads(out.read_text())
    print(f"cluster chains: {json.dumps(result)}")
    return result


def run_local(spark, root: str, site: str, warc_glob: str) -> dict:
    """The same jobs' main() on the test session's local[2] SparkSession."""
    from cluster_chain import run_chain

    with pytest.MonkeyPatch.context() as mp:
        _no_tracking(mp)
        run_chain(spark, root, site, warc_glob)
    return snapshots(root)


def snapshots(root: str) -> dict:
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
def cluster_chains(spark_cluster, site, inputs, tmp_path_factory):
    """mode -> (the cluster application's record of that chain, its snapshots or None)."""
    roots = chain_roots(spark_cluster.shared)
    result = run_on_cluster(spark_cluster, site, inputs, roots, tmp_path_factory.mktemp("chain") / "out.json")
    chains = {}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in spark_cluster.s3_env.items():
            mp.setenv(name, value)
        for mode, root in roots.items():
            record = result["runs"][mode]
            chains[mode] = (record, None if "error" in record else snapshots(root))
    return result, chains


def test_the_cluster_has_two_one_core_workers_on_loopback(spark_cluster):
    workers = spark_standalone.alive_workers(spark_cluster.ui_url)
    assert len(workers) == 2 and all(w["cores"] == 1 and w["host"] == "127.0.0.1" for w in workers)
    assert spark_cluster.master_url.startswith("spark://127.0.0.1:")


@pytest.mark.parametrize("mode", ["local", "stage", "s3a"])
def test_every_stage_on_the_cluster_matches_local(mode, cluster_chains, local_chain, spark_cluster):
    result, chains = cluster_chains
    if mode not in chains:
        pytest.skip("no hadoop-aws test jars for s3a mode; run `make s3a-jars`")
    record, got = chains[mode]
    assert "error" not in record, f"the {mode} chain failed on the cluster:\n{record['error']}"
    assert [job for job, _ in jobs("r", "s", "g")] == list(record["seconds"])  # every stage ran
    for stage in ("crawl",) + CHAIN_STAGES:
        assert got[stage] == local_chain[stage], (mode, stage)
    # the chain did something worth comparing: pages kept, copies dropped, shards written
    assert got["crawl"]["rows_out"] == 5 and got["corpus"]["dropped"]
    assert got["shards"]["shard_sha256"]
    # in executors of the cluster: two registered, and the application is the master's
    assert result["executors"] == 2
    apps = spark_standalone.master_state(spark_cluster.ui_url)["completedapps"]
    assert "crawl2model-cluster-chain" in {a["name"] for a in apps}


# ------------------------------------------------------------------ what local[*] hides

def test_a_driver_local_write_passes_on_local_but_fails_on_the_cluster(spark, cluster_chains):
    local = driver_local_write(spark)
    assert local == {"written": 4, "found": ["part-0.txt", "part-1.txt", "part-2.txt", "part-3.txt"]}
    result, _ = cluster_chains
    assert result["driver_local_write"] == {"written": 4, "found": []}  # the parts are on the workers
