"""The real stages on s3:// roots with Spark reading and writing ``s3a://`` itself (``s3a`` mode),
against a moto S3 server, compared with the same stages staged through the driver (``stage`` mode).

hadoop-aws here is 3.3.1 with the SDK v1 bundle (``make s3a-jars``; Maven is unreachable) on
Spark's Hadoop 3.5 client, through ``C2M_SPARK_S3A_COMPAT``. The production image's hadoop-aws
3.5 + SDK v2 is not what runs here; the stage code paths are the same.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys

import pytest

from ops.lake import storage
from ops.lake.s3a_test_jars import cache_dir, cached_jars
from spark_test_data import english, html_page

needs_jars = pytest.mark.skipif(cached_jars() is None,
                                reason=f"no hadoop-aws test jars in {cache_dir()}; run `make s3a-jars`")
HERE = os.path.dirname(os.path.abspath(__file__))
BUCKET = "c2m-s3a"
STAGES = ("raw", "extracted", "clean", "corpus", "shards")
UUID = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION",
                     "C2M_SPARK_S3_IO", "C2M_SPARK_S3A_COMPAT"):
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        storage.ensure_bucket(BUCKET)
        yield env
    server.stop()


def write_warc(path, pages: list[tuple[str, int]], gzip: bool = True) -> None:
    """A WARC of response records: (url, text seed); equal seeds give equal text."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=gzip)
        for url, seed in pages:
            body = html_page(f"Page {seed}", english(700 + seed, sentences=14))
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                                  ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                          length=len(body), http_headers=headers))


@pytest.fixture(scope="module")
def runs(s3, tmp_path_factory):
    """Both modes' chains, run once by s3a_chain.py; returns (its JSON, the two roots)."""
    tmp = tmp_path_factory.mktemp("s3a")
    src = tmp / "warcs"
    src.mkdir()
    write_warc(src / "a.warc.gz", [(f"http://a.test/{i}", i) for i in range(5)])
    write_warc(src / "b.warc", [(f"http://b.test/{i}", i) for i in (1, 2)] + [("http://b.test/9", 9)],
               gzip=False)  # two exact copies of a.warc.gz's pages
    with open(src / "a.warc.gz", "ab") as fh:
        fh.write(b"\x1f\x8b\x08\x00 this gzip member is cut short")  # one damaged stretch
    staging = tmp / "staging"
    staging.mkdir()
    roots = {"stage": f"s3://{BUCKET}/stage", "s3a": f"s3a://{BUCKET}/direct"}  # s3a://: as on a cluster
    out = tmp / "result.json"
    env = {**os.environ, **s3, "C2M_STAGING_DIR": str(staging), "C2M_SPARK_S3A_COMPAT": "hadoop-aws-3.3",
           "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("MLFLOW_TRACKING_URI", None)  # no data card: not what this test is about
    cmd = [sys.executable, os.path.join(HERE, "s3a_chain.py"), str(out), str(src / "*.warc*"),
           roots["stage"], roots["s3a"]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = json.loads(out.read_text())
    print({mode: r["seconds"] for mode, r in result.items()})
    return result, roots, staging


def _data(root: str, stage: str, version: str) -> str:
    """Where a finished version's files are: the generation its manifest names."""
    from ops.lake.datasets import DatasetVersion

    return DatasetVersion(root, stage, version).data_uri


def _versions(m: dict) -> dict[str, tuple[str, str]]:
    return {key: (m[key]["stage"], m[key]["version"]) for key in m}


def _ids(uri: str) -> list[str]:
    """Every row id in the parquet objects directly under ``uri`` (read with pyarrow, no Spark)."""
    import pyarrow.parquet as pq

    ids = []
    for obj in storage.list_files(uri, suffix=".parquet"):
        if "/" not in obj[len(uri):].strip("/"):
            ids += pq.read_table(io.BytesIO(storage.read_bytes(obj))).column("id").to_pylist()
    return sorted(ids)


@pytest.mark.spark
@needs_jars
def test_every_version_is_published_with_its_manifest_and_no_staging_prefix(runs):
    result, roots, _ = runs
    for mode, root in roots.items():
        manifests = result[mode]["manifests"]
        for key, (stage, version) in _versions(manifests).items():
            stored = json.loads(storage.read_text(f"{root}/{stage}/v={version}/_manifest.json"))
            uri = _data(root, stage, version)  # the generation the manifest names
            assert uri.endswith(f"/v={version}/g={stored['generation']}") and stored["generation"]
            names = {u[len(uri) + 1:] for u in storage.list_files(uri)}
            assert "stats.json" in names, (mode, key)
            assert stored["rows_out"] == manifests[key]["rows_out"]
            data = {n for n in names if not n.startswith("removed/") and not n.endswith(".json")}
            assert data == set(manifests[key]["files"]), (mode, key)
            m = manifests[key]
            assert m["rows_in"] == m["rows_out"] + sum(m["dropped"].values()), (mode, key)
        everything = storage.list_files(root)
        assert everything and not [u for u in everything if "_tmp-" in u or "_SUCCESS" in u
                                   or u.endswith(".crc") or "/work/" in u or "tagged_rows" in u]


@pytest.mark.spark
@needs_jars
def test_s3a_mode_gives_the_same_outputs_as_staging_through_the_driver(runs):
    result, roots, _ = runs
    stage, direct = result["stage"]["manifests"], result["s3a"]["manifests"]
    assert direct["raw"]["rows_out"] == 8 and direct["raw"]["dropped"] == {"corrupt_record": 1}
    assert direct["corpus"]["dropped"].get("exact_duplicate") == 2
    assert direct["corpus2"]["rows_out"] == 0 and sum(direct["corpus2"]["dropped"].values()) > 0
    for key, (stage_name, version) in _versions(direct).items():
        for field in ("rows_in", "rows_out", "dropped", "schema"):
            assert direct[key][field] == stage[key][field], (key, field)
        assert sorted(UUID.sub("", f) for f in direct[key]["files"]) == \
            sorted(UUID.sub("", f) for f in stage[key]["files"]), key
        if stage_name == "raw":
            continue  # raw holds WARC files and the fetch log, compared below
        a, b = (_data(roots[mode], stage_name, version) for mode in ("s3a", "stage"))
        assert _ids(a) == _ids(b), key
        for reason in direct[key]["dropped"]:
            assert _ids(f"{a}/removed/{reason}") == _ids(f"{b}/removed/{reason}"), (key, reason)
    for name in direct["raw"]["warc_files"]:  # executor-written files, uploaded by the executors
        # (the same records; gzip headers of re-compressed plain records carry the time)
        assert gzip.decompress(storage.read_bytes(f"{_data(roots['s3a'], 'raw', 's1')}/{name}")) == \
            gzip.decompress(storage.read_bytes(f"{_data(roots['stage'], 'raw', 's1')}/{name}"))
    assert direct["shards"]["splits"] == stage["shards"]["splits"]
    assert direct["shards"]["tokenizer_sha256"] == stage["shards"]["tokenizer_sha256"]


@pytest.mark.spark
@needs_jars
def test_shard_objects_match_their_manifest_checksums(runs):
    result, roots, _ = runs
    shards = result["s3a"]["manifests"]["shards"]
    uri = _data(roots["s3a"], "shards", shards["version"])
    total = 0
    for split in ("train", "val"):
        for name, digest in shards["splits"][split]["sha256"].items():
            data = storage.read_bytes(f"{uri}/{name}")
            assert hashlib.sha256(data).hexdigest() == digest
            total += len(data) // 2  # uint16 tokens
    assert total == sum(shards["splits"][s]["tokens"] for s in ("train", "val")) > 0


@pytest.mark.spark
@needs_jars
def test_s3a_mode_writes_no_spark_output_to_the_local_staging_dir(runs):
    result, _, staging = runs
    data = re.compile(r"(part-.*\.parquet|\.bin|\.warc\.gz)$")
    staged = [f for f in result["stage"]["local_files"] if data.search(f)]
    assert staged, "the watcher saw no staged data in stage mode: it cannot be trusted"
    assert [f for f in result["s3a"]["local_files"] if data.search(f)] == []
    assert os.listdir(staging) == []  # and nothing is left behind


# ---- the s3a flavour of Staging, without Spark ---------------------------------------------

def test_s3a_staging_moves_by_copying_once_at_publish_and_cleans_up(s3, monkeypatch, tmp_path):
    from ops.lake.datasets import DatasetVersion
    from spark_jobs.runner import KEPT, publish_version
    from spark_jobs.staging import Staging

    monkeypatch.setenv("C2M_SPARK_S3_IO", "s3a")
    monkeypatch.setenv("C2M_STAGING_DIR", str(tmp_path))
    out = DatasetVersion(f"s3://{BUCKET}/unit", "clean", "u1")
    storage.write_text(out.path("stale.parquet"), "old run")
    storage.write_text(f"s3://{BUCKET}/unit/clean/_tmp-v=u1+dead/part-0.parquet", "crashed attempt")
    with Staging(out) as staging:
        assert staging.direct and staging.uri.startswith(f"s3a://{BUCKET}/unit/clean/_tmp-v=u1+")
        assert not storage.exists(f"s3://{BUCKET}/unit/clean/_tmp-v=u1+dead")
        rows = staging.spark_path("tagged_rows")
        storage.write_text(f"{rows}/_drop_reason=_kept/part-0.parquet", "kept")
        storage.write_text(f"{rows}/_drop_reason=too_short/part-0.parquet", "gone")
        storage.write_text(f"{rows}/_SUCCESS", "")
        staging.move("tagged_rows/_drop_reason=_kept/part-0.parquet", "part-0.parquet")
        staging.move("tagged_rows/_drop_reason=too_short", "removed/too_short")
        staging.remove("tagged_rows")
        found = staging.files("part-*.parquet")
        assert list(found) == ["part-0.parquet"] and "/tagged_rows/" in found["part-0.parquet"]
        assert storage.read_text(found["part-0.parquet"]) == "kept"  # still where Spark wrote it
        with open(staging.join("tokenizer.json"), "w") as fh:  # a driver-written file
            fh.write("{}")
        manifest = publish_version(staging, rows_in=2, counts={KEPT: 1, "too_short": 1}, parents=[],
                                   config={})
    names = sorted(u[len(out.uri) + 1:] for u in storage.list_files(out.uri))
    gen = f"g={manifest['generation']}"
    assert names == ["_manifest.json", f"{gen}/part-0.parquet", f"{gen}/removed/too_short/part-0.parquet",
                     f"{gen}/stats.json", f"{gen}/tokenizer.json"]  # stale.parquet: no manifest named it
    assert storage.read_text(out.data_path("removed/too_short/part-0.parquet")) == "gone"
    assert not [u for u in storage.list_files(f"s3://{BUCKET}/unit/clean") if "_tmp-" in u]
    assert os.listdir(tmp_path) == []


def test_s3a_staging_is_deleted_when_the_stage_fails(s3, monkeypatch):
    from ops.lake.datasets import DatasetVersion
    from spark_jobs.staging import Staging

    monkeypatch.setenv("C2M_SPARK_S3_IO", "s3a")
    out = DatasetVersion(f"s3://{BUCKET}/unit", "corpus", "u2")
    with pytest.raises(RuntimeError, match="boom"):
        with Staging(out) as staging:
            storage.write_text(staging.spark_path("part-0.parquet"), "half")
            raise RuntimeError("boom")
    assert storage.list_files(f"s3://{BUCKET}/unit/corpus") == []


def test_the_mode_comes_from_the_env_and_bad_values_say_what_to_use(monkeypatch):
    from spark_jobs import s3io

    monkeypatch.delenv("C2M_SPARK_S3_IO", raising=False)
    assert s3io.mode() == "stage" and not s3io.direct("s3://b/data")
    monkeypatch.setenv("C2M_SPARK_S3_IO", "s3a")
    assert s3io.direct("s3://b/data") and not s3io.direct("/local/data")
    monkeypatch.setenv("C2M_SPARK_S3_IO", "hdfs")
    with pytest.raises(ValueError, match="use 'stage'"):
        s3io.mode()


def test_the_cluster_launcher_selects_s3a_mode_with_s3a_roots():
    from pathlib import Path

    from ops.launch.kubernetes.cluster import ClusterConfig
    from ops.launch.kubernetes.spark import spark_conf
    from ops.launch.settings import Settings

    s = Settings(jobs_venv=Path("/venv"))
    assert spark_conf(ClusterConfig(), s)["spark.crawl2model.s3.io"] == "s3a"
    assert "spark.crawl2model.s3.io" not in spark_conf(ClusterConfig(s3a_roots=False), s)
