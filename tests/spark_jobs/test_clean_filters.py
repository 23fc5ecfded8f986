"""Clean steps without Spark: normalisation and one test per drop reason."""
from __future__ import annotations

import json

from spark_test_data import english
from spark_jobs.clean import filters as f
from spark_jobs.clean.normalize import normalize_text
from spark_jobs.clean.signals import compute_signals
from spark_jobs.clean.steps import default_steps
from spark_jobs.steps import apply_steps


def _doc(text, lang="en", score=0.99):
    return {"id": "d", "text": text, "lang": lang, "lang_score": score}


def _reason(text, **kw):
    return apply_steps(_doc(text, **kw), default_steps())[1]


def test_normalize_text():
    raw = "Cafe\u0301  with\t\tspaces \r\n\n\n\n    indented  code\u200b line   \n"
    assert normalize_text(raw) == "Café with spaces\n\n    indented code line"


def test_good_prose_is_kept_with_signals():
    doc, reason = apply_steps(_doc(english(1, sentences=10)), default_steps())
    assert reason is None
    assert doc["quality_signals"]["n_words"] >= 50
    json.dumps(doc["quality_signals"])  # serialisable as the runner stores it


def test_too_few_words():
    assert _reason("Short text with few words. It ends here.") == f.TOO_FEW_WORDS


def test_too_many_words():
    doc = _doc(english(1))
    assert f.GopherQualityFilter(max_words=20).filter(doc) == f.TOO_MANY_WORDS


def test_mean_word_length():
    words = " ".join(["incomprehensibilities"] * 60) + "."
    assert _reason(words) == f.MEAN_WORD_LENGTH


def test_symbol_word_ratio():
    text = "\n".join(f"# heading {i} with some words here..." for i in range(30))
    assert _reason(text) == f.SYMBOL_RATIO


def test_too_few_alpha_words():
    text = english(1) + "\n" + " ".join(str(n) for n in range(400)) + "."
    assert _reason(text) == f.ALPHA_WORDS


def test_too_few_punctuated_lines():
    lines = "\n".join(line.rstrip(".") for line in english(1, sentences=20).split("\n"))  # no punctuation
    assert _reason(lines) == f.TOO_FEW_PUNCTUATED_LINES


def test_lorem_ipsum():
    assert _reason(english(1) + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.") == f.LOREM_IPSUM


def test_curly_bracket():
    assert _reason(english(1) + "\n" + "{}" * 200) == f.CURLY_BRACKET
    assert f.C4QualityFilter().filter(_doc(english(1) + "\nUse {name} here.")) is None  # a few are fine


def test_wrong_language():
    assert _reason(english(1), lang="de") == f.WRONG_LANGUAGE


def test_low_lang_score():
    assert _reason(english(1), score=0.3) == f.LOW_LANG_SCORE


def test_missing_language_is_identified_first():
    doc = {"id": "j", "text": english(2), "lang": None, "lang_score": None}
    doc, reason = apply_steps(doc, default_steps())
    assert reason is None and doc["lang"] == "en"


def test_signals_match_definitions():
    s = compute_signals("One two three.\nfour five\n# six ...")
    assert s["n_words"] == 6
    assert s["c4_kept_lines"] == 2 and s["c4_kept_sentences"] == 2  # "# six ..." ends in a period
    assert s["hash_ratio"] == round(1 / 6, 4) and s["ellipsis_ratio"] == round(1 / 6, 4)
