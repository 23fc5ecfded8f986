"""The cheap baselines every evaluation reports, on small data made here."""

import os
import random

import pytest

from training import baselines as B


def _reviews(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Two classes told apart by their words (plus shared filler), shuffled."""
    rng = random.Random(seed)
    pos, neg = ["great", "superb", "lovely", "fine"], ["awful", "boring", "dull", "bad"]
    filler = ["the", "film", "was", "plot", "and", "acting", "really", "quite"]
    texts, targets = [], []
    for _ in range(n):
        y = rng.randrange(2)
        words = rng.sample(filler, 4) + [rng.choice(pos if y else neg)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        targets.append(y)
    return texts, targets


def test_tfidf_lr_separates_a_separable_set_and_is_at_chance_on_shuffled_labels():
    train_x, train_y = _reviews(400, 0)
    test_x, test_y = _reviews(200, 1)
    good = B.classification(train_x, train_y, test_x, test_y, ["neg", "pos"])
    assert good["accuracy"] == 1.0 and good["f1"] == 1.0
    shuffled = train_y[:]
    random.Random(2).shuffle(shuffled)
    chance = B.classification(train_x, shuffled, test_x, test_y, ["neg", "pos"])
    assert 0.35 <= chance["accuracy"] <= 0.65


def test_one_class_train_split_predicts_that_class():
    scores = B.classification(["a b", "c d"], [1, 1], ["a", "x", "y"], [1, 0, 0], ["neg", "pos"])
    assert scores["accuracy"] == pytest.approx(1 / 3)


def test_most_frequent_tag_per_form_with_the_overall_fallback():
    train = [
        (("the", "dog", "runs"), ("DET", "NOUN", "VERB")),
        (("the", "runs", "dog"), ("DET", "NOUN", "NOUN")),
        (("a", "dog", "runs"), ("DET", "NOUN", "VERB")),
    ]
    # "runs": VERB twice, NOUN once -> VERB; "The" falls back to its lower-case form; "cat" is
    # unseen -> NOUN, the most frequent tag overall (4 of 9).
    evaluate = [(("The", "cat", "runs"), ("DET", "NOUN", "NOUN")), (("a", "dog"), ("DET", "NOUN"))]
    scores = B.tagging(train, evaluate, ["DET", "NOUN", "VERB"])
    assert scores == {"token_accuracy": pytest.approx(4 / 5)}


def test_tagging_baseline_scores_entities_for_bio_tags():
    train = [
        (("Ann", "met", "Bob"), ("B-PER", "O", "B-PER")),
        (("it", "rained", "in", "Paris"), ("O", "O", "O", "B-LOC")),
    ]
    evaluate = [(("Bob", "left", "Paris"), ("B-PER", "O", "B-LOC"))]  # "left": unseen -> O
    scores = B.tagging(train, evaluate, ["O", "B-PER", "B-LOC"])
    assert scores["token_accuracy"] == 1.0 and scores["entity_f1"] == 1.0


def test_nearest_prompt_returns_the_closest_training_completion():
    train = [("def add(a, b)", "Add two numbers."), ("def read_file(path)", "Read a file.")]
    evaluate = [("def add(x, y)", "Add two numbers."), ("def read_files(paths)", "Read files.")]
    assert B.nearest_completions([p for p, _ in train], [c for _, c in train], [p for p, _ in evaluate]) == [
        "Add two numbers.",
        "Read a file.",
    ]
    scores = B.generation(train, evaluate)
    assert set(scores) == {"bleu", "chrf"} and 0 < scores["bleu"] < 100 and scores["chrf"] > 50
    exact = B.generation(train, evaluate[:1])
    assert exact["bleu"] == pytest.approx(100.0)


def test_compressor_bits_per_byte_of_random_and_repetitive_text():
    assert 7.95 <= B.compressor_bpb([os.urandom(200_000)]) <= 8.1
    repetitive = ["the cat sat on the mat. " * 2000, "the cat sat on the mat. " * 2000]
    assert B.compressor_bpb(repetitive) < 0.1
    with pytest.raises(ValueError, match="empty"):
        B.compressor_bpb([""])


def test_beside_names_baseline_and_lift_for_shared_metrics():
    out = B.beside({"accuracy": 0.6, "f1": 0.5, "loss": 0.7}, {"accuracy": 0.68, "f1": 0.6}, B.TFIDF_LR)
    assert out["baseline"] == "TF-IDF+LR" and out["baseline_accuracy"] == 0.68
    assert out["lift_accuracy"] == pytest.approx(-0.08) and "lift_loss" not in out
    assert B.describe("accuracy", 0.58, 0.68, B.TFIDF_LR) == "accuracy 0.5800 < TF-IDF+LR baseline 0.6800"
