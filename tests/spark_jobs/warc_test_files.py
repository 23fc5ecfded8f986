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


# ---------------------------------------------------------------- files as other tools write them
# Byte-exact records built by hand (so the tests control every header, as each tool writes
# them), gzipped one member per record unless a test says otherwise.

def http_response(body: bytes, content_type: str = "text/html; charset=utf-8",
                  status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def http_request(url: str) -> bytes:
    path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
    return f"GET {path} HTTP/1.1\r\nHost: {url.split('/')[2]}\r\nUser-Agent: test\r\n\r\n".encode()


def warc_record(rec_type: str, block: bytes, url: str | None = None, headers: dict | None = None,
                version: str = "1.0", content_length: int | None = None) -> bytes:
    """One plain WARC record with its CRLF CRLF separator; ``content_length`` may lie."""
    import hashlib
    import uuid

    rid = uuid.UUID(bytes=hashlib.sha1(f"{rec_type} {url}".encode() + block).digest()[:16])
    lines = [f"WARC/{version}", f"WARC-Type: {rec_type}", f"WARC-Record-ID: <urn:uuid:{rid}>",
             "WARC-Date: 2026-03-01T12:00:00Z"]
    if url:
        lines.append(f"WARC-Target-URI: {url}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(block) if content_length is None else content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + block + b"\r\n\r\n"


def gz(record: bytes) -> bytes:
    import gzip as gzip_mod

    return gzip_mod.compress(record, mtime=0)


def write_records(path, records: list[bytes], per_record_gzip: bool = True) -> list[int]:
    """Write records (one gzip member each, or plain); returns each record's offset."""
    offsets, pos = [], 0
    with open(path, "wb") as fh:
        for rec in records:
            data = gz(rec) if per_record_gzip else rec
            offsets.append(pos)
            fh.write(data)
            pos += len(data)
    return offsets


def page(i: int, host: str = "tool.test") -> tuple[str, bytes]:
    return f"http://{host}/p{i}.html", html_page(f"Page {i} of {host}", english(900 + i, sentences=12))


def warcinfo(software: str) -> bytes:
    return warc_record("warcinfo", f"software: {software}\r\nformat: WARC File Format 1.0\r\n".encode(),
                       headers={"WARC-Filename": "x.warc.gz", "Content-Type": "application/warc-fields"})


def wget_records(pages: int = 2) -> list[bytes]:
    """GNU wget --warc-file: warcinfo, request + response + metadata per page, then the log as
    a resource and its arguments as metadata."""
    recs = [warcinfo("Wget/1.21.4")]
    for i in range(pages):
        url, body = page(i, "wget.test")
        recs += [warc_record("request", http_request(url), url,
                             {"Content-Type": "application/http;msgtype=request"}),
                 warc_record("response", http_response(body), url,
                             {"Content-Type": "application/http;msgtype=response",
                              "WARC-IP-Address": "10.0.0.1"}),
                 warc_record("metadata", b"outlinks: none\r\n", url,
                             {"Content-Type": "application/warc-fields"})]
    recs.append(warc_record("resource", b"wget log line\n", "urn:X-wget-log", {"Content-Type": "text/plain"}))
    recs.append(warc_record("metadata", b"--warc-file=x\n",
                            "metadata://gnu.org/software/wget/warc/wget_arguments.txt",
                            {"Content-Type": "text/plain"}))
    return recs


def wpull_records(pages: int = 2) -> list[bytes]:
    """wpull: WARC/1.0 with digests, request/response pairs, a log resource at the end."""
    recs = [warcinfo("wpull/2.0.1")]
    for i in range(pages):
        url, body = page(i, "wpull.test")
        digest = {"WARC-Block-Digest": "sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
        recs += [warc_record("request", http_request(url), url, digest),
                 warc_record("response", http_response(body), url,
                             {**digest, "WARC-Payload-Digest": "sha1:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"})]
    recs.append(warc_record("resource", b"INFO wpull finished\n", "urn:X-wpull:log",
                            {"Content-Type": "text/plain"}))
    return recs


REVISIT_PROFILE = "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest"


def heritrix_records(pages: int = 2) -> list[bytes]:
    """Heritrix / warcprox: response, request and metadata per page, then a revisit of each
    page (HTTP headers only, ``WARC-Refers-To``, ``WARC-Profile``) and a 404 and a redirect."""
    recs = [warcinfo("Heritrix/3.4.0 warcprox/2.4")]
    for i in range(pages):
        url, body = page(i, "heritrix.test")
        recs += [warc_record("response", http_response(body), url, {"WARC-Payload-Digest": f"sha1:P{i}"}),
                 warc_record("request", http_request(url), url),
                 warc_record("metadata", b"via: http://heritrix.test/\r\nhopsFromSeed: L\r\n", url)]
    for i in range(pages):
        url, _ = page(i, "heritrix.test")
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
        recs.append(warc_record("revisit", head, url, {
            "WARC-Profile": REVISIT_PROFILE,
            "WARC-Refers-To": f"<urn:uuid:00000000-0000-0000-0000-00000000000{i}>",
            "WARC-Refers-To-Target-URI": url, "WARC-Refers-To-Date": "2026-02-01T00:00:00Z",
            "WARC-Payload-Digest": f"sha1:P{i}"}))
    recs.append(warc_record("response", http_response(b"<html>gone</html>", status="404 Not Found"),
                            "http://heritrix.test/missing"))
    recs.append(warc_record("response", http_response(b"", status="301 Moved Permanently"),
                            "http://heritrix.test/old"))
    return recs


def common_crawl_warc_records(pages: int = 2) -> list[bytes]:
    """Common Crawl WARC: request, response, metadata per page (WARC/1.0, per-record gzip)."""
    recs = [warcinfo("Apache Nutch 1.19 (modified, https://github.com/commoncrawl/)")]
    for i in range(pages):
        url, body = page(i, "cc.test")
        recs += [warc_record("request", http_request(url), url, {"WARC-IP-Address": "1.2.3.4"}),
                 warc_record("response", http_response(body), url,
                             {"WARC-Identified-Payload-Type": "text/html"}),
                 warc_record("metadata", b"fetchTimeMs: 123\r\ncharset-detected: UTF-8\r\n", url,
                             {"Content-Type": "application/warc-fields"})]
    return recs


def wet_text(i: int) -> bytes:
    return english(1300 + i, sentences=10).encode()


def common_crawl_wet_records(pages: int = 2) -> list[bytes]:
    """Common Crawl WET: warcinfo, then one conversion record (text/plain) per page."""
    recs = [warcinfo("Apache Nutch 1.19 WET")]
    for i in range(pages):
        url = f"http://wet.test/p{i}.html"
        recs.append(warc_record("conversion", wet_text(i), url, {
            "WARC-Refers-To": f"<urn:uuid:10000000-0000-0000-0000-00000000000{i}>",
            "WARC-Block-Digest": "sha1:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",
            "Content-Type": "text/plain",
            "WARC-Identified-Content-Language": "eng"}))
    return recs


def resource_records() -> list[bytes]:
    """resource records: an HTML page, a text file and an image, no HTTP headers."""
    url, body = page(0, "resource.test")
    return [warcinfo("test"),
            warc_record("resource", body, url, {"Content-Type": "text/html; charset=utf-8"}),
            warc_record("resource", wet_text(7), "file:///notes.txt", {"Content-Type": "text/plain"}),
            warc_record("resource", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "http://resource.test/i.png",
                        {"Content-Type": "image/png"})]


def arc_records(pages: int = 2) -> list[bytes]:
    """ARC v1 (Internet Archive, before WARC): a ``filedesc://`` header record, then one-line
    record headers ``URL IP date content-type length``; each record ends with a newline."""
    def rec(header: str, block: bytes) -> bytes:
        return f"{header} {len(block)}\n".encode() + block + b"\n"

    desc = b"1 0 Internet Archive\nURL IP-address Archive-date Content-type Archive-length\n"
    recs = [rec("filedesc://test.arc 0.0.0.0 20260301120000 text/plain", desc)]
    for i in range(pages):
        url, body = page(i, "arc.test")
        recs.append(rec(f"{url} 10.0.0.2 2026030112000{i} text/html", http_response(body)))
    return recs
