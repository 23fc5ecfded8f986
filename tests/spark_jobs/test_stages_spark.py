"""Every stage's job end to end on the tiny local site: crawl → extract → clean → dedup → tokenize."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from spark_test_data import english
from ops.lake.datasets import DatasetVersion
from spark_jobs.jobs import clean, crawl, dedup, extract, tokenize
from spark_jobs.runner import read_version

pytestmark = pytest.mark.spark
V = "e2e"


@pytest.fixture(scope="module")
def chain(spark, site, tmp_path_factory):
    """Run the whole chain once; tests inspect the versions it leaves."""
    root = str(tmp_path_factory.mktemp("data"))
    common = ["--root", root, "--version", V]
    manifests = {
        "raw": crawl.main(common + ["--seeds", site + "/", "--allow-private", "--delay", "0", "--max-retries", "0",
                                    "--timeout", "0.5", "--max-depth", "2"], spark=spark),
        "extracted": extract.main(common, spark=spark),
        "clean": clean.main(common, spark=spark),
        "corpus": dedup.main(common, spark=spark),
        "shards": tokenize.main(common + ["--vocab-size", "512", "--seq-len", "32", "--val-fraction", "0.2"],
                                spark=spark),
    }
    return root, manifests


def test_every_stage_keeps_the_accounting_invariant(chain):
    root, manifests = chain
    for stage, manifest in manifests.items():
        assert manifest["rows_in"] == manifest["rows_out"] + sum(manifest["dropped"].values()), stage
        assert DatasetVersion(root, stage, V).read_manifest()["rows_out"] == manifest["rows_out"]
    assert manifests["extracted"]["rows_in"] == manifests["raw"]["rows_out"]
    assert manifests["clean"]["rows_in"] == manifests["extracted"]["rows_out"]
    assert manifests["corpus"]["rows_in"] == manifests["clean"]["rows_out"]
    assert manifests["shards"]["rows_in"] == manifests["corpus"]["rows_out"]
    assert manifests["corpus"]["parents"] == [DatasetVersion(root, "clean", V).uri]


def test_crawl_and_extract_counts(chain, spark):
    root, m = chain
    assert m["raw"]["rows_out"] == 5  # /, a, b, c and the redirect to a?a=1&b=2
    assert {"robots_disallowed", "http_error_4xx", "http_error_5xx", "content_type", "timeout"} <= set(
        m["raw"]["dropped"])
    assert m["extracted"]["rows_out"] == 5
    rows = read_version(spark, DatasetVersion(root, "extracted", V)).collect()
    assert {r["lang"] for r in rows} == {"en"} and {r["source"] for r in rows} == {"crawl"}
    assert all(r["id"] and r["url"] and r["fetched_at"] and r["title"] for r in rows)


def test_clean_keeps_prose_and_stores_signals(chain, spark):
    root, m = chain
    assert m["clean"]["rows_out"] == 5
    row = read_version(spark, DatasetVersion(root, "clean", V)).first()
    assert json.loads(row["quality_signals"])["n_words"] >= 50


def test_dedup_drops_copies_and_keeps_the_smallest_id(chain, spark):
    root, m = chain
    assert m["corpus"]["dropped"] == {"exact_duplicate": 2}  # /b.html and the redirect copy of /a.html
    corpus = read_version(spark, DatasetVersion(root, "corpus", V)).collect()
    corpus_version = DatasetVersion(root, "corpus", V)
    removed = spark.read.parquet(corpus_version.data_path("removed", "exact_duplicate")).collect()
    cluster = removed[0]["dup_cluster"]
    keeper = [r for r in corpus if r["dup_cluster"] == cluster]
    assert len(keeper) == 1 and all(keeper[0]["id"] < r["id"] for r in removed)
    assert len({r["dup_cluster"] for r in corpus}) == len(corpus)


def test_shards_follow_the_contract(chain):
    root, m = chain
    shards = DatasetVersion(root, "shards", V)
    man = m["shards"]
    assert man["dtype"] == "uint16" and man["seq_len"] == 32 and man["eos_id"] == 0 and man["pad_id"] == 1
    assert man["parent"] == DatasetVersion(root, "corpus", V).uri
    assert set(man["splits"]) == {"train", "val"} and man["splits"]["val"]["docs"] >= 1
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(shards.data_path("tokenizer.json"))
    assert tok.get_vocab_size() == man["vocab_size"]
    for split, info in man["splits"].items():
        total = 0
        for name in info["files"]:
            arr = np.fromfile(shards.data_path(name), dtype="<u2")
            assert arr.size % 32 == 0 and arr.max() < man["vocab_size"]
            total += arr.size // 32
        assert total == info["sequences"] and info["tokens"] == total * 32, split
    first = np.fromfile(shards.data_path(man["splits"]["train"]["files"][0]), dtype="<u2")
    train_tokens = np.concatenate([np.fromfile(shards.data_path(n), dtype="<u2")
                                   for n in man["splits"]["train"]["files"]])
    # Each document is followed by EOS; each shard file drops only its own tail (< seq_len tokens,
    # shorter than any test document), so at most one EOS per file can be lost.
    train = man["splits"]["train"]
    assert int((train_tokens == 0).sum()) >= train["docs"] - len(train["files"])
    assert tok.decode(first[:32].tolist())  # decodes back to text


def test_rerun_is_idempotent(chain, spark):
    root, m = chain
    again = extract.main(["--root", root, "--version", V], spark=spark)
    assert (again["rows_in"], again["rows_out"], again["dropped"]) == (
        m["extracted"]["rows_in"], m["extracted"]["rows_out"], m["extracted"]["dropped"])
    ids = [r["id"] for r in read_version(spark, DatasetVersion(root, "extracted", V)).collect()]
    assert len(ids) == len(set(ids)) == m["extracted"]["rows_out"]
    assert sorted(os.listdir(os.path.join(root, "extracted"))) == [f"v={V}"]
    tok_again = tokenize.main(["--root", root, "--version", V, "--vocab-size", "512", "--seq-len", "32",
                               "--val-fraction", "0.2"], spark=spark)
    assert tok_again["tokenizer_sha256"] == m["shards"]["tokenizer_sha256"]
    assert tok_again["splits"] == m["shards"]["splits"]


def test_clean_from_jsonl_with_other_languages(spark, tmp_path):
    path = tmp_path / "docs.jsonl"
    docs = [{"id": f"en{i}", "text": english(i)} for i in range(4)]
    german = "Das ist ein deutscher Text über die Stadt, das Wetter und die Leute. " * 8
    docs.append({"id": "de1", "text": german})
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    argv = ["--root", str(tmp_path), "--version", "j", "--input-jsonl", str(path)]
    manifest = clean.main(argv, spark=spark)
    assert manifest["rows_out"] == 4 and manifest["dropped"] == {"wrong_language": 1}
    assert manifest["parents"] == [str(path)]
