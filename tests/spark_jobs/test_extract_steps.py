"""Extraction steps without Spark: one test per drop reason, charset decoding, language ID."""
from __future__ import annotations

import pytest

from spark_test_data import english, html_page
from spark_jobs.extract import steps as ex
from spark_jobs.extract.decode import DecodeError, decode_html
from spark_jobs.steps import apply_steps


def _doc(html: bytes, content_type="text/html", status=200, **kw):
    return {"id": "x", "url": "http://h.test/p.html", "html": html, "html_bytes": len(html),
            "content_type": content_type, "http_status": status, **kw}


def _run(doc):
    return apply_steps(doc, ex.default_steps())


def test_good_page_is_extracted_with_title_and_language():
    doc, reason = _run(_doc(html_page("A Page", english(7))))
    assert reason is None
    assert "Copyright footer" not in doc["text"]  # boilerplate removed
    assert english(7).split("\n")[0] in doc["text"]
    assert doc["title"] == "A Page"
    assert doc["lang"] == "en" and 0.5 < doc["lang_score"] <= 1.0
    assert "html" not in doc


def test_not_html():
    assert _run(_doc(b"%PDF-1.7 ...", content_type="application/pdf"))[1] == ex.NOT_HTML


def test_binary_content():
    assert _run(_doc(b"<html>\x00\x01\x02 binary", content_type=None))[1] == ex.BINARY_CONTENT


def test_http_status():
    assert _run(_doc(html_page("Gone", english(1)), status=404))[1] == ex.HTTP_STATUS


def test_too_large():
    big = html_page("Big", english(1) * 10)
    doc = _doc(big)
    assert apply_steps(doc, [ex.HtmlPayloadFilter(max_bytes=len(big) - 1)])[1] == ex.TOO_LARGE


def test_decode_error():
    junk = b"<html><body>" + bytes(range(0x80, 0x100)) * 20 + b"</body></html>"
    # no charset declared, and neither valid UTF-8 nor windows-1252
    assert _run(_doc(junk, content_type="text/html"))[1] == ex.DECODE_ERROR


@pytest.mark.parametrize("where", ["header", "meta", "bom"])
def test_invalid_utf8(where):
    cp1252_text = ("Über die Straße, café, naïve, déjà vu. " * 30).encode("cp1252")  # not UTF-8
    head = b"<meta charset='utf-8'>" if where == "meta" else b""
    bom = b"\xef\xbb\xbf" if where == "bom" else b""
    page = bom + b"<html><head>" + head + b"</head><body><p>" + cp1252_text + b"</p></body></html>"
    ctype = "text/html; charset=UTF-8" if where == "header" else "text/html"
    assert _run(_doc(page, content_type=ctype))[1] == ex.INVALID_UTF8


def test_a_stray_invalid_byte_in_utf8_is_replaced_not_dropped():
    page = html_page("Stray", english(7)).replace(b"</body>", b"<p>\xff</p></body>")
    doc, reason = _run(_doc(page, content_type="text/html; charset=utf-8"))
    assert reason is None and doc["lang"] == "en"


@pytest.mark.parametrize("body", [b"", b"   \n\t  \r\n ", "\u3000 \n".encode("utf-8")])
def test_empty_and_whitespace_documents(body):
    # U+3000 (ideographic space) is not ASCII whitespace: it gets as far as extraction
    expected = ex.EMPTY_AFTER_EXTRACTION if body.strip() else ex.EMPTY_DOCUMENT
    assert _run(_doc(body))[1] == expected


@pytest.mark.parametrize("body", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200),  # an image served as text/html
    bytes([0x1f, 0x8b, 0x08, 0x00]) + bytes(range(256)),  # gzip without Content-Encoding
    bytes(range(1, 32)) * 40,  # control bytes without a single NUL
])
def test_binary_bodies_under_text_html(body):
    assert _run(_doc(body, content_type="text/html; charset=utf-8"))[1] == ex.BINARY_CONTENT


def _slow_page(paragraphs: int = 6000) -> bytes:
    para = english(1).encode()[:200]
    return b"<html><body>" + b"".join(b"<div><p>%d " % i + para + b"</p></div>" for i in range(paragraphs)) \
        + b"</body></html>"


def test_extract_timeout_drops_a_slow_page_on_time():
    import time

    import trafilatura  # noqa: F401  (imported before the clock starts: the first import takes ~0.2 s)

    page = _slow_page()
    steps = [ex.HtmlPayloadFilter(), ex.DecodeHtml(), ex.ExtractMainText(timeout=0.05)]
    started = time.monotonic()
    assert apply_steps(_doc(page), steps)[1] == ex.EXTRACT_TIMEOUT
    assert time.monotonic() - started < 0.5  # extracting this page takes ~0.9 s here
    # the alarm is disarmed: the same page extracts fully with a generous limit, and nothing fires later
    doc, reason = apply_steps(_doc(page), [ex.DecodeHtml(), ex.ExtractMainText(timeout=60)])
    assert reason is None and "5999" in doc["text"]
    time.sleep(0.1)


def test_time_limit_is_off_outside_the_main_thread():
    import threading

    from spark_jobs.extract.timelimit import time_limit

    armed = []

    def worker():
        with time_limit(0.01) as on:
            armed.append(on)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    with time_limit(5) as on:
        armed.append(on)
    assert armed == [False, True]


def test_empty_after_extraction():
    page = b"<html><head><title>t</title><script>var x = 1;</script></head><body><nav></nav></body></html>"
    assert _run(_doc(page))[1] == ex.EMPTY_AFTER_EXTRACTION


def test_extraction_error(monkeypatch):
    import trafilatura

    def boom(*a, **k):
        raise RuntimeError("lxml choked")

    monkeypatch.setattr(trafilatura, "extract", boom)
    assert _run(_doc(html_page("A", english(1))))[1] == ex.EXTRACTION_ERROR


def test_jsonl_text_record_skips_to_language_id():
    doc, reason = _run({"id": "j1", "text": english(3), "html": None})
    assert reason is None and doc["lang"] == "en"
    assert _run({"id": "j2", "text": "   ", "html": None})[1] == ex.EMPTY_DOCUMENT


@pytest.mark.parametrize("body, content_type, expected", [
    ("café".encode("cp1252"), "text/html; charset=ISO-8859-1", "café"),  # latin-1 label means cp1252
    ("naïve".encode("utf-8"), None, "naïve"),  # no declaration: utf-8
    ("<meta charset='windows-1251'>Привет".encode("cp1251"), None, "Привет"),  # meta prescan
    ("smart “quotes”".encode("cp1252"), None, "smart “quotes”"),  # not utf-8: windows-1252 fallback
    (b"\xef\xbb\xbfbom wins", "text/html; charset=cp1252", "bom wins"),
    ("abc".encode("utf-16"), None, "abc"),
])
def test_decode_html(body, content_type, expected):
    assert decode_html(body, content_type).endswith(expected)


def test_decode_html_rejects_garbage():
    with pytest.raises(DecodeError):
        decode_html(bytes(range(0x80, 0x100)) * 4, "text/html; charset=utf-8")


def test_language_id_on_german():
    text = "Das ist ein kurzer deutscher Satz über die Stadt und das Wetter."
    doc = ex.IdentifyLanguage().map({"text": text})
    assert doc["lang"] == "de"
