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
    assert _run(_doc(junk, content_type="text/html; charset=utf-8"))[1] == ex.DECODE_ERROR


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
    assert _run({"id": "j2", "text": "   ", "html": None})[1] == ex.EMPTY_AFTER_EXTRACTION


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
