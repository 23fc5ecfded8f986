"""spark-submit entry: clean/v=V → corpus/v=V (exact dedup on normalised text).

    spark-submit spark_jobs/jobs/dedup.py --version demo
"""
import os
import sys

# spark-submit puts this folder first on sys.path, where jobs/tokenize.py would shadow the stdlib.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from spark_jobs.jobs._args import base_parser, common_config, input_frame, parse, print_summary  # noqa: E402


def build_parser():
    return base_parser("dedup", "Drop exact duplicates (normalised text); the smallest id is kept.")


def main(argv=None, spark=None) -> dict:
    from ops.datasets import DatasetVersion
    from spark_jobs.clean.signals import SIGNALS_KEY
    from spark_jobs.dedup.exact import DUP_CLUSTER, ExactHash, mark_duplicates
    from spark_jobs.records import columns
    from spark_jobs.runner import DROP, get_spark, run_stage

    args = parse(build_parser(), argv)
    spark = spark or get_spark("crawl2model-dedup")
    df, parents = input_frame(spark, args, "clean")
    out = DatasetVersion(args.root, "corpus", args.version)
    manifest = run_stage(spark, df, [ExactHash()], columns((SIGNALS_KEY, "string"), (DUP_CLUSTER, "string")),
                         out, parents=parents, config=common_config(args),
                         post=lambda result: mark_duplicates(result, DROP))
    print_summary(manifest)
    return manifest


if __name__ == "__main__":
    main(sys.argv[1:])
