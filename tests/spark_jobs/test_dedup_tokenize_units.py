"""Dedup hashing and tokenizer/packing without Spark."""
from __future__ import annotations

import io

import numpy as np
import pytest

from spark_test_data import english
from spark_jobs.dedup.exact import ExactHash, normalize_for_hash, text_hash
from spark_jobs.tokens.bpe import EOS, PAD, special_ids, train_bpe
from spark_jobs.tokens.pack import TRAIN, VAL, Packer, dtype_for, pack_tokens, split_of


def test_normalize_for_hash_ignores_case_punctuation_space():
    assert normalize_for_hash("Hello,  World!\n“Quoted”") == "hello world quoted"
    assert text_hash("Hello, world.") == text_hash("hello world")
    assert text_hash("hello world") != text_hash("hello there")
    assert ExactHash().map({"text": "A b."})["dup_cluster"] == text_hash("a b")


def test_split_is_deterministic_and_roughly_proportional():
    ids = [f"doc-{i}" for i in range(4000)]
    splits = [split_of(i, 0.1) for i in ids]
    assert splits == [split_of(i, 0.1) for i in ids]
    assert 0.07 < splits.count(VAL) / len(ids) < 0.13
    assert set(splits) == {TRAIN, VAL}


def test_pack_tokens_joins_with_eos_and_drops_tail():
    arr = pack_tokens([[5, 6, 7], [8, 9]], seq_len=3, eos_id=0)
    assert arr.tolist() == [[5, 6, 7], [0, 8, 9]]  # the final EOS is a 1-token tail, dropped
    buf = io.BytesIO()
    packer = Packer(buf, seq_len=4, eos_id=0, dtype=np.dtype("<u2"), flush_tokens=4)
    for doc in ([1] * 5, [2] * 5):
        packer.add(doc)
    assert packer.close() == 0 and packer.sequences == 3
    assert np.frombuffer(buf.getvalue(), "<u2").tolist() == [1, 1, 1, 1, 1, 0, 2, 2, 2, 2, 2, 0]


def test_dtype_for_vocab():
    assert dtype_for(4096) == np.dtype("<u2") and dtype_for(65535) == np.dtype("<u2")
    assert dtype_for(70000) == np.dtype("<u4")


def test_train_bpe_special_tokens_and_roundtrip():
    tok = train_bpe((english(i) for i in range(30)), vocab_size=400)
    assert special_ids(tok) == (0, 1)
    assert tok.token_to_id(EOS) == 0 and tok.token_to_id(PAD) == 1
    text = "Unseen wörds and émoji 🙂 still encode."
    assert tok.decode(tok.encode(text).ids) == text  # byte-level: nothing is out of vocabulary
    assert tok.get_vocab_size() <= 400


def test_add_docs_packs_like_one_document_at_a_time():
    rng = np.random.default_rng(0)
    docs = [rng.integers(2, 500, size=n).tolist() for n in rng.integers(0, 40, size=60)]
    one_by_one, batched = io.BytesIO(), io.BytesIO()
    slow = Packer(one_by_one, seq_len=7, eos_id=0, dtype=np.dtype("<u2"), flush_tokens=5)
    for doc in docs:
        slow.add(doc)
    fast = Packer(batched, seq_len=7, eos_id=0, dtype=np.dtype("<u2"), flush_tokens=50)
    for lo in range(0, len(docs), 16):  # Arrow-batch-sized groups, flushes at other points
        group = docs[lo:lo + 16]
        fast.add_docs(np.array([t for d in group for t in d], dtype="<u2"), np.array([len(d) for d in group]))
    assert (fast.close(), fast.sequences, fast.docs) == (slow.close(), slow.sequences, slow.docs)
    assert batched.getvalue() == one_by_one.getvalue()
    stream = [t for d in docs for t in d + [0]]
    assert np.frombuffer(batched.getvalue(), "<u2").tolist() == stream[:len(stream) // 7 * 7]


@pytest.mark.parametrize("chunk", [256, 3])  # 3: the four texts span two encode_batch_fast calls
def test_encode_batch_keeps_ids_as_shard_bytes_and_counts_unknowns(chunk, monkeypatch):
    from spark_jobs.runner import DROP
    from spark_jobs.tokens import shards
    from spark_jobs.tokens.shards import EMPTY_TOKENS, encode_batch

    monkeypatch.setattr(shards, "ENCODE_CHUNK", chunk)
    from ops.lake.vocab import WORDPIECE
    from spark_jobs.tokens.trainers import train_tokenizer

    tok = train_tokenizer((english(i) for i in range(30)), WORDPIECE, 400)
    unk = tok.token_to_id("[UNK]")
    texts = [english(1), "", None, "unseen ☃ and ☃"]
    batch = encode_batch(tok, ["a", "b", "c", "d"], texts, 0.5, unk, np.dtype("<u2")).to_pydict()
    expected = [tok.encode(t or "", add_special_tokens=False).ids for t in texts]
    assert [np.frombuffer(b, "<u2").tolist() for b in batch["tokens"]] == expected
    assert batch["n_tokens"] == [len(e) for e in expected]
    assert batch["n_unk"] == [e.count(unk) for e in expected] and batch["n_unk"][3] == 2
    assert batch[DROP] == [None, EMPTY_TOKENS, EMPTY_TOKENS, None]
    assert batch["split"] == [split_of(i, 0.5) for i in "abcd"]


def test_pack_batches_writes_one_file_per_split_in_row_order(tmp_path):
    import pyarrow as pa

    from spark_jobs.tokens.shards import pack_batches

    rows = [("a", TRAIN, [5, 6, 7]), ("b", TRAIN, [8, 9]), ("c", VAL, [3, 3, 3, 3])]
    batches = [pa.RecordBatch.from_pydict({
        "id": [r[0] for r in part], "split": [r[1] for r in part],
        "tokens": [np.array(r[2], "<u2").tobytes() for r in part]}) for part in (rows[:1], rows[1:])]
    parts = {p["split"]: p for p in pack_batches(iter(batches), str(tmp_path), 3, seq_len=3, eos_id=0,
                                                  dtype=np.dtype("<u2"))}
    train = np.fromfile(tmp_path / "_train-p00003.bin", "<u2")
    assert train.tolist() == pack_tokens([[5, 6, 7], [8, 9]], 3, 0).ravel().tolist()
    assert (parts[TRAIN]["docs"], parts[TRAIN]["sequences"], parts[TRAIN]["tokens_dropped"]) == (2, 2, 1)
    assert (parts[VAL]["docs"], parts[VAL]["sequences"], parts[VAL]["partition"]) == (1, 1, 3)
    assert np.fromfile(tmp_path / parts[VAL]["file"], "<u2").tolist() == [3, 3, 3]


def test_worker_tokenizer_is_loaded_once_per_json_and_replaced_by_a_new_one():
    from spark_jobs.tokens.bpe import train_bpe
    from spark_jobs.tokens.shards import worker_tokenizer

    a = train_bpe(["a small text to train on"] * 20, vocab_size=300).to_str()
    b = train_bpe(["another text, other merges"] * 20, vocab_size=300).to_str()
    first = worker_tokenizer(a)
    assert worker_tokenizer(a) is first  # a later task in the same worker reuses it
    other = worker_tokenizer(b)
    assert other is not first and other.to_str() == b
    assert worker_tokenizer(a) is not first  # one held at a time: a is parsed again
