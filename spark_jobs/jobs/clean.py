"""spark-submit entry: extracted/v=V → clean/v=V (normalised text, PII redacted, boilerplate
lines removed, language, Gopher quality/repetition, C4 and FineWeb filters).

    spark-submit spark_jobs/jobs/clean.py --version demo --langs en --min-lang-score 0.5
    spark-submit spark_jobs/jobs/clean.py --version demo --filter-profile paper \
        --filter-config '{"gopher_quality": {"min_words": 100}}'

The manifest adds ``pii_redactions`` (per type) and ``text_edits`` (lines removed per rule,
redactions per type), summed over every row the stage wrote, removed/ included.
"""
import os
import sys

# spark-submit puts this folder first on sys.path, where jobs/tokenize.py would shadow the stdlib.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from ops.lake.jobconfig import add_arguments  # noqa: E402
from spark_jobs.jobs._args import (base_parser, common_config, input_frame, input_rows, parse,  # noqa: E402
                                   print_summary, write_rejected)
from spark_jobs.jobs.config import CleanSettings  # noqa: E402


def build_parser():
    p = base_parser("clean", "Normalise text and drop low-quality documents with named reasons.")
    return add_arguments(p, CleanSettings)


def sum_text_edits(spark, files: list[str]) -> dict[str, int]:
    """Sum the per-row ``text_edits`` maps over these parquet files (a staged version's, removed/ too)."""
    from pyspark.sql import functions as F

    from spark_jobs.clean.boilerplate import EDITS_KEY

    if not files:
        return {}
    edits = F.from_json(F.col(EDITS_KEY), "map<string,bigint>")
    rows = (spark.read.parquet(*files).select(F.explode(edits).alias("key", "n"))
            .groupBy("key").agg(F.sum("n").alias("n")).collect())
    return {r["key"]: int(r["n"]) for r in sorted(rows, key=lambda r: r["key"])}


def main(argv=None, spark=None) -> dict:
    from ops.lake.datasets import DatasetVersion
    from spark_jobs.clean.boilerplate import EDITS_KEY
    from spark_jobs.clean.pii import PLACEHOLDERS
    from spark_jobs.clean.signals import SIGNALS_KEY
    from spark_jobs.clean.steps import default_steps, step_settings
    from spark_jobs.records import columns
    from spark_jobs.runner import apply_steps_df, get_spark, publish_version, schema_dict, spread, write_rows
    from spark_jobs.staging import Staging

    args = parse(build_parser(), argv)
    langs = tuple(args.langs)
    # built before Spark starts, so bad settings fail fast
    steps = default_steps(langs, args.min_lang_score, overrides=args.filter_config,
                          redact_pii=args.redact_pii, profile=args.filter_profile)
    spark = spark or get_spark("crawl2model-clean")
    df, parents = input_frame(spark, args, "extracted")
    out = DatasetVersion(args.root, "clean", args.version)
    config = {**common_config(args), "filters": step_settings(args.filter_profile, args.filter_config)}
    rows_in = input_rows(spark, args, df)
    result = apply_steps_df(spread(df), steps, columns((SIGNALS_KEY, "string"), (EDITS_KEY, "string")))
    with Staging(out) as staging:
        counts = write_rows(spark, result, staging)
        edits = sum_text_edits(spark, sorted(staging.files("*part-*.parquet").values()))
        counts.update(write_rejected(spark, args, staging))  # after the edits: other columns
        pii = {kind: edits.get(f"pii_{kind}", 0) for kind in PLACEHOLDERS}
        manifest = publish_version(staging, rows_in=rows_in, counts=counts, parents=parents, config=config,
                                   schema=schema_dict(result.schema),
                                   extra={"pii_redactions": pii, "text_edits": edits})
    print_summary(manifest)
    return manifest


if __name__ == "__main__":
    main(sys.argv[1:])
