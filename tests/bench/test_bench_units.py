"""The benchmarks' pure pieces: near-duplicate generation, exact Jaccard and join, scoring, roff text.

Runs in .venv-jobs without datatrove or Spark, in well under 10 s.
"""
import itertools
import random
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.corpus import roff_to_text  # noqa: E402
from bench.neardup import (components, hashed_shingles, jaccard, make_variant, removal_scores,  # noqa: E402
                           shingle_set, similarity_join, words_of)

TEXT = ("The quick brown fox jumps over the lazy dog while the cat watches from the warm window sill.\n"
        "Every morning the baker opens his small shop and sells fresh bread to the people of the town.\n"
        "In winter the river freezes and children skate on it until the sun goes down behind the hills.\n")
VOCAB = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def test_jaccard_of_shingle_sets_by_hand():
    a = shingle_set("a b c d e f")  # {abcde, bcdef}
    b = shingle_set("a b c d e g")  # {abcde, bcdeg}
    assert a == {("a", "b", "c", "d", "e"), ("b", "c", "d", "e", "f")}
    assert jaccard(a, b) == pytest.approx(1 / 3)
    assert jaccard(a, a) == 1.0
    assert shingle_set("Hi, there!") == {("hi", "there")}  # shorter than 5 words: one shingle


def test_variant_edits_about_the_asked_share_of_words_and_keeps_lines():
    rng = random.Random(1)
    n = len(words_of(TEXT))
    for style in ("scattered", "block"):
        v = make_variant(TEXT, 0.2, rng, VOCAB, style)
        assert v != TEXT and v.count("\n") == TEXT.count("\n")
        assert abs(len(words_of(v)) - n) <= round(0.2 * n)
        assert 0.0 < jaccard(shingle_set(TEXT), shingle_set(v)) < 1.0


def test_block_edits_keep_more_shingles_than_scattered_ones():
    rng = random.Random(0)
    long_text = " ".join(TEXT for _ in range(10))
    base = shingle_set(long_text)
    js = {s: np.mean([jaccard(base, shingle_set(make_variant(long_text, 0.1, rng, VOCAB, s))) for _ in range(5)])
          for s in ("scattered", "block")}
    assert js["block"] > js["scattered"]


def test_similarity_join_finds_exactly_the_pairs_brute_force_finds():
    rng = random.Random(3)
    texts = [TEXT] + [make_variant(TEXT, r, rng, VOCAB, s) for r in (0.05, 0.1, 0.3) for s in ("scattered", "block")]
    texts += ["completely different words about ships sailing across a wide and stormy ocean at night"]
    sets = [hashed_shingles(t) for t in texts]
    for threshold in (0.3, 0.5, 0.7, 0.9):
        brute = [(i, j) for i, j in itertools.combinations(range(len(texts)), 2)
                 if len(np.intersect1d(sets[i], sets[j])) / len(np.union1d(sets[i], sets[j])) >= threshold]
        assert similarity_join(sets, threshold) == brute


def test_components_and_removal_scores():
    labels = components(6, [(0, 1), (1, 2), (4, 5)])  # clusters {0,1,2}, {3}, {4,5}: 3 should go
    assert labels == [0, 0, 0, 3, 4, 4]
    perfect = removal_scores(labels, {1, 2, 5})
    assert (perfect["precision"], perfect["recall"], perfect["f1"]) == (1.0, 1.0, 1.0)
    # removing the whole cluster {4,5} and singleton 3: 2 correct of 4 removed, 2 of 3 needed
    s = removal_scores(labels, {0, 3, 4, 5})
    assert s["correct"] == 2 and s["precision"] == 0.5 and s["recall"] == pytest.approx(0.6667, abs=1e-4)
    assert removal_scores(labels, set())["recall"] == 0.0


def test_roff_to_text_strips_macros_and_escapes():
    src = ('.\\" comment\n.TH LS 1\n.SH NAME\nls \\- list \\fBdirectory\\fR contents\n.PP\n'
           'B\\(:ar und \\(aqquoted\\(aq text\n.de Xx\nignored\n..\n.TP\n.B \\-a\ndo not ignore\n')
    text = roff_to_text(src)
    assert text.splitlines()[0] == "NAME"
    assert "ls - list directory contents" in text
    assert "Bär und 'quoted' text" in text
    assert "ignored" not in text and ".TH" not in text and "-a do not ignore" in text


def test_changelogs_keep_one_copy_of_each_content_and_skip_broken_files(tmp_path, monkeypatch):
    import gzip

    from bench import corpus

    for pkg, text in [("liba", "v1.2: fixed a crash\n"), ("libb", "v1.2: fixed a crash\n"), ("c", "v2: new\n")]:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "changelog.Debian.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "c" / "NEWS.gz").write_bytes(b"not gzip at all")
    monkeypatch.setattr(corpus, "DEBDOC_ROOT", tmp_path)
    docs = list(corpus.changelogs(corpus.changelog_files()))
    assert [(d["path"], d["text"]) for d in docs] == [("c/changelog.Debian.gz", "v2: new"),
                                                      ("liba/changelog.Debian.gz", "v1.2: fixed a crash")]
