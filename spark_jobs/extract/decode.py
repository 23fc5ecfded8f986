"""Bytes → str for HTML, the way browsers decide (a simplified WHATWG order).

Order: a byte-order mark wins; then the charset in the HTTP Content-Type; then a
``<meta charset>`` in the first 4 KiB; then UTF-8; then windows-1252 (the web's
historical default, also what "iso-8859-1" labels really mean). A declared charset that
does not decode strictly is tried with replacement, and accepted only if under
``max_replacement_ratio`` of the characters are U+FFFD.

A page that declares UTF-8 (by BOM, header or meta) is decoded as UTF-8 only, as a
browser does: a few stray bytes become U+FFFD, but a page with more than
``max_replacement_ratio`` of them raises :class:`InvalidUtf8` rather than being guessed
into windows-1252 mojibake, so that the loss has its own name (``invalid_utf8``).
"""
from __future__ import annotations

import codecs
import re

_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_ALIASES = {"latin-1": "cp1252", "iso8859-1": "cp1252", "ascii": "cp1252"}  # WHATWG label mapping


class DecodeError(ValueError):
    """The bytes are not text in any plausible encoding."""


class InvalidUtf8(DecodeError):
    """The page says it is UTF-8, but too many of its bytes are not."""


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().lower()).name
    except LookupError:
        return None
    return _ALIASES.get(name, name)


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


def declared_charsets(body: bytes, content_type: str | None) -> list[str]:
    found = []
    if content_type:
        m = _HEADER_CHARSET.search(content_type)
        if m:
            found.append(m.group(1))
    m = _META_CHARSET.search(body[:4096])
    if m:
        found.append(m.group(1).decode("ascii", errors="ignore"))
    return found


def decode_html(body: bytes, content_type: str | None = None, max_replacement_ratio: float = 0.01) -> str:
    for bom, codec in _BOMS:
        if body.startswith(bom):
            if codec == "utf-8-sig":
                return _as_utf8(body, max_replacement_ratio, "a UTF-8 byte-order mark")
            return body.decode(codec, errors="replace")
    declared = [c for c in (_codec(label) for label in declared_charsets(body, content_type)) if c]
    if declared and declared[0] == "utf-8":
        return _as_utf8(body, max_replacement_ratio, "its charset")
    candidates = list(dict.fromkeys(declared + ["utf-8", "cp1252"]))
    for codec in candidates:
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            continue
    fallback = declared[0] if declared else "utf-8"
    text = body.decode(fallback, errors="replace")
    if text and text.count("\ufffd") / len(text) <= max_replacement_ratio:
        return text
    raise DecodeError(f"not decodable as {', '.join(candidates)}")


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
