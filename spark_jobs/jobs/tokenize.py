"""The tokenize stage: corpus/v=V → shards/v=V (tokenizer training, encoding, packed sequences).

    spark-submit spark_jobs/__main__.py tokenize --version demo --vocab-size 4096 --seq-len 128
    spark-submit spark_jobs/__main__.py tokenize --version demo --tokenizer wordpiece --vocab-size 8000

The tokenizer (byte-level BPE by default, or WordPiece / Unigram) is trained on the driver
over a ``--sample-fraction`` of the documents, or reused from ``--tokenizer-file`` so that
successive corpus versions share one vocabulary. Shards are uint16, or uint32 once the
vocabulary outgrows 65,535 ids; each file's sha256 goes into the manifest.
"""
from ops.lake.jobconfig import add_arguments
from spark_jobs.jobs._args import base_parser, common_config, parse
from spark_jobs.jobs.config import TokenizeSettings
from spark_jobs.stage import Stage, Written, run_stage


def build_parser():
    p = base_parser("tokenize", "Train a tokenizer on the corpus and write packed token shards.")
    return add_arguments(p, TokenizeSettings)


def prepare(args) -> None:
    if not 0.0 <= args.val_fraction < 1.0 or not 0.0 < args.sample_fraction <= 1.0 or args.seq_len < 2:
        raise SystemExit("need 0 <= --val-fraction < 1, 0 < --sample-fraction <= 1 and --seq-len >= 2")


def conf(spark) -> dict:
    from spark_jobs.tokens.shards import split_input_conf

    return split_input_conf(spark)


def write(spark, corpus, staging, run) -> Written:
    """tokenizer.json, the doc index (part-*.parquet, removed/empty_tokens/) and the packed shards."""
    from spark_jobs.tokens.phases import PhaseClock

    clock = run.notes["clock"] = PhaseClock()
    args = run.args
    # An empty corpus is caught here only when a tokenizer must be trained on it; with
    # --tokenizer-file the encoding's own count says so, without a Spark job of its own.
    if not args.tokenizer_file and corpus.isEmpty():
        raise SystemExit(_no_documents(run.parents[0]))
    clock.lap("read input")
    tokenizer = _tokenizer(args, corpus)
    run.notes["tokenizer_json"] = tokenizer_json = tokenizer.to_str()
    clock.lap("tokenizer file" if args.tokenizer_file else "tokenizer training")
    with open(staging.join("tokenizer.json"), "w", encoding="utf-8") as fh:
        fh.write(tokenizer_json)
    # Encoded once and cached: every later action (stats, doc index, packing) reads the cache.
    from spark_jobs.tokens.shards import encode_df

    vocab_size = tokenizer.get_vocab_size()
    persisted = encode_df(corpus, tokenizer_json, args.val_fraction, _roles(tokenizer).get("unk"),
                          vocab_size).persist()
    try:
        return _write_shards(spark, persisted, tokenizer, staging, run)
    finally:
        persisted.unpersist()


def _roles(tokenizer) -> dict:
    from ops.lake.vocab import describe

    return describe(tokenizer)["special_tokens"]


def _write_shards(spark, persisted, tokenizer, staging, run) -> Written:
    import math

    from pyspark.sql import functions as F

    from ops.lake.vocab import describe
    from spark_jobs.runner import DROP, KEPT, schema_dict, write_rows
    from spark_jobs.tokens.bpe import sha256_hex
    from spark_jobs.tokens.pack import dtype_for
    from spark_jobs.tokens.shards import ensure_val, finalize_shards, pack_partitions, split_stats

    args, clock, tokenizer_json = run.args, run.notes["clock"], run.notes["tokenizer_json"]
    vocab, vocab_size = describe(tokenizer), tokenizer.get_vocab_size()
    eos_id, pad_id = vocab["special_tokens"]["eos"], vocab["special_tokens"]["pad"]
    stats = split_stats(persisted, LONG_DOC_FACTOR * args.seq_len)
    if not stats["rows"]:  # one encoded row per input row, dropped ones included
        raise SystemExit(_no_documents(run.parents[0]))
    encoded = ensure_val(persisted, args.val_fraction, stats)
    clock.lap("encode + cache + stats")
    index = encoded.select("id", "split", "n_tokens", DROP)
    # doc index part-*.parquet and removed/empty_tokens/: one file per core (coalesce reads the
    # cache; nothing is encoded again)
    counts = write_rows(spark, index.coalesce(spark.sparkContext.defaultParallelism), staging)
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
    clock.lap("finalize")
    extra = {"seq_len": args.seq_len, "dtype": dtype_for(vocab_size).name,
             "vocab_size": vocab_size, "eos_id": eos_id, "pad_id": pad_id, **vocab,
             "tokenizer": "tokenizer.json", "tokenizer_sha256": sha256_hex(tokenizer_json.encode("utf-8")),
             "splits": splits, "parent": run.parents[0],
             "tokens_dropped": sum(s["tokens_dropped"] for s in splits.values()),
             "unk_tokens": stats["unk"], "long_docs": stats["long"]}
    return Written(counts, schema=schema_dict(index.schema), extra=extra, rows_in=stats["rows"])


def after(run, manifest: dict) -> None:
    """The phase timings, and the data card logged from the manifest as stored (the digest
    training logs too)."""
    from spark_jobs.lineage import log_data_card

    clock = run.notes["clock"]
    clock.lap("publish")
    print(f"[tokenize] seconds by phase: {clock.line()}", flush=True)
    log_data_card(run.out.read_manifest(), run.notes["tokenizer_json"])


STAGE = Stage(
    name="tokenize", output="shards", input="corpus", settings=lambda argv: parse(build_parser(), argv),
    config=lambda run: common_config(run.args), prepare=prepare, conf=conf, write=write, after=after)


def main(argv=None, spark=None) -> dict:
    return run_stage(STAGE, argv, spark)


def _no_documents(parent: str) -> str:
    return (f"the input corpus ({parent}) has no documents: nothing to tokenize. "
            "Check the dedup stage's output or the --input-jsonl file.")


LONG_DOC_FACTOR = 100  # documents over 100 x seq_len tokens are kept, but counted in the manifest


def _tokenizer(args, corpus):
    """The ``--tokenizer-file`` tokenizer, or one trained on a sample of the corpus."""
    from pyspark.sql import functions as F

    from spark_jobs.tokens.trainers import train_tokenizer

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
