"""Property-based tests of the WARC scanner (spark_jobs/extract/warc_scan.py): a WARC the test
writes, then damaged by Hypothesis (bytes overwritten, junk inserted, the file cut), is scanned
without an exception escaping, every record before the first damaged byte is read, and every
item lies inside the file."""
from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark_jobs.extract.warc_scan import scan_warc
from spark_test_data import english, html_page

PAGES = 3


def _warc(gzip: bool) -> tuple[bytes, list[tuple[int, int]]]:
    """A WARC of PAGES responses, and each record's (start, end) in it."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    fh = io.BytesIO()
    writer = WARCWriter(fh, gzip=gzip)
    spans = []
    for i in range(PAGES):
        body = html_page(f"P{i}", english(i, sentences=3))
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        start = fh.tell()
        writer.write_record(writer.create_warc_record(f"http://w.test/{i}", "response",
                                                      payload=io.BytesIO(body), length=len(body),
                                                      http_headers=headers))
        spans.append((start, fh.tell()))
    return fh.getvalue(), spans


FILES = {gz: _warc(gz) for gz in (True, False)}
_edit = st.tuples(st.sampled_from(["overwrite", "insert", "cut"]), st.floats(0, 1),
                  st.binary(min_size=1, max_size=16))


def _damage(data: bytes, edits) -> tuple[bytes, int]:
    """The damaged bytes and the first offset that differs from the original."""
    first = len(data)
    for kind, where, junk in edits:
        at = min(int(where * len(data)), len(data))
        if kind == "overwrite":
            data = data[:at] + junk + data[at + len(junk):]
        elif kind == "insert":
            data = data[:at] + junk + data[at:]
        else:
            data = data[:at]
        first = min(first, at)
    return data, first


def test_the_undamaged_files_give_every_record():
    for data, _ in FILES.values():
        items = list(scan_warc(io.BytesIO(data), len(data)))
        assert [i.kind for i in items] == ["record"] * PAGES


@given(gz=st.booleans(), edits=st.lists(_edit, min_size=1, max_size=3))
def test_damaged_warc_is_scanned_and_accounted(gz, edits):
    original, spans = FILES[gz]
    data, first = _damage(original, edits)
    items = list(scan_warc(io.BytesIO(data), len(data)))
    for item in items:
        assert item.kind in ("record", "corrupt") and 0 <= item.offset <= len(data)
        if item.kind == "record":  # inside the file; a gzip record starts a gzip member
            assert item.offset + item.length <= len(data)
            assert not gz or data[item.offset:].startswith(b"\x1f\x8b")
    read = {item.offset for item in items if item.kind == "record"}
    before = {start for start, end in spans if end <= first}  # untouched records before the damage
    shift = len(data) - len(original)
    after = {start + shift for start, end in spans  # untouched records after it, where they now are
             if start + shift > first and data.endswith(original[start:])}
    assert before | after <= read
