"""The one entry point of the Spark stages: ``python -m spark_jobs <stage> [flags]``.

spark-submit runs a file, so it runs this one with the stage as its first argument::

    spark-submit spark_jobs/__main__.py clean --version demo --langs en

spark-submit puts the file's folder (``spark_jobs/``) first on ``sys.path``; no module there is
named like a standard library module (``tests/ops/test_entry_points.py`` checks), so the stage's
imports need no path workaround.
"""
from __future__ import annotations

import importlib
import sys

from spark_jobs.jobs import STAGES


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in STAGES:
        print(f"usage: python -m spark_jobs {{{','.join(STAGES)}}} [flags] (--help for a stage's flags)",
              file=sys.stderr)
        return 2
    from spark_jobs.stage import run_stage

    job = importlib.import_module(f"spark_jobs.jobs.{argv[0]}")
    run_stage(job.STAGE, argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
