"""The clean stage: extracted/v=V → clean/v=V (normalised text, PII redacted, boilerplate
lines removed, language, Gopher quality/repetition, C4 and FineWeb filters).

    spark-submit spark_jobs/__main__.py clean --version demo --langs en --min-lang-score 0.5
    spark-submit spark_jobs/__main__.py clean --version demo --filter-profile paper \
        --filter-config '{"gopher_quality": {"min_words": 100}}'

The manifest adds ``pii_redactions`` (per type) and ``text_edits`` (lines removed per rule,
redactions per type), summed over every row the stage wrote, removed/ included.
"""
from ops.lake.jobconfig import add_arguments
from spark_jobs.jobs._args import base_parser, common_config, parse
from spark_jobs.jobs.config import CleanSettings
from spark_jobs.stage import Stage, run_stage


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


def prepare(args) -> list:
    """The steps, built before Spark starts, so bad settings fail fast."""
    from spark_jobs.clean.steps import default_steps

    langs = tuple(args.langs)
    return default_steps(langs, args.min_lang_score, overrides=args.filter_config,
                         redact_pii=args.redact_pii, profile=args.filter_profile)


def edits_output(spark, staging, run) -> dict:
    """The manifest's ``pii_redactions`` and ``text_edits``, over every row written (removed/ too)."""
    from spark_jobs.clean.pii import PLACEHOLDERS

    edits = sum_text_edits(spark, sorted(staging.files("*part-*.parquet").values()))
    pii = {kind: edits.get(f"pii_{kind}", 0) for kind in PLACEHOLDERS}
    return {"pii_redactions": pii, "text_edits": edits}


def out_columns() -> list:
    from spark_jobs.clean.boilerplate import EDITS_KEY
    from spark_jobs.clean.signals import SIGNALS_KEY
    from spark_jobs.records import columns

    return columns((SIGNALS_KEY, "string"), (EDITS_KEY, "string"))


def config(run) -> dict:
    from spark_jobs.clean.steps import step_settings

    args = run.args
    return {**common_config(args), "filters": step_settings(args.filter_profile, args.filter_config)}


STAGE = Stage(
    name="clean", output="clean", input="extracted", settings=lambda argv: parse(build_parser(), argv),
    config=config, prepare=prepare, steps=lambda run: run.prepared, columns=out_columns,
    outputs=(edits_output,))


def main(argv=None, spark=None) -> dict:
    return run_stage(STAGE, argv, spark)
