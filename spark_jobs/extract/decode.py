"""Bytes → str for HTML, the way browsers decide (a simplified WHATWG order).

Order: a byte-order mark wins; then the charset in the HTTP Content-Type; then a
``<meta charset>`` (or ``<meta http-equiv content="...; charset=...">``) in the first 4 KiB;
then UTF-8; then windows-1252 (the web's historical default, also what "iso-8859-1" labels
really mean). A declared charset that does not decode strictly is tried with replacement,
and accepted only if under ``max_replacement_ratio`` of the characters are U+FFFD.

A label becomes an encoding only through the WHATWG label table
(:mod:`spark_jobs.extract.charsets`), never through ``codecs.lookup``: Python also knows
"charsets" that are not text encodings (``base64``, ``zlib_codec``, ``rot13``) or decode in
far more than linear time. A label outside the table is ignored and the page is sniffed
(UTF-8, then windows-1252); :attr:`Decoded.note` says ``unknown_charset`` so the loss of the
declaration is counted. Labels of the standard's ``replacement`` encoding (``iso-2022-kr``,
``hz-gb-2312``, ...) decode to one U+FFFD, as in a browser: there is no safe decoder for them.

A page that declares UTF-8 (by BOM, header or meta) is decoded as UTF-8 only, as a
browser does: a few stray bytes become U+FFFD, but a page with more than
``max_replacement_ratio`` of them raises :class:`InvalidUtf8` rather than being guessed
into windows-1252 mojibake, so that the loss has its own name (``invalid_utf8``).
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from spark_jobs.extract.charsets import PYTHON_CODECS, REPLACEMENT, X_USER_DEFINED, encoding_for

_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16le"), (codecs.BOM_UTF16_BE, "utf-16be"))
UNKNOWN_CHARSET = "unknown_charset"  # a declared label that is not in the WHATWG table
# x-user-defined: ASCII as is, bytes 0x80-0xFF to U+F780-U+F7FF (the standard's decoder)
_USER_DEFINED = {b: 0xF780 + b - 0x80 for b in range(0x80, 0x100)}


class DecodeError(ValueError):
    """The bytes are not text in any plausible encoding."""


class InvalidUtf8(DecodeError):
    """The page says it is UTF-8, but too many of its bytes are not."""


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # the WHATWG name of the encoding used
    note: str | None = None  # UNKNOWN_CHARSET when a declared label named no encoding


_CONTROL = bytes(c for c in range(32) if c not in b"\t\n\r\f") + b"\x7f"


def looks_binary(body: bytes, max_control_ratio: float = 0.1) -> bool:
    """An image, PDF or archive rather than HTML: NUL bytes, or many control bytes, near the start.

    Text of any encoding (UTF-16 aside, which has a BOM) has no NUL and almost no C0
    control bytes; compressed or encoded data has about 1 in 8 in a random stream.
    """
    head = body[:1024]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    if b"\x00" in head:
        return True
    return bool(head) and len(head) - len(head.translate(None, _CONTROL)) > max_control_ratio * len(head)


def _header_label(content_type: str | None) -> str | None:
    m = _HEADER_CHARSET.search(content_type) if content_type else None
    return m.group(1) if m else None


def _meta_label(body: bytes) -> str | None:
    m = _META_CHARSET.search(body[:4096])
    return m.group(1).decode("ascii", errors="ignore") if m else None


# The meta prescan's corrections: the bytes were read as ASCII to find the meta, so it is not UTF-16
_META_OVERRIDES = {"utf-16le": "utf-8", "utf-16be": "utf-8", X_USER_DEFINED: "windows-1252"}


def declared_encodings(body: bytes, content_type: str | None) -> tuple[list[str], bool]:
    """The WHATWG encodings the page declares, in order, and whether some label named none."""
    encodings, unknown = [], False
    for label, overrides in ((_header_label(content_type), {}), (_meta_label(body), _META_OVERRIDES)):
        if not label:
            continue
        encoding = encoding_for(label)
        if encoding is None:
            unknown = True
            continue
        encodings.append(overrides.get(encoding, encoding))
    return encodings, unknown


def decode_html(body: bytes, content_type: str | None = None, max_replacement_ratio: float = 0.01) -> str:
    return decode_page(body, content_type, max_replacement_ratio).text


def decode_page(body: bytes, content_type: str | None = None, max_replacement_ratio: float = 0.01) -> Decoded:
    """The page's text and the encoding it was read with; raises :class:`DecodeError` if none fits."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            rest = body[len(bom):]
            if encoding == "utf-8":
                return Decoded(_as_utf8(rest, max_replacement_ratio, "a UTF-8 byte-order mark"), encoding)
            return Decoded(rest.decode(PYTHON_CODECS[encoding], errors="replace"), encoding)
    declared, unknown = declared_encodings(body, content_type)
    note = UNKNOWN_CHARSET if unknown else None
    if declared and declared[0] == "utf-8":
        return Decoded(_as_utf8(body, max_replacement_ratio, "its charset"), "utf-8", note)
    if declared and declared[0] in (REPLACEMENT, X_USER_DEFINED):
        return Decoded(_special(body, declared[0]), declared[0], note)
    candidates = [e for e in dict.fromkeys(declared + ["utf-8", "windows-1252"]) if e in PYTHON_CODECS]
    for encoding in candidates:
        try:
            return Decoded(body.decode(PYTHON_CODECS[encoding]), encoding, note)
        except UnicodeDecodeError:
            continue
    fallback = candidates[0]
    text = body.decode(PYTHON_CODECS[fallback], errors="replace")
    if text and text.count("\ufffd") / len(text) <= max_replacement_ratio:
        return Decoded(text, fallback, note)
    raise DecodeError(f"not decodable as {', '.join(candidates)}")


def _special(body: bytes, encoding: str) -> str:
    """The two encodings Python has no codec for."""
    if encoding == REPLACEMENT:
        return "\ufffd" if body else ""
    return body.decode("latin-1").translate(_USER_DEFINED)


def _as_utf8(body: bytes, max_replacement_ratio: float, declared_by: str) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    text = body.decode("utf-8-sig", errors="replace")
    bad = text.count("\ufffd")
    if text and bad / len(text) <= max_replacement_ratio:
        return text
    raise InvalidUtf8(f"declared UTF-8 by {declared_by}, but {bad} of {len(text)} characters are invalid")
