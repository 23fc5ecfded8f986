"""JSONL input where bad lines are data: the line parser alone, then stages that read such a file."""
from __future__ import annotations

import hashlib
import json
import os

import pyarrow.parquet as pq
import pytest

from spark_test_data import english

from ops.lake.datasets import DatasetVersion
from spark_jobs import jsonl
from spark_jobs.jsonl import parse_line


@pytest.mark.parametrize("raw, reason", [
    (b"", jsonl.EMPTY_LINE),
    (b" \t\r", jsonl.EMPTY_LINE),
    (b'{"text": "caf\xe9"}', jsonl.UNDECODABLE),  # latin-1 byte, not UTF-8
    (b'{"text": "\\ud800"}', jsonl.UNDECODABLE),  # a lone surrogate cannot be written as UTF-8
    (b'{"text": "x"', jsonl.INVALID_JSON),
    (b'{"text": "x", "lang_score": NaN}', jsonl.INVALID_JSON),
    (b"[" * 100_000 + b"]" * 100_000, jsonl.INVALID_JSON),  # deeper than the parser's recursion
    (b'{"text": "x", "n": ' + b"9" * 5000 + b"}", jsonl.INVALID_JSON),  # over int conversion's limit
    (b'["text"]', jsonl.NOT_AN_OBJECT),
    (b'"text"', jsonl.NOT_AN_OBJECT),
    (b"null", jsonl.NOT_AN_OBJECT),
    (b'{"id": "a"}', jsonl.MISSING_TEXT),
    (b'{"text": null}', jsonl.MISSING_TEXT),
    (b'{"text": 123}', jsonl.BAD_FIELD_TYPE),
    (b'{"text": ["a"]}', jsonl.BAD_FIELD_TYPE),
    (b'{"text": "x", "id": {"a": 1}}', jsonl.BAD_FIELD_TYPE),
    (b'{"text": "x", "url": true}', jsonl.BAD_FIELD_TYPE),
    (b'{"text": "x", "lang_score": "high"}', jsonl.BAD_FIELD_TYPE),
    (b'{"text": "x", "lang_score": 1' + b"0" * 400 + b"}", jsonl.BAD_FIELD_TYPE),  # not a finite double
])
def test_bad_lines_have_a_reason(raw, reason):
    assert parse_line(raw) == (None, reason)


def test_good_lines_become_records():
    rec, reason = parse_line(b'\xef\xbb\xbf{"text": "hello", "lang_score": 1, "extra": {"a": 1}}\r')
    assert reason is None and rec["text"] == "hello" and rec["lang_score"] == 1.0
    assert rec["id"] == hashlib.sha1(b"hello").hexdigest() and rec["source"] == "jsonl"
    assert set(rec) == {"id", "url", "text", "title", "lang", "lang_score", "fetched_at", "source"}
    rec, _ = parse_line(b'{"id": 7, "url": "http://h.test/", "text": "x", "source": "mine"}')
    assert rec["id"] == "7" and rec["source"] == "mine"
    rec, _ = parse_line(b'{"url": "http://h.test/", "text": "x"}')
    assert rec["id"] == hashlib.sha1(b"http://h.test/").hexdigest()


def test_extra_columns_count_as_text():
    rec, reason = parse_line(b'{"html": "<p>hi</p>"}', extra=("html",))
    assert reason is None and rec["html"] == "<p>hi</p>" and rec["text"] is None
    assert rec["id"] == hashlib.sha1(b"<p>hi</p>").hexdigest()
    assert parse_line(b'{"html": 5}', extra=("html",)) == (None, jsonl.BAD_FIELD_TYPE)
    assert parse_line(b'{"html": "<p>"}') == (None, jsonl.MISSING_TEXT)


def test_rejected_row_keeps_the_start_size_and_digest():
    raw = b"x" * (jsonl.RAW_CAP + 10)
    row = jsonl.rejected_row(raw, "file:/in.jsonl", "bad")
    assert row["raw"] == raw[:jsonl.RAW_CAP] and row["raw_bytes"] == len(raw)
    assert row["raw_sha1"] == hashlib.sha1(raw).hexdigest()


# ---------------------------------------------------------------- stages (Spark)

BAD_LINES = {  # reason -> the raw line the test writes
    jsonl.NOT_AN_OBJECT: b'["not", "an", "object"]',
    jsonl.INVALID_JSON: b'{"text": "unterminated',
    jsonl.UNDECODABLE: b'{"text": "bad \xff\xfe bytes"}',
    jsonl.BAD_FIELD_TYPE: b'{"id": "n", "text": 123}',
    jsonl.MISSING_TEXT: b'{"id": "m", "title": "no text"}',
    jsonl.EMPTY_LINE: b"",
}


def _write_mixed(path, good: list[dict]) -> None:
    lines = [json.dumps(d).encode() for d in good[:2]] + list(BAD_LINES.values()) \
        + [json.dumps(d).encode() for d in good[2:]]
    path.write_bytes(b"\n".join(lines) + b"\n")


def _removed(root: str, stage: str, version: str) -> dict[str, list[dict]]:
    folder = DatasetVersion(root, stage, version).data_path("removed")
    found = {}
    for reason in BAD_LINES:
        files = sorted(f for f in os.listdir(os.path.join(folder, reason)) if f.endswith(".parquet"))
        found[reason] = [r for f in files for r in pq.read_table(os.path.join(folder, reason, f)).to_pylist()]
    return found


def _check_rejected(manifest: dict, root: str, stage: str, version: str) -> None:
    for reason in BAD_LINES:
        assert manifest["dropped"][reason] == 1, reason
    removed = _removed(root, stage, version)
    for reason, raw in BAD_LINES.items():
        (row,) = removed[reason]
        assert row["raw"] == raw and row["raw_bytes"] == len(raw)
        assert row["raw_sha1"] == hashlib.sha1(raw).hexdigest() and row["input_file"].endswith(".jsonl")
    total = manifest["rows_out"] + sum(manifest["dropped"].values())
    assert manifest["rows_in"] == total == len(BAD_LINES) + 4


@pytest.mark.spark
def test_clean_routes_every_bad_line_to_removed(spark, tmp_path):
    from spark_jobs.jobs import clean

    path = tmp_path / "mixed.jsonl"
    _write_mixed(path, [{"id": f"en{i}", "text": english(i)} for i in range(4)])
    manifest = clean.main(["--root", str(tmp_path), "--version", "j", "--input-jsonl", str(path)],
                          spark=spark)
    assert manifest["rows_out"] == 4
    _check_rejected(manifest, str(tmp_path), "clean", "j")


@pytest.mark.spark
def test_dedup_and_extract_route_bad_lines_too(spark, tmp_path):
    from spark_jobs.jobs import dedup, extract

    path = tmp_path / "mixed.jsonl"
    _write_mixed(path, [{"id": f"d{i}", "text": english(i % 3)} for i in range(4)])  # d3 repeats d0
    manifest = dedup.main(["--root", str(tmp_path), "--version", "d", "--input-jsonl", str(path),
                           "--no-near-dedup"], spark=spark)
    assert manifest["rows_out"] == 3 and manifest["dropped"]["exact_duplicate"] == 1
    _check_rejected(manifest, str(tmp_path), "corpus", "d")

    pages = tmp_path / "pages.jsonl"
    _write_mixed(pages, [{"id": f"h{i}", "html": f"<html><body><p>{english(i)}</p></body></html>"}
                         for i in range(4)])
    manifest = extract.main(["--root", str(tmp_path), "--version", "x", "--input-jsonl", str(pages)],
                            spark=spark)
    assert manifest["rows_out"] == 4
    _check_rejected(manifest, str(tmp_path), "extracted", "x")


@pytest.mark.spark
def test_tokenize_routes_bad_lines_to_removed(spark, tmp_path):
    from spark_jobs.jobs import tokenize

    path = tmp_path / "mixed.jsonl"
    _write_mixed(path, [{"id": f"t{i}", "text": english(i)} for i in range(4)])
    argv = ["--root", str(tmp_path), "--version", "t", "--input-jsonl", str(path), "--seq-len", "16",
            "--val-fraction", "0.25", "--vocab-size", "300"]
    manifest = tokenize.main(argv, spark=spark)
    assert manifest["rows_out"] == 4
    _check_rejected(manifest, str(tmp_path), "shards", "t")
