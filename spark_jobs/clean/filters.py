"""Quality filters (Gopher, C4, FineWeb, language): named thresholds with the papers' defaults,
one reason per rule. The measurements they threshold are in :mod:`spark_jobs.clean.signals`.

Each filter is a constructor of thresholds and a flat ``filter(doc)`` of early returns.
Where a default departs from the paper, the docstring says why: the demo corpus is
Python's HTML documentation, where code samples are legitimate content.
"""
from __future__ import annotations

from typing import Any

from spark_jobs.clean.repetition import (DUP_LINE_CHAR_FRAC, DUP_LINE_FRAC, DUP_N_GRAMS, DUP_PARA_CHAR_FRAC,
                                         DUP_PARA_FRAC, TOP_N_GRAMS, dup_n_gram_reason, top_n_gram_reason)
from spark_jobs.clean.signals import signals_of

# Drop reasons (stat keys)
TOO_FEW_WORDS = "too_few_words"
TOO_MANY_WORDS = "too_many_words"
MEAN_WORD_LENGTH = "mean_word_length"
SYMBOL_RATIO = "symbol_word_ratio"
ALPHA_WORDS = "too_few_alpha_words"
TOO_FEW_PUNCTUATED_LINES = "too_few_punctuated_lines"
LOREM_IPSUM = "lorem_ipsum"
CURLY_BRACKET = "curly_bracket"
WRONG_LANGUAGE = "wrong_language"
LOW_LANG_SCORE = "low_lang_score"
LINE_PUNCT_RATIO = "line_punct_ratio"
SHORT_LINE_RATIO = "short_line_ratio"
CHAR_DUP_RATIO = "char_dup_ratio"
LIST_RATIO = "list_ratio"


class GopherQualityFilter:
    """Gopher's document rules (Rae et al. 2021, Appendix A.1.1), paper defaults.

    Keeps 50..100,000 words, mean word length 3..10 characters, at most 0.1 '#' or
    ellipses per word, and at least 80% of words with an alphabetic character. On the
    Python docs these drop about 7% of pages (mostly one-paragraph index stubs).
    """

    name = "gopher_quality"

    def __init__(self, min_words: int = 50, max_words: int = 100_000, min_mean_word_length: float = 3.0,
                 max_mean_word_length: float = 10.0, max_symbol_word_ratio: float = 0.1,
                 min_alpha_word_ratio: float = 0.8):
        self.min_words = min_words
        self.max_words = max_words
        self.min_mean_word_length = min_mean_word_length
        self.max_mean_word_length = max_mean_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.min_alpha_word_ratio = min_alpha_word_ratio

    def filter(self, doc: dict[str, Any]) -> str | None:
        s = signals_of(doc)
        if s["n_words"] < self.min_words:
            return TOO_FEW_WORDS
        if s["n_words"] > self.max_words:
            return TOO_MANY_WORDS
        if not self.min_mean_word_length <= s["mean_word_length"] <= self.max_mean_word_length:
            return MEAN_WORD_LENGTH
        if max(s["hash_ratio"], s["ellipsis_ratio"]) > self.max_symbol_word_ratio:
            return SYMBOL_RATIO
        if s["alpha_word_ratio"] < self.min_alpha_word_ratio:
            return ALPHA_WORDS
        return None


class C4QualityFilter:
    """C4's rules (Raffel et al. 2020, §2.2), measured rather than applied line by line.

    C4 keeps only lines that end in terminal punctuation and have 3+ words, then drops
    pages with fewer than 5 sentences left (``min_sentences``, paper default). We do not
    delete the other lines, which on documentation are code samples and headings worth
    training on; instead a page is dropped when those kept lines hold under
    ``min_kept_word_ratio`` of its words (0.1: navigation and index pages fail it).
    ``lorem ipsum`` anywhere drops the page, as in C4. C4 drops any page with a curly
    bracket (``max_curly_bracket_ratio=0``), which removes a third of the Python docs;
    the default allows brackets up to 0.5% of characters, which still catches pages that
    are mostly code or JSON/CSS dumps.
    """

    name = "c4_quality"

    def __init__(self, min_sentences: int = 5, min_kept_word_ratio: float = 0.1,
                 max_curly_bracket_ratio: float = 0.005, drop_lorem_ipsum: bool = True):
        self.min_sentences = min_sentences
        self.min_kept_word_ratio = min_kept_word_ratio
        self.max_curly_bracket_ratio = max_curly_bracket_ratio
        self.drop_lorem_ipsum = drop_lorem_ipsum

    def filter(self, doc: dict[str, Any]) -> str | None:
        s = signals_of(doc)
        if self.drop_lorem_ipsum and s["lorem_ipsum"]:
            return LOREM_IPSUM
        if s["curly_bracket_ratio"] > self.max_curly_bracket_ratio:
            return CURLY_BRACKET
        if s["c4_kept_sentences"] < self.min_sentences or s["c4_kept_word_ratio"] < self.min_kept_word_ratio:
            return TOO_FEW_PUNCTUATED_LINES
        return None


class LanguageFilter:
    """Keep documents in the allowed languages whose language-ID probability is high enough.

    0.5 on py3langid's normalised probability: below it the identifier is close to a coin
    flip between languages.
    """

    name = "language"

    def __init__(self, languages: tuple[str, ...] = ("en",), min_score: float = 0.5):
        self.languages = tuple(languages)
        self.min_score = min_score

    def filter(self, doc: dict[str, Any]) -> str | None:
        if self.languages and doc.get("lang") not in self.languages:
            return WRONG_LANGUAGE
        if (doc.get("lang_score") or 0.0) < self.min_score:
            return LOW_LANG_SCORE
        return None


class GopherRepetitionFilter:
    """Drop pages whose lines, paragraphs or word n-grams repeat too much (paper defaults).

    A threshold of None switches that rule off; ``top_n_grams`` and ``dup_n_grams`` are
    (n, max fraction) pairs. Reads the signals computed by :class:`QualitySignals`, or
    computes them on first use.
    """

    name = "gopher_repetition"

    def __init__(self, dup_para_frac: float | None = 0.30, dup_para_char_frac: float | None = 0.20,
                 dup_line_frac: float | None = 0.30, dup_line_char_frac: float | None = 0.20,
                 top_n_grams: tuple[tuple[int, float], ...] = TOP_N_GRAMS,
                 dup_n_grams: tuple[tuple[int, float], ...] = DUP_N_GRAMS):
        known = {n for n, _ in TOP_N_GRAMS} | {n for n, _ in DUP_N_GRAMS}
        unknown = sorted({n for n, _ in (*top_n_grams, *dup_n_grams)} - known)
        if unknown:
            raise ValueError(f"n-gram sizes {unknown} have no signal; use n in 2..4 for top n-grams "
                             "and 5..10 for duplicate n-grams (the paper's sizes)")
        self.rules = [
            ("dup_para_frac", dup_para_frac, DUP_PARA_FRAC),
            ("dup_para_char_frac", dup_para_char_frac, DUP_PARA_CHAR_FRAC),
            ("dup_line_frac", dup_line_frac, DUP_LINE_FRAC),
            ("dup_line_char_frac", dup_line_char_frac, DUP_LINE_CHAR_FRAC),
            *((f"top_{n}_gram_char_frac", frac, top_n_gram_reason(n)) for n, frac in top_n_grams),
            *((f"dup_{n}_gram_char_frac", frac, dup_n_gram_reason(n)) for n, frac in dup_n_grams),
        ]

    def filter(self, doc: dict[str, Any]) -> str | None:
        s = signals_of(doc)
        for key, limit, reason in self.rules:
            if limit is not None and s[key] > limit:
                return reason
        return None


class FineWebQualityFilter:
    """FineWeb's line rules with the paper's thresholds; None switches a rule off."""

    name = "fineweb_quality"

    def __init__(self, min_line_punct_ratio: float | None = 0.12, max_short_line_ratio: float | None = 0.67,
                 max_char_dup_ratio: float | None = 0.01, max_list_ratio: float | None = 0.3):
        self.min_line_punct_ratio = min_line_punct_ratio
        self.max_short_line_ratio = max_short_line_ratio
        self.max_char_dup_ratio = max_char_dup_ratio
        self.max_list_ratio = max_list_ratio

    def filter(self, doc: dict[str, Any]) -> str | None:
        s = signals_of(doc)
        if self.min_line_punct_ratio is not None and s["fw_line_punct_ratio"] < self.min_line_punct_ratio:
            return LINE_PUNCT_RATIO
        if self.max_short_line_ratio is not None and s["fw_short_line_ratio"] > self.max_short_line_ratio:
            return SHORT_LINE_RATIO
        if self.max_char_dup_ratio is not None and s["fw_char_dup_ratio"] > self.max_char_dup_ratio:
            return CHAR_DUP_RATIO
        if self.max_list_ratio is not None and s["fw_list_ratio"] > self.max_list_ratio:
            return LIST_RATIO
        return None
