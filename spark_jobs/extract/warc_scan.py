"""Read WARC/WET files record by record without letting one damaged record stop the job.

Crawl archives arrive truncated (an interrupted upload) or with damaged records, and
warcio either raises (bad header or deflate data: every later record would be lost) or,
for a file cut short, stops without a word (the cut record vanishes). :func:`scan_warc`
turns both into ``corrupt`` items with the byte offset where the damage starts, and then
resynchronises on the next record boundary (the next gzip member header in ``.warc.gz``,
the next ``WARC/1.x`` line in plain WARC), so the records after it are still read.

Each good record comes with its byte range in the file, so an ingest can copy records
verbatim (see :mod:`spark_jobs.jobs.ingest`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Iterator

GZIP_MAGIC = b"\x1f\x8b\x08"
WARC_LINE = b"WARC/1."
DOCUMENT_TYPES = ("response", "conversion")  # HTTP responses (WARC) and extracted text (WET)
_SCAN_CHUNK = 1 << 20


@dataclass
class WarcItem:
    """One record (or one damaged stretch, ``kind == "corrupt"``) of a WARC file."""

    kind: str  # "record" or "corrupt"
    offset: int
    length: int | None = None  # bytes in the file (plain WARC: without the CRLF CRLF separator)
    rec_type: str | None = None
    url: str | None = None
    date: str | None = None
    http_status: int | None = None
    content_type: str | None = None
    body: bytes = b""  # up to read_cap + 1 bytes
    error: str | None = None


def _parse(rec, offset: int, read_cap: int) -> WarcItem:
    http = rec.http_headers
    status = http.get_statuscode() if http is not None else None
    headers = http if http is not None else rec.rec_headers
    body = rec.content_stream().read(read_cap + 1) if rec.rec_type in DOCUMENT_TYPES else b""
    return WarcItem("record", offset, rec_type=rec.rec_type,
                    url=rec.rec_headers.get_header("WARC-Target-URI"),
                    date=rec.rec_headers.get_header("WARC-Date"),
                    http_status=int(status) if status and str(status).isdigit() else None,
                    content_type=headers.get_header("Content-Type"), body=body)


def _next_boundary(fh: BinaryIO, start: int, size: int, gz: bool) -> int | None:
    """Absolute offset of the next record start at or after ``start``, or None."""
    marker = GZIP_MAGIC if gz else WARC_LINE
    pos = start
    while pos < size:
        fh.seek(pos)
        chunk = fh.read(_SCAN_CHUNK + len(marker))
        at = chunk.find(marker)
        while at >= 0 and not gz and at > 0 and chunk[at - 1:at] != b"\n":
            at = chunk.find(marker, at + 1)  # plain WARC: the version line starts a line
        if at >= 0:
            return pos + at
        pos += _SCAN_CHUNK
    return None


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def scan_warc(fh: BinaryIO, size: int, read_cap: int = 2 * 1024 * 1024) -> Iterator[WarcItem]:
    """Every record of a seekable WARC stream, plus a ``corrupt`` item for each damaged stretch."""
    from warcio.archiveiterator import ArchiveIterator

    fh.seek(0)
    gz = fh.read(2) == GZIP_MAGIC[:2]
    pos = 0
    while pos < size:
        fh.seek(pos)
        reader = ArchiveIterator(fh)
        last_end = pos  # end of the last whole record: where damage would start
        try:
            for rec in reader:
                item = _parse(rec, 0, read_cap)
                # warcio knows a record's offset and length once it has read to its end (it does so here)
                item.offset, item.length = reader.get_record_offset(), reader.get_record_length()
                last_end = item.offset + item.length
                yield item
        except Exception as exc:  # warcio, gzip and zlib raise many types on damaged input
            damaged_at = last_end + _separator_at(fh, last_end)
            yield WarcItem("corrupt", damaged_at, error=_error(exc))
            resume = _next_boundary(fh, damaged_at + 1, size, gz)
            if resume is None:
                return
            pos = resume
            continue
        fh.seek(last_end)
        tail = fh.read(size - last_end)
        if tail.strip(b"\r\n \t\x00"):
            at = last_end + _separator_at(fh, last_end)
            yield WarcItem("corrupt", at, error=f"truncated: {size - at} bytes after the last whole record")
        return


def _separator_at(fh: BinaryIO, offset: int) -> int:
    """4 if a plain WARC record separator (CRLF CRLF) starts at ``offset``, else 0."""
    fh.seek(offset)
    return 4 if fh.read(4) == b"\r\n\r\n" else 0


def open_sized(uri: str) -> tuple[BinaryIO, int]:
    """A seekable handle and the size of a local or s3:// file (S3 objects are fetched whole)."""
    import io
    import os

    from ops import storage

    if storage.is_s3(uri):
        data = storage.read_bytes(uri)
        return io.BytesIO(data), len(data)
    return open(uri, "rb"), os.path.getsize(uri)
