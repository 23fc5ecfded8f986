"""spark-submit driver for the benchmarks: start Spark, then run one stage's real entry point.

Start-up (SparkSession creation) and the stage are timed apart, because start-up is a
fixed cost of 6-14 s that says nothing about the stage's throughput.

    spark-submit --master local[2] bench/_spark_stage.py clean -- --version b1 --input-jsonl x.jsonl
Prints one JSON line: startup_s, stage_s, and the stage's manifest counts.
"""
import json
import sys
import time


def main():
    import importlib

    stage, argv = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    job = importlib.import_module(f"spark_jobs.jobs.{stage}")
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
