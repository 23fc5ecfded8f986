"""Charsets by the WHATWG Encoding Standard: labels outside its table, replacement labels,
x-user-defined, the time limit around decoding, and an extract stage over such pages."""
from __future__ import annotations

import codecs
import io
import os
import time

import pytest

from spark_test_data import english, html_page
from spark_jobs.extract import steps as ex
from spark_jobs.extract.charsets import LABELS, PYTHON_CODECS, encoding_for
from spark_jobs.extract.decode import UNKNOWN_CHARSET, decode_html, decode_page
from spark_jobs.steps import apply_steps

# Names Python's codecs accept that are no text encoding, or none a page may declare
BOGUS = ["base64", "rot13", "rot_13", "hex", "zlib_codec", "zlib", "bz2", "uu", "quopri", "idna", "punycode",
         "utf-7", "utf_32", "unicode_escape", "raw_unicode_escape", "mbcs", "palmos", "undefined"]
REPLACEMENT_LABELS = ["iso-2022-kr", "csiso2022kr", "hz-gb-2312", "iso-2022-cn", "iso-2022-cn-ext",
                      "replacement"]


def _doc(html: bytes, content_type="text/html"):
    return {"id": "x", "url": "http://h.test/p.html", "html": html, "html_bytes": len(html),
            "content_type": content_type, "http_status": 200}


def test_every_label_maps_to_a_python_codec_or_a_special_decoder():
    assert len(LABELS) == 228
    for name in set(LABELS.values()) - {"replacement", "x-user-defined"}:
        codecs.lookup(PYTHON_CODECS[name])
    assert encoding_for("  Latin1\t") == "windows-1252" and encoding_for("SJIS") == "shift_jis"
    assert all(encoding_for(label) is None for label in BOGUS)


@pytest.mark.parametrize("label", BOGUS)
@pytest.mark.parametrize("where", ["header", "meta", "http-equiv"])
def test_bogus_charset_is_sniffed_kept_and_noted(label, where):
    text = english(5)
    meta = {"header": "", "meta": f'<meta charset="{label}">',
            "http-equiv": f'<meta http-equiv="Content-Type" content="text/html; charset={label}">'}[where]
    body = html_page("Bogus", text).replace(b"<head>", f"<head>{meta}".encode(), 1)
    ctype = f"text/html; charset={label}" if where == "header" else "text/html"
    decoded = decode_page(body, ctype)
    assert decoded.note == UNKNOWN_CHARSET and decoded.encoding == "utf-8"
    doc, reason = apply_steps(_doc(body, ctype), ex.default_steps())
    assert reason is None and doc[ex.CHARSET_NOTE] == UNKNOWN_CHARSET
    assert text.split("\n")[0] in doc["text"]


def test_a_known_label_after_a_bogus_one_is_used():
    body = '<meta charset="windows-1251">Привет'.encode("cp1251")
    decoded = decode_page(body, "text/html; charset=base64")
    assert decoded.text.endswith("Привет") and decoded.encoding == "windows-1251"
    assert decoded.note == UNKNOWN_CHARSET


@pytest.mark.parametrize("label", REPLACEMENT_LABELS)
def test_replacement_labels_decode_to_one_replacement_character(label):
    body = html_page("K", english(1))
    assert decode_html(body, f"text/html; charset={label}") == "\ufffd"
    assert apply_steps(_doc(body, f"text/html; charset={label}"), ex.default_steps())[1] == \
        ex.UNSUPPORTED_CHARSET


def test_meta_prescan_corrections_and_x_user_defined():
    assert decode_html(b"a\x80\xff", "text/html; charset=x-user-defined") == "a\uf780\uf7ff"
    # a meta found by reading ASCII cannot mean UTF-16 (UTF-8 instead), nor x-user-defined (windows-1252)
    assert decode_page('<meta charset="utf-16">é'.encode()).encoding == "utf-8"
    assert decode_page(b'<meta charset="x-user-defined">\x93q\x94').text.endswith("\u201cq\u201d")
    assert decode_html("é".encode("utf-16-be"), "text/html; charset=utf-16be") == "é"


def test_decoding_runs_under_the_page_time_limit(monkeypatch):
    """A decode that stalls (injected: the table's codecs are linear) is dropped as extract_timeout."""
    def stalled(*args, **kwargs):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pass

    monkeypatch.setattr(ex, "decode_page", stalled)
    started = time.monotonic()
    _, reason = apply_steps(_doc(html_page("Slow", english(1))), [ex.DecodeHtml(timeout=0.2)])
    assert reason == ex.EXTRACT_TIMEOUT and time.monotonic() - started < 2


def _write_warc(path, pages: list[tuple[str, bytes]]) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for i, (ctype, body) in enumerate(pages):
            fields = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
            headers = StatusAndHeaders("200 OK", fields, protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(f"http://cs.test/{i}.html", "response",
                                                          payload=io.BytesIO(body), length=len(body),
                                                          http_headers=headers))


@pytest.mark.spark
def test_extract_stage_counts_bogus_and_replacement_charsets(spark, tmp_path):
    from spark_jobs.jobs import extract

    pages = [(f"text/html; charset={label}", html_page(f"P{i}", english(700 + i)))
             for i, label in enumerate(["base64", "zlib_codec", "utf-7", "iso-2022-kr"])]
    meta = b'<head><meta charset="bz2">'
    pages.append(("text/html", html_page("M", english(710)).replace(b"<head>", meta, 1)))
    _write_warc(tmp_path / "cs.warc.gz", pages)
    manifest = extract.main(["--root", str(tmp_path), "--version", "cs",
                             "--warc-glob", str(tmp_path / "*.warc.gz")], spark=spark)
    assert manifest["rows_in"] == 5 and manifest["rows_out"] == 4
    assert manifest["dropped"] == {ex.UNSUPPORTED_CHARSET: 1}
    assert manifest["charset_notes"] == {UNKNOWN_CHARSET: 4}
    from ops.lake.datasets import DatasetVersion

    removed = DatasetVersion(str(tmp_path), "extracted", "cs").data_path("removed")
    assert os.listdir(removed) == [ex.UNSUPPORTED_CHARSET]
