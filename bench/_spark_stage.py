"""spark-submit driver for the benchmarks: start Spark, then run one stage's real entry point.

Start-up (SparkSession creation) and the stage are timed apart, because start-up is a
fixed cost of 6-14 s that says nothing about the stage's throughput.

    spark-submit --master local[2] bench/_spark_stage.py clean -- --version b1 --input-jsonl x.jsonl
Prints one JSON line: startup_s, stage_s, and the stage's manifest counts.
"""
import json
import os
import sys
import time

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # bench/tokenize.py must not shadow the stdlib module
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STAGES = {"extract": "spark_jobs.jobs.extract", "clean": "spark_jobs.jobs.clean", "dedup": "spark_jobs.jobs.dedup",
          "tokenize": "spark_jobs.jobs.tokenize"}


def main():
    import importlib

    stage, argv = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    job = importlib.import_module(STAGES[stage])
    from bench.common import start_spark

    t0 = time.perf_counter()
    spark = start_spark(f"bench-{stage}")  # the JVM and a Python worker per core are really up
    t1 = time.perf_counter()
    manifest = job.main(argv, spark=spark)
    t2 = time.perf_counter()
    spark.stop()
    print(json.dumps({"startup_s": t1 - t0, "stage_s": t2 - t1, "rows_in": manifest.get("rows_in"),
                      "rows_out": manifest.get("rows_out"), "dropped": manifest.get("dropped"),
                      "uri": manifest.get("uri")}), flush=True)


if __name__ == "__main__":
    main()
