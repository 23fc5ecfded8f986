"""spark-submit entry: corpus/v=V → shards/v=V (tokenizer training, encoding, packed sequences).

    spark-submit spark_jobs/jobs/tokenize.py --version demo --vocab-size 4096 --seq-len 128
    spark-submit spark_jobs/jobs/tokenize.py --version demo --tokenizer wordpiece --vocab-size 8000

The tokenizer (byte-level BPE by default, or WordPiece / Unigram) is trained on the driver
over a ``--sample-fraction`` of the documents, or reused from ``--tokenizer-file`` so that
successive corpus versions share one vocabulary. Shards are uint16, or uint32 once the
vocabulary outgrows 65,535 ids; each file's sha256 goes into the manifest.
"""
import os
import sys

# spark-submit puts this folder first on sys.path, where this very file would shadow the
# stdlib module `tokenize` (imported by inspect, linecache, ...). Remove it first.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from ops.lake.jobconfig import add_arguments  # noqa: E402
from spark_jobs.jobs._args import (base_parser, common_config, input_frame, parse,  # noqa: E402
                                   print_summary, write_rejected)
from spark_jobs.jobs.config import TokenizeSettings  # noqa: E402


def build_parser():
    p = base_parser("tokenize", "Train a tokenizer on the corpus and write packed token shards.")
    return add_arguments(p, TokenizeSettings)


def main(argv=None, spark=None) -> dict:
    from spark_jobs.runner import get_spark
    from spark_jobs.tokenize.shards import session_conf, split_input_conf

    args = parse(build_parser(), argv)
    if not 0.0 <= args.val_fraction < 1.0 or not 0.0 < args.sample_fraction <= 1.0 or args.seq_len < 2:
        raise SystemExit("need 0 <= --val-fraction < 1, 0 < --sample-fraction <= 1 and --seq-len >= 2")
    spark = spark or get_spark("crawl2model-tokenize")
    with session_conf(spark, split_input_conf(spark)):
        return _run(spark, args)


def _run(spark, args) -> dict:
    import math

    from pyspark.sql import functions as F

    from ops.lake.datasets import DatasetVersion
    from spark_jobs.runner import DROP, KEPT, publish_version, schema_dict, write_rows
    from spark_jobs.staging import Staging
    from spark_jobs.tokenize.bpe import sha256_hex
    from spark_jobs.tokenize.pack import dtype_for
    from spark_jobs.tokenize.phases import PhaseClock
    from spark_jobs.tokenize.shards import (encode_df, ensure_val, finalize_shards, pack_partitions,
                                            split_stats)
    from ops.lake.vocab import describe

    clock = PhaseClock()
    corpus, parents = input_frame(spark, args, "corpus")
    # An empty corpus is caught here only when a tokenizer must be trained on it; with
    # --tokenizer-file the encoding's own count says so, without a Spark job of its own.
    if not args.tokenizer_file and corpus.isEmpty():
        raise SystemExit(_no_documents(parents[0]))
    clock.lap("read input")

    tokenizer = _tokenizer(args, corpus)
    tokenizer_json = tokenizer.to_str()
    vocab = describe(tokenizer)
    roles = vocab["special_tokens"]
    eos_id, pad_id = roles["eos"], roles["pad"]
    vocab_size = tokenizer.get_vocab_size()
    clock.lap("tokenizer file" if args.tokenizer_file else "tokenizer training")

    # Encoded once and cached: every later action (stats, doc index, packing) reads the cache.
    persisted = encode_df(corpus, tokenizer_json, args.val_fraction, roles.get("unk"), vocab_size).persist()
    stats = split_stats(persisted, LONG_DOC_FACTOR * args.seq_len)
    rows_in = stats["rows"]  # one encoded row per input row, dropped ones included
    if not rows_in:
        persisted.unpersist()
        raise SystemExit(_no_documents(parents[0]))
    encoded = ensure_val(persisted, args.val_fraction, stats)
    clock.lap("encode + cache + stats")
    out = DatasetVersion(args.root, "shards", args.version)
    try:
        with Staging(out) as staging:
            with open(staging.join("tokenizer.json"), "w", encoding="utf-8") as fh:
                fh.write(tokenizer_json)
            index = encoded.select("id", "split", "n_tokens", DROP)
            # doc index part-*.parquet and removed/empty_tokens/: one file per core, though the input is
            # read in smaller splits (coalesce reads the cache; nothing is encoded again)
            cores = spark.sparkContext.defaultParallelism
            counts = write_rows(spark, index.coalesce(cores), staging)
            rejected = write_rejected(spark, args, staging)  # JSONL lines that are no record
            counts.update(rejected)
            rows_in += sum(rejected.values())
            clock.lap("doc index")
            kept = encoded.filter(F.col(DROP).isNull())
            total = stats["tokens"]
            partitions = max(1, min(256, math.ceil(total / args.shard_tokens)))
            parts = pack_partitions(kept, staging.spark_path(), args.seq_len, eos_id, vocab_size, partitions)
            clock.lap("pack")
            splits = finalize_shards(staging, parts)
            if sum(s["docs"] for s in splits.values()) != counts.get(KEPT, 0):
                raise RuntimeError("packed document count differs from the encoded count; this is a bug")
            if not splits["train"]["sequences"]:
                raise SystemExit(f"no full {args.seq_len}-token training sequence from {total} tokens; "
                                 "lower --seq-len or tokenize more text")
            manifest = publish_version(
                staging, rows_in=rows_in, counts=counts, parents=parents, config=common_config(args),
                schema=schema_dict(index.schema),
                extra={"seq_len": args.seq_len, "dtype": dtype_for(vocab_size).name,
                       "vocab_size": vocab_size, "eos_id": eos_id, "pad_id": pad_id,
                       **vocab,
                       "tokenizer": "tokenizer.json",
                       "tokenizer_sha256": sha256_hex(tokenizer_json.encode("utf-8")),
                       "splits": splits, "parent": parents[0],
                       "tokens_dropped": sum(s["tokens_dropped"] for s in splits.values()),
                       "unk_tokens": stats["unk"], "long_docs": stats["long"]},
            )
            clock.lap("finalize + publish")
    finally:
        persisted.unpersist()
    print(f"[tokenize] seconds by phase: {clock.line()}", flush=True)
    print_summary(manifest)
    from spark_jobs.lineage import log_data_card

    log_data_card(out.read_manifest(), tokenizer_json)  # as stored: the digest training logs too
    return manifest


def _no_documents(parent: str) -> str:
    return (f"the input corpus ({parent}) has no documents: nothing to tokenize. "
            "Check the dedup stage's output or the --input-jsonl file.")


LONG_DOC_FACTOR = 100  # documents over 100 x seq_len tokens are kept, but counted in the manifest


def _tokenizer(args, corpus):
    """The ``--tokenizer-file`` tokenizer, or one trained on a sample of the corpus."""
    from pyspark.sql import functions as F

    from spark_jobs.tokenize.trainers import train_tokenizer

    if args.tokenizer_file:
        from tokenizers import Tokenizer

        from ops.lake import storage

        return Tokenizer.from_str(storage.read_text(args.tokenizer_file))
    sample = corpus.select("id", "text").where(F.col("text").isNotNull())
    if args.sample_fraction < 1.0:
        sample = sample.sample(fraction=args.sample_fraction, seed=0)
    texts = (row["text"] for row in sample.orderBy("id").toLocalIterator())  # fixed order: same merges
    extra = list(args.special_tokens)
    return train_tokenizer(texts, args.tokenizer, args.vocab_size, min_frequency=args.min_frequency,
                           extra_ids=args.extra_ids, normalizer=args.normalizer, extra_special=extra)


if __name__ == "__main__":
    main(sys.argv[1:])
