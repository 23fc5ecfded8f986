"""The clean stage: extracted/v=V → clean/v=V (normalised text, PII redacted, boilerplate
lines removed, language, Gopher quality/repetition, C4 and FineWeb filters).

    spark-submit spark_jobs/__main__.py clean --version demo --langs en --min-lang-score 0.5
    spark-submit spark_jobs/__main__.py clean --version demo --filter-profile paper \
        --filter-config '{"gopher_quality": {"min_words": 100}}'

The manifest adds ``pii_redactions`` (per type) and ``text_edits`` (lines removed per rule,
redactions per type), summed over every row the stage wrote, removed/ included.
"""
from spark_jobs.jobs._args import base_parser, common_config, parse
from spark_jobs.stage import Stage, run_stage


def build_parser():
    p = base_parser("clean", "Normalise text and drop low-quality documents with named reasons.")
    p.add_argument("--langs", default="en", help="comma-separated language allow-list (ISO 639-1)")
    p.add_argument("--min-lang-score", type=float, default=0.5, help="least language-ID probability to keep")
    p.add_argument("--filter-profile", default="docs", choices=("docs", "paper"),
                   help="threshold profile: 'paper' (the papers' values) or 'docs' (relaxed repetition rules "
                        "for software documentation; see spark_jobs/clean/steps.py)")
    p.add_argument("--filter-config", type=_json_object, default={},
                   help="JSON overrides per step on top of the profile, e.g. "
                        "'{\"fineweb_quality\": {\"max_char_dup_ratio\": 0.05}}'")
    p.add_argument("--no-pii-redaction", dest="redact_pii", action="store_false",
                   help="keep e-mails, IP addresses and phone numbers as they are")
    return p


def _json_object(value: str) -> dict:
    import argparse
    import json

    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}); pass an object keyed by step name") \
            from None
    if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
        raise argparse.ArgumentTypeError(
            'must be a JSON object of objects, e.g. \'{"gopher_quality": {"min_words": 100}}\'')
    return parsed


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

    langs = tuple(code.strip() for code in args.langs.split(",") if code.strip())
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
