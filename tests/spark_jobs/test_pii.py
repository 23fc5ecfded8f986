"""PII redaction: what is replaced, what must be left alone, and the counts in the clean manifest."""
from __future__ import annotations

import json

import pytest

from spark_test_data import english
from spark_jobs.clean.pii import RedactPII


def _redact(text, **kw):
    return RedactPII(**kw).redact(text)


@pytest.mark.parametrize("text", [
    "Write to jane.doe+news@mail.example.co.uk today.",
    "Contact bob_99@example.org or ALICE@Example.COM.",
])
def test_emails(text):
    out, counts = _redact(text)
    assert "@" not in out and "<EMAIL>" in out and counts["email"] >= 1


def test_public_ip_addresses():
    out, counts = _redact("Server 93.184.216.34:80 and 2606:2800:220:1:248:1893:25c8:1946, "
                          "also 2001:4860:4860::8888.")
    assert out == "Server <IP_ADDRESS>:80 and <IP_ADDRESS>, also <IP_ADDRESS>."
    assert counts["ip_address"] == 3


def test_private_ips_kept_by_default_and_redacted_on_request():
    text = "Bind to 127.0.0.1 or 192.168.10.20 or ::1."
    assert _redact(text)[0] == text
    # 127.0.0.1 has one multi-digit part (like a version number) and ::1 too few groups: both stay
    assert _redact(text, public_ips_only=False)[0] == "Bind to 127.0.0.1 or <IP_ADDRESS> or ::1."


@pytest.mark.parametrize("text,expected", [
    ("Call +1 (555) 123-4567 now.", "Call <PHONE> now."),
    ("Call 555-123-4567 now.", "Call <PHONE> now."),
    ("Call (415) 555-0132 now.", "Call <PHONE> now."),
    ("Call 415.555.0132 now.", "Call <PHONE> now."),
    ("Ring +44 20 7946 0958 or 020 7946 0958.", "Ring <PHONE> or <PHONE>."),
    ("Ring +49 30 1234567.", "Ring <PHONE>."),
])
def test_phone_numbers(text, expected):
    assert _redact(text)[0] == expected


@pytest.mark.parametrize("text", [
    "Python 3.11.2 was released on 2024-01-15 (see 3.11.2.1 notes).",
    "Dates: 15.01.2024, 2024/01/15, 01/15/2024 and 2024-01-15T10:20:30Z.",
    "Section 6.2.9.1. Generator-iterator methods and 3.3.2.1. Customizing access.",
    "novas==3.1.1.3 and Thunderbird 1.5.0.9 and v1.2.3.4 and 10.0.19041.1.",
    "Slices a[1::2], b[::3], times 12:30:45 and ratios 16:9:4.",
    "ISBN 978-3-16-148410-0, numbers 1234567 and 12345678901, 1,234,567.89.",
    "itertools: permutations(range(3)) --> 012 021 102 120 201 210",
    "A mask of 255.255.255.0 and the loopback 127.0.0.1.",
    "Decorators like @property and @functools.cache, or user@localhost.",
])
def test_things_that_are_not_pii(text):
    assert _redact(text) == (text, {"email": 0, "ip_address": 0, "phone": 0})


def test_map_records_counts_in_text_edits():
    doc = RedactPII().map({"id": "x", "text": "Mail a@example.com or b@example.com; call 555-123-4567."})
    assert doc["text"] == "Mail <EMAIL> or <EMAIL>; call <PHONE>."
    assert doc["text_edits"] == {"pii_email": 2, "pii_phone": 1}
    untouched = RedactPII().map({"id": "y", "text": "Nothing here."})
    assert "text_edits" not in untouched


@pytest.mark.spark
def test_clean_job_counts_redactions_in_the_manifest(spark, tmp_path):
    from ops.lake.datasets import DatasetVersion
    from spark_jobs.jobs import clean
    from spark_jobs.runner import read_version

    prose = english(7, sentences=12)
    docs = [
        {"id": "a", "text": prose + "\nWrite to someone@example.com or call 555-123-4567 today."},
        {"id": "b", "text": english(8, sentences=12) + "\nThe mirror at 93.184.216.34 serves the files."},
        {"id": "c", "text": "Too short, mail x@example.com.", "lang": "en", "lang_score": 0.9},  # dropped
        {"id": "d", "text": english(9, sentences=12) + "\nPython 3.11.2 came out on 2023-02-08."},
    ]
    path = tmp_path / "pii.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    argv = ["--root", str(tmp_path), "--version", "p", "--input-jsonl", str(path)]
    manifest = clean.main(argv, spark=spark)
    assert manifest["rows_out"] == 3 and manifest["dropped"] == {"too_few_words": 1}
    assert manifest["pii_redactions"] == {"email": 2, "ip_address": 1, "phone": 1}
    assert manifest["config"]["filters"]["fineweb_quality"]["max_char_dup_ratio"] == 0.15
    out = DatasetVersion(str(tmp_path), "clean", "p")
    texts = {r["id"]: r["text"] for r in read_version(spark, out).collect()}
    assert "<EMAIL>" in texts["a"] and "<PHONE>" in texts["a"] and "<IP_ADDRESS>" in texts["b"]
    assert "3.11.2" in texts["d"] and "2023-02-08" in texts["d"]
    removed = spark.read.parquet(out.data_path("removed", "too_few_words")).first()
    assert removed["text"] == "Too short, mail <EMAIL>."
    assert json.loads(removed["text_edits"]) == {"pii_email": 1}
