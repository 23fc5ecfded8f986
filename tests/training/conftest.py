"""Fixtures for training tests: tiny token shards in the tokenize stage's format.

The shards are made here (a byte-level BPE tokenizer trained on templated sentences,
packed into seq_len rows) so the tests need neither Spark nor downloaded data.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from ops.datasets import DatasetVersion

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


def train_tokenizer(docs: list[str], vocab_size: int, path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer)
    tok.save(str(path))
    return tok


def write_shards(
    root: Path,
    version: str = "t1",
    n_docs: int = 600,
    seq_len: int = 33,
    vocab_size: int = 400,
    seed: int = 0,
) -> str:
    """A shards/v=version folder per the contract; returns its URI."""
    dv = DatasetVersion(str(root), "shards", version)
    out = Path(dv.uri)
    out.mkdir(parents=True, exist_ok=True)
    docs = synthetic_docs(n_docs, seed)
    tok = train_tokenizer(docs, vocab_size, out / "tokenizer.json")
    eos, pad = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|pad|>")
    splits: dict[str, list[int]] = {"train": [], "val": []}
    for i, doc in enumerate(docs):
        splits["val" if i % 20 == 0 else "train"] += tok.encode(doc).ids + [eos]
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
        meta[split] = {"files": names, "sequences": rows, "tokens": rows * seq_len}
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
            "tokenizer_sha256": "test",
            "parent": "",
        },
    )
    return dv.uri


@pytest.fixture(scope="session")
def shards_uri(tmp_path_factory) -> str:
    return write_shards(tmp_path_factory.mktemp("data"))


MLFLOW_TEST_EXPERIMENTS = ("pretrain-test", "finetune-test", "pretrain-multiproc-test")


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    """A file-backed MLflow (sqlite + local artifacts) shared by the session; created once (~6 s)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in MLFLOW_TEST_EXPERIMENTS:  # explicit artifact roots, so nothing lands in the cwd
        client.create_experiment(name, artifact_location=str(root / "artifacts" / name))
    return uri


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread, as each training rank runs; spinning threads on a busy 2-core box is slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
