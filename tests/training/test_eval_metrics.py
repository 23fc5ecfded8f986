"""Metric functions against reference implementations and hand-worked cases."""

import math

import numpy as np
import pytest

from training import metrics as M


def test_classification_metrics_match_scikit_learn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    y_pred[:5] = 2  # make the classes unbalanced in prediction
    cm = M.confusion_matrix(y_true, y_pred, 3)
    assert (cm == confusion_matrix(y_true, y_pred, labels=[0, 1, 2])).all()
    m = M.classification_metrics(cm, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["per_class"]["b"]["support"] == int((y_true == 1).sum())


def test_a_collapsed_classifier_scores_zero_f1_on_the_missing_class():
    m = M.classification_metrics(M.confusion_matrix([0, 0, 1, 1], [1, 1, 1, 1], 2), ["neg", "pos"])
    assert m["accuracy"] == 0.5
    assert m["per_class"]["neg"]["f1"] == 0.0
    assert m["f1"] == pytest.approx((0 + 2 / 3) / 2)


def test_entities_follow_conlleval_chunking():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "O", "B-geo-loc"]
    assert M.get_entities(tags) == [
        ("PER", 0, 1),
        ("LOC", 3, 4),
        ("LOC", 5, 5),
        ("ORG", 6, 6),
        ("geo-loc", 8, 8),
    ]
    assert M.get_entities(["O", "O"]) == []


def test_entity_f1_counts_only_exact_matches():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O"]]  # PER has the wrong boundary
    s = M.entity_scores(true, pred)
    assert (s["entity_precision"], s["entity_recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert s["per_type"]["PER"]["f1"] == 0.0 and s["per_type"]["LOC"]["f1"] == 1.0
    assert M.token_accuracy(true, pred) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="sentence 0"):
        M.entity_scores([["O"]], [["O", "O"]])


def test_entity_f1_agrees_with_seqeval_on_random_tag_soup():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = np.random.default_rng(1)
    vocab = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-geo-loc", "I-geo-loc"]
    true = [[vocab[i] for i in rng.integers(0, len(vocab), rng.integers(1, 12))] for _ in range(300)]
    pred = [[t if rng.random() < 0.7 else vocab[rng.integers(0, len(vocab))] for t in s] for s in true]
    ours = M.entity_scores(true, pred)
    assert ours["entity_f1"] == pytest.approx(seqeval.f1_score(true, pred))
    assert ours["entity_precision"] == pytest.approx(seqeval.precision_score(true, pred))
    assert ours["entity_recall"] == pytest.approx(seqeval.recall_score(true, pred))


def test_bleu_perplexity_and_direction():
    assert M.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert M.bleu(["a dog ran far away"], ["the cat sat on the mat"]) < 10
    assert M.perplexity(total_nll=2 * math.log(7), tokens=2) == pytest.approx(7.0)
    assert M.higher_is_better("test/accuracy") and not M.higher_is_better("perplexity")
    assert not M.higher_is_better("val_loss") and not M.higher_is_better("test/mean_nll")
    assert M.is_bio_tags(["O", "B-x", "I-x"]) and not M.is_bio_tags(["NN", "VB"])


def test_confusion_png_is_written(tmp_path):
    path = tmp_path / "cm.png"
    M.save_confusion_png(np.array([[3, 1], [0, 4]]), ["neg", "pos"], str(path), "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
