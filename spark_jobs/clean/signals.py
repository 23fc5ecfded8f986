"""Quality signals: the measurements the filters threshold, stored with every row.

Computed once per document and kept as ``quality_signals`` (a JSON string in the
output), so thresholds can be re-tuned later from the data without re-running
extraction. Definitions follow Gopher (Rae et al. 2021, App. A), C4 (Raffel et al.
2020, §2.2) and FineWeb (Penedo et al. 2024); the repetition and FineWeb measures live in
:mod:`spark_jobs.clean.repetition` and :mod:`spark_jobs.clean.fineweb`. Words are
whitespace tokens; Gopher's word counts and mean length use the tokens that hold a
letter or digit (symbol-only tokens such as ">>>" do not count).
"""
from __future__ import annotations

import re
from typing import Any

from spark_jobs.clean.fineweb import fineweb_signals
from spark_jobs.clean.repetition import repetition_signals

# C4: "a period, exclamation mark, question mark, or end quotation mark"
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "»")
C4_MIN_WORDS_PER_LINE = 3  # C4 keeps only lines of at least 3 words
_SENTENCE_END = re.compile(r"[.!?][\"'”’»)]*(?=\s|$)")
_STRIP = "\"'()[]{}<>«»“”‘’.,;:!?*_`~-–—"

# C4 removes lines that mention Javascript (enable-Javascript warnings) or these policy phrases.
C4_JAVASCRIPT = "javascript"
C4_POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                        "use cookies")

SIGNALS_KEY = "quality_signals"


def c4_line_rule(line: str) -> str | None:
    """The C4 line rule a line falls under ('javascript' or 'policy'), or None."""
    lower = line.lower()
    if C4_JAVASCRIPT in lower:
        return "javascript"
    if any(p in lower for p in C4_POLICY_SUBSTRINGS):
        return "policy"
    return None


def c4_kept_lines(text: str) -> list[str]:
    """The lines C4 would keep: ending in terminal punctuation, at least 3 words, and
    neither a Javascript nor a policy line (C4 removes those before counting sentences)."""
    lines = (line.strip() for line in text.split("\n"))
    return [ln for ln in lines if ln.endswith(TERMINAL_PUNCT) and len(ln.split()) >= C4_MIN_WORDS_PER_LINE
            and c4_line_rule(ln) is None]


def _has_alnum(token: str) -> bool:
    return token.isalnum() or any(ch.isalnum() for ch in token)  # fast path: most tokens are plain words


def _has_alpha(token: str) -> bool:
    return token.isalpha() or any(ch.isalpha() for ch in token)


def compute_signals(text: str) -> dict[str, Any]:
    tokens = text.split()
    words = [t for t in tokens if _has_alnum(t)]
    n_words = len(words)
    word_lengths = [len(w.strip(_STRIP)) or len(w) for w in words]
    kept = c4_kept_lines(text)
    kept_words = sum(len(line.split()) for line in kept)
    return {
        "n_words": n_words,
        "mean_word_length": round(sum(word_lengths) / n_words, 3) if n_words else 0.0,
        "hash_ratio": round(text.count("#") / max(n_words, 1), 4),
        "ellipsis_ratio": round((text.count("...") + text.count("…")) / max(n_words, 1), 4),
        "alpha_word_ratio": round(sum(map(_has_alpha, tokens)) / max(len(tokens), 1), 4),
        "c4_kept_lines": len(kept),
        "c4_kept_sentences": sum(len(_SENTENCE_END.findall(line)) for line in kept),
        "c4_kept_word_ratio": round(kept_words / max(len(tokens), 1), 4),
        "curly_bracket_ratio": round((text.count("{") + text.count("}")) / max(len(text), 1), 5),
        "lorem_ipsum": "lorem ipsum" in text.lower(),
        **repetition_signals(text, tokens),
        **fineweb_signals(text),
    }


def signals_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The document's signals, computed on first use and cached in the doc."""
    signals = doc.get(SIGNALS_KEY)
    if not isinstance(signals, dict):
        signals = compute_signals(doc.get("text") or "")
        doc[SIGNALS_KEY] = signals
    return signals


class QualitySignals:
    """Map step: attach fresh signals (the filters then only compare)."""

    name = "quality_signals"

    def map(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc[SIGNALS_KEY] = compute_signals(doc.get("text") or "")
        return doc
