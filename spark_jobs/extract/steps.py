"""Extraction steps: check the payload, decode it, extract main text, identify language.

Each step also passes JSONL records through: a record with ``html`` goes through
extraction like a crawled page; a record with only ``text`` skips to language ID.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from spark_jobs.extract.charsets import REPLACEMENT
from spark_jobs.extract.decode import DecodeError, InvalidUtf8, decode_page, looks_binary
from spark_jobs.extract.timelimit import PageTimeout, time_limit
from spark_jobs.steps import Drop

# Drop reasons (stat keys)
NOT_HTML = "not_html"
BINARY_CONTENT = "binary_content"
HTTP_STATUS = "http_status"
TOO_LARGE = "too_large"
EMPTY_DOCUMENT = "empty_document"  # no bytes, or only whitespace, before any parsing
DECODE_ERROR = "decode_error"
INVALID_UTF8 = "invalid_utf8"  # declared UTF-8 (or a UTF-8 BOM) but too many bytes are not
UNSUPPORTED_CHARSET = "unsupported_charset"  # declared an encoding the standard decodes to U+FFFD only
EXTRACTION_ERROR = "extraction_error"
EXTRACT_TIMEOUT = "extract_timeout"
EMPTY_AFTER_EXTRACTION = "empty_after_extraction"
CORRUPT_RECORD = "corrupt_record"
CHARSET_NOTE = "charset_note"  # column: "unknown_charset" when a declared label named no encoding

HTML_TYPES = ("text/html", "application/xhtml+xml")
_FAST_DATES = {"extensive_search": False, "original_date": False}


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class WarcRecordFilter:
    """Rows the WARC reader could not read (``warc_error``) go with their reason:
    ``corrupt_record`` for damaged or truncated records, ``decode_error`` for WET text
    in no plausible encoding."""

    name = "warc_record"

    def filter(self, doc: dict[str, Any]) -> str | None:
        error = doc.get("warc_error")
        if not error:
            return None
        return DECODE_ERROR if error.startswith(DECODE_ERROR) else CORRUPT_RECORD


class HtmlPayloadFilter:
    """Only successful, HTML, text-like, not-giant payloads go on to extraction.

    ``max_bytes`` is 2 MB: trafilatura took 9.6 s on one 5.4 MB page on
    the reference machine, and pages that large are rarely prose.
    """

    name = "html_payload"

    def __init__(self, max_bytes: int = 2 * 1024 * 1024, html_types: tuple[str, ...] = HTML_TYPES):
        self.max_bytes = max_bytes
        self.html_types = html_types

    def filter(self, doc: dict[str, Any]) -> str | None:
        html = doc.get("html")
        if html is None:
            return None  # JSONL text record: nothing to check
        if doc.get("http_status") is not None and not 200 <= doc["http_status"] < 300:
            return HTTP_STATUS
        if doc.get("content_type") and _mime(doc["content_type"]) not in self.html_types:
            return NOT_HTML
        size = doc.get("html_bytes") or len(html)
        if size > self.max_bytes:
            return TOO_LARGE
        if not html.strip():
            return EMPTY_DOCUMENT
        if isinstance(html, (bytes, bytearray)) and looks_binary(html):
            return BINARY_CONTENT
        return None


class DecodeHtml:
    """HTML bytes → str with the page's real charset (see extract/decode.py).

    Decoding runs under the page time limit like extraction: the codecs the label table can
    choose are linear, but the page is at most ``max_bytes`` of them and a stalled task costs a
    whole partition. A page declaring a label outside the WHATWG table is decoded by sniffing
    and kept with ``charset_note`` = "unknown_charset"; one declaring a ``replacement`` encoding
    (iso-2022-kr, hz-gb-2312, ...) has no text a browser would show: ``unsupported_charset``.
    """

    name = "decode_html"

    def __init__(self, max_replacement_ratio: float = 0.01, timeout: float = 30.0):
        self.max_replacement_ratio = max_replacement_ratio
        self.timeout = timeout

    def map(self, doc: dict[str, Any]) -> dict[str, Any]:
        html = doc.get("html")
        if isinstance(html, (bytes, bytearray)):
            try:
                with time_limit(self.timeout):
                    decoded = decode_page(bytes(html), doc.get("content_type"), self.max_replacement_ratio)
            except PageTimeout:
                raise Drop(EXTRACT_TIMEOUT) from None
            except InvalidUtf8:
                raise Drop(INVALID_UTF8) from None
            except DecodeError:
                raise Drop(DECODE_ERROR) from None
            if decoded.encoding == REPLACEMENT:
                raise Drop(UNSUPPORTED_CHARSET)
            doc["html"], doc[CHARSET_NOTE] = decoded.text, decoded.note
        return doc


class ExtractMainText:
    """Main text and title with trafilatura; boilerplate (menus, footers) goes.

    Comments are left out (``include_comments=False``): they are rarely the page's prose.
    Date extraction is kept cheap; only the title is used from the metadata. A page that
    takes longer than ``timeout`` seconds is dropped as ``extract_timeout`` (see
    extract/timelimit.py); 30 s is some 700 times the average page here (23 pages/s on
    the reference machine).
    """

    name = "extract_main_text"

    def __init__(self, include_tables: bool = True, include_comments: bool = False, timeout: float = 30.0):
        self.include_tables = include_tables
        self.include_comments = include_comments
        self.timeout = timeout

    def map(self, doc: dict[str, Any]) -> dict[str, Any]:
        html = doc.pop("html", None)
        if html is not None:
            doc["text"], doc["title"] = self._extract(html, doc.get("url"))
        elif not (doc.get("text") or "").strip():
            raise Drop(EMPTY_DOCUMENT)  # a JSONL record without text
        if not (doc.get("text") or "").strip():
            raise Drop(EMPTY_AFTER_EXTRACTION)
        return doc

    def _extract(self, html: str, url: str | None) -> tuple[str | None, str | None]:
        try:
            import trafilatura
        except ImportError as exc:  # pragma: no cover - depends on the venv
            raise RuntimeError("extraction needs trafilatura and lxml_html_clean: "
                               "pip install 'crawl2model[spark]'") from exc
        logging.getLogger("trafilatura").setLevel(logging.ERROR)
        try:
            with time_limit(self.timeout):
                out = trafilatura.extract(html, url=url, output_format="json", with_metadata=True,
                                          include_tables=self.include_tables,
                                          include_comments=self.include_comments,
                                          date_extraction_params=_FAST_DATES)
        except PageTimeout:
            raise Drop(EXTRACT_TIMEOUT) from None
        except Exception:  # trafilatura/lxml raise many types on hostile markup
            raise Drop(EXTRACTION_ERROR) from None
        if not out:
            return None, None
        data = json.loads(out)
        return data.get("text"), data.get("title")


_IDENTIFIER = None


def _identifier():
    """py3langid's model with normalised probabilities, loaded once per worker."""
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _IDENTIFIER


class IdentifyLanguage:
    """``lang`` (ISO 639-1) and ``lang_score`` (probability 0..1) from py3langid.

    Only the first ``max_chars`` characters are scored: more text rarely changes the
    answer and costs linear time.
    """

    name = "identify_language"

    def __init__(self, max_chars: int = 20_000, only_missing: bool = False):
        self.max_chars = max_chars
        self.only_missing = only_missing  # for JSONL input that may bring its own labels

    def map(self, doc: dict[str, Any]) -> dict[str, Any]:
        if self.only_missing and doc.get("lang") and doc.get("lang_score") is not None:
            return doc
        lang, score = _identifier().classify(doc["text"][: self.max_chars])
        doc["lang"], doc["lang_score"] = lang, round(float(score), 4)
        return doc


def default_steps(max_bytes: int = 2 * 1024 * 1024, page_timeout: float = 30.0) -> list[object]:
    return [WarcRecordFilter(), HtmlPayloadFilter(max_bytes=max_bytes), DecodeHtml(timeout=page_timeout),
            ExtractMainText(timeout=page_timeout), IdentifyLanguage()]
