"""WARC/WET/ARC files as other tools write them, and damaged ones: every record is read or
counted as a corrupt stretch, the records after damage are still read, nothing raises."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import warc_test_files as wf
from spark_jobs.extract.warc_reader import iter_warc
from spark_jobs.extract.warc_scan import open_warc, scan_source

TOOLS = {
    "wget": (wf.wget_records,
             ["warcinfo"] + ["request", "response", "metadata"] * 2 + ["resource", "metadata"]),
    "wpull": (wf.wpull_records, ["warcinfo"] + ["request", "response"] * 2 + ["resource"]),
    "heritrix": (wf.heritrix_records, ["warcinfo"] + ["response", "request", "metadata"] * 2
                 + ["revisit"] * 2 + ["response"] * 2),
    "cc_warc": (wf.common_crawl_warc_records, ["warcinfo"] + ["request", "response", "metadata"] * 2),
    "cc_wet": (wf.common_crawl_wet_records, ["warcinfo", "conversion", "conversion"]),
    "resource": (wf.resource_records, ["warcinfo", "resource", "resource", "resource"]),
    "arc": (wf.arc_records, ["warcinfo", "response", "response"]),  # ARC records read as WARC (arc2warc)
}


def _items(path):
    with open_warc(str(path)) as src:
        return list(scan_source(src))


def _summary(items):
    return [i.rec_type if i.kind == "record" else "CORRUPT" for i in items]


@pytest.mark.parametrize("layout", ["per_record_gzip", "plain", "whole_file_gzip"])
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_files_of_other_tools_read_whole(tmp_path, tool, layout):
    make, expected = TOOLS[tool]
    path = tmp_path / f"{tool}.warc"
    if layout == "whole_file_gzip":  # `gzip x.warc`: one gzip member for every record
        path.write_bytes(wf.gz(b"".join(make())))
    else:
        wf.write_records(path, make(), per_record_gzip=layout == "per_record_gzip")
    items = _items(path)
    assert _summary(items) == expected
    assert all(i.url for i in items if i.rec_type in ("response", "conversion"))
    rows = list(iter_warc(str(path)))
    documents = [t for t in expected if t in ("response", "resource", "conversion")]
    assert len(rows) == len(documents) and not any(r.get("warc_error") for r in rows)


def test_record_types_become_rows_by_kind(tmp_path):
    path = tmp_path / "r.warc.gz"
    wf.write_records(path, wf.resource_records() + wf.common_crawl_wet_records(1) + wf.heritrix_records(1))
    rows = {r["url"]: r for r in iter_warc(str(path))}
    assert rows["http://resource.test/p0.html"]["html"].startswith(b"<!DOCTYPE html>")
    assert rows["file:///notes.txt"]["text"] == wf.wet_text(7).decode()  # text/plain resource: text
    assert rows["http://resource.test/i.png"]["content_type"] == "image/png"  # extract drops: not_html
    assert rows["http://wet.test/p0.html"]["text"] == wf.wet_text(0).decode()
    assert rows["http://heritrix.test/missing"]["http_status"] == 404  # extract drops: http_status
    assert not any("revisit" in str(r.get("warc_error")) for r in rows.values())
    assert len(rows) == 3 + 1 + 3  # resources, the conversion, heritrix's responses (revisits: none)


def _cc(pages=3):
    recs = wf.common_crawl_warc_records(pages)
    return recs, [wf.gz(r) for r in recs]


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_whole_file_gzip_no_longer_crashes_the_scan(tmp_path):
    """warcio's offsets inside one big gzip member are compressed position minus decompressed
    buffer, negative here: the scan used to die in fh.seek with OSError [Errno 22]."""
    recs, _ = _cc(30)
    items = _items(_write(tmp_path, "whole.warc.gz", wf.gz(b"".join(recs))))
    assert _summary(items) == ["warcinfo"] + ["request", "response", "metadata"] * 30


def test_truncated_last_member(tmp_path):
    _, members = _cc()
    items = _items(_write(tmp_path, "t.warc.gz", b"".join(members)[:-30]))
    assert _summary(items)[-2:] == ["response", "CORRUPT"] and len(items) == len(members)
    assert items[-1].offset == sum(len(m) for m in members[:-1])  # where the cut member starts


def test_garbage_between_members(tmp_path):
    _, members = _cc()
    junk = b"GARBAGE \x00\x01 junk\n" * 3
    items = _items(_write(tmp_path, "g.warc.gz", b"".join(members[:3]) + junk + b"".join(members[3:])))
    assert _summary(items) == ["warcinfo", "request", "response", "CORRUPT"] + ["metadata"] + \
        ["request", "response", "metadata"] * 2
    assert items[3].offset == sum(len(m) for m in members[:3])


@pytest.mark.parametrize("damage", ["bad_crc", "bad_deflate"])
def test_damaged_member_is_one_corrupt_record(tmp_path, damage):
    _, members = _cc()
    bad = bytearray(members[2])
    if damage == "bad_crc":
        bad[-8] ^= 0xFF
    else:
        bad[30:40] = b"\x00" * 10
    items = _items(_write(tmp_path, "d.warc.gz", b"".join(members[:2]) + bytes(bad) + b"".join(members[3:])))
    assert _summary(items) == ["warcinfo", "request", "CORRUPT", "metadata"] + \
        ["request", "response", "metadata"] * 2
    assert items[2].offset == len(members[0]) + len(members[1])


@pytest.mark.parametrize("gzipped", [True, False])
@pytest.mark.parametrize("lie", [-100, +500])
def test_lying_content_length(tmp_path, gzipped, lie):
    recs, _ = _cc()
    url, body = wf.page(9, "cc.test")
    block = wf.http_response(body)
    liar = wf.warc_record("response", block, url, content_length=len(block) + lie)
    path = tmp_path / "l.warc"
    wf.write_records(path, recs[:2] + [liar] + recs[2:], per_record_gzip=gzipped)
    items = _items(path)
    assert _summary(items) == ["warcinfo", "request", "CORRUPT"] + ["response", "metadata"] + \
        ["request", "response", "metadata"] * 2
    assert url not in [i.url for i in items if i.kind == "record"]


def test_member_with_two_records_is_counted_not_copied_wrong(tmp_path):
    _, members = _cc()
    recs, _ = _cc()
    data = b"".join(members[:2]) + wf.gz(recs[2] + recs[3]) + b"".join(members[4:])
    items = _items(_write(tmp_path, "m.warc.gz", data))
    assert _summary(items) == ["warcinfo", "request", "CORRUPT"] + ["request", "response", "metadata"] * 2


@pytest.mark.parametrize("damage", ["truncated", "bad_crc"])
def test_damaged_whole_file_gzip_keeps_what_decompresses(tmp_path, damage):
    recs, _ = _cc(30)
    data = wf.gz(b"".join(recs))
    data = data[:-200] if damage == "truncated" else data[:-8] + b"\0\0\0\0" + data[-4:]
    items = _items(_write(tmp_path, "w.warc.gz", data))
    good = [i for i in items if i.kind == "record"]
    assert len(good) > 60 and _summary(items)[-1] == "CORRUPT"
    assert [i for i in items if i.kind == "corrupt"] == [items[-1]]  # the cut record and the damage: one item


@pytest.mark.parametrize("data", [b"", b"\0" * 1000, b"hello world\n" * 100, b"\x1f\x8b\x08" + b"\xff" * 500])
def test_files_that_are_no_warc(tmp_path, data):
    items = _items(_write(tmp_path, "x.warc", data))
    assert all(i.kind == "corrupt" for i in items) and len(items) <= 1


def _big_warc(path, records: int) -> int:
    url, _ = wf.page(0, "big.test")
    payload = os.urandom(1 << 20)  # random bytes: the gzip members are as large as the records
    record = wf.gz(wf.warc_record("response", wf.http_response(payload, "application/octet-stream"), url))
    with open(path, "wb") as fh:
        for _ in range(records):
            fh.write(record)
    return path.stat().st_size


# Reads one file in a fresh process: the document rows (extract's reader), then an ingest copy;
# prints the row count, the records copied and how much the peak RSS grew meanwhile.
_MEASURE = """
import resource, sys, tempfile, os
from spark_jobs.extract.warc_reader import iter_warc
from spark_jobs.jobs.ingest import copy_records
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = sum(1 for _ in iter_warc(sys.argv[1]))
copied = copy_records(sys.argv[1], os.path.join(tempfile.mkdtemp(), "out.warc.gz"))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(n, sum(r["reason"] == "ok" for r in copied), (peak - base) * 1024)
"""


def _measure(uri: str) -> tuple[int, int, int]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", _MEASURE, uri], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    rows, copied, grown = (int(x) for x in out.stdout.split()[-3:])
    return rows, copied, grown


def test_scan_and_copy_memory_stays_bounded(tmp_path):
    """A ~150 MB WARC is read and copied in a fresh process whose peak RSS grows by far less
    than the file's size (bodies are capped, records copied in blocks)."""
    size = _big_warc(tmp_path / "big.warc.gz", 150)
    rows, copied, grown = _measure(str(tmp_path / "big.warc.gz"))
    assert (rows, copied) == (150, 150)
    assert grown < size / 4, f"grew RSS by {grown} bytes for a {size}-byte file"


def test_s3_object_is_streamed_not_read_into_memory(tmp_path):
    """From s3:// the object is downloaded to a temporary file (under C2M_STAGING_DIR), once
    per reader, and removed afterwards; memory stays far below the object's size."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    from s3_test_server import moto_s3

    from ops.lake import storage

    size = _big_warc(tmp_path / "big.warc.gz", 60)
    staging = tmp_path / "staging"
    with moto_s3():
        storage.ensure_bucket("c2m-warc")
        storage.upload_file(tmp_path / "big.warc.gz", "s3://c2m-warc/cc/big.warc.gz")
        os.environ["C2M_STAGING_DIR"] = str(staging)
        try:
            rows, copied, grown = _measure("s3://c2m-warc/cc/big.warc.gz")
        finally:
            del os.environ["C2M_STAGING_DIR"]
    assert (rows, copied) == (60, 60)
    assert grown < size / 2, f"grew RSS by {grown} bytes for a {size}-byte object"
    assert staging.is_dir() and not list(staging.iterdir())  # temporary copies removed


@pytest.mark.parametrize("gzipped, head", [(True, b"\n"), (True, b"\x00\x00\x00\x00"), (False, b"\n"),
                                           (False, b"\x1f\x8b"), (False, b"\x00\x00\x00\x00")])
def test_damaged_first_bytes_do_not_hide_the_records_after_them(tmp_path, gzipped, head):
    """The first bytes decide gzip or plain; overwritten, the first record is lost, not the file."""
    recs = wf.common_crawl_warc_records(2)
    path = tmp_path / "f.warc"
    offsets = wf.write_records(path, recs, per_record_gzip=gzipped)
    data = bytearray(path.read_bytes())
    data[:len(head)] = head
    path.write_bytes(bytes(data))
    items = _items(path)
    assert items[0].kind == "corrupt" and items[0].offset == 0
    assert [i.offset for i in items[1:]] == offsets[1:]  # every later record, where it is
    assert _summary(items)[1:] == ["request", "response", "metadata"] * 2


def test_junk_just_before_a_plain_record(tmp_path):
    recs = wf.common_crawl_warc_records(1)
    items = _items(_write(tmp_path, "j.warc", recs[0] + b"\x00junk" + b"".join(recs[1:])))
    assert _summary(items) == ["warcinfo", "CORRUPT", "request", "response", "metadata"]
