"""Evaluation metrics as plain functions of predictions: no torch, no MLflow, easy to test.

- Classification: a (true, predicted) confusion matrix, from which accuracy, macro-F1 and
  per-class precision/recall/F1 follow; the same matrix sums over ranks.
- Tagging: entity-level precision/recall/F1 with seqeval's default (conlleval) semantics,
  so numbers compare with published WNUT/CoNLL scores: an entity is a maximal chunk
  (type, start, end); an ``I-X`` after ``O`` or after another type starts a new chunk;
  a predicted entity counts only when type and both boundaries match exactly.
- Generation: corpus BLEU via sacrebleu (optional dependency, imported on use).
- Language models: perplexity = exp(mean next-token negative log-likelihood).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

# Metric names shared by evaluate, finetune, HPO, compression and the promotion gate.
ACCURACY = "accuracy"
MACRO_F1 = "f1"
ENTITY_F1 = "entity_f1"
TOKEN_ACCURACY = "token_accuracy"
BLEU = "bleu"
CHRF = "chrf"
PERPLEXITY = "perplexity"
BPB = "bpb"  # bits per byte (training/bpb.py)
# A classifier with an n-gram bag (--ngram-buckets): each part's accuracy alone, and the bag's
# weight in the prediction, picked on validation (training/models/heads.py).
TRANSFORMER_ONLY, NGRAMS_ONLY, NGRAM_MIX = "transformer_only_accuracy", "ngrams_only_accuracy", "ngram_mix"
LOWER_IS_BETTER = frozenset({PERPLEXITY, "loss", BPB})


# --- classification --------------------------------------------------------------------------


def confusion_matrix(y_true: Iterable[int], y_pred: Iterable[int], num_labels: int) -> np.ndarray:
    """Counts ``[true, predicted]``; ids must be in ``range(num_labels)``."""
    out = np.zeros((num_labels, num_labels), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        out[t, p] += 1
    return out


def classification_metrics(confusion: np.ndarray, labels: Sequence[str] | None = None) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support from a confusion matrix.

    A class with no true and no predicted examples has F1 0 and still counts in the macro
    mean (as scikit-learn's ``zero_division=0``), so a collapsed model scores low.
    """
    confusion = np.asarray(confusion, dtype=float)
    tp = np.diag(confusion)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    total = confusion.sum()
    names = list(labels) if labels is not None else [str(i) for i in range(len(tp))]
    return {
        ACCURACY: float(tp.sum() / total) if total else 0.0,
        MACRO_F1: float(f1.mean()) if len(f1) else 0.0,
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support)
        },
    }


# --- tagging (seqeval / conlleval semantics) ------------------------------------------------


def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-geo-loc"`` -> ``("B", "geo-loc")``; ``"O"`` -> ``("O", "_")`` as seqeval does."""
    return tag[:1], (tag[1:].split("-", maxsplit=1)[-1] or "_")


def _ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks of one sentence as ``(type, first, last)`` token indices (inclusive), in order."""
    entities: list[tuple[str, int, int]] = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate(list(tags) + ["O"]):  # the sentinel closes a trailing entity
        tag, type_ = _split_tag(chunk)
        if _ends(prev_tag, tag, prev_type, type_):
            entities.append((prev_type, begin, i - 1))
        if _starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return entities


def entity_scores(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> dict:
    """Micro precision/recall/F1 over exact entity matches, and the same per entity type."""
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"{len(true_seqs)} true tag sequences but {len(pred_seqs)} predicted ones")
    true_set, pred_set = set(), set()
    for n, (t, p) in enumerate(zip(true_seqs, pred_seqs)):
        if len(t) != len(p):
            raise ValueError(f"sentence {n}: {len(t)} true tags but {len(p)} predicted")
        true_set |= {(n, *e) for e in get_entities(t)}
        pred_set |= {(n, *e) for e in get_entities(p)}
    hits = true_set & pred_set

    def prf(tp: int, n_pred: int, n_true: int) -> dict:
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "support": n_true}

    by_type = {}
    types_true, types_pred, types_hit = (Counter(e[1] for e in s) for s in (true_set, pred_set, hits))
    for type_ in sorted(set(types_true) | set(types_pred)):
        by_type[type_] = prf(types_hit[type_], types_pred[type_], types_true[type_])
    micro = prf(len(hits), len(pred_set), len(true_set))
    return {
        ENTITY_F1: micro["f1"],
        "entity_precision": micro["precision"],
        "entity_recall": micro["recall"],
        "entities": len(true_set),
        "per_type": by_type,
    }


def is_bio_tags(labels: Sequence[str]) -> bool:
    """Whether a tag set marks chunks (B-/I-/E-/S- prefixes), so entity F1 means something."""
    return any(label[:2] in ("B-", "I-", "E-", "S-") for label in labels)


def token_accuracy(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> float:
    pairs = [(t, p) for ts, ps in zip(true_seqs, pred_seqs) for t, p in zip(ts, ps)]
    return sum(t == p for t, p in pairs) / len(pairs) if pairs else 0.0


# --- generation and language modelling -------------------------------------------------------


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError as exc:
        raise RuntimeError(
            "BLEU needs sacrebleu: `pip install 'sacrebleu>=2.4'` into .venv-jobs "
            "(it is in the `train` extra)"
        ) from exc
    return sacrebleu


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) with sacrebleu's standard 13a tokenisation, one reference each."""
    sacrebleu = _sacrebleu()
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


# Corpus BLEU and chrF are functions of summed per-sentence statistics, so ranks can score
# their slices and all-reduce the sums. sacrebleu computes them with two underscored but
# long-stable methods (2.x); tests check the sums reproduce its corpus scores exactly.
BLEU_STATS = 10  # n-gram matches and totals for n = 1..4, hypothesis and reference lengths
CHRF_STATS = 18  # chrF (char order 6, no word n-grams): hyp, ref, match counts per order


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")


def bleu_stats(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """(N, BLEU_STATS) sufficient statistics; sum the rows (over ranks too) for corpus BLEU."""
    _check_pairs(hypotheses, references)
    stats = _sacrebleu().metrics.BLEU()._extract_corpus_statistics(list(hypotheses), [list(references)])
    return np.asarray(stats, dtype=np.float64).reshape(-1, BLEU_STATS)


def bleu_from_stats(stats: Sequence[float]) -> float:
    return float(_sacrebleu().metrics.BLEU()._compute_score_from_stats([int(round(x)) for x in stats]).score)


def sentence_bleu(hypothesis: str, reference: str) -> float:
    """Smoothed (exp) sentence BLEU, for ranking examples in an error analysis only."""
    return float(_sacrebleu().sentence_bleu(hypothesis, [reference]).score)


def chrf_stats(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    _check_pairs(hypotheses, references)
    stats = _sacrebleu().metrics.CHRF()._extract_corpus_statistics(list(hypotheses), [list(references)])
    return np.asarray(stats, dtype=np.float64).reshape(-1, CHRF_STATS)


def chrf_from_stats(stats: Sequence[float]) -> float:
    return float(_sacrebleu().metrics.CHRF()._compute_score_from_stats([int(round(x)) for x in stats]).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0-100): character n-gram F-score, kinder than BLEU to near-miss words."""
    _check_pairs(hypotheses, references)
    return float(_sacrebleu().corpus_chrf(list(hypotheses), [list(references)]).score)


def perplexity(total_nll: float, tokens: int) -> float:
    """exp of the mean negative log-likelihood per predicted token."""
    if tokens <= 0:
        raise ValueError("perplexity needs at least one predicted token")
    return math.exp(total_nll / tokens)


def higher_is_better(metric: str) -> bool:
    """Direction of a metric by name: losses, NLL and perplexity (also ``val_loss``, ``test/ppl``) go down."""
    name = metric.split("/")[-1]
    return not (name in LOWER_IS_BETTER or name.endswith(("loss", "perplexity", "nll", "ppl")))


# --- artefacts --------------------------------------------------------------------------------


def save_confusion_png(confusion: np.ndarray, labels: Sequence[str], path: str, title: str = "") -> None:
    """A labelled heat map of counts (rows true, columns predicted), rendered headless (Agg)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError("the confusion-matrix plot needs matplotlib: `pip install matplotlib`") from exc
    n = len(labels)
    fig, ax = plt.subplots(figsize=(2.6 + 0.6 * n, 2.2 + 0.5 * n), dpi=120)
    try:
        ax.imshow(confusion, cmap="Blues")
        ax.set_xticks(range(n), labels=list(labels), rotation=45, ha="right")
        ax.set_yticks(range(n), labels=list(labels))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title)
        peak = confusion.max() if confusion.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(int(confusion[i, j])),
                    ha="center",
                    va="center",
                    color="white" if confusion[i, j] > peak / 2 else "black",
                )
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
