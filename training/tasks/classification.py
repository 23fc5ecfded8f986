"""Sequence classification: texts -> one label, pooled from a GPT or BERT backbone.

The head reads the last token (a GPT's default: only there has a causal model seen the
whole text) or the mean of all tokens (a BERT's default); see training/models/heads.py.

Data comes from the built-in movie-review polarity set (``--task sentiment``) or from a
JSONL folder (``--task classification --data DIR``). Texts are tokenised the way the base
model was and end in eos, the position the head reads; longer texts are cut to
``max_len`` and counted per split, so a result shows how much text the model never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.data import jsonl, polarity
from training.metrics import ACCURACY, NGRAM_MIX, NGRAMS_ONLY, TRANSFORMER_ONLY, classification_metrics
from training.models.heads import MIX_GRID, SequenceClassifier, pooled_log_probs

DEFAULT_SUBSET = "sentences"


class Encoder:
    """Texts -> right-padded id tensors ending in eos, the token the classifier reads."""

    def __init__(self, tokenizer_path, eos_id: int, pad_id: int, max_len: int):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.eos_id, self.pad_id, self.max_len = eos_id, pad_id, max_len

    def encode(self, texts: list[str]) -> tuple[list[list[int]], int]:
        """Ids per text (cut to ``max_len`` incl. eos) and how many texts were cut."""
        out, cut = [], 0
        for e in self.tok.encode_batch(texts):
            cut += len(e.ids) > self.max_len - 1
            out.append(e.ids[: self.max_len - 1] + [self.eos_id])
        return out, cut

    def batch(self, ids: list[list[int]]) -> torch.Tensor:
        width = max(len(row) for row in ids)
        out = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        for i, row in enumerate(ids):
            out[i, : len(row)] = torch.tensor(row)
        return out


@dataclass
class ClassificationData:
    name: str  # for MLflow dataset lineage
    labels: tuple[str, ...]
    texts: dict[str, list[str]]
    targets: dict[str, list[int]]
    source: Path
    dropped: dict[str, int] = field(default_factory=dict)


def load_data(task: str, subset: str = "", data: str = "", max_examples: int = 0) -> ClassificationData:
    if data:
        d = jsonl.load_classification(data)
        splits, labels, name, source, dropped = (
            d.splits,
            d.labels,
            f"jsonl-{Path(data).name}",
            d.path,
            d.dropped,
        )
    else:
        if task != "sentiment":
            raise ValueError(f"task {task!r} has no built-in data; pass --data DIR")
        subset = subset or DEFAULT_SUBSET
        splits, labels = polarity.load_splits(subset, max_examples), polarity.LABELS
        name, source, dropped = f"pang-lee-polarity-{subset}", polarity.find_archive(), {}
    if data and max_examples:
        splits = {k: v[:max_examples] for k, v in splits.items()}
    return ClassificationData(
        name,
        tuple(labels),
        {k: [e.text for e in v] for k, v in splits.items()},
        {k: [e.label for e in v] for k, v in splits.items()},
        Path(source),
        dropped,
    )


class ClassificationTask:
    """What the fine-tuning loop, evaluation and compression need to know about classification."""

    kind = "classification"
    primary_metric = ACCURACY

    def __init__(self, data: ClassificationData, encoder: Encoder, dropout: float = 0.1, pooling: str = "",
                 ngram_buckets: int = 0):
        self.data, self.encoder, self.dropout = data, encoder, dropout
        self.pooling = pooling  # "" = the backbone's default (heads.default_pooling)
        self.ngram_buckets = ngram_buckets  # 0 = no n-gram weights beside the pooled state
        self.labels = data.labels
        self.ids, self.truncated = {}, {}
        for split, texts in data.texts.items():
            self.ids[split], self.truncated[split] = encoder.encode(texts)

    def size(self, split: str) -> int:
        return len(self.ids[split])

    def build_model(self, backbone) -> SequenceClassifier:
        model = SequenceClassifier(
            backbone,
            num_labels=len(self.labels),
            pad_id=self.encoder.pad_id,
            dropout=self.dropout,
            pooling=self.pooling,
            ngram_buckets=self.ngram_buckets,
        )
        self.pooling = model.pooling  # the resolved choice, recorded in model_config
        return model

    def inputs(self, split: str, indices) -> torch.Tensor:
        return self.encoder.batch([self.ids[split][i] for i in indices])

    def loss(self, model, indices, split: str = "train") -> torch.Tensor:
        """Cross-entropy of the logits; with an n-gram bag, each part's own (heads.SequenceClassifier)."""
        target = torch.tensor([self.data.targets[split][i] for i in indices])
        deep, wide = model.parts(self.inputs(split, indices))
        loss = F.cross_entropy(deep, target)
        return loss if wide is None else loss + F.cross_entropy(wide, target)

    @torch.no_grad()
    def probabilities(self, model, split: str, indices=None, batch_size: int = 64) -> np.ndarray:
        """Softmax class probabilities (N, K) for the given rows (default: the whole split)."""
        was_training = model.training
        model.eval()
        rows = list(range(self.size(split))) if indices is None else list(indices)
        out = [
            torch.softmax(model(self.inputs(split, rows[i : i + batch_size])).float(), -1)
            for i in range(0, len(rows), batch_size)
        ]
        model.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.labels)))

    def _counts(self, model, split: str, dist, batch_size: int, width: int, scores) -> torch.Tensor:
        """``width`` counts summed over the batches of ``split`` in eval mode, ``scores(model, ids,
        target)`` giving each batch's; with ``dist`` each rank scores every size-th row, counts summed."""
        rank, size = (dist.rank, dist.size) if dist else (0, 1)
        rows = list(range(rank, self.size(split), size))
        was_training = model.training
        model.eval()
        counts = torch.zeros(width, dtype=torch.float64)
        with torch.no_grad():
            for i in range(0, len(rows), batch_size):
                chunk = rows[i : i + batch_size]
                target = torch.tensor([self.data.targets[split][r] for r in chunk])
                counts += scores(model, self.inputs(split, chunk), target).to(torch.float64)
        model.train(was_training)
        return dist.allreduce_sum(counts) if dist is not None else counts

    def confusion(self, model, split: str, dist=None, batch_size: int = 64) -> np.ndarray:
        """(true, predicted) counts; with ``dist`` each rank scores every size-th row, counts summed."""
        k = len(self.labels)

        def cells(model, ids, target):
            return torch.bincount(target * k + model(ids).argmax(-1), minlength=k * k)

        counts = self._counts(model, split, dist, batch_size, k * k, cells)
        return counts.reshape(k, k).numpy().astype(np.int64)

    def evaluate(self, model, split: str, dist=None, batch_size: int = 64) -> dict[str, float]:
        m = classification_metrics(self.confusion(model, split, dist, batch_size), self.labels)
        scores = {k: v for k, v in m.items() if k != "per_class"}
        if getattr(model, "ngram_buckets", 0):
            scores.update(self.part_accuracies(model, split, dist, batch_size))
        return scores

    def calibrate(self, model, split: str = "val", dist=None, batch_size: int = 64) -> float | None:
        """Set a classifier's n-gram bag weight (``model.mix``) to the value of ``heads.MIX_GRID``
        scoring best on ``split``, ties to the one nearest an even mix; None without a bag."""
        if not getattr(model, "ngram_buckets", 0):
            return None

        def right_per_mix(model, ids, target):
            deep, wide = model.parts(ids)
            return torch.tensor([float((pooled_log_probs(deep, wide, mix).argmax(-1) == target).sum())
                                 for mix in MIX_GRID])

        hits = self._counts(model, split, dist, batch_size, len(MIX_GRID), right_per_mix)
        best = max(range(len(MIX_GRID)), key=lambda j: (float(hits[j]), -abs(MIX_GRID[j] - 0.5)))
        model.mix.fill_(MIX_GRID[best])
        return MIX_GRID[best]

    def part_accuracies(self, model, split: str, dist=None, batch_size: int = 64) -> dict[str, float]:
        """A classifier with an n-gram bag: each part's accuracy alone, so a result shows which
        part carries the prediction (heads.SequenceClassifier.parts), and the bag's weight."""

        def right_per_part(model, ids, target):
            deep, wide = model.parts(ids)
            right = [(deep.argmax(-1) == target).sum(), (wide.argmax(-1) == target).sum(), len(target)]
            return torch.tensor([float(n) for n in right])

        hits = self._counts(model, split, dist, batch_size, 3, right_per_part)
        rows = max(float(hits[2]), 1.0)
        return {TRANSFORMER_ONLY: float(hits[0]) / rows, NGRAMS_ONLY: float(hits[1]) / rows,
                NGRAM_MIX: float(model.mix)}

    def model_config(self) -> dict:
        """Fields serving and evaluation need, merged into the registered model_config.json."""
        return {
            "kind": "gpt-classifier",
            "labels": list(self.labels),
            "eos_id": self.encoder.eos_id,
            "pad_id": self.encoder.pad_id,
            "max_len": self.encoder.max_len,
            "dropout": self.dropout,
            "pooling": self.pooling or "last",
            "ngram_buckets": self.ngram_buckets,
        }
