"""Pretraining objectives as collators: packed token rows in, a training batch out.

Every collator is called as ``collator(rows, rng, shared_rng)``:

- ``rows``: (B, seq_len) token ids read from the shards, in their dtype (uint16/uint32;
  int64 works too), which the collator widens to int64 itself;
- ``rng``: this rank's generator for this batch (masks, spans, replacements);
- ``shared_rng``: a generator that is the same on every rank for this batch, for choices
  all ranks must agree on (which objective a mixture trains this step).

The loader derives both from (seed, epoch, position[, rank]), so a batch is a pure
function of where the job is: a resumed job rebuilds exactly the batch it would have
seen, with no collator state in the checkpoint.

A batch is a dict: ``objective``, ``input_ids`` (B, T) and, for token-level objectives,
``labels`` (B, T) with ``IGNORE`` where no loss is taken; prefix-LM batches add
``prefix_len`` (B,), the number of leading positions that attend bidirectionally.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

IGNORE = -100  # cross-entropy's ignore_index: no loss at this position
CLM, MLM, SPAN, CONTRASTIVE, MIXTURE = "clm", "mlm", "span", "contrastive", "mixture"
OBJECTIVES = (CLM, MLM, SPAN, CONTRASTIVE, MIXTURE)


class CausalLM:
    """Next-token prediction: inputs ``row[:-1]``, targets ``row[1:]`` (shifted by one)."""

    objective = CLM
    uses_rng = False  # the loader then skips building this batch's generators

    def positions(self, seq_len: int) -> int:
        return seq_len - 1

    def __call__(self, rows: np.ndarray, rng=None, shared_rng=None) -> dict:
        # each tensor cast straight from its shifted slice: two copies, not widen-then-copy-twice
        return {"objective": CLM, "input_ids": torch.from_numpy(rows[:, :-1].astype(np.int64, order="C")),
                "labels": torch.from_numpy(rows[:, 1:].astype(np.int64, order="C"))}


class MaskedLM:
    """BERT masking: choose ~``probability`` of the non-special tokens; of those, 80% become
    ``mask_id``, 10% a random non-special token and 10% stay, and only they carry labels.

    With ``word_starts`` (a bool per vocabulary id, True where a token begins a word) whole
    words are chosen together: every token of a chosen word is masked, so the model cannot
    fill a word in from its own other pieces. Special tokens are never chosen and always
    break words. ``length`` crops rows (a decoder with seq_len - 1 positions).
    """

    objective = MLM

    def __init__(
        self,
        vocab_size: int,
        mask_id: int,
        special_ids,
        probability: float = 0.15,
        mask_fraction: float = 0.8,
        random_fraction: float = 0.1,
        word_starts: np.ndarray | None = None,
        length: int | None = None,
    ):
        if not 0 < probability < 1 or mask_fraction + random_fraction > 1:
            raise ValueError(
                f"masking probability={probability}, mask {mask_fraction} + random "
                f"{random_fraction}: need 0 < probability < 1 and fractions summing to <= 1"
            )
        self.mask_id, self.probability, self.length = mask_id, probability, length
        self.mask_fraction, self.random_fraction = mask_fraction, random_fraction
        self.is_special = np.zeros(vocab_size, dtype=bool)
        self.is_special[list(special_ids)] = True
        self.is_special[mask_id] = True
        self.normal_ids = np.flatnonzero(~self.is_special)
        if word_starts is not None and len(word_starts) != vocab_size:
            raise ValueError(f"word_starts has {len(word_starts)} entries for a vocabulary of {vocab_size}")
        self.word_starts = word_starts

    def positions(self, seq_len: int) -> int:
        return self.length or seq_len

    def choose(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Bool (B, T): the positions that get a label."""
        candidates = ~self.is_special[ids]
        if self.word_starts is None:
            return candidates & (rng.random(ids.shape) < self.probability)
        starts = self.word_starts[ids] | ~candidates
        word = np.cumsum(starts, axis=1)  # word number of each token within its row, 0..T
        draws = rng.random((ids.shape[0], ids.shape[1] + 1))
        return candidates & (np.take_along_axis(draws, word, axis=1) < self.probability)

    def __call__(self, rows: np.ndarray, rng: np.random.Generator, shared_rng=None) -> dict:
        ids = np.array(rows[:, : self.length] if self.length else rows, dtype=np.int64)
        chosen = self.choose(ids, rng)
        labels = np.where(chosen, ids, IGNORE)
        u = rng.random(ids.shape)
        to_mask = chosen & (u < self.mask_fraction)
        to_random = chosen & (u >= self.mask_fraction) & (u < self.mask_fraction + self.random_fraction)
        ids[to_mask] = self.mask_id
        ids[to_random] = rng.choice(self.normal_ids, size=int(to_random.sum()))
        return {"objective": MLM, "input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels)}


def random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of a uniformly random split of ``num_items`` into ``num_segments`` non-empty parts."""
    first = np.zeros(num_items, dtype=bool)
    first[1 + rng.permutation(num_items - 1)[: num_segments - 1]] = True
    return np.bincount(np.cumsum(first), minlength=num_segments)


def span_counts(length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """T5's (noise tokens, noise spans) for a sequence of ``length`` tokens."""
    noise = min(max(int(round(length * noise_density)), 1), length - 1)
    spans = max(min(int(round(noise / mean_span)), noise, length - noise), 1)
    return noise, spans


class SpanCorruption:
    """T5 span corruption, trained as a prefix LM on a decoder.

    Of the first ``source_length`` tokens of a row, ``noise_density`` are corrupted in
    spans of mean length ``mean_span`` (T5's ``random_spans_noise_mask``). The input
    keeps the clean tokens and puts sentinel k where span k was; the target lists
    sentinel k followed by span k's tokens. Both go into one sequence
    ``input ++ target``: the input part attends bidirectionally (``prefix_len``) and the
    loss is next-token prediction on the target part only. ``source_length`` is the
    largest that keeps ``input ++ target`` within ``seq_len`` tokens, so every batch has
    the same shape.
    """

    objective = SPAN

    def __init__(self, sentinel_ids, seq_len: int, noise_density: float = 0.15, mean_span: float = 3.0):
        if not 0 < noise_density < 1 or mean_span < 1:
            raise ValueError(
                f"noise_density={noise_density}, mean_span={mean_span}: "
                "need 0 < noise_density < 1 and mean_span >= 1"
            )
        self.noise_density, self.mean_span = noise_density, mean_span
        self.source_length = seq_len
        while self.source_length > 2:  # input (L - N + S) + target (N + S) = L + 2S must fit
            noise, spans = span_counts(self.source_length, noise_density, mean_span)
            if self.source_length + 2 * spans <= seq_len:
                break
            self.source_length -= 1
        self.noise, self.spans = span_counts(self.source_length, noise_density, mean_span)
        if self.spans > len(sentinel_ids):
            raise ValueError(
                f"span corruption of {self.source_length} tokens needs {self.spans} sentinel "
                f"tokens, the tokenizer has {len(sentinel_ids)}; re-tokenize with "
                f"--extra-ids {self.spans} or more, or lower the noise density"
            )
        self.sentinels = np.asarray(sentinel_ids[: self.spans], dtype=np.int64)
        self.prefix = self.source_length - self.noise + self.spans

    def positions(self, seq_len: int) -> int:
        return self.source_length + 2 * self.spans - 1

    def noise_mask(self, rng: np.random.Generator) -> np.ndarray:
        """Bool (source_length,): alternating clean/noise spans, starting clean."""
        noise_lengths = random_segmentation(self.noise, self.spans, rng)
        clean_lengths = random_segmentation(self.source_length - self.noise, self.spans, rng)
        interleaved = np.stack([clean_lengths, noise_lengths], axis=1).reshape(-1)
        return np.repeat(np.tile([False, True], self.spans), interleaved)

    def corrupt(self, row: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(input, target) of one row: ``a b [c d] e [f]`` -> ``a b S0 e S1`` and ``S0 c d S1 f``."""
        span_start = mask & ~np.concatenate([[False], mask[:-1]])
        span_id = np.cumsum(span_start) - 1  # which span a position is in (-1 before the first)
        inputs = np.where(span_start, self.sentinels[span_id.clip(0)], row)[~mask | span_start]
        targets = np.insert(row[mask], np.flatnonzero(span_start[mask]), self.sentinels)
        return inputs, targets

    def __call__(self, rows: np.ndarray, rng: np.random.Generator, shared_rng=None) -> dict:
        seqs = []
        for row in rows[:, : self.source_length].astype(np.int64):
            inputs, targets = self.corrupt(row, self.noise_mask(rng))
            seqs.append(np.concatenate([inputs, targets]))
        full = torch.from_numpy(np.stack(seqs))  # (B, L + 2S)
        labels = full[:, 1:].clone()
        labels[:, : self.prefix - 1] = IGNORE  # loss on the target part only
        return {
            "objective": SPAN,
            "input_ids": full[:, :-1].contiguous(),
            "labels": labels,
            "prefix_len": torch.full((len(rows),), self.prefix, dtype=torch.long),
        }


class Contrastive:
    """SimCSE pairs: each row twice, ``input_ids`` = [rows; rows] (2B, T).

    The two copies differ only by dropout inside the encoder, which makes them each
    other's positive; every other row in the batch is a negative (:func:`info_nce_loss`).
    With ``crop_len`` each copy is instead an independent random window of the row, a
    stronger augmentation for long packed rows.
    """

    objective = CONTRASTIVE

    def __init__(self, crop_len: int = 0):
        self.crop_len = crop_len

    def positions(self, seq_len: int) -> int:
        return min(self.crop_len, seq_len) if self.crop_len else seq_len

    def __call__(self, rows: np.ndarray, rng: np.random.Generator, shared_rng=None) -> dict:
        rows = np.asarray(rows, dtype=np.int64)
        if self.crop_len and self.crop_len < rows.shape[1]:
            views = []
            for _ in range(2):
                starts = rng.integers(0, rows.shape[1] - self.crop_len + 1, size=len(rows))
                views.append(np.stack([r[s : s + self.crop_len] for r, s in zip(rows, starts)]))
            both = np.concatenate(views)
        else:
            both = np.concatenate([rows, rows])
        return {"objective": CONTRASTIVE, "input_ids": torch.from_numpy(both)}


def info_nce_loss(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.05, symmetric: bool = False
) -> torch.Tensor:
    """InfoNCE over in-batch negatives: row i of ``z1`` must pick row i of ``z2`` among all of ``z2``.

    z1, z2: (B, C) embeddings of the two views. Cosine similarity over ``temperature``
    (SimCSE uses 0.05). A batch of B gives chance level ln(B).
    """
    a = torch.nn.functional.normalize(z1.float(), dim=-1)
    b = torch.nn.functional.normalize(z2.float(), dim=-1)
    logits = a @ b.T / temperature  # (B, B)
    target = torch.arange(len(a), device=a.device)
    loss = torch.nn.functional.cross_entropy(logits, target)
    if symmetric:
        loss = (loss + torch.nn.functional.cross_entropy(logits.T, target)) / 2
    return loss


class Mixture:
    """Several objectives, one per batch, drawn by weight with the shared (rank-agreed) generator.

    All ranks train the same objective on a step, so batches have one shape across ranks;
    the draw is a function of the batch position, so a resumed job repeats it exactly.
    """

    objective = MIXTURE

    def __init__(self, collators: Mapping[str, object], weights: Mapping[str, float]):
        unknown = set(weights) - set(collators)
        if unknown or not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(
                f"mixture weights {dict(weights)}: need non-negative weights, some positive, "
                f"for objectives among {sorted(collators)}"
            )
        self.names = [n for n in collators if weights.get(n, 0) > 0]
        total = sum(weights[n] for n in self.names)
        self.weights = {n: weights[n] / total for n in self.names}
        self.collators = {n: collators[n] for n in self.names}

    def positions(self, seq_len: int) -> int:
        return max(c.positions(seq_len) for c in self.collators.values())

    def choose(self, shared_rng: np.random.Generator) -> str:
        return self.names[shared_rng.choice(len(self.names), p=[self.weights[n] for n in self.names])]

    def __call__(self, rows: np.ndarray, rng: np.random.Generator, shared_rng: np.random.Generator) -> dict:
        if shared_rng is None:
            raise ValueError("a mixture needs the rank-shared generator to pick the objective")
        return self.collators[self.choose(shared_rng)](rows, rng, shared_rng)


def parse_weights(spec: str) -> dict[str, float]:
    """``"clm=0.5,span=0.3,mlm=0.2"`` -> {"clm": 0.5, "span": 0.3, "mlm": 0.2}."""
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"mixture weight {part!r}: write name=weight, e.g. clm=0.5,span=0.5") from None
        if not sep:
            raise ValueError(f"mixture weight {part!r}: write name=weight, e.g. clm=0.5,span=0.5")
    return out


def word_starts_from_tokenizer(path) -> np.ndarray:
    """Bool per id: does the token begin a word? (for whole-word masking)

    Byte-level BPE marks a leading space with ``Ġ``, Unigram with ``▁``; WordPiece marks
    the opposite, continuations, with ``##``. Special tokens count as word starts.
    """
    import json
    from pathlib import Path

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    model = data["model"]
    vocab = model["vocab"]
    pairs = (
        [(t, i) for t, i in vocab.items()]
        if isinstance(vocab, dict)
        else [(t, i) for i, (t, _) in enumerate(vocab)]
    )
    for added in data.get("added_tokens", []):
        pairs.append((added["content"], added["id"]))
    size = max(i for _, i in pairs) + 1
    starts = np.zeros(size, dtype=bool)
    kind = model.get("type")
    for token, i in pairs:
        if kind == "WordPiece":
            starts[i] = not token.startswith(model.get("continuing_subword_prefix", "##"))
        else:
            starts[i] = token.startswith(("Ġ", "▁"))
    for added in data.get("added_tokens", []):
        starts[added["id"]] = True
    return starts
