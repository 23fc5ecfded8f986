"""Stored pages as WARC response records (warcio, gzip per record).

Files rotate every ``max_records`` records: ``part-00000.warc.gz``, ``part-00001…``, so
the extract stage gets one task per file. Because every record is its own gzip member,
records encoded elsewhere (a crawl round's files, :mod:`spark_jobs.crawl.store`) are
appended to a file byte for byte, streamed (:meth:`WarcSink.append`). The body is stored
decoded (requests undoes Content-Encoding), so Content-Encoding/Transfer-Encoding are
dropped from the stored headers and Content-Length is set to the stored length: a WARC
reader then sees a consistent record.
"""
from __future__ import annotations

import os
import shutil
from io import BytesIO
from typing import Any, BinaryIO

WARC_PATTERN = "part-{:05d}.warc.gz"
COPY_CHUNK = 1 << 20


class WarcSink:
    """Append response records to rotating WARC files in a folder."""

    def __init__(self, folder: str, max_records: int = 1000, software: str = "crawl2model"):
        self.folder = folder
        self.max_records = max_records
        self.software = software
        self.files: list[str] = []
        self._fh = None
        self._writer = None
        self._count = 0

    def _open(self) -> None:
        from warcio.warcwriter import WARCWriter

        self.close()
        name = WARC_PATTERN.format(len(self.files))
        self.files.append(name)
        self._fh = open(os.path.join(self.folder, name), "wb")
        self._writer = WARCWriter(self._fh, gzip=True)
        info = self._writer.create_warcinfo_record(name, {"software": self.software, "format": "WARC/1.0"})
        self._writer.write_record(info)
        self._count = 0

    def write(self, result: dict[str, Any]) -> None:
        """Write one stored page (a fetch result with reason 'ok')."""
        if self._writer is None or self._count >= self.max_records:
            self._open()
        write_response(self._writer, result)
        self._count += 1

    def append(self, stream: BinaryIO, records: int) -> None:
        """Append ``records`` records already encoded as gzip members (one crawl round's host),
        copied in chunks: memory stays bounded whatever the size."""
        if not records:
            return
        if self._writer is None or self._count >= self.max_records:
            self._open()
        shutil.copyfileobj(stream, self._fh, COPY_CHUNK)
        self._count += records

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._writer = None


def write_response(writer, result: dict[str, Any]) -> None:
    """One stored page (a fetch result with reason 'ok') as a response record."""
    from warcio.statusandheaders import StatusAndHeaders

    body = result["body"] or b""
    headers = [(k, v) for k, v in result["headers"]] + [("Content-Length", str(len(body)))]
    http_headers = StatusAndHeaders(f"{result['status']} OK", headers, protocol="HTTP/1.1")
    record = writer.create_warc_record(
        result["final_url"], "response", payload=BytesIO(body), length=len(body),
        http_headers=http_headers, warc_headers_dict={"WARC-Date": result["fetched_at"]},
    )
    writer.write_record(record)
