"""Gopher repetition signals (Rae et al. 2021, Appendix A, Table A1); pure measurements.

Repetitive pages (spam, templated listings, generated filler) were among the worst
content Gopher found, and these rules catch them cheaply. Every measure is a fraction:

* duplicate paragraphs / lines: the share of paragraphs (split on blank lines) or
  non-empty lines that repeat an earlier one, and the share of characters they hold;
* top n-gram (n = 2, 3, 4): characters covered by the single most frequent word
  n-gram, counted once per occurrence;
* duplicate n-grams (n = 5..10): characters of word n-grams that repeat an earlier
  n-gram, scanned left to right and skipping past each repeat so no word counts twice.

Definitions follow datatrove's ``GopherRepetitionFilter`` so keep/drop decisions can be
compared side by side (bench/data_filters.py), with one difference: words are
whitespace tokens, not spaCy/NLTK tokens, which is what costs datatrove most of its time.
The thresholds (paper defaults below) are applied by
:class:`spark_jobs.clean.filters.GopherRepetitionFilter`.
"""
from __future__ import annotations

import re
from bisect import bisect_right

import numpy as np

# Paper defaults (Table A1): (n, max character fraction)
TOP_N_GRAMS: tuple[tuple[int, float], ...] = ((2, 0.20), (3, 0.18), (4, 0.16))
DUP_N_GRAMS: tuple[tuple[int, float], ...] = (
    (5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))

# Drop reasons (stat keys); the n-gram ones are built per n, e.g. top_2_gram, duplicated_5_n_grams
DUP_PARA_FRAC = "dup_para_frac"
DUP_PARA_CHAR_FRAC = "dup_para_char_frac"
DUP_LINE_FRAC = "dup_line_frac"
DUP_LINE_CHAR_FRAC = "dup_line_char_frac"


def top_n_gram_reason(n: int) -> str:
    return f"top_{n}_gram"


def dup_n_gram_reason(n: int) -> str:
    return f"duplicated_{n}_n_grams"


_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


def find_duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items that repeat an earlier one, characters in those repeats)."""
    seen: set[str] = set()
    dup_items = dup_chars = 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup_items, dup_chars


class _WordGrams:
    """Word n-grams of one text as integer ids, so counting is numpy work, not tuple hashing.

    Words are factorised to ints, and an n-gram's key is a 64-bit polynomial of its word
    ids (collisions: about one in 2**64 per pair). Character lengths come from a prefix sum
    of word lengths.
    """

    _MULT = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, words: list[str]):
        self.n_words = len(words)
        ids: dict[str, int] = {}
        self.codes = np.fromiter((ids.setdefault(w, len(ids) + 1) for w in words), dtype=np.uint64,
                                 count=len(words))
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        self.prefix = np.concatenate(([0], np.cumsum(lengths)))

    def grams(self, n: int):
        """(gram id per position, first position of each gram id), positions 0..W-n."""
        count = self.n_words - n + 1
        keys = self.codes[:count].copy()
        with np.errstate(over="ignore"):
            for k in range(1, n):
                keys = keys * self._MULT + self.codes[k:k + count]
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        first = np.full(len(counts), count, dtype=np.int64)
        np.minimum.at(first, inverse, np.arange(count))
        return inverse, first, counts

    def chars(self, start: np.ndarray | int, n: int):
        """Characters of the n-gram(s) starting at ``start``, spaces excluded."""
        return self.prefix[np.asarray(start) + n] - self.prefix[start]


def top_n_gram_chars(words: list[str] | _WordGrams, n: int) -> int:
    """Characters covered by the most frequent n-gram (its length with spaces × its count).

    Ties go to the n-gram that occurs first, as with ``collections.Counter.most_common``.
    """
    wg = words if isinstance(words, _WordGrams) else _WordGrams(words)
    if wg.n_words < n:
        return 0
    _, first, counts = wg.grams(n)
    best = np.flatnonzero(counts == counts.max())
    start = int(first[best].min())
    return int(wg.chars(start, n) + n - 1) * int(counts.max())


def dup_n_gram_chars(words: list[str] | _WordGrams, n: int) -> int:
    """Characters (spaces excluded) of n-grams that repeat an earlier n-gram.

    Scanning left to right, a repeat adds its characters and the scan jumps n words ahead,
    so overlapping repeats are not counted twice; an n-gram counts as seen only if the scan
    visited (did not jump over) an earlier occurrence. Only positions whose n-gram occurred
    before are looked at in Python; the rest is numpy.
    """
    wg = words if isinstance(words, _WordGrams) else _WordGrams(words)
    if wg.n_words < n:
        return 0
    gram, first, _ = wg.grams(n)
    positions = np.arange(len(gram))
    candidates = np.flatnonzero(first[gram] < positions)
    repeated, skip_until = 0, 0
    jumped: list[tuple[int, int]] = []  # [start, end) ranges the scan jumped over
    added_late: set[int] = set()  # gram ids first seen at a later occurrence (first one jumped)
    for i in candidates.tolist():
        if i < skip_until:
            continue
        g = int(gram[i])
        if _visited_before(g, i, int(first[g]), gram, jumped, added_late):
            repeated += int(wg.chars(i, n))
            skip_until = i + n
            jumped.append((i + 1, i + n))
        else:
            added_late.add(g)
    return repeated


def _visited_before(g: int, i: int, first: int, gram: np.ndarray, jumped: list[tuple[int, int]],
                    added_late: set[int]) -> bool:
    if g in added_late or not _in_ranges(first, jumped):
        return True
    later = np.flatnonzero(gram[first + 1:i] == g) + first + 1  # rare: the first occurrence was jumped
    return any(not _in_ranges(int(p), jumped) for p in later)


def _in_ranges(p: int, ranges: list[tuple[int, int]]) -> bool:
    k = bisect_right(ranges, (p, float("inf"))) - 1
    return k >= 0 and ranges[k][0] <= p < ranges[k][1]


def repetition_signals(text: str, words: list[str] | None = None) -> dict[str, float]:
    """Every Gopher repetition measure of one text, as fractions rounded to 4 places."""
    n_chars = len(text) or 1
    paragraphs = _PARAGRAPHS.split(text.strip())
    lines = [line for line in _LINES.split(text) if line]
    para_dups, para_chars = find_duplicates(paragraphs)
    line_dups, line_chars = find_duplicates(lines)
    out = {
        "dup_para_frac": para_dups / max(len(paragraphs), 1),
        "dup_para_char_frac": para_chars / n_chars,
        "dup_line_frac": line_dups / max(len(lines), 1),
        "dup_line_char_frac": line_chars / n_chars,
    }
    wg = _WordGrams(text.split() if words is None else words)
    for n, _ in TOP_N_GRAMS:
        out[f"top_{n}_gram_char_frac"] = top_n_gram_chars(wg, n) / n_chars
    for n, _ in DUP_N_GRAMS:
        out[f"dup_{n}_gram_char_frac"] = dup_n_gram_chars(wg, n) / n_chars
    return {k: round(v, 4) for k, v in out.items()}
