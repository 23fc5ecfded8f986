"""Bring-your-own-corpus input: one JSON line → a record, or a drop reason.

Every line of a JSONL file is accounted for: :func:`parse_line` turns its raw bytes into
a record (the columns of :data:`spark_jobs.records.RECORD_COLUMNS` plus the stage's extra
columns, e.g. ``html``) or names why it is not one:

- ``empty_line``: nothing but whitespace (counted, so that rows_in is the number of lines);
- ``undecodable``: not UTF-8, or a string escape (a lone ``\\ud800``) that UTF-8 cannot hold;
- ``invalid_json``: not JSON (also NaN/Infinity, nesting too deep for the parser, numbers
  too long to convert);
- ``not_an_object``: JSON, but an array, string, number or null;
- ``missing_text``: an object without a string ``text`` (nor any of the extra columns);
- ``bad_field_type``: ``text`` or an extra column not a string, ``id`` not a string or
  number, another string column an object, array or boolean, ``lang_score`` not a number.

Records get ``id`` = sha1(url, else text) when they bring none, and ``source`` = "jsonl".
:func:`rejected_row` is what a dropped line keeps under ``removed/<reason>/``: its first
:data:`RAW_CAP` bytes, its length and sha1, and the parser's message. Plain Python, so the
rules are tested without Spark; :func:`spark_jobs.runner.read_jsonl_input` applies them.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Iterable

from spark_jobs.records import RECORD_COLUMNS, SOURCE_JSONL, sha1_hex

EMPTY_LINE = "empty_line"
UNDECODABLE = "undecodable"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_TEXT = "missing_text"
BAD_FIELD_TYPE = "bad_field_type"
REASONS = (EMPTY_LINE, UNDECODABLE, INVALID_JSON, NOT_AN_OBJECT, MISSING_TEXT, BAD_FIELD_TYPE)

RAW_CAP = 64 * 1024  # bytes of a rejected line kept under removed/ (its full length and sha1 too)
REJECTED_COLUMNS: list[tuple[str, str]] = [
    ("raw", "binary"), ("raw_bytes", "bigint"), ("raw_sha1", "string"), ("input_file", "string"),
    ("error", "string"),
]


class LineError(ValueError):
    """A line that is not a record; ``reason`` names why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _decode(raw: bytes) -> str:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(UNDECODABLE, f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    return line[1:] if line.startswith("\ufeff") else line  # a BOM opening the file


def _load(line: str) -> Any:
    try:
        return json.loads(line, parse_constant=_no_constant)
    except RecursionError:
        raise LineError(INVALID_JSON, "JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an integer too long to convert
        raise LineError(INVALID_JSON, str(exc)[:200]) from None


def _string(name: str, value: Any, numbers: bool) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise LineError(BAD_FIELD_TYPE, f"{name!r} is a {type(value).__name__}, not a string")


def _double(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
    raise LineError(BAD_FIELD_TYPE, f"{name!r} is {str(value)[:40]!r}, not a finite number")


def _record(obj: dict, extra: tuple[str, ...]) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    for name, kind in RECORD_COLUMNS:
        value = obj.get(name)
        if kind == "double":
            rec[name] = _double(name, value)
        else:  # text must be a string; the other string columns may be given as numbers
            rec[name] = _string(name, value, numbers=name != "text")
    for name in extra:
        rec[name] = _string(name, obj.get(name), numbers=False)
    if rec["text"] is None and all(rec[name] is None for name in extra):
        wanted = " or ".join(repr(n) for n in ("text", *extra))
        raise LineError(MISSING_TEXT, f"no {wanted} field")
    for name, value in rec.items():
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise LineError(UNDECODABLE, f"{name!r} holds a lone surrogate escape") from None
    if rec["id"] is None:  # sha1 of the url, else of the text (of html for an html-only record)
        rec["id"] = sha1_hex(next(rec[n] for n in ("url", "text", *extra) if rec[n] is not None))
    if rec["source"] is None:
        rec["source"] = SOURCE_JSONL
    return rec


def parse_line(raw: bytes, extra: Iterable[str] = ()) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for a usable line, else ``(None, reason)``. Never raises on data."""
    record, reason, _ = parse_line_detail(raw, tuple(extra))
    return record, reason


def parse_line_detail(raw: bytes, extra: tuple[str, ...] = ()) -> tuple[dict | None, str | None, str]:
    """:func:`parse_line` plus the message that explains a rejection ("" when kept)."""
    try:
        line = _decode(raw)
        if not line.strip():
            raise LineError(EMPTY_LINE, "blank line")
        obj = _load(line)
        if not isinstance(obj, dict):
            raise LineError(NOT_AN_OBJECT, f"a JSON {type(obj).__name__}, not an object")
        return _record(obj, extra), None, ""
    except LineError as exc:
        return None, exc.reason, str(exc)


def rejected_row(raw: bytes, input_file: str | None, error: str) -> dict[str, Any]:
    """What ``removed/<reason>/`` keeps of a line: the start of its bytes, its size and sha1."""
    return {"raw": bytes(raw[:RAW_CAP]), "raw_bytes": len(raw), "raw_sha1": hashlib.sha1(raw).hexdigest(),
            "input_file": input_file, "error": error}
