"""Bits per byte: a language-model score that does not depend on the tokenizer.

A val loss is nats *per token*. Two models with different tokenizers cut the same text
into different numbers of tokens, so their per-token losses measure different things
(a tokenizer with longer pieces has fewer, harder tokens) and cannot decide which model
is better. The weekly refresh trains a new tokenizer, so the pretrain gate compares
bits per byte instead: the total negative log-likelihood a model assigns to a text,
turned into bits, divided by the text's UTF-8 bytes.

    bpb = sum of token NLL (nats) / (ln 2 * UTF-8 bytes of the text)

Both the challenger and the champion score the *same* text, each through its own
tokenizer. The text is the raw validation documents of the challenger's corpus version
(:func:`load_eval_text`): the shards' document index names the val documents, their text
comes from the parent corpus. Decoding the val shards instead would score the text as
the challenger's tokenizer sees it (lower-cased, accents stripped or characters lost
for WordPiece/Unigram), which flatters the challenger and is not the corpus; it is the
fallback only when the corpus is gone or the shards were not made from a versioned
corpus, and the source is recorded next to the number.

Each document is scored after an end-of-text token (how training saw a document start:
packing puts EOS after every document) in windows of the model's ``block_size``
positions; every token is predicted exactly once. The closing EOS is not scored, as it
has no bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SOURCE_CORPUS = "corpus"  # raw text of the val documents, read from the parent corpus version
SOURCE_DECODED = "decoded-val-shards"  # the val shards decoded with their own tokenizer (fallback)
DEFAULT_MAX_BYTES = 300_000  # ~70k tokens: a stable number; a tiny model scores it in ~4 s on one CPU thread


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    """Total NLL in nats over ``n_bytes`` UTF-8 bytes -> bits per byte."""
    if n_bytes <= 0:
        raise ValueError("bits per byte of an empty text is undefined; score at least one byte")
    return nll_nats / (math.log(2) * n_bytes)


@dataclass(frozen=True)
class EvalText:
    """The held-out documents every model in a comparison scores, and what identifies them."""

    docs: tuple[str, ...]
    source: str  # SOURCE_CORPUS or SOURCE_DECODED
    origin: str  # the corpus (or shards) URI the documents came from

    @property
    def n_bytes(self) -> int:
        return sum(len(d.encode("utf-8")) for d in self.docs)

    @property
    def digest(self) -> str:
        """sha256 of the documents (length-prefixed, in order): equal digests, equal text."""
        h = hashlib.sha256()
        for doc in self.docs:
            data = doc.encode("utf-8")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
        return h.hexdigest()


@dataclass(frozen=True)
class BpbScore:
    nll_nats: float
    tokens: int
    n_bytes: int
    docs: int
    lossless_docs: int  # documents the tokenizer decodes back to exactly the same text

    @property
    def bpb(self) -> float:
        return bits_per_byte(self.nll_nats, self.n_bytes)

    @property
    def tokens_per_byte(self) -> float:
        return self.tokens / self.n_bytes


def _windows(ids: list[int], bos_id: int, block: int) -> list[tuple[list[int], list[int]]]:
    """(inputs, targets) windows over ``[bos] + ids``: each id is a target exactly once."""
    seq = [bos_id] + ids
    return [(seq[s : s + block], seq[s + 1 : s + block + 1]) for s in range(0, len(seq) - 1, block)]


@torch.no_grad()
def score_docs(model, tokenizer, docs, bos_id: int, block_size: int, batch_size: int = 16) -> BpbScore:
    """Sum of NLL (nats) that ``model`` gives ``docs``, cut by ``tokenizer`` (a ``tokenizers.Tokenizer``).

    ``model(x)`` must return next-token logits (B, T, V), as the GPT does. Windows are
    right-padded into batches; padded targets are ignored, and causal attention keeps
    padding from reaching real positions.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    windows, n_bytes, lossless = [], 0, 0
    for enc, doc in zip(tokenizer.encode_batch(list(docs), add_special_tokens=False), docs):
        n_bytes += len(doc.encode("utf-8"))
        lossless += tokenizer.decode(enc.ids, skip_special_tokens=True) == doc
        windows += _windows(enc.ids, bos_id, block_size)
    windows.sort(key=lambda w: len(w[0]))  # similar lengths together: less padding
    nll, tokens = 0.0, 0
    try:
        for i in range(0, len(windows), batch_size):
            chunk = windows[i : i + batch_size]
            width = max(len(x) for x, _ in chunk)
            x = torch.zeros((len(chunk), width), dtype=torch.long)
            y = torch.full((len(chunk), width), -100, dtype=torch.long)
            for row, (xs, ys) in enumerate(chunk):
                x[row, : len(xs)] = torch.tensor(xs)
                y[row, : len(ys)] = torch.tensor(ys)
            logits = model(x.to(device)).float()
            nll += float(
                F.cross_entropy(logits.transpose(1, 2), y.to(device), ignore_index=-100, reduction="sum")
            )
            tokens += int((y != -100).sum())
    finally:
        model.train(was_training)
    return BpbScore(nll, tokens, n_bytes, len(docs), lossless)


def score_registered(model_uri: str, text: EvalText, device: torch.device | None = None) -> BpbScore:
    """Score a registered crawl2model language model (e.g. the champion) with its own tokenizer."""
    from tokenizers import Tokenizer

    from training import tracking
    from training.tasks import export

    bundle = tracking.load_model_bundle(model_uri)
    if bundle.config.get("kind") != "gpt-lm":
        raise ValueError(
            f"{model_uri} is a {bundle.config.get('kind')!r} model; bits per byte needs a causal "
            "language model (kind gpt-lm)"
        )
    model = export.load_module(bundle).to(device or torch.device("cpu"))
    tokenizer = Tokenizer.from_file(str(bundle.tokenizer_path))
    return score_docs(
        model, tokenizer, text.docs, int(bundle.config["eos_id"]), int(bundle.config["model"]["block_size"])
    )


# --- the held-out text ------------------------------------------------------------------------------


def _read_table(uri: str, columns: list[str]):
    import pyarrow.parquet as pq

    from ops.lake import storage

    return pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=columns)


def _part_files(data_uri: str, manifest: dict) -> list[str]:
    """The top-level part files a manifest lists, under its data folder (:func:`ops.lake.datasets.data_uri_of`)."""
    from ops.lake import storage

    files = manifest.get("files", ())
    names = [f for f in files if "/" not in f and f.startswith("part-") and f.endswith(".parquet")]
    return [storage.join(data_uri, f) for f in sorted(names)]


def _corpus_val_docs(info) -> tuple[list[tuple[str, str]], str] | None:
    """(id, text) of the val documents from the shards' parent corpus, or None when unreachable."""
    from ops.lake import storage
    from ops.lake.datasets import data_uri_of

    parent = info.manifest.get("parent") or ""
    if not parent or not storage.exists(storage.join(parent, "_manifest.json")):
        return None
    val_ids: set[str] = set()
    for part in _part_files(info.data_uri, info.manifest):
        table = _read_table(part, ["id", "split"])
        val_ids.update(i for i, s in zip(table["id"].to_pylist(), table["split"].to_pylist()) if s == "val")
    if not val_ids:
        return None
    corpus_manifest = json.loads(storage.read_text(storage.join(parent, "_manifest.json")))
    docs = []
    for part in _part_files(data_uri_of(parent, corpus_manifest), corpus_manifest):
        table = _read_table(part, ["id", "text"])
        rows = zip(table["id"].to_pylist(), table["text"].to_pylist())
        docs += [(i, t) for i, t in rows if i in val_ids and t]
    return (docs, parent) if docs else None


def _decoded_val_docs(info) -> list[tuple[str, str]]:
    """Val documents decoded from the shards: rows joined per file, cut at EOS, the cut-off tail dropped."""
    from tokenizers import Tokenizer

    from training.data.shards import ShardDataset

    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    docs = []
    for f, array in enumerate(ShardDataset(info, "val").arrays):
        flat = np.asarray(array).reshape(-1)
        ends = np.flatnonzero(flat == info.eos_id)
        start = 0
        for k, end in enumerate(ends):  # tokens after the last EOS belong to a document cut off by packing
            text = tokenizer.decode(flat[start:end].tolist(), skip_special_tokens=True)
            if text.strip():
                docs.append((f"{f}:{k}", text))
            start = end + 1
    return docs


def load_eval_text(info, max_bytes: int = DEFAULT_MAX_BYTES) -> EvalText:
    """The challenger's held-out documents (raw corpus text when reachable), up to ``max_bytes``.

    Documents are taken in id order (val membership is a hash of the id, so this is an
    unbiased sample) until ``max_bytes`` would be exceeded; at least one is always kept.
    """
    found = _corpus_val_docs(info)
    if found:
        docs, origin = found
        source = SOURCE_CORPUS
    else:
        docs, origin, source = _decoded_val_docs(info), info.uri, SOURCE_DECODED
    if not docs:
        raise ValueError(
            f"{info.uri}: no validation text to score bits per byte on; tokenize with a larger --val-fraction"
        )
    chosen, total = [], 0
    for _, text in sorted(docs):
        size = len(text.encode("utf-8"))
        if chosen and total + size > max_bytes:
            break
        chosen.append(text)
        total += size
    return EvalText(tuple(chosen), source, origin)
