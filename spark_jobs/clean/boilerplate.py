"""Boilerplate-line cleanup: delete the short template lines extraction lets through.

Extraction (trafilatura) removes most menus and footers, but cookie banners, "please
enable JavaScript" warnings, "All rights reserved" and share/subscribe prompts still slip
into the main text, and they repeat across thousands of pages of a site. This step
deletes such lines and counts them per rule in ``text_edits`` (``lines_javascript``,
``lines_policy``, ``lines_boilerplate``).

The rules are C4's line rules (Raffel et al. 2020: lines with "Javascript", and the
policy phrases in :data:`spark_jobs.clean.signals.C4_POLICY_SUBSTRINGS`) plus common
template phrases at the start of a line; unlike C4 they only touch lines of at most
``max_words`` words. C4 deletes every line mentioning Javascript, which on the Python docs
deletes real sentences ("JSON (JavaScript Object Notation) ... is a lightweight data
interchange format"); a 12-word cap keeps those and still removes the banners. C4's
sentence count (``too_few_punctuated_lines``) skips every such line, as in the paper.

A page with nothing but such lines is dropped as ``only_boilerplate``.
"""
from __future__ import annotations

import re
from typing import Any

from spark_jobs.clean.signals import c4_line_rule
from spark_jobs.steps import Drop

ONLY_BOILERPLATE = "only_boilerplate"
EDITS_KEY = "text_edits"
_LABEL_STRIP = " \t-–—|•·»«›‹<>:!?"

# Template phrases, matched at the start of a (short) line, case-insensitively.
BOILERPLATE_PATTERNS = (
    r"skip to (main )?content", r"back to top\b", r"jump to navigation",
    r"all rights reserved", r"copyright (©|\(c\)|\d{4})", r"©", r"\(c\) \d{4}",
    r"share (this|on)\b", r"follow us\b", r"like us on\b", r"create an account\b",
    r"subscribe to\b", r"sign up for\b", r"click here\b", r"read more\b", r"continue reading\b",
    r"print this page\b", r"accept (all )?cookies", r"cookie settings\b", r"we use cookies\b",
    r"powered by\b", r"report a bug\b", r"show source\b", r"(previous|next) topic\b",
)
# Navigation labels, removed only when they are the whole line (punctuation aside).
BOILERPLATE_LABELS = ("login", "log in", "sign in", "sign up", "register", "subscribe", "tweet", "share",
                      "print", "menu", "search", "home", "next", "previous", "top", "reply")


def add_edits(doc: dict[str, Any], counts: dict[str, int]) -> None:
    """Add per-document edit counts (lines removed, PII redacted) to ``text_edits``."""
    edits = doc.get(EDITS_KEY)
    if not isinstance(edits, dict):
        edits = {}
    for key, n in counts.items():
        if n:
            edits[key] = edits.get(key, 0) + n
    doc[EDITS_KEY] = edits


class BoilerplateLines:
    """Map step: delete short Javascript, policy and template lines; count them per rule."""

    name = "boilerplate_lines"

    def __init__(self, max_words: int = 12, patterns: tuple[str, ...] = BOILERPLATE_PATTERNS,
                 labels: tuple[str, ...] = BOILERPLATE_LABELS, c4_rules: bool = True):
        self.max_words = max_words
        self.c4_rules = c4_rules
        self._template = re.compile(r"^\W{0,3}(?:%s)" % "|".join(patterns), re.I) if patterns else None
        self._labels = frozenset(label.lower() for label in labels)

    def rule(self, line: str) -> str | None:
        """The rule that removes this line ('javascript', 'policy', 'boilerplate'), or None."""
        stripped = line.strip()
        if not stripped or len(stripped.split()) > self.max_words:
            return None
        if self.c4_rules:
            c4 = c4_line_rule(stripped)
            if c4:
                return c4
        if self._template is not None and self._template.match(stripped):
            return "boilerplate"
        if stripped.strip(_LABEL_STRIP).lower() in self._labels:
            return "boilerplate"
        return None

    def map(self, doc: dict[str, Any]) -> dict[str, Any]:
        text = doc.get("text") or ""
        kept, counts = [], {"lines_javascript": 0, "lines_policy": 0, "lines_boilerplate": 0}
        for line in text.split("\n"):
            rule = self.rule(line)
            if rule is None:
                kept.append(line)
            else:
                counts[f"lines_{rule}"] += 1
        if sum(counts.values()):
            cleaned = "\n".join(kept).strip()
            add_edits(doc, counts)
            if text.strip() and not cleaned:
                raise Drop(ONLY_BOILERPLATE)
            doc["text"] = re.sub(r"\n{3,}", "\n\n", cleaned)
        return doc
