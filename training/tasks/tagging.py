"""Token classification (BIO tagging, POS): one tag per word, read at the word's last sub-token.

Words are tokenised one by one (with the leading space BPE saw in running text), and
each word's tag is predicted at its *last* sub-token: in a causal model that is the
first position that has seen the whole word (a bidirectional BERT base sees it
everywhere). Other positions carry no label. Sentences longer than ``max_len`` tokens are
cut; the words that fall off are predicted ``O`` (the first label) and the sentence is
counted as truncated.

Scores: entity-level F1 (seqeval semantics) for BIO tag sets, token accuracy always;
the primary metric is entity F1 for BIO sets (NER) and token accuracy otherwise (POS).
An optional CRF (``--crf``) scores whole tag paths and decodes with Viterbi.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.data import jsonl, tagged
from training.metrics import ENTITY_F1, TOKEN_ACCURACY, get_entities, is_bio_tags
from training.models.crf import CRF
from training.models.heads import states

IGNORE = -100


class TokenTagger(nn.Module):
    """Backbone hidden states -> per-token tag scores (B, T, K); optional CRF over word positions."""

    def __init__(
        self,
        backbone: nn.Module,
        labels: list[str],
        dropout: float = 0.1,
        crf: bool = False,
        pad_id: int | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.pad_id = pad_id  # masked out of a BERT's attention
        self.num_labels = len(labels)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.cfg.d_model, len(labels))
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.crf = CRF(len(labels), labels) if crf else None

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T), right-padded -> tag scores (B, T, K) at every position."""
        return self.head(self.drop(states(self.backbone, idx, self.pad_id)))

    def word_scores(self, idx: torch.Tensor, word_pos: torch.Tensor) -> torch.Tensor:
        """Scores at each word's labelled position: (B, W, K)."""
        scores = self(idx)
        return scores.gather(1, word_pos.unsqueeze(-1).expand(-1, -1, scores.size(-1)))

    def loss(self, idx, word_pos, word_mask, tags) -> torch.Tensor:
        scores = self.word_scores(idx, word_pos)
        if self.crf is not None:
            return self.crf.nll(scores, tags, word_mask)
        return F.cross_entropy(scores.reshape(-1, scores.size(-1)), tags.reshape(-1), ignore_index=IGNORE)

    @torch.no_grad()
    def decode(self, idx, word_pos, word_mask) -> list[list[int]]:
        scores = self.word_scores(idx, word_pos)
        if self.crf is not None:
            return self.crf.viterbi(scores, word_mask)
        best = scores.argmax(-1)
        return [best[b, : int(word_mask[b].sum())].tolist() for b in range(best.size(0))]


@dataclass
class Encoded:
    ids: list[int]
    word_pos: list[int]  # index of each kept word's last sub-token
    n_words: int  # words in the sentence (kept or not)


class WordEncoder:
    """Words -> sub-token ids with each word's last position; caches each word form once."""

    def __init__(self, tokenizer_path, pad_id: int, max_len: int):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.pad_id, self.max_len = pad_id, max_len
        self._cache: dict[str, list[int]] = {}

    def _pieces(self, forms: list[str]) -> list[list[int]]:
        missing = [f for f in dict.fromkeys(forms) if f not in self._cache]
        for form, enc in zip(missing, self.tok.encode_batch(missing) if missing else []):
            self._cache[form] = enc.ids or [self.pad_id]  # never a zero-length word
        return [self._cache[f] for f in forms]

    def encode(self, tokens: tuple[str, ...]) -> Encoded:
        forms = [w if i == 0 else f" {w}" for i, w in enumerate(tokens)]
        ids, word_pos = [], []
        for pieces in self._pieces(forms):
            if len(ids) + len(pieces) > self.max_len:
                break
            ids += pieces
            word_pos.append(len(ids) - 1)
        return Encoded(ids or [self.pad_id], word_pos, len(tokens))


@dataclass
class TaggingData:
    name: str
    labels: tuple[str, ...]
    splits: dict[str, list[tagged.TaggedSentence]]
    source: Path
    dropped: dict[str, int] = field(default_factory=dict)


def load_data(task: str, subset: str = "", data: str = "", max_examples: int = 0) -> TaggingData:
    if data:
        d = jsonl.load_tagging(data)
        splits = {k: v[:max_examples] for k, v in d.splits.items()} if max_examples else d.splits
        return TaggingData(f"jsonl-{Path(data).name}", d.labels, splits, d.path, d.dropped)
    if task == "ner":
        d = tagged.load_ner(max_examples)
    elif task == "pos":
        d = tagged.load_pos(subset or "oanc", max_examples)
    else:
        raise ValueError(f"task {task!r} has no built-in data; pass --data DIR")
    return TaggingData(d.name, d.labels, d.splits, d.archive)


class TaggingTask:
    kind = "tagging"

    def __init__(self, data: TaggingData, encoder: WordEncoder, dropout: float = 0.1, crf: bool = False):
        self.data, self.encoder, self.dropout, self.crf = data, encoder, dropout, crf
        self.labels = data.labels
        self.label_id = {label: i for i, label in enumerate(self.labels)}
        self.primary_metric = ENTITY_F1 if is_bio_tags(self.labels) else TOKEN_ACCURACY
        self.encoded = {
            split: [encoder.encode(s.tokens) for s in sents] for split, sents in data.splits.items()
        }
        self.truncated = {
            split: sum(len(e.word_pos) < e.n_words for e in encs) for split, encs in self.encoded.items()
        }

    def size(self, split: str) -> int:
        return len(self.encoded[split])

    def build_model(self, backbone) -> TokenTagger:
        return TokenTagger(
            backbone, list(self.labels), dropout=self.dropout, crf=self.crf, pad_id=self.encoder.pad_id
        )

    def batch(self, split: str, indices):
        """(ids (B, T), word_pos (B, W), word_mask (B, W), tags (B, W) with IGNORE padding)."""
        encs = [self.encoded[split][i] for i in indices]
        sents = [self.data.splits[split][i] for i in indices]
        width, words = max(len(e.ids) for e in encs), max(max(len(e.word_pos) for e in encs), 1)
        ids = torch.full((len(encs), width), self.encoder.pad_id, dtype=torch.long)
        pos = torch.zeros(len(encs), words, dtype=torch.long)
        mask = torch.zeros(len(encs), words, dtype=torch.bool)
        tags = torch.full((len(encs), words), IGNORE, dtype=torch.long)
        for b, (e, s) in enumerate(zip(encs, sents)):
            n = len(e.word_pos)
            ids[b, : len(e.ids)] = torch.tensor(e.ids)
            pos[b, :n] = torch.tensor(e.word_pos, dtype=torch.long)
            mask[b, :n] = True
            tags[b, :n] = torch.tensor([self.label_id[t] for t in s.tags[:n]], dtype=torch.long)
        mask[:, 0] = True  # a sentence with no kept word still has one (ignored) position for the CRF
        return ids, pos, mask, tags

    def loss(self, model, indices, split: str = "train") -> torch.Tensor:
        return model.loss(*self.batch(split, indices))

    @torch.no_grad()
    def predict(self, model, split: str, indices=None, batch_size: int = 64) -> list[list[str]]:
        """Predicted tags per sentence, full length: words cut by truncation get the first label."""
        was_training = model.training
        model.eval()
        rows = list(range(self.size(split))) if indices is None else list(indices)
        out = []
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            ids, pos, mask, _ = self.batch(split, chunk)
            for row, path in zip(chunk, model.decode(ids, pos, mask)):
                n_words, kept = self.encoded[split][row].n_words, len(self.encoded[split][row].word_pos)
                out.append([self.labels[t] for t in path[:kept]] + [self.labels[0]] * (n_words - kept))
        model.train(was_training)
        return out

    def counts(self, model, split: str, dist=None, batch_size: int = 64) -> torch.Tensor:
        """[entity hits, predicted entities, true entities, correct tokens, tokens], summed over ranks."""
        rank, size = (dist.rank, dist.size) if dist else (0, 1)
        rows = list(range(rank, self.size(split), size))
        c = torch.zeros(5, dtype=torch.float64)
        for row, pred in zip(rows, self.predict(model, split, rows, batch_size)):
            true = list(self.data.splits[split][row].tags)
            t_ents, p_ents = set(get_entities(true)), set(get_entities(pred))
            c += torch.tensor(
                [
                    len(t_ents & p_ents),
                    len(p_ents),
                    len(t_ents),
                    sum(a == b for a, b in zip(true, pred)),
                    len(true),
                ],
                dtype=torch.float64,
            )
        return dist.allreduce_sum(c) if dist is not None else c

    def evaluate(self, model, split: str, dist=None, batch_size: int = 64) -> dict[str, float]:
        hits, n_pred, n_true, correct, tokens = self.counts(model, split, dist, batch_size).tolist()
        precision = hits / n_pred if n_pred else 0.0
        recall = hits / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out = {TOKEN_ACCURACY: correct / tokens if tokens else 0.0}
        if is_bio_tags(self.labels):
            out.update({ENTITY_F1: f1, "entity_precision": precision, "entity_recall": recall})
        return out

    def model_config(self) -> dict:
        return {
            "kind": "gpt-tagger",
            "labels": list(self.labels),
            "pad_id": self.encoder.pad_id,
            "max_len": self.encoder.max_len,
            "dropout": self.dropout,
            "crf": self.crf,
            "label_position": "last_subword",
        }
