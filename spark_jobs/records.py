"""The record schema shared by every stage from extraction on.

Columns are declared once here, so a stage names the extra columns it adds and the
runner knows which types to write. ``fetched_at`` is an ISO-8601 UTC string: it
survives JSONL, pandas and Parquet round trips unchanged.
"""
from __future__ import annotations

import hashlib
import time

RECORD_COLUMNS: list[tuple[str, str]] = [
    ("id", "string"),
    ("url", "string"),
    ("text", "string"),
    ("title", "string"),
    ("lang", "string"),
    ("lang_score", "double"),
    ("fetched_at", "string"),
    ("source", "string"),
]

SOURCE_CRAWL = "crawl"
SOURCE_JSONL = "jsonl"


def columns(*extra: tuple[str, str]) -> list[tuple[str, str]]:
    """The record columns plus a stage's own, in a fixed order."""
    names = {name for name, _ in RECORD_COLUMNS}
    return RECORD_COLUMNS + [c for c in extra if c[0] not in names]


def ddl(cols: list[tuple[str, str]]) -> str:
    """Spark DDL for a column list, e.g. 'id string, lang_score double'."""
    return ", ".join(f"`{name}` {kind}" for name, kind in cols)


def sha1_hex(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha1(data).hexdigest()


def doc_id(url: str | None, text: str | None = None) -> str:
    """Stable id: the sha1 of the URL, or of the text when there is no URL."""
    if url:
        return sha1_hex(url)
    if text is None:
        raise ValueError("a document needs a url or a text to get an id")
    return sha1_hex(text)


def utc_now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
