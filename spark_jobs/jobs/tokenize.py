"""spark-submit entry: corpus/v=V → shards/v=V (byte-level BPE, packed uint16 sequences).

    spark-submit spark_jobs/jobs/tokenize.py --version demo --vocab-size 4096 --seq-len 128
"""
import os
import sys

# spark-submit puts this folder first on sys.path, where this very file would shadow the
# stdlib module `tokenize` (imported by inspect, linecache, ...). Remove it first.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from spark_jobs.jobs._args import base_parser, common_config, input_frame, parse, print_summary  # noqa: E402


def build_parser():
    p = base_parser("tokenize", "Train a byte-level BPE on the corpus and write packed token shards.")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--seq-len", type=int, default=128, help="tokens per packed sequence")
    p.add_argument("--val-fraction", type=float, default=0.05, help="share of documents (by id hash) for val")
    p.add_argument("--sample-fraction", type=float, default=1.0,
                   help="share of documents the tokenizer is trained on (all are encoded)")
    p.add_argument("--min-frequency", type=int, default=2, help="least pair count for a BPE merge")
    p.add_argument("--shard-tokens", type=int, default=50_000_000,
                   help="target tokens per shard file (decides the number of files)")
    return p


def main(argv=None, spark=None) -> dict:
    import math

    from pyspark.sql import functions as F

    from ops.datasets import DatasetVersion
    from spark_jobs.runner import DROP, KEPT, get_spark, publish_version, schema_dict, write_rows
    from spark_jobs.staging import Staging
    from spark_jobs.tokenize.bpe import sha256_hex, special_ids, train_bpe
    from spark_jobs.tokenize.pack import dtype_for
    from spark_jobs.tokenize.shards import encode_df, ensure_val, finalize_shards, pack_partitions

    args = parse(build_parser(), argv)
    if not 0.0 <= args.val_fraction < 1.0 or not 0.0 < args.sample_fraction <= 1.0 or args.seq_len < 2:
        raise SystemExit("need 0 <= --val-fraction < 1, 0 < --sample-fraction <= 1 and --seq-len >= 2")
    spark = spark or get_spark("crawl2model-tokenize")
    corpus, parents = input_frame(spark, args, "corpus")
    rows_in = corpus.count()

    sample = corpus.select("id", "text").where(F.col("text").isNotNull())
    if args.sample_fraction < 1.0:
        sample = sample.sample(fraction=args.sample_fraction, seed=0)
    texts = (row["text"] for row in sample.orderBy("id").toLocalIterator())  # fixed order: same merges
    tokenizer = train_bpe(texts, args.vocab_size, args.min_frequency)
    tokenizer_json = tokenizer.to_str()
    eos_id, pad_id = special_ids(tokenizer)
    vocab_size = tokenizer.get_vocab_size()

    persisted = encode_df(corpus, tokenizer_json, args.val_fraction).persist()
    encoded = ensure_val(persisted, args.val_fraction)
    out = DatasetVersion(args.root, "shards", args.version)
    try:
        with Staging(out) as staging:
            with open(staging.join("tokenizer.json"), "w", encoding="utf-8") as fh:
                fh.write(tokenizer_json)
            index = encoded.select("id", "split", "n_tokens", DROP)
            counts = write_rows(spark, index, staging)  # doc index part-*.parquet; removed/empty_tokens/
            kept = encoded.filter(F.col(DROP).isNull())
            total = kept.agg(F.sum("n_tokens")).first()[0] or 0
            partitions = max(1, min(256, math.ceil(total / args.shard_tokens)))
            parts = pack_partitions(kept, staging.path, args.seq_len, eos_id, vocab_size, partitions)
            splits = finalize_shards(staging.path, parts)
            if sum(s["docs"] for s in splits.values()) != counts.get(KEPT, 0):
                raise RuntimeError("packed document count differs from the encoded count; this is a bug")
            manifest = publish_version(
                staging, rows_in=rows_in, counts=counts, parents=parents, config=common_config(args),
                schema=schema_dict(index.schema),
                extra={"seq_len": args.seq_len, "dtype": dtype_for(vocab_size).name,
                       "vocab_size": vocab_size, "eos_id": eos_id, "pad_id": pad_id,
                       "tokenizer": "tokenizer.json",
                       "tokenizer_sha256": sha256_hex(tokenizer_json.encode("utf-8")),
                       "splits": splits, "parent": parents[0],
                       "tokens_dropped": sum(s["tokens_dropped"] for s in splits.values())},
            )
    finally:
        persisted.unpersist()
    print_summary(manifest)
    return manifest


if __name__ == "__main__":
    main(sys.argv[1:])
