"""The tokenize job with each tokenizer family, uint32 shards, checksums the loader checks, bad input."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from spark_test_data import english
from ops.lake.datasets import DatasetVersion, data_uri_of
from spark_jobs.jobs import tokenize

pytestmark = pytest.mark.spark


def _corpus(path: Path, n: int = 24, extra: tuple[str, ...] = ()) -> str:
    docs = [{"id": f"d{i:03d}", "text": english(i)} for i in range(n)]
    docs += [{"id": f"x{i}", "text": t} for i, t in enumerate(extra)]
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return str(path)


def _run(spark, tmp_path, version, *flags, corpus=None):
    corpus = corpus or _corpus(tmp_path / f"{version}.jsonl")
    return tokenize.main(["--root", str(tmp_path), "--version", version, "--input-jsonl", corpus,
                          "--seq-len", "16", "--val-fraction", "0.2", *flags], spark=spark)


@pytest.fixture(scope="module")
def wordpiece(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wp")
    corpus = _corpus(tmp / "c.jsonl", extra=(english(99, sentences=150),))  # > 100 x seq_len tokens
    return tmp, _run(spark, tmp, "wp", "--tokenizer", "wordpiece", "--vocab-size", "400", "--extra-ids", "8",
                     corpus=corpus)


def test_wordpiece_joins_documents_with_sep_and_counts_unknowns(wordpiece):
    tmp, man = wordpiece
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(data_uri_of(man["uri"], man)) / "tokenizer.json"))
    sep = tok.token_to_id("[SEP]")
    assert man["tokenizer_type"] == "wordpiece" and man["eos_id"] == sep == 3 and man["pad_id"] == 0
    assert man["special_tokens"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "eos": 3, "mask": 4}
    assert man["sentinel_ids"] == list(range(5, 13))
    assert man["unk_tokens"] == 0 and man["long_docs"] == 1
    assert man["config"]["tokenizer"] == "wordpiece"
    train = np.concatenate([np.fromfile(Path(data_uri_of(man["uri"], man)) / f, dtype="<u2")
                            for f in man["splits"]["train"]["files"]])
    assert (train == sep).sum() >= man["splits"]["train"]["docs"] - 2  # one [SEP] per document, bar tails
    assert tok.decode(train[:16].tolist())


def test_manifest_checksums_match_and_the_loader_refuses_a_changed_shard(wordpiece):
    from training.data.shard_cache import file_sha256
    from training.data.shards import ShardDataset, ShardError, read_shard_info

    tmp, man = wordpiece
    for split in ("train", "val"):
        sums = man["splits"][split]["sha256"]
        assert sorted(sums) == sorted(man["splits"][split]["files"])
        for name, digest in sums.items():
            assert file_sha256(Path(data_uri_of(man["uri"], man)) / name) == digest
    info = read_shard_info(man["uri"])
    assert info.tokenizer_type == "wordpiece" and info.special_tokens["mask"] == 4
    assert len(ShardDataset(info, "train")) == man["splits"]["train"]["sequences"]

    bad = Path(data_uri_of(man["uri"], man)) / man["splits"]["val"]["files"][0]
    data = bytearray(bad.read_bytes())
    data[5] ^= 0xFF  # one flipped byte, same size
    bad.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=rf"{bad.name}: sha256 .* differs from the manifest"):
        ShardDataset(info, "val")
    ShardDataset(info, "val", verify=False)  # an explicit opt-out still reads it
    bad.unlink()
    with pytest.raises(ShardError, match=rf"{bad.name} is missing"):
        ShardDataset(info, "val")


def test_unigram_with_a_sample_of_the_corpus(spark, tmp_path):
    man = _run(spark, tmp_path, "uni", "--tokenizer", "unigram", "--vocab-size", "300",
               "--sample-fraction", "0.5", "--special-tokens", "<doc>")
    assert man["tokenizer_type"] == "unigram" and man["eos_id"] == 1 and man["pad_id"] == 0
    assert man["special_tokens"]["unk"] == 2 and len(man["sentinel_ids"]) == 32
    assert man["dtype"] == "uint16" and man["splits"]["train"]["sequences"] > 0
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(data_uri_of(man["uri"], man)) / "tokenizer.json"))
    assert tok.token_to_id("<doc>") == man["sentinel_ids"][-1] + 1


def test_a_reused_tokenizer_file_counts_unknown_characters(spark, tmp_path):
    from ops.lake.vocab import WORDPIECE
    from spark_jobs.tokens.bpe import sha256_hex
    from spark_jobs.tokens.trainers import train_tokenizer

    tok = train_tokenizer((english(i) for i in range(30)), WORDPIECE, 400)
    path = tmp_path / "wp.json"
    tok.save(str(path))
    corpus = _corpus(tmp_path / "c.jsonl", extra=("emoji 🙂 and ☃ are unseen " * 3,))
    man = _run(spark, tmp_path, "reuse", "--tokenizer-file", str(path), "--tokenizer", "bpe", corpus=corpus)
    assert man["tokenizer_type"] == "wordpiece"  # the file decides, not --tokenizer
    assert man["tokenizer_sha256"] == sha256_hex(tok.to_str().encode("utf-8"))
    assert man["unk_tokens"] == 9 and man["long_docs"] == 0  # "emoji" (no j in training), 🙂, ☃; x3


def test_a_vocabulary_over_65535_ids_writes_uint32(spark, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w.strip(".").lower() for i in range(30) for w in english(i).split()})
    vocab = {"<|endoftext|>": 0, "<|pad|>": 1, "<unk>": 2}
    vocab.update({f"filler{i}": i for i in range(3, 70_000)})
    vocab.update({w: 70_000 + i for i, w in enumerate(words)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "big-tokenizer.json"
    tok.save(str(path))
    man = _run(spark, tmp_path, "big", "--tokenizer-file", str(path))
    assert man["vocab_size"] == 70_000 + len(words) and man["dtype"] == "uint32"
    arr = np.fromfile(Path(data_uri_of(man["uri"], man)) / man["splits"]["train"]["files"][0], dtype="<u4")
    assert arr.max() >= 70_000 and arr.size % 16 == 0

    from training.data.shards import ShardDataset, read_shard_info

    rows = ShardDataset(read_shard_info(man["uri"]), "train").rows(np.array([0]))
    assert rows.shape == (1, 16) and rows.max() >= 70_000


def test_empty_corpus_and_too_little_text_fail_clearly(spark, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"id": "a", "text": "x"}) + "\n")
    with pytest.raises(SystemExit, match="no full 4096-token training sequence"):
        tokenize.main(["--root", str(tmp_path), "--version", "tiny", "--input-jsonl", str(empty),
                       "--seq-len", "4096", "--vocab-size", "512"], spark=spark)
    assert not DatasetVersion(str(tmp_path), "shards", "tiny").is_complete()
    none = tmp_path / "none.jsonl"
    none.write_text('{"id": "a", "text": "x"}\n')
    from spark_jobs.runner import read_jsonl

    with pytest.MonkeyPatch.context() as mp:  # a corpus with no rows at all
        mp.setattr(tokenize, "STAGE", dataclasses.replace(
            tokenize.STAGE, read=lambda spark, run: (read_jsonl(spark, str(none)).limit(0), [str(none)])))
        with pytest.raises(SystemExit, match="has no documents: nothing to tokenize"):
            tokenize.main(["--root", str(tmp_path), "--version", "none", "--vocab-size", "512"], spark=spark)
        tok = tmp_path / "tok.json"  # with a tokenizer file the encoding's own count finds it
        from spark_jobs.tokens.bpe import train_bpe

        tok.write_text(train_bpe([english(i) for i in range(5)], vocab_size=300).to_str())
        with pytest.raises(SystemExit, match="has no documents: nothing to tokenize"):
            tokenize.main(["--root", str(tmp_path), "--version", "none2", "--tokenizer-file", str(tok)],
                          spark=spark)
    assert not DatasetVersion(str(tmp_path), "shards", "none2").is_complete()
