"""FineWeb's extra quality rules (Penedo et al. 2024, §3.3; datatrove ``FineWebQualityFilter``).

FineWeb found three line-level signals that removed low-quality pages C4 and Gopher
missed, mostly lists, menus and templated pages:

* ``line_punct_ratio``: share of non-empty lines ending in terminal punctuation
  (drop below 0.12);
* ``short_line_ratio``: share of non-empty lines of at most 30 characters
  (drop above 0.67);
* ``char_dup_ratio``: characters in non-empty lines that repeat an earlier line, over all
  characters except newlines (drop above 0.01);

plus datatrove's ``list_ratio``: newlines per word (drop above 0.3).

The defaults are the paper's. On documentation ``char_dup_ratio`` is far too strict:
API pages repeat short lines such as "New in version 3.7." or "Changed in version 3.10:
Added the key parameter." under every function, and 0.01 drops over a third of Python's
docs; the clean stage's ``docs`` profile (:mod:`spark_jobs.clean.steps`) raises it.
This module measures; :class:`spark_jobs.clean.filters.FineWebQualityFilter` applies the thresholds.
"""
from __future__ import annotations

import re

from spark_jobs.clean.repetition import find_duplicates

# Line endings that count as terminal punctuation (Latin, CJK, Devanagari, quotes).
STOP_CHARS = (".", "!", "?", '"', "'", "”", "’", "»", "。", "！", "？", "।", "…")
SHORT_LINE_CHARS = 30
_TOKENS = re.compile(r"\w+|[^\w\s]")  # words and punctuation, close to NLTK's word_tokenize counts


def fineweb_signals(text: str) -> dict[str, float]:
    lines = [line for line in text.split("\n") if line.strip()]
    n_lines = max(len(lines), 1)
    n_tokens = len(_TOKENS.findall(text))
    body_chars = len(text) - text.count("\n")
    return {
        "fw_line_punct_ratio": round(sum(line.rstrip().endswith(STOP_CHARS) for line in lines) / n_lines, 4),
        "fw_short_line_ratio": round(sum(len(line) <= SHORT_LINE_CHARS for line in lines) / n_lines, 4),
        "fw_char_dup_ratio": round(find_duplicates(lines)[1] / max(body_chars, 1), 4),
        "fw_list_ratio": round(text.count("\n") / max(n_tokens, 1), 4),
    }
