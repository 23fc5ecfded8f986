"""spark-submit entry: clean/v=V → corpus/v=V (exact dedup, then MinHash-LSH near-dedup,
also against the signatures every earlier corpus version saved).

    spark-submit spark_jobs/jobs/dedup.py --version demo
    spark-submit spark_jobs/jobs/dedup.py --version 2026-12-06 --bands 20 --rows 5
    spark-submit spark_jobs/jobs/dedup.py --version demo --threshold 0.8 --dedup-against none

Writes ``signatures/part-*.parquet`` (node, id, text_len, shingles, signature) for the
kept rows, so later versions dedup against this one without recomputing it.
"""
import os
import sys

# spark-submit puts this folder first on sys.path, where jobs/tokenize.py would shadow the stdlib.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from ops.lake.jobconfig import add_arguments  # noqa: E402
from spark_jobs.jobs._args import (base_parser, common_config, input_frame, input_rows, parse,  # noqa: E402
                                   print_summary, write_rejected)
from spark_jobs.jobs.config import DedupSettings  # noqa: E402


def build_parser():
    p = base_parser("dedup", "Drop exact duplicates (normalised text; the smallest id is kept), then "
                             "near duplicates (MinHash-LSH; the longest text is kept), also against "
                             "earlier versions.")
    return add_arguments(p, DedupSettings)


def minhash_config(args):
    from spark_jobs.dedup.minhash import MinHashConfig

    if args.dedup_threshold is not None:
        return MinHashConfig.for_threshold(args.dedup_threshold, num_perm=args.bands * args.rows,
                                           ngram=args.ngram, seed=args.minhash_seed)
    return MinHashConfig(ngram=args.ngram, bands=args.bands, rows=args.rows, seed=args.minhash_seed)


def against_versions(args, cfg, started: str) -> list:
    from spark_jobs.dedup.near import earlier_signature_versions

    if args.dedup_against == "none":
        return []
    if args.dedup_against == "earlier":
        return earlier_signature_versions(args.root, args.version, started, cfg)
    chosen = [v.strip() for v in args.dedup_against.split(",") if v.strip()]
    usable = {dv.version: dv for dv in earlier_signature_versions(args.root, args.version, "9999", cfg)}
    missing = [v for v in chosen if v not in usable]
    if missing:
        raise ValueError(f"--dedup-against: corpus versions {missing} are unfinished, missing or saved no "
                         f"signatures under {args.root}; finished ones with signatures: {sorted(usable)}")
    return [usable[v] for v in chosen]


def main(argv=None, spark=None) -> dict:
    from ops.lake.datasets import DatasetVersion
    from spark_jobs.clean.signals import SIGNALS_KEY
    from spark_jobs.dedup.exact import DUP_CLUSTER, ExactHash, mark_duplicates
    from spark_jobs.dedup.near import SIGNATURES_DIR, near_dedup
    from spark_jobs.records import columns, utc_now_iso
    from spark_jobs.runner import (DROP, apply_steps_df, get_spark, publish_version, schema_dict, spread,
                                   write_rows)
    from spark_jobs.staging import Staging

    args = parse(build_parser(), argv)
    started = utc_now_iso()
    cfg = minhash_config(args)
    earlier = against_versions(args, cfg, started) if args.near_dedup else []  # fails fast, before Spark
    spark = spark or get_spark("crawl2model-dedup")
    df, parents = input_frame(spark, args, "clean")
    out = DatasetVersion(args.root, "corpus", args.version)
    rows_in = input_rows(spark, args, df)
    cols = columns((SIGNALS_KEY, "string"), (DUP_CLUSTER, "string"))
    tagged = mark_duplicates(apply_steps_df(spread(df), [ExactHash()], cols), DROP)
    extra = {}
    with Staging(out) as staging:
        if args.near_dedup:
            tagged.write.parquet(staging.spark_path("work", "exact"))  # read three times below: compute once
            tagged = spark.read.parquet(staging.spark_path("work", "exact"))
            tagged, sigs, info = near_dedup(spark, tagged, staging.spark_path("work"), cfg, earlier, DROP)
        counts = write_rows(spark, tagged, staging)
        if args.near_dedup:  # signatures of the rows kept, as written (decisions are not recomputed)
            kept = spark.read.parquet(*sorted(staging.files("part-*.parquet").values())).select("id")
            (sigs.join(kept, "id", "left_semi").coalesce(spark.sparkContext.defaultParallelism)
             .write.parquet(staging.spark_path(SIGNATURES_DIR)))
            extra = {"minhash": {**cfg.to_dict(), "threshold": round(cfg.threshold, 3)},
                     "signatures": SIGNATURES_DIR, "dedup_against": [dv.uri for dv in earlier],
                     "near_dedup": info}
        staging.remove("work")
        counts.update(write_rejected(spark, args, staging))
        manifest = publish_version(staging, rows_in=rows_in, counts=counts, parents=parents,
                                   config={**common_config(args), "minhash": cfg.to_dict()},
                                   schema=schema_dict(tagged.schema), extra=extra)
    print_summary(manifest)
    return manifest


if __name__ == "__main__":
    main(sys.argv[1:])
