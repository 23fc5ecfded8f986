"""Tiny token shards in the tokenize stage's format, made by the tests themselves.

A module of its own, not conftest: tests/spark_jobs has a conftest too, and when both
folders run in one pytest session the name ``conftest`` means only one of them. Import
from here (``from training_test_data import write_shards``).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np

from ops.lake.datasets import DatasetVersion, new_generation

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "a small bird", "the teacher", "our neighbour"]
VERBS = ["sees", "likes", "finds", "follows", "watches", "remembers", "draws"]
OBJECTS = ["the red ball", "a quiet river", "the tall tree", "an open window", "the long road", "a good film"]
ENDINGS = ["every morning", "at night", "in the park", "after lunch", "with great care", "again and again"]


def synthetic_docs(n: int, seed: int = 0) -> list[str]:
    """Templated English: regular enough that a tiny model's loss falls quickly."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        sentences = [
            f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ENDINGS)}."
            for _ in range(rng.randint(2, 5))
        ]
        docs.append(" ".join(s.capitalize() for s in sentences))
    return docs


def train_tokenizer(docs: list[str], vocab_size: int, path: Path, kind: str = "bpe", extra_ids: int = 16):
    """The tokenize stage's own trainer: family specials, a mask token and ``extra_ids`` sentinels."""
    from spark_jobs.tokens.trainers import train_tokenizer as train

    tok = train(iter(docs), kind, vocab_size, extra_ids=extra_ids)
    path.write_text(tok.to_str(), encoding="utf-8")  # the compact form, as the tokenize stage writes it
    return tok


def write_shards(
    root: Path,
    version: str = "t1",
    n_docs: int = 600,
    seq_len: int = 33,
    vocab_size: int = 400,
    seed: int = 0,
    kind: str = "bpe",
    val_every: int = 20,
) -> str:
    """A shards/v=version folder per the contract (checksums included); returns its URI.

    The files go into a generation folder (v=version/g=G) that the manifest names, as the
    tokenize stage publishes them. Every ``val_every``-th document (the first included) goes
    to the val split."""
    from ops.lake.vocab import describe

    dv = DatasetVersion(str(root), "shards", version)
    generation = new_generation()
    out = Path(dv.generation_uri(generation))
    out.mkdir(parents=True, exist_ok=True)
    docs = synthetic_docs(n_docs, seed)
    tok = train_tokenizer(docs, vocab_size, out / "tokenizer.json", kind)
    vocab = describe(tok)
    eos, pad = vocab["special_tokens"]["eos"], vocab["special_tokens"]["pad"]
    splits: dict[str, list[int]] = {"train": [], "val": []}
    for i, doc in enumerate(docs):
        split = "val" if i % val_every == 0 else "train"
        splits[split] += tok.encode(doc, add_special_tokens=False).ids + [eos]
    meta, dropped = {}, 0
    for split, ids in splits.items():
        rows = len(ids) // seq_len
        dropped += len(ids) - rows * seq_len
        arr = np.asarray(ids[: rows * seq_len], dtype="<u2")
        # Two files per split, so readers must stitch files together.
        half = (rows // 2) * seq_len
        names = [f"{split}-00000.bin", f"{split}-00001.bin"]
        arr[:half].tofile(out / names[0])
        arr[half:].tofile(out / names[1])
        sums = {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in names}
        meta[split] = {"files": names, "sha256": sums, "sequences": rows, "tokens": rows * seq_len}
    dv.write_manifest(
        rows_in=n_docs,
        rows_out=n_docs,
        dropped={},
        parents=[],
        config={"seq_len": seq_len},
        extra={
            "seq_len": seq_len,
            "dtype": "uint16",
            "vocab_size": tok.get_vocab_size(),
            "eos_id": eos,
            "pad_id": pad,
            "tokens_dropped": dropped,
            "splits": meta,
            **vocab,
            "tokenizer_sha256": hashlib.sha256(tok.to_str().encode()).hexdigest(),
            "parent": "",
        },
        generation=generation,
    )
    return dv.uri
