"""The movie-review polarity reader: what the archive holds, deterministic splits, clear errors.

The archive is fetched by ops/install/fetch_datasets.sh (the Makefile runs it before the
tests). A missing archive fails here with that hint, rather than skipping silently.
"""

import pytest

from training.data import polarity


def test_missing_archive_names_the_fetch_script(tmp_path, monkeypatch):
    monkeypatch.setenv("C2M_CACHE", str(tmp_path))
    with pytest.raises(polarity.PolarityDataMissing, match="ops/install/fetch_datasets.sh"):
        polarity.load_splits()


def test_both_subsets_are_balanced_and_clean(polarity_archive):
    sentences = polarity.read_examples(polarity_archive, "sentences")
    reviews = polarity.read_examples(polarity_archive, "reviews")
    assert 3900 <= len(sentences) <= 4000 and 1450 <= len(reviews) <= 1500  # a few exact duplicates go
    for examples in (sentences, reviews):
        positives = sum(e.label for e in examples)
        assert abs(positives / len(examples) - 0.5) < 0.02
        assert all(e.text and e.text == " ".join(e.text.split()) for e in examples)
    assert len({e.text for e in sentences}) == len(sentences)
    with pytest.raises(ValueError, match="choose one of sentences, reviews"):
        polarity.read_examples(polarity_archive, "tweets")


def test_splits_are_deterministic_disjoint_and_80_10_10(polarity_archive):
    splits = polarity.load_splits("sentences", archive=polarity_archive)
    again = polarity.load_splits("sentences", archive=polarity_archive)
    assert splits == again
    texts = {name: {e.text for e in exs} for name, exs in splits.items()}
    assert not (
        texts["train"] & texts["val"] or texts["train"] & texts["test"] or texts["val"] & texts["test"]
    )
    total = sum(len(v) for v in splits.values())
    assert 0.75 < len(splits["train"]) / total < 0.85 and 0.07 < len(splits["test"]) / total < 0.13
    assert all(polarity.split_of(e.text) == name for name, exs in splits.items() for e in exs)


def test_max_examples_is_a_fixed_subset(polarity_archive):
    small = polarity.load_splits("sentences", max_examples=200, archive=polarity_archive)
    assert sum(len(v) for v in small.values()) == 200
    assert small == polarity.load_splits("sentences", max_examples=200, archive=polarity_archive)
    assert 0.35 < sum(e.label for v in small.values() for e in v) / 200 < 0.65
