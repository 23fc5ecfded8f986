"""WARC and WET files for the ingest tests, damaged on purpose (a module, not a fixture,
so unit and Spark tests share it)."""
from __future__ import annotations

import io

from spark_test_data import english, html_page


def write_warc(path, pages: int = 4, gzip: bool = True, start: int = 0) -> list[int]:
    """warcinfo, then per page a request and a response record; returns the responses' offsets."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    offsets = []
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=gzip)
        writer.write_record(writer.create_warcinfo_record(str(path), {"software": "test"}))
        for i in range(start, start + pages):
            url = f"http://warc.test/page{i}.html"
            req = StatusAndHeaders("GET /page HTTP/1.1", [("Host", "warc.test")], is_http_request=True)
            writer.write_record(writer.create_warc_record(url, "request", http_headers=req))
            body = html_page(f"Page {i}", english(600 + i, sentences=12))
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                                  ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            offsets.append(fh.tell())
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                          length=len(body), http_headers=headers))
    return offsets


def write_wet(path, texts: list[bytes]) -> None:
    """A plain (uncompressed) WET file: one conversion record per text."""
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=False)
        for i, text in enumerate(texts):
            rec = writer.create_warc_record(f"http://wet.test/{i}", "conversion", payload=io.BytesIO(text),
                                            length=len(text),
                                            warc_headers_dict={"Content-Type": "text/plain"})
            writer.write_record(rec)


def damage(path, offsets: list[int]) -> None:
    """Overwrite bytes of the second response (its deflate data, or a plain record's first
    line) and cut the file inside the last response."""
    data = bytearray(open(path, "rb").read())
    at = offsets[1] + (40 if data[:2] == b"\x1f\x8b" else 0)
    data[at:at + 20] = b"\x00" * 20
    open(path, "wb").write(bytes(data[:offsets[-1] + 120]))
