"""The stage runner on tiny generated data: accounting, layout, atomic rerun, JSONL."""
from __future__ import annotations

import json
import os
from argparse import Namespace

import pytest

from ops.lake.datasets import DatasetVersion, ManifestError
from spark_jobs.records import columns, ddl
from spark_jobs.runner import KEPT, publish_version, read_jsonl, read_version
from spark_jobs.stage import Stage, run_stage
from spark_jobs.staging import Staging
from spark_jobs.steps import Drop

pytestmark = pytest.mark.spark


class TooShort:
    def filter(self, doc):
        return "too_short" if len(doc["text"]) < 10 else None


class Shout:
    def map(self, doc):
        if "forbidden" in doc["text"]:
            raise Drop("marked")
        doc["text"] = doc["text"].upper()
        doc["extra"] = {"length": len(doc["text"])}
        return doc


def _input(spark, n=40):
    rows = []
    for i in range(n):
        text = "short" if i % 4 == 0 else ("a forbidden text" if i % 4 == 1 else f"long enough text {i}")
        rows.append((f"id{i:03d}", f"http://h.test/{i}", text, None, "en", 0.9, "2026-01-01T00:00:00Z",
                     "crawl"))
    return spark.createDataFrame(rows, ddl(columns()))


def run_steps(spark, df, steps, cols, out: DatasetVersion, parents: list[str], config: dict) -> dict:
    """A stage declared around a DataFrame: these steps, written as ``out``."""
    stage = Stage(name="test", output=out.stage, config=lambda run: config,
                  settings=lambda argv: Namespace(root=out.root, version=out.version, input_version=out.version),
                  read=lambda spark, run: (df, parents), steps=lambda run: steps, columns=lambda: cols)
    return run_stage(stage, [], spark)


def _run(spark, root, version="r1", n=40):
    out = DatasetVersion(str(root), "clean", version)
    cols = columns(("extra", "string"))
    return out, run_steps(spark, _input(spark, n), [TooShort(), Shout()], cols, out, parents=["test"],
                          config={"n": n})


def test_counts_layout_and_manifest(spark, tmp_path):
    out, manifest = _run(spark, tmp_path)
    assert manifest["rows_in"] == 40 and manifest["rows_out"] == 20
    assert manifest["dropped"] == {"marked": 10, "too_short": 10}
    assert sorted(os.listdir(out.data_path("removed"))) == ["marked", "too_short"]
    kept = read_version(spark, out)
    assert kept.count() == 20
    assert all(r["text"].isupper() for r in kept.collect())
    assert json.loads(kept.first()["extra"])["length"] > 0  # dicts are stored as JSON strings
    marked = spark.read.parquet(out.data_path("removed", "marked")).collect()
    assert len(marked) == 10 and all("forbidden" in r["text"] for r in marked)
    assert manifest["schema"]["extra"] == "string" and "_drop_reason" not in manifest["schema"]
    assert sorted(os.listdir(out.uri)) == ["_manifest.json", f"g={manifest['generation']}"]
    names = os.listdir(out.data_uri)
    assert not [n for n in names if n.startswith(("_SUCCESS", ".")) or n.endswith(".crc")]
    assert all(f.startswith("part-") and f.endswith(".parquet") for f in manifest["files"])


def test_rerun_replaces_the_version(spark, tmp_path):
    out, first = _run(spark, tmp_path)
    ids_first = sorted(r["id"] for r in read_version(spark, out).collect())
    _, second = _run(spark, tmp_path)
    ids_second = sorted(r["id"] for r in read_version(spark, out).collect())
    assert ids_first == ids_second and len(ids_second) == len(set(ids_second))
    assert second["rows_out"] == first["rows_out"] and second["dropped"] == first["dropped"]
    assert sorted(os.listdir(os.path.join(tmp_path, "clean"))) == ["v=r1"]  # no staging folder left
    generations = sorted(os.listdir(out.uri))  # the first kept for its readers until the grace period ends
    assert generations == ["_manifest.json", f"g={first['generation']}", f"g={second['generation']}"]
    assert out.data_uri.endswith(f"g={second['generation']}")


def test_all_dropped_still_leaves_a_readable_version(spark, tmp_path):
    out = DatasetVersion(str(tmp_path), "clean", "none")
    df = _input(spark, 8).where("text = 'short'")
    manifest = run_steps(spark, df, [TooShort()], columns(), out, parents=[], config={})
    assert manifest["rows_out"] == 0 and manifest["dropped"] == {"too_short": 2}
    assert read_version(spark, out).count() == 0
    assert set(read_version(spark, out).columns) == {c for c, _ in columns()}


def test_broken_accounting_is_refused_and_not_published(tmp_path):
    out = DatasetVersion(str(tmp_path), "clean", "bad")
    with Staging(out) as staging:
        with pytest.raises(ManifestError, match="accounting broken"):
            publish_version(staging, rows_in=10, counts={KEPT: 5, "x": 1}, parents=[], config={})
    assert not os.path.exists(out.uri)
    assert os.listdir(os.path.join(tmp_path, "clean")) == []  # the staging folder was discarded


def test_read_jsonl_fills_record_columns(spark, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "hello there"}\n{"id": "given", "text": "x", "url": "http://h.test/"}\n')
    rows = {r["text"]: r for r in read_jsonl(spark, str(path)).collect()}
    import hashlib

    assert rows["hello there"]["id"] == hashlib.sha1(b"hello there").hexdigest()
    assert rows["x"]["id"] == "given" and rows["x"]["source"] == "jsonl" and rows["x"]["lang"] is None


def test_read_version_requires_a_manifest(spark, tmp_path):
    with pytest.raises(ManifestError, match="has not finished"):
        read_version(spark, DatasetVersion(str(tmp_path), "clean", "missing"))
