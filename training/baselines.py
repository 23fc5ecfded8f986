"""Cheap baselines, scored on the same splits and with the same metric names as the models.

A model's number means little alone: 0.58 accuracy is good on a ten-class task and poor on
a two-class one that TF-IDF solves to 0.68. So every evaluation puts the baseline a
practitioner would try first beside the model, computed here from the task's own train
split and scored on the split the model is scored on:

- classification: TF-IDF of word 1-2 grams + logistic regression (scikit-learn);
- tagging: the most frequent tag of each word form in train, else the most frequent tag overall;
- generation: the completion of the nearest training prompt (TF-IDF of character 2-4 grams,
  cosine), scored with the same corpus BLEU and chrF (sacrebleu) as the model;
- language modelling: bits per byte of xz (``lzma``, preset 9, standard library) on the
  same held-out documents the model's bits per byte is measured on (training/bpb.py).

Each baseline is a pure function of (train split, eval split) -> metrics. Results carry
``baseline_<metric>`` and ``lift_<metric>`` (model - baseline; for lower-is-better metrics
such as bpb a negative lift is the model winning): :func:`beside`.
"""

from __future__ import annotations

import lzma
import math
from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

from training import metrics as M

TFIDF_LR = "TF-IDF+LR"
MOST_FREQUENT_TAG = "most-frequent-tag"
NEAREST_PROMPT = "nearest-prompt"
XZ = "xz-9"  # lzma.compress(format=FORMAT_XZ, preset=9)


def classification(
    train_texts: Sequence[str],
    train_targets: Sequence[int],
    eval_texts: Sequence[str],
    eval_targets: Sequence[int],
    labels: Sequence[str],
    seed: int = 0,
) -> dict[str, float]:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression: accuracy and macro-F1."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    k = len(labels)
    if len(set(train_targets)) < 2:  # one class in train: LR cannot fit; predicting it is the baseline
        pred = np.full(len(eval_targets), train_targets[0] if len(train_targets) else 0)
    else:
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        clf = LogisticRegression(max_iter=2000, random_state=seed)  # C=1: the first thing one tries
        clf.fit(vec.fit_transform(train_texts), np.asarray(train_targets))
        pred = clf.predict(vec.transform(eval_texts)) if len(eval_texts) else np.zeros(0, dtype=int)
    scores = M.classification_metrics(M.confusion_matrix(eval_targets, pred, k), labels)
    return {key: value for key, value in scores.items() if key != "per_class"}


def tagging(
    train: Sequence[tuple[Sequence[str], Sequence[str]]],
    evaluate: Sequence[tuple[Sequence[str], Sequence[str]]],
    labels: Sequence[str],
) -> dict[str, float]:
    """Most frequent tag per word form (exact form, then lower-cased), else the most frequent tag.

    ``train`` and ``evaluate`` are (tokens, tags) per sentence. Scores: token accuracy, and
    entity F1/precision/recall for BIO tag sets, as the tagging task reports them.
    """
    by_form: dict[str, Counter] = defaultdict(Counter)
    by_lower: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for tokens, tags in train:
        for word, tag in zip(tokens, tags):
            by_form[word][tag] += 1
            by_lower[word.lower()][tag] += 1
            overall[tag] += 1
    fallback = overall.most_common(1)[0][0] if overall else labels[0]

    def tag_of(word: str) -> str:
        counts = by_form.get(word) or by_lower.get(word.lower())
        return counts.most_common(1)[0][0] if counts else fallback

    true = [list(tags) for _, tags in evaluate]
    pred = [[tag_of(w) for w in tokens] for tokens, _ in evaluate]
    out = {M.TOKEN_ACCURACY: M.token_accuracy(true, pred) if true else 0.0}
    if M.is_bio_tags(labels):
        ent = M.entity_scores(true, pred)
        out.update({k: ent[k] for k in (M.ENTITY_F1, "entity_precision", "entity_recall")})
    return out


def nearest_completions(train_prompts: Sequence[str], train_completions: Sequence[str],
                        prompts: Sequence[str]) -> list[str]:
    """For each prompt, the completion of the most similar training prompt (char 2-4 gram TF-IDF)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not train_prompts:
        return ["" for _ in prompts]
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    train_m = vec.fit_transform(train_prompts)
    out = []
    for i in range(0, len(prompts), 512):  # rows are L2-normalised: the dot product is the cosine
        sims = vec.transform(prompts[i : i + 512]) @ train_m.T
        out += [train_completions[int(j)] for j in np.asarray(sims.argmax(axis=1)).reshape(-1)]
    return out


def generation(
    train: Sequence[tuple[str, str]], evaluate: Sequence[tuple[str, str]]
) -> dict[str, float]:
    """Nearest training prompt's completion, scored with corpus BLEU and chrF against the references."""
    hyps = nearest_completions([p for p, _ in train], [c.strip() for _, c in train], [p for p, _ in evaluate])
    refs = [c.strip() for _, c in evaluate]
    return {M.BLEU: M.bleu(hyps, refs), M.CHRF: M.chrf(hyps, refs)} if refs else {M.BLEU: 0.0, M.CHRF: 0.0}


def compressor_bpb(docs: Sequence[str] | Sequence[bytes]) -> float:
    """Bits per byte of xz (lzma preset 9) on the documents, joined by newlines.

    The denominator is the documents' own UTF-8 bytes (the separators are free), as in the
    model's bits per byte; the numerator is the whole compressed stream, container included.
    """
    parts = [d if isinstance(d, bytes) else d.encode("utf-8") for d in docs]
    n_bytes = sum(len(p) for p in parts)
    if n_bytes == 0:
        raise ValueError("bits per byte of an empty text is undefined; give at least one byte")
    compressed = lzma.compress(b"\n".join(parts), format=lzma.FORMAT_XZ, preset=9)
    return 8.0 * len(compressed) / n_bytes


# --- a task's baseline, and the numbers beside the model's ------------------------------------------


def name_for(kind: str) -> str:
    return {"classification": TFIDF_LR, "tagging": MOST_FREQUENT_TAG, "generation": NEAREST_PROMPT}[kind]


def for_task(task, split: str, train_split: str = "train") -> dict[str, float]:
    """The task's baseline, fitted on ``train_split`` of ``task.data`` and scored on ``split``."""
    data = task.data
    if task.kind == "classification":
        return classification(
            data.texts[train_split], data.targets[train_split], data.texts[split], data.targets[split],
            task.labels,
        )
    if task.kind == "tagging":
        pairs = {s: [(x.tokens, x.tags) for x in data.splits[s]] for s in (train_split, split)}
        return tagging(pairs[train_split], pairs[split], task.labels)
    if task.kind == "generation":
        pairs = {s: [(p.prompt, p.completion) for p in data.splits[s]] for s in (train_split, split)}
        return generation(pairs[train_split], pairs[split])
    raise ValueError(f"no baseline for task kind {task.kind!r} (classification, tagging, generation)")


def beside(model: dict[str, float], baseline: dict[str, float], name: str) -> dict:
    """``baseline_<metric>`` and ``lift_<metric>`` (model - baseline) for every metric both have."""
    out: dict = {"baseline": name}
    for key, value in baseline.items():
        out[f"baseline_{key}"] = float(value)
        if isinstance(model.get(key), (int, float)):
            out[f"lift_{key}"] = float(model[key]) - float(value)
    return out


def describe(metric: str, value: float, baseline_value: float, name: str) -> str:
    """One line a person reads: 'accuracy 0.5800 < TF-IDF+LR baseline 0.6800'."""
    tie = math.isclose(value, baseline_value, rel_tol=1e-9, abs_tol=1e-12)
    sign = "=" if tie else (">" if value > baseline_value else "<")
    return f"{metric} {value:.4f} {sign} {name} baseline {baseline_value:.4f}"
