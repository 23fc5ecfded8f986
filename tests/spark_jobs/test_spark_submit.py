"""The real spark-submit through ops.launch.local, on a temp data root."""
from __future__ import annotations

import json

import pytest

from spark_test_data import english
from ops.lake.datasets import DatasetVersion
from ops.launch.local import spark_submit

pytestmark = [pytest.mark.spark, pytest.mark.integration]


def test_spark_submit_tokenize_from_jsonl(tmp_path, monkeypatch, capsys):
    """tokenize.py is the job whose file name shadows a stdlib module: prove it runs."""
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": english(i)}) + "\n" for i in range(30)))
    root = tmp_path / "data"
    monkeypatch.setenv("C2M_DATA_ROOT", str(root))
    monkeypatch.setenv("C2M_SPARK_MASTER", "local[2]")
    spark_submit("tokenize", ["--version", "ss", "--input-jsonl", str(path), "--vocab-size", "512",
                              "--seq-len", "64"])
    out = capsys.readouterr().out
    assert "launching spark job tokenize" in out  # the job's output reaches the caller's stdout
    manifest = DatasetVersion(str(root), "shards", "ss").read_manifest()
    assert manifest["rows_in"] == 30 and manifest["rows_out"] == 30
    assert manifest["splits"]["train"]["sequences"] > 0
