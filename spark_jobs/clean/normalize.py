"""Unicode and whitespace normalisation, so that filters and dedup see one spelling.

NFC composes accents (é as one code point); control and zero-width characters go,
newlines and tabs aside; inside a line, runs of spaces become one space, but leading
indentation stays (it carries the structure of code samples); trailing spaces go; three
or more newlines become one blank line.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_INNER_SPACES = re.compile(r"(?<=\S)[ \t\u00a0\u2000-\u200a\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = [_INNER_SPACES.sub(" ", line).rstrip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


class NormalizeText:
    """Map step: the normalised text replaces the original."""

    name = "normalize_text"

    def map(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc["text"] = normalize_text(doc.get("text") or "")
        return doc
