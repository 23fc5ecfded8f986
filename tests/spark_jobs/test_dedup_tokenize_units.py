"""Dedup hashing and tokenizer/packing without Spark."""
from __future__ import annotations

import io

import numpy as np

from spark_test_data import english
from spark_jobs.dedup.exact import ExactHash, normalize_for_hash, text_hash
from spark_jobs.tokenize.bpe import EOS, PAD, special_ids, train_bpe
from spark_jobs.tokenize.pack import TRAIN, VAL, Packer, dtype_for, pack_tokens, split_of


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
