"""Gopher repetition, FineWeb, C4 line rules and boilerplate cleanup: one test per drop reason."""
from __future__ import annotations

import pytest

from spark_test_data import english
from spark_jobs.clean import boilerplate as bp
from spark_jobs.clean import filters
from spark_jobs.clean import repetition as rep
from spark_jobs.clean.signals import c4_kept_lines, compute_signals
from spark_jobs.clean.steps import default_steps, step_settings
from spark_jobs.steps import Drop, apply_steps


def _doc(text):
    return {"id": "d", "text": text, "lang": "en", "lang_score": 0.99}


def _unique_words(n, start=0):
    """Distinct 6-letter words: text made of them repeats nothing."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(letters[(i // 26 ** k) % 26] for k in range(4)) + "ed" for i in range(start, start + n)]


def _repetition(text, **kw):
    return filters.GopherRepetitionFilter(**kw).filter(_doc(text))


# ---------------------------------------------------------------- Gopher repetition

def test_repetition_keeps_plain_prose():
    assert _repetition(english(1, sentences=30)) is None


def test_dup_para_frac():
    paras = [english(i, sentences=2) for i in range(3)] + ["See the notes below."] * 3
    assert _repetition("\n\n".join(paras)) == rep.DUP_PARA_FRAC


def test_dup_para_char_frac():
    long_para = english(99, sentences=8)
    paras = [long_para] + [english(i, sentences=1) for i in range(8)] + [long_para]
    assert _repetition("\n\n".join(paras)) == rep.DUP_PARA_CHAR_FRAC


def test_dup_line_frac():
    lines = english(1, sentences=10).split("\n") + ["Ok."] * 6
    assert _repetition("\n".join(lines)) == rep.DUP_LINE_FRAC


def test_dup_line_char_frac():
    long_line = " ".join(_unique_words(60, start=500)) + "."
    lines = english(1, sentences=10).split("\n") + [long_line] * 3
    assert _repetition("\n".join(lines)) == rep.DUP_LINE_CHAR_FRAC


def _units(core: list[str], filler: int, count: int) -> str:
    words = _unique_words(filler * count)
    return " ".join(" ".join(core + words[i * filler:(i + 1) * filler]) for i in range(count))


def test_top_2_gram():
    assert _repetition(_units(["foo", "bar"], 1, 40)) == rep.top_n_gram_reason(2)


def test_top_3_gram():
    # "A x B": each 2-gram is about half the 3-gram's characters
    text = _units(["a" * 10, "x", "b" * 10], 6, 30)
    s = compute_signals(text)
    assert s["top_2_gram_char_frac"] <= 0.2 and s["top_3_gram_char_frac"] > 0.18
    assert _repetition(text) == rep.top_n_gram_reason(3)


def test_top_4_gram():
    text = _units(["a" * 20, "x", "y", "b" * 20], 15, 30)
    assert _repetition(text) == rep.top_n_gram_reason(4)


def test_duplicated_5_n_grams():
    words = _unique_words(40)
    block = _unique_words(20, start=1000)
    text = " ".join(words[:16] + block + words[16:32] + block + words[32:])
    assert _repetition(text) == rep.dup_n_gram_reason(5)


@pytest.mark.parametrize("n", [6, 7, 8, 9, 10])
def test_duplicated_n_grams_each_size(n):
    """Each size in isolation (with every rule on, the 5-gram rule always fires first)."""
    words = _unique_words(40)
    block = _unique_words(20, start=1000)
    text = " ".join(words[:16] + block + words[16:32] + block + words[32:])
    only = dict(dup_para_frac=None, dup_para_char_frac=None, dup_line_frac=None, dup_line_char_frac=None,
                top_n_grams=(), dup_n_grams=((n, 0.1),))
    assert _repetition(text, **only) == rep.dup_n_gram_reason(n)
    assert _repetition(" ".join(words), **only) is None


def test_dup_n_gram_chars_skips_past_each_repeat():
    words = "a b c d e a b c d e a b c d e".split()
    assert rep.dup_n_gram_chars(words, 5) == 10  # two repeats of "abcde", no overlaps counted
    assert rep.top_n_gram_chars("x y x y x".split(), 2) == len("x y") * 2


def test_unknown_ngram_size_is_refused():
    with pytest.raises(ValueError, match="n-gram sizes"):
        filters.GopherRepetitionFilter(dup_n_grams=((12, 0.1),))


# ---------------------------------------------------------------- FineWeb

def _fineweb(text, **kw):
    return filters.FineWebQualityFilter(**kw).filter(_doc(text))


def test_fineweb_keeps_plain_prose():
    assert _fineweb(english(2, sentences=20)) is None


def test_line_punct_ratio():
    lines = [line.rstrip(".") for line in english(1, sentences=20).split("\n")]
    assert _fineweb("\n".join(lines)) == filters.LINE_PUNCT_RATIO


def test_short_line_ratio():
    short = [f"Item {w} is here." for w in _unique_words(10)]
    assert _fineweb("\n".join(short + english(3, sentences=2).split("\n"))) == filters.SHORT_LINE_RATIO


def test_char_dup_ratio():
    lines = english(1, sentences=20).split("\n")
    assert _fineweb("\n".join(lines + lines[:1])) == filters.CHAR_DUP_RATIO
    assert _fineweb("\n".join(lines + lines[:1]), max_char_dup_ratio=0.15) is None  # the docs profile


def test_list_ratio():
    lines = [f"Extraordinarily{w}longidentifiernames wonderful." for w in _unique_words(30)]
    assert _fineweb("\n".join(lines)) == filters.LIST_RATIO


# ---------------------------------------------------------------- C4 line rules and boilerplate

def test_c4_javascript_and_policy_lines_do_not_count_as_sentences():
    from spark_jobs.clean.filters import TOO_FEW_PUNCTUATED_LINES, C4QualityFilter

    rules = ["Please enable JavaScript in your browser to see this page.",
             "Our JavaScript widgets need a modern browser to run well.",
             "This site uses cookies to improve your experience of it.",
             "We use cookies and similar tools on every page we serve.",
             "Read our privacy policy before you continue to the shop.",
             "By staying here you accept the terms of use of this site."]
    assert c4_kept_lines("\n".join(rules)) == []
    assert C4QualityFilter().filter(_doc("\n".join(rules))) == TOO_FEW_PUNCTUATED_LINES
    assert C4QualityFilter().filter(_doc(english(6, sentences=6))) is None


def test_boilerplate_lines_removed_and_counted():
    prose = english(4, sentences=12)
    long_js = ("JSON (JavaScript Object Notation) is a lightweight data interchange format that is "
               "inspired by the object literal syntax of the language.")
    text = "\n".join(["Skip to main content", "Please enable JavaScript to view this page.", prose, long_js,
                      "This website uses cookies.", "Share on Twitter", "Login", "© 2024 Example Corp.",
                      "login(user, password)"])
    doc = bp.BoilerplateLines().map(_doc(text))
    assert doc["text"] == "\n".join([prose, long_js, "login(user, password)"])
    assert doc[bp.EDITS_KEY] == {"lines_javascript": 1, "lines_policy": 1, "lines_boilerplate": 4}


def test_only_boilerplate():
    with pytest.raises(Drop) as info:
        bp.BoilerplateLines().map(_doc("Accept all cookies\nBack to top\nAll rights reserved."))
    assert info.value.reason == bp.ONLY_BOILERPLATE
    doc, reason = apply_steps(_doc("Accept all cookies\n\nBack to top"), default_steps())
    assert reason == bp.ONLY_BOILERPLATE


# ---------------------------------------------------------------- profiles and settings

def test_profiles_and_overrides():
    paper = step_settings("paper")
    assert paper["c4_quality"] == {"max_curly_bracket_ratio": 0.0}
    docs = step_settings("docs", {"fineweb_quality": {"max_list_ratio": 0.5}})
    assert docs["fineweb_quality"] == {"max_char_dup_ratio": 0.15, "max_list_ratio": 0.5}
    steps = default_steps(overrides={"gopher_repetition": {"dup_n_grams": [[5, 0.5]]}}, profile="paper")
    assert next(s for s in steps if s.name == "gopher_repetition").rules[-1][1] == 0.5
    with pytest.raises(ValueError, match="unknown clean steps"):
        default_steps(overrides={"nope": {}})
    with pytest.raises(ValueError, match="bad settings for clean step 'fineweb_quality'"):
        default_steps(overrides={"fineweb_quality": {"max_lines": 3}})
    with pytest.raises(ValueError, match="unknown filter profile"):
        step_settings("strict")


def test_signals_are_stored_for_every_rule():
    s = compute_signals(english(5, sentences=10))
    for key in ("dup_para_frac", "dup_line_char_frac", "top_4_gram_char_frac", "dup_10_gram_char_frac",
                "fw_line_punct_ratio", "fw_short_line_ratio", "fw_char_dup_ratio", "fw_list_ratio"):
        assert 0.0 <= s[key] <= 1.0, key
