"""spark-submit entry: extracted/v=V → clean/v=V (normalised text, Gopher/C4/language filters).

    spark-submit spark_jobs/jobs/clean.py --version demo --langs en --min-lang-score 0.5
"""
import os
import sys

# spark-submit puts this folder first on sys.path, where jobs/tokenize.py would shadow the stdlib.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from spark_jobs.jobs._args import base_parser, common_config, input_frame, parse, print_summary  # noqa: E402


def build_parser():
    p = base_parser("clean", "Normalise text and drop low-quality documents with named reasons.")
    p.add_argument("--langs", default="en", help="comma-separated language allow-list (ISO 639-1)")
    p.add_argument("--min-lang-score", type=float, default=0.5, help="least language-ID probability to keep")
    return p


def main(argv=None, spark=None) -> dict:
    from ops.datasets import DatasetVersion
    from spark_jobs.clean.signals import SIGNALS_KEY
    from spark_jobs.clean.steps import default_steps
    from spark_jobs.records import columns
    from spark_jobs.runner import get_spark, run_stage

    args = parse(build_parser(), argv)
    langs = tuple(code.strip() for code in args.langs.split(",") if code.strip())
    spark = spark or get_spark("crawl2model-clean")
    df, parents = input_frame(spark, args, "extracted")
    out = DatasetVersion(args.root, "clean", args.version)
    steps = default_steps(langs, args.min_lang_score)
    manifest = run_stage(spark, df, steps, columns((SIGNALS_KEY, "string")), out,
                         parents=parents, config=common_config(args))
    print_summary(manifest)
    return manifest


if __name__ == "__main__":
    main(sys.argv[1:])
