"""Property-based tests (Hypothesis, profile in tests/conftest.py) for the parsers at the edge:
the JSONL line parser (alone and through Spark), charset decoding and the HTML extraction
steps. The URL normaliser, robots.txt and WARC scanner have files of their own.

The property everywhere: no exception escapes, and every input item comes out either kept
or with a named drop reason.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spark_jobs import jsonl
from spark_jobs.extract import steps as ex
from spark_jobs.extract.charsets import LABELS
from spark_jobs.steps import apply_steps

FIELDS = ["id", "url", "text", "title", "lang", "lang_score", "fetched_at", "source", "html", "other"]
_scalars = st.one_of(st.none(), st.booleans(), st.integers(),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=5)), max_leaves=12)
_records = st.dictionaries(st.sampled_from(FIELDS), _json, max_size=8)
_lines = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda v: json.dumps(v).encode()),
    _records.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    _records.map(lambda v: json.dumps(v).encode()[:-1]),  # cut short
    st.text(max_size=50).map(lambda t: json.dumps({"text": t}).encode("utf-8", "surrogatepass")),
    st.sampled_from([b'{"text": "x", "lang_score": Infinity}', b'{"text": NaN}', b"-Infinity"]),
)


def _check_record(rec: dict, extra: tuple[str, ...]) -> None:
    assert isinstance(rec["id"], str) and rec["source"]
    assert isinstance(rec["text"], str) or any(isinstance(rec[n], str) for n in extra)
    assert rec["lang_score"] is None or isinstance(rec["lang_score"], float)
    for value in rec.values():
        if isinstance(value, str):
            value.encode("utf-8")  # writable to Parquet


@given(lines=st.lists(_lines, max_size=12), extra=st.sampled_from([(), ("html",)]))
def test_jsonl_every_line_is_kept_or_has_a_reason(lines, extra):
    outcomes = Counter()
    for raw in lines:
        rec, reason = jsonl.parse_line(raw, extra)
        if reason is None:
            _check_record(rec, extra)
            outcomes["kept"] += 1
        else:
            assert rec is None and reason in jsonl.REASONS
            outcomes[reason] += 1
    assert sum(outcomes.values()) == len(lines)


@given(obj=_records)
def test_jsonl_objects_with_a_string_text_are_only_dropped_for_field_types(obj):
    rec, reason = jsonl.parse_line(json.dumps(obj).encode())
    if isinstance(obj.get("text"), str):
        assert reason in (None, jsonl.BAD_FIELD_TYPE, jsonl.UNDECODABLE)
    elif obj.get("text") is None:
        assert reason in (jsonl.MISSING_TEXT, jsonl.BAD_FIELD_TYPE)
    else:
        assert reason == jsonl.BAD_FIELD_TYPE


BOGUS = ["base64", "rot13", "hex", "zlib_codec", "bz2", "uu", "idna", "punycode", "utf-7", "utf_32",
         "unicode_escape", "uu_codec", "quopri_codec", "x-user-defined", "replacement"]
_labels = st.one_of(st.sampled_from(sorted(LABELS) + BOGUS), st.text(max_size=20))
_markup = st.lists(st.one_of(
    st.sampled_from(["<html>", "<head>", "<body>", "<p>", "</p>", "<div>", "</div>", "<script>", "</script>",
                     "<style>", "<!--", "-->", "<![CDATA[", "]]>", "&amp;", "&#0;", "&#x110000;", "<title>",
                     "</title>", "<table><tr><td>", "<br/>", "<a href='javascript:x'>", "<svg><math>",
                     "<?xml version='1.0'?>", "<!DOCTYPE html>", "\x00", "\ufeff", "<", ">", "\"", "'"]),
    st.text(max_size=40)), max_size=40).map("".join)
DECODE_REASONS = {None, ex.INVALID_UTF8, ex.DECODE_ERROR, ex.UNSUPPORTED_CHARSET, ex.EXTRACT_TIMEOUT}


def _page(body: bytes, content_type):
    return {"id": "f", "url": "http://fuzz.test/p", "html": body, "html_bytes": len(body),
            "content_type": content_type, "http_status": 200}


@given(body=st.binary(max_size=600), header=st.one_of(st.none(), _labels), meta=st.one_of(st.none(), _labels),
       bom=st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]))
def test_decode_never_raises_on_any_bytes_and_label(body, header, meta, bom):
    head = f'<meta charset="{meta}">'.encode("utf-8", "surrogatepass") if meta is not None else b""
    page = bom + head + body
    content_type = None if header is None else f"text/html; charset={header}"
    doc, reason = apply_steps(_page(page, content_type), [ex.DecodeHtml(timeout=5)])
    assert reason in DECODE_REASONS
    if reason is None:
        assert isinstance(doc["html"], str)
        assert doc[ex.CHARSET_NOTE] in (None, "unknown_charset")


ALL_REASONS = {None, ex.NOT_HTML, ex.BINARY_CONTENT, ex.HTTP_STATUS, ex.TOO_LARGE, ex.EMPTY_DOCUMENT,
               ex.DECODE_ERROR, ex.INVALID_UTF8, ex.UNSUPPORTED_CHARSET, ex.EXTRACTION_ERROR,
               ex.EXTRACT_TIMEOUT, ex.EMPTY_AFTER_EXTRACTION, ex.CORRUPT_RECORD}


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(html=st.one_of(_markup.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=800)),
       content_type=st.sampled_from([None, "text/html", "text/html; charset=utf-8", "application/xhtml+xml",
                                     "text/html; charset=zlib_codec", "image/png"]),
       status=st.sampled_from([None, 200, 204, 301, 404, 500]))
def test_extraction_steps_keep_or_name_a_reason(html, content_type, status):
    doc = {**_page(html, content_type), "http_status": status}
    doc, reason = apply_steps(doc, ex.default_steps(max_bytes=4096, page_timeout=10))
    assert reason in ALL_REASONS
    if reason is None:
        assert doc["text"].strip() and isinstance(doc["lang"], str)


_file = st.tuples(st.lists(st.one_of(_lines, st.just(b""), st.just(b"\r")), max_size=8), st.booleans())


@pytest.mark.spark
@settings(max_examples=2)
@example(files=[([b'\xef\xbb\xbf{"text": "a"}', b"", b"[1]\r"], True), ([], False), ([b"{"], False)])
@given(files=st.lists(_file, min_size=1, max_size=6))
def test_jsonl_reader_accounts_for_every_line_in_spark(spark, tmp_path_factory, files):
    """Spark splits the files into the same lines as Python, and each is a record or a rejected row.

    Several files per example, read as one folder: two Spark jobs per example."""
    from pyspark.sql import functions as F

    from spark_jobs.runner import DROP, count_jsonl_lines, read_jsonl_input

    folder = tmp_path_factory.mktemp("fuzz")
    expected, total = Counter(), 0
    for i, (lines, trailing_newline) in enumerate(files):
        lines = [line.replace(b"\n", b" ") for line in lines]
        end = b"\n" if trailing_newline and lines else b""
        (folder / f"in{i}.jsonl").write_bytes(b"\n".join(lines) + end)
        expected.update(jsonl.parse_line(raw)[1] or "kept" for raw in lines)
        total += len(lines)
    got = read_jsonl_input(spark, str(folder))
    outcomes = got.records.select(F.lit("kept").alias("r")).unionByName(
        got.rejected.select(F.col(DROP).alias("r")))
    found = Counter({row["r"]: row["count"] for row in outcomes.groupBy("r").count().collect()})
    assert found == +expected and count_jsonl_lines(spark, str(folder)) == total
