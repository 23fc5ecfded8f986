"""The dedup stage: clean/v=V → corpus/v=V (exact dedup, then MinHash-LSH near-dedup,
also against the signatures every earlier corpus version saved).

    spark-submit spark_jobs/__main__.py dedup --version demo
    spark-submit spark_jobs/__main__.py dedup --version 2026-12-06 --bands 20 --rows 5
    spark-submit spark_jobs/__main__.py dedup --version demo --threshold 0.8 --dedup-against none

Writes ``signatures/part-*.parquet`` (node, id, text_len, shingles, signature) for the
kept rows, so later versions dedup against this one without recomputing it.
"""
from typing import NamedTuple

from ops.lake.jobconfig import add_arguments
from spark_jobs.jobs._args import base_parser, common_config, parse
from spark_jobs.jobs.config import DedupSettings
from spark_jobs.stage import Stage, run_stage


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


class Plan(NamedTuple):
    cfg: object  # MinHashConfig
    earlier: list  # corpus versions whose signatures this run dedups against


def prepare(args) -> Plan:
    """The MinHash settings and the earlier versions, found before Spark starts (fails fast)."""
    from spark_jobs.records import utc_now_iso

    cfg = minhash_config(args)
    return Plan(cfg, against_versions(args, cfg, utc_now_iso()) if args.near_dedup else [])


def out_columns() -> list:
    from spark_jobs.clean.signals import SIGNALS_KEY
    from spark_jobs.dedup.exact import DUP_CLUSTER
    from spark_jobs.records import columns

    return columns((SIGNALS_KEY, "string"), (DUP_CLUSTER, "string"))


def steps(run) -> list:
    from spark_jobs.dedup.exact import ExactHash

    return [ExactHash()]


def post(spark, tagged, staging, run):
    """Exact duplicates marked; then near duplicates, within the input and against earlier versions."""
    from spark_jobs.dedup.exact import mark_duplicates
    from spark_jobs.dedup.near import near_dedup
    from spark_jobs.runner import DROP

    tagged = mark_duplicates(tagged, DROP)
    if not run.args.near_dedup:
        return tagged
    tagged.write.parquet(staging.spark_path("work", "exact"))  # read three times below: compute once
    tagged = spark.read.parquet(staging.spark_path("work", "exact"))
    tagged, run.notes["signatures"], run.notes["near_dedup"] = near_dedup(
        spark, tagged, staging.spark_path("work"), run.prepared.cfg, run.prepared.earlier, DROP)
    return tagged


def signatures_output(spark, staging, run) -> dict:
    """signatures/ of the rows kept, as written (decisions are not recomputed); then work/ goes."""
    from spark_jobs.dedup.near import SIGNATURES_DIR

    extra = {}
    if run.args.near_dedup:
        cfg = run.prepared.cfg
        kept = spark.read.parquet(*sorted(staging.files("part-*.parquet").values())).select("id")
        (run.notes["signatures"].join(kept, "id", "left_semi").coalesce(spark.sparkContext.defaultParallelism)
         .write.parquet(staging.spark_path(SIGNATURES_DIR)))
        extra = {"minhash": {**cfg.to_dict(), "threshold": round(cfg.threshold, 3)},
                 "signatures": SIGNATURES_DIR, "dedup_against": [dv.uri for dv in run.prepared.earlier],
                 "near_dedup": run.notes["near_dedup"]}
    staging.remove("work")
    return extra


STAGE = Stage(
    name="dedup", output="corpus", input="clean", settings=lambda argv: parse(build_parser(), argv),
    config=lambda run: {**common_config(run.args), "minhash": run.prepared.cfg.to_dict()},
    prepare=prepare, steps=steps, columns=out_columns, post=post, outputs=(signatures_output,))


def main(argv=None, spark=None) -> dict:
    return run_stage(STAGE, argv, spark)
