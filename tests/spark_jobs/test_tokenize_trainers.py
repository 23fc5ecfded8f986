"""Tokenizer families without Spark: special tokens per family, normalisation, determinism, errors."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from spark_test_data import english
from ops.lake.vocab import BPE, KINDS, SPECIALS, UNIGRAM, WORDPIECE, describe
from spark_jobs.tokens.pack import Packer
from spark_jobs.tokens.shards import HashingWriter
from spark_jobs.tokens.trainers import build_normalizer, special_token_list, train_tokenizer

DOCS = [english(i) for i in range(40)]


@pytest.fixture(scope="module")
def trained():
    return {kind: train_tokenizer(iter(DOCS), kind, 600, extra_ids=4) for kind in KINDS}


def test_each_family_has_its_specials_first_with_fixed_ids(trained):
    bpe, wp, uni = (describe(trained[k]) for k in KINDS)
    assert bpe == {"tokenizer_type": BPE, "special_tokens": {"eos": 0, "pad": 1, "mask": 2},
                   "sentinel_ids": [3, 4, 5, 6]}
    assert wp["special_tokens"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "eos": 3, "mask": 4}
    assert wp["sentinel_ids"] == [5, 6, 7, 8]
    assert uni["special_tokens"] == {"pad": 0, "eos": 1, "unk": 2, "mask": 3}
    assert trained[WORDPIECE].id_to_token(3) == "[SEP]"  # documents are joined with [SEP]
    for kind, tok in trained.items():
        assert tok.get_vocab_size() <= 600, kind
        names = special_token_list(kind, 4)
        assert [tok.id_to_token(i) for i in range(len(names))] == names


def test_families_tokenize_as_their_style(trained):
    assert trained[BPE].encode("the model reads").tokens == ["th", "e", "Ġmodel", "Ġreads"]
    wp = trained[WORDPIECE].encode("The MODEL reads").tokens
    assert wp[0] == "[CLS]" and wp[-1] == "[SEP]" and "model" in wp  # BERT: lowercased, [CLS] A [SEP]
    assert trained[UNIGRAM].encode("the model").tokens[0].startswith("▁")
    assert trained[WORDPIECE].encode("stringy", add_special_tokens=False).tokens[1].startswith("##")


def test_unseen_characters_become_unk_except_in_byte_level_bpe(trained):
    text = "emoji 🙂 here"
    assert trained[BPE].decode(trained[BPE].encode(text).ids) == text
    for kind in (WORDPIECE, UNIGRAM):
        ids = trained[kind].encode(text, add_special_tokens=False).ids
        assert describe(trained[kind])["special_tokens"]["unk"] in ids, kind


def test_normalizer_choice():
    assert build_normalizer(BPE) is None
    assert build_normalizer(WORDPIECE).normalize_str("Ünïcode") == "unicode"
    assert build_normalizer(WORDPIECE, "bert_cased").normalize_str("Ünïcode") == "Ünïcode"
    assert build_normalizer(UNIGRAM).normalize_str("ﬁ①") == "fi1"  # NFKC folds compatibility forms
    assert build_normalizer(BPE, "nfkc_lower").normalize_str("ﬁX") == "fix"
    cased = train_tokenizer(iter(DOCS), WORDPIECE, 600, normalizer="bert_cased")
    assert any(t[:1].isupper() for t in cased.get_vocab())  # sentences start capitalised
    assert not any(t[:1].isupper() for t in train_tokenizer(iter(DOCS), WORDPIECE, 600).get_vocab()
                   if not t.startswith("["))
    with pytest.raises(ValueError, match="--normalizer 'lower'"):
        build_normalizer(BPE, "lower")


def test_bpe_training_is_deterministic_and_others_keep_their_size():
    """tokenizers' WordPiece/Unigram trainers iterate hash maps, so ties fall differently per
    process; only BPE is bit-reproducible. The manifest's hash and --tokenizer-file cover the rest."""
    a = train_tokenizer(iter(DOCS), BPE, 500, extra_ids=2).to_str()
    assert a == train_tokenizer(iter(DOCS), BPE, 500, extra_ids=2).to_str()
    for kind in (WORDPIECE, UNIGRAM):
        sizes = {train_tokenizer(iter(DOCS), kind, 500).get_vocab_size() for _ in range(2)}
        assert len(sizes) == 1, kind


def test_user_special_tokens_and_bad_settings():
    tok = train_tokenizer(iter(DOCS), UNIGRAM, 500, extra_special=["<doc>", "<mask>"])
    assert tok.token_to_id("<doc>") == len(SPECIALS[UNIGRAM].ordered())  # appended once, after the family's
    with pytest.raises(ValueError, match="--vocab-size 280 leaves no room"):
        train_tokenizer(iter(DOCS), BPE, 280, extra_ids=32)
    with pytest.raises(ValueError, match="--tokenizer 'sentencepiece'"):
        train_tokenizer(iter(DOCS), "sentencepiece")


def test_describe_rejects_a_tokenizer_without_separator():
    from tokenizers import Tokenizer, models

    with pytest.raises(ValueError, match="no known document separator"):
        describe(Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")))


def test_hashing_writer_checksums_what_the_packer_writes():
    buf = io.BytesIO()
    writer = HashingWriter(buf)
    packer = Packer(writer, seq_len=4, eos_id=0, dtype=np.dtype("<u4"), flush_tokens=3)
    for doc in ([70000, 1, 2], [3, 4, 5, 6]):
        packer.add(doc)
    assert packer.close() == 1  # nine tokens with the two EOS: two rows, one left over
    assert writer.sha256.hexdigest() == hashlib.sha256(buf.getvalue()).hexdigest()
    assert np.frombuffer(buf.getvalue(), "<u4").tolist() == [70000, 1, 2, 0, 3, 4, 5, 6]
