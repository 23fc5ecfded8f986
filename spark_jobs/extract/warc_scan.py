"""Read WARC/WET/ARC files record by record without letting one damaged record stop the job.

Crawl archives arrive truncated (an interrupted upload), with damaged gzip members, garbage
between members, or records whose Content-Length lies. warcio either raises on these
(every later record would be lost) or reads on without a word (a short or swallowed record
vanishes, or passes as whole). :func:`scan_warc` checks every record (it must end where its
Content-Length says, followed by the CRLF CRLF separator, and, in ``.warc.gz``, fill exactly
one gzip member) and turns every damaged stretch into one ``corrupt`` item with the byte
offset where it starts. It then resynchronises on the next record boundary (the next gzip
member that decompresses to a record header, in ``.warc.gz``; the next ``WARC/1.x`` or ARC
header line in plain files), so the records after the damage are still read. Whether a file
is gzipped is judged from its first bytes, or, when they are damaged, from which kind of
boundary comes first.

Each good record comes with its byte range in the file, so an ingest can copy records
verbatim (see :mod:`spark_jobs.jobs.ingest`). A file gzipped whole (one gzip member for all
records, as ``gzip file.warc`` makes) has no per-record ranges: :func:`open_warc`
decompresses it, as a stream, into a plain temporary file and scans that.

Memory stays bounded whatever the file size: files are read in blocks of at most a few MiB,
a record's body only up to ``read_cap``, and an ``s3://`` object is downloaded to a
temporary file (under ``$C2M_STAGING_DIR``) rather than read into memory.
"""
from __future__ import annotations

import os
import re
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

GZIP_MAGIC = b"\x1f\x8b\x08"
WARC_LINE = b"WARC/1."
# Records that are documents: HTTP responses and archived resources (WARC), extracted text (WET).
DOCUMENT_TYPES = ("response", "resource", "conversion")
# A plain record starts with a WARC version line followed by a header line (junk may come just
# before it), or at a line that is an ARC v1 record header (``URL IP-address date type length``).
_PLAIN_START = re.compile(rb"WARC/1\.[0-9]\r?\n[A-Za-z][A-Za-z0-9-]*:"
                          rb"|(?m:^[a-z][a-z0-9+.-]*://\S+ \S+ [0-9]{14} \S+ [0-9]+\r?$)")
_SCAN_CHUNK = 1 << 20
_GUNZIP_STEP = 4096  # compressed bytes per step: a damaged step loses only its own output
_BLANK = b"\r\n \t\x00"


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


class _BadRecord(Exception):
    """A record warcio parsed, but whose bytes do not match its headers."""


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _parse(rec, read_cap: int) -> WarcItem:
    http = rec.http_headers
    status = http.get_statuscode() if http is not None else None
    headers = http if http is not None else rec.rec_headers
    body = rec.content_stream().read(read_cap + 1) if rec.rec_type in DOCUMENT_TYPES and read_cap else b""
    content_type = headers.get_header("Content-Type") or rec.rec_headers.get_header("Content-Type")
    return WarcItem("record", 0, rec_type=rec.rec_type,
                    url=rec.rec_headers.get_header("WARC-Target-URI"),
                    date=rec.rec_headers.get_header("WARC-Date"),
                    http_status=int(status) if status and str(status).isdigit() else None,
                    content_type=content_type, body=body)


def _declared_length(rec) -> None:
    value = rec.rec_headers.get_header("Content-Length")
    if value is None or not value.strip().isdigit():
        raise _BadRecord(f"record has no valid Content-Length ({value!r})")


def _peek(fh: BinaryIO, offset: int, n: int) -> bytes:
    """``n`` bytes at ``offset``, leaving the handle where it was (warcio reads on from there)."""
    here = fh.tell()
    fh.seek(max(offset, 0))
    data = fh.read(n)
    fh.seek(here)
    return data


def _check_record(reader, rec, fh: BinaryIO, gz: bool, start: int, errors_before: int,
                  end: int) -> tuple[int, int]:
    """The record's (offset, length) once warcio has read it to its end; _BadRecord if it lies."""
    offset, length = reader.get_record_offset(), reader.get_record_length()  # reads the record to its end
    short = getattr(rec.raw_stream, "limit", 0)
    if short > 0:
        raise _BadRecord(f"record ends {short} bytes before its Content-Length (truncated or damaged)")
    if reader.err_count > errors_before:
        raise _BadRecord("record not followed by CRLF CRLF: its Content-Length does not match its block")
    if offset != start or length <= 0 or offset + length > end:
        raise _BadRecord(f"record range {offset}+{length} is outside the stretch read ({start}..{end})")
    if gz and not _one_member(fh, reader, offset, length):
        raise _BadRecord("gzip member does not hold exactly one record")
    return offset, length


def _one_member(fh: BinaryIO, reader, offset: int, length: int) -> bool:
    """Whether ``offset``..``offset+length`` is one gzip member that held just this record: it
    starts with the gzip magic and its trailer's ISIZE is what warcio decompressed of it."""
    member_bytes = reader.reader.num_block_read  # decompressed bytes of the current member
    isize = int.from_bytes(_peek(fh, offset + length - 4, 4), "little")
    return _peek(fh, offset, 3) == GZIP_MAGIC and isize == member_bytes & 0xFFFFFFFF


def _valid_member(fh: BinaryIO, at: int) -> bool:
    """Whether a gzip member that starts with a record starts at ``at`` (not just the magic bytes
    inside deflate data, or a gzip-encoded HTTP body)."""
    head = _peek(fh, at, 64 * 1024)
    if not head.startswith(GZIP_MAGIC) or len(head) < 10 or head[3] & 0xE0:
        return False
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(head, 4096)
    except zlib.error:
        return False
    return _PLAIN_START.match(out) is not None


def _next_boundary(fh: BinaryIO, start: int, end: int, gz: bool) -> int | None:
    """Absolute offset of the next record start at or after ``start`` (before ``end``), or None."""
    pos = start
    overlap = 256  # an ARC header line or the gzip magic may straddle two blocks
    while pos < end:
        chunk = _peek(fh, pos, min(_SCAN_CHUNK + overlap, end - pos))
        if gz:
            at = chunk.find(GZIP_MAGIC)
            while at >= 0 and not _valid_member(fh, pos + at):
                at = chunk.find(GZIP_MAGIC, at + 1)
        else:
            at = -1
            for m in _PLAIN_START.finditer(chunk):
                line_start = m.start() > 0 or pos == 0 or _peek(fh, pos - 1, 1) == b"\n"
                if chunk.startswith(WARC_LINE, m.start()) or line_start:
                    at = m.start()
                    break
        if at >= 0:
            return pos + at
        pos += _SCAN_CHUNK
    return None


def _separator_end(fh: BinaryIO, offset: int, end: int) -> int:
    """``offset`` moved past the CRLF CRLF separator of a plain record that ends there, within the file."""
    offset = min(max(offset, 0), end)
    return offset + 4 if offset + 4 <= end and _peek(fh, offset, 4) == b"\r\n\r\n" else offset


def _is_gzip(fh: BinaryIO, start: int) -> bool:
    return _peek(fh, start, 2) == GZIP_MAGIC[:2]


def _looks_gzipped(fh: BinaryIO, start: int, end: int) -> bool:
    """Whether the stretch is gzip members: it starts with one that holds a record, or, when its
    first bytes are damaged (neither such a member nor a record line), such a member comes
    before the first plain record line."""
    if _PLAIN_START.match(_peek(fh, start, 512)):
        return False
    if _is_gzip(fh, start) and _valid_member(fh, start):
        return True
    probe = min(end, start + _SCAN_CHUNK)
    member, line = _next_boundary(fh, start, probe, gz=True), _next_boundary(fh, start, probe, gz=False)
    return member is not None and (line is None or member < line)


def scan_warc(fh: BinaryIO, size: int, read_cap: int = 2 * 1024 * 1024, start: int = 0,
              gz: bool | None = None) -> Iterator[WarcItem]:
    """Every record of a seekable WARC/ARC stream between ``start`` and ``size``, plus a
    ``corrupt`` item for each damaged stretch. Never raises for what the bytes hold. ``gz``
    (gzip members or plain records) is found from the bytes unless given."""
    from warcio.archiveiterator import ArchiveIterator

    gz = _looks_gzipped(fh, start, size) if gz is None else gz
    pos = start
    while pos < size:
        fh.seek(pos)
        reader = ArchiveIterator(fh, arc2warc=True)
        last_end = pos  # end of the last whole record: where damage would start
        damaged_at, error = None, None
        try:
            for rec in reader:
                begin, errors_before = reader.offset, reader.err_count
                try:
                    _declared_length(rec)
                    item = _parse(rec, read_cap)
                    item.offset, item.length = _check_record(reader, rec, fh, gz, begin, errors_before, size)
                except _BadRecord as exc:
                    damaged_at, error = begin, str(exc)
                    break
                last_end = item.offset + item.length
                yield item
            else:
                fh.seek(last_end)
                if _has_data(fh, last_end, size):
                    damaged_at = _separator_end(fh, last_end, size)
                    error = f"unreadable: {size - damaged_at} bytes after the last whole record"
        except Exception as exc:  # warcio, gzip and zlib raise many types on damaged input
            damaged_at, error = _separator_end(fh, last_end, size), _error(exc)
        if damaged_at is None:
            return
        damaged_at = min(max(damaged_at, pos), size)
        yield WarcItem("corrupt", damaged_at, error=error)
        resume = _next_boundary(fh, damaged_at + 1, size, gz)
        if resume is None:
            return
        pos = resume


def _has_data(fh: BinaryIO, offset: int, end: int) -> bool:
    """Whether anything but blank lines and zero padding lies between ``offset`` and ``end``."""
    pos = offset
    while pos < end:
        if _peek(fh, pos, min(_SCAN_CHUNK, end - pos)).strip(_BLANK):
            return True
        pos += _SCAN_CHUNK
    return False


# ---------------------------------------------------------------- files: local, s3://, gzipped whole

@dataclass
class WarcSource:
    """A local, seekable copy of one WARC file, and how to scan it.

    ``plan`` is empty for a file scanned as it is. For a file gzipped whole, ``path`` is its
    decompressed copy and ``plan`` lists its good stretches (``("stretch", start, end)``)
    and the damage the decompression found (``("damage", WarcItem)``, offsets in the
    compressed file), in file order.
    """

    path: str
    size: int
    gz: bool
    plan: list = field(default_factory=list)


@contextmanager
def open_warc(uri: str) -> Iterator[WarcSource]:
    """A :class:`WarcSource` for a local path or an ``s3://`` object (downloaded to a temporary
    file, streamed to disk); temporary files are removed when the block ends."""
    from ops.lake import storage
    from spark_jobs.staging import staging_dir

    temps: list[str] = []
    try:
        path = uri
        if storage.is_s3(uri):
            path = _temp_name(temps, staging_dir(), ".warc")
            storage.download_file(uri, path)
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            gz = _looks_gzipped(fh, 0, size)
            whole = gz and _single_stream(fh, size)
        if not whole:
            yield WarcSource(path, size, gz)
            return
        plain = _temp_name(temps, staging_dir(), ".warc")
        with open(path, "rb") as fh, open(plain, "wb") as out:
            plan = gunzip_members(fh, size, out)
        yield WarcSource(plain, os.path.getsize(plain), False, plan)
    finally:
        for name in temps:
            if os.path.exists(name):
                os.unlink(name)


def _temp_name(temps: list[str], folder: str | None, suffix: str) -> str:
    import tempfile

    fd, name = tempfile.mkstemp(prefix="c2m-warc-", suffix=suffix, dir=folder)
    os.close(fd)
    temps.append(name)
    return name


def scan_source(src: WarcSource, read_cap: int = 2 * 1024 * 1024) -> Iterator[WarcItem]:
    """The items of a :class:`WarcSource`. In a file gzipped whole, a record cut by damage to
    the gzip stream and that damage are one corrupt item (the decompression's)."""
    with open(src.path, "rb") as fh:
        if not src.plan:
            yield from scan_warc(fh, src.size, read_cap, gz=src.gz)
            return
        pending = None  # a stretch's last item when corrupt: the damage that follows may be the same
        for entry in src.plan:
            if entry[0] == "damage":
                yield entry[1]
                pending = None
                continue
            if pending is not None:
                yield pending
                pending = None
            for item in scan_warc(fh, entry[2], read_cap, start=entry[1], gz=False):
                if pending is not None:
                    yield pending
                pending = item if item.kind == "corrupt" else None
                if pending is None:
                    yield item
        if pending is not None:
            yield pending


# ---------------------------------------------------------------- gzip streams

def _first_record_size(head: bytes) -> int | None:
    """Bytes of the first record (with its separator) from the start of the decompressed data."""
    if head.startswith(WARC_LINE):
        end = head.find(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*([0-9]+)\s*$", head[:end if end > 0 else None])
        return end + 4 + int(m.group(1)) + 4 if end > 0 and m else None
    line, nl, _ = head.partition(b"\n")
    parts = line.split()
    if nl and len(parts) >= 5 and parts[-1].isdigit():  # ARC: the header line names the length
        return len(line) + 1 + int(parts[-1]) + 1
    return None


def _single_stream(fh: BinaryIO, size: int) -> bool:
    """Whether the first gzip member holds more than one record (a file gzipped whole), judged
    from what decompresses before any damage or the end of the file."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    head, total, first = b"", 0, None
    fh.seek(0)
    while not d.eof:
        # small steps until the first record is measured: what decompresses before damage counts
        data = d.unconsumed_tail or fh.read(512 if first is None else 65536)
        try:
            out = d.decompress(data, _SCAN_CHUNK) if data else b""
        except zlib.error:
            out, data = b"", b""
        total += len(out)
        head += out[:65536 - len(head)]
        if first is None and (len(head) >= 65536 or d.eof or not data):
            first = _first_record_size(head)
            if first is None:
                return False  # not a record we can measure: scanned as a member-per-record file
        if total > first + 64 if first is not None else False:
            return True
        if not data:
            return False
    return False


def gunzip_members(fh: BinaryIO, size: int, out: BinaryIO) -> list:
    """Decompress every gzip member of ``fh`` into ``out`` as a stream; returns the plan of
    :class:`WarcSource` (good stretches of ``out``, and damage with its compressed offset).
    A damaged member ends its stretch; decompression resumes at the next valid member."""
    plan: list = []
    stretch_start, pos = 0, 0
    while pos < size:
        damage, pos = _gunzip_one(fh, pos, size, out)
        if damage is None:
            continue
        plan.append(("stretch", stretch_start, out.tell()))
        plan.append(("damage", damage))
        stretch_start = out.tell()
        resume = _next_boundary(fh, damage.offset + 1, size, gz=True)
        if resume is None:
            break
        pos = resume
    if out.tell() > stretch_start or not plan:
        plan.append(("stretch", stretch_start, out.tell()))
    out.flush()
    return plan


def _gunzip_one(fh: BinaryIO, start: int, size: int, out: BinaryIO) -> tuple[WarcItem | None, int]:
    """Decompress the member at ``start`` into ``out``; (damage or None, where the next one starts)."""
    fh.seek(start)
    if not _peek(fh, start, 64).strip(_BLANK):  # zero padding or blank lines: skip them
        return _skip_blank(fh, start, size)
    if _peek(fh, start, 3) != GZIP_MAGIC:
        return WarcItem("corrupt", start, error="not a gzip member: bytes between gzip members"), start
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    read, written = start, 0
    try:
        while not d.eof:
            data = d.unconsumed_tail
            if not data:
                data = fh.read(min(_GUNZIP_STEP, size - read))
                read += len(data)
                if not data:
                    return WarcItem("corrupt", start, error="truncated gzip member"), size
            chunk = d.decompress(data, _SCAN_CHUNK)
            written += len(chunk)
            out.write(chunk)
    except zlib.error as exc:
        _salvage(fh, start, written, out)
        return WarcItem("corrupt", start, error=f"damaged gzip member: {exc}"), start
    return None, read - len(d.unused_data)


def _salvage(fh: BinaryIO, start: int, written: int, out: BinaryIO, step: int = 64) -> None:
    """After a damaged step: decompress the member again in ``step``-byte steps and write what
    comes out before the damage beyond the ``written`` bytes (a damaged step's output is lost)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    fh.seek(start)
    total = 0
    try:
        while not d.eof:
            data = d.unconsumed_tail or fh.read(step)
            if not data:
                return
            chunk = d.decompress(data, _SCAN_CHUNK)
            if total + len(chunk) > written:
                out.write(chunk[max(0, written - total):])
            total += len(chunk)
    except zlib.error:
        return


def _skip_blank(fh: BinaryIO, start: int, size: int) -> tuple[None, int]:
    pos = start
    while pos < size:
        chunk = _peek(fh, pos, min(_SCAN_CHUNK, size - pos))
        lead = len(chunk) - len(chunk.lstrip(_BLANK))
        if lead < len(chunk):
            return None, pos + lead
        pos += len(chunk)
    return None, size
