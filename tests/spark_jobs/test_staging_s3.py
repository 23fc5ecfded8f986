"""Publishing to and reading from an s3:// root (moto), without Spark."""
from __future__ import annotations

import os

import pytest

from ops.lake import storage
from ops.lake.datasets import DatasetVersion
from spark_jobs.runner import KEPT, publish_version
from spark_jobs.staging import Staging, local_input

moto = pytest.importorskip("moto")


@pytest.fixture
def bucket(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        import boto3

        boto3.client("s3").create_bucket(Bucket="c2m")
        yield "s3://c2m/data"


def test_publish_uploads_then_manifest_then_local_input(bucket):
    out = DatasetVersion(bucket, "clean", "s1")
    storage.write_text(out.path("stale.parquet"), "old run")  # a previous attempt's leftovers
    with Staging(out) as staging:
        with open(staging.join("part-00000.parquet"), "w") as fh:
            fh.write("data")
        os.makedirs(staging.join("removed", "too_short"))
        with open(staging.join("removed", "too_short", "part-00000.parquet"), "w") as fh:
            fh.write("gone")
        counts = {KEPT: 2, "too_short": 1}
        manifest = publish_version(staging, rows_in=3, counts=counts, parents=[], config={})
    gen = f"{out.uri}/g={manifest['generation']}"
    names = [u[len(out.uri) + 1:] for u in storage.list_files(out.uri)]
    assert "stale.parquet" not in names  # no manifest named it: nobody can be reading it
    assert names == ["_manifest.json", *(f"g={manifest['generation']}/{n}" for n in
                                         ("part-00000.parquet", "removed/too_short/part-00000.parquet",
                                          "stats.json"))]
    assert manifest["files"] == ["part-00000.parquet"] and out.is_complete() and out.data_uri == gen
    local = local_input(out)
    assert sorted(os.listdir(local)) == ["part-00000.parquet", "stats.json"]
