"""spark-submit driver: the dedup stage's own functions, run in the job's order, each timed.

Same calls as spark_jobs/jobs/dedup.py (exact hash + mark_duplicates, then near_dedup's
signature_frame → band_frame/candidate_edges → connected_components → decide/apply_decisions)
minus the staging folder and manifest, so the benchmark can say how each stage scales.
Writes the removed ids (with reason) as parquet and prints one JSON line of timings.

    spark-submit --master local[2] bench/_spark_dedup.py INPUT.jsonl WORK_DIR
"""
import json
import os
import sys
import time


def main():
    from pyspark.sql import functions as F

    from spark_jobs.clean.signals import SIGNALS_KEY
    from spark_jobs.dedup.components import connected_components
    from spark_jobs.dedup.exact import DUP_CLUSTER, ExactHash, mark_duplicates
    from spark_jobs.dedup.minhash import MinHashConfig
    from spark_jobs.dedup.near import apply_decisions, band_frame, candidate_edges, decide, signature_frame
    from spark_jobs.records import columns
    from bench.common import start_spark
    from spark_jobs.runner import DROP, apply_steps_df, read_jsonl, spread

    path, work = sys.argv[1], sys.argv[2]
    cfg = MinHashConfig()
    times = {}
    t = time.perf_counter()
    spark = start_spark("bench-dedup")  # the JVM and a Python worker per core are really up
    times["startup"] = time.perf_counter() - t

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        times[name] = now - t
        t = now

    t = time.perf_counter()
    df = read_jsonl(spark, path)
    rows_in = df.count()
    cols = columns((SIGNALS_KEY, "string"), (DUP_CLUSTER, "string"))
    tagged = mark_duplicates(apply_steps_df(spread(df), [ExactHash()], cols), DROP)
    tagged.write.mode("overwrite").parquet(os.path.join(work, "exact"))
    tagged = spark.read.parquet(os.path.join(work, "exact"))
    lap("read_exact_dedup")
    live = tagged.where(F.col(DROP).isNull())
    signature_frame(live, cfg).write.mode("overwrite").parquet(os.path.join(work, "signatures"))
    sigs = spark.read.parquet(os.path.join(work, "signatures")).withColumn("is_new", F.lit(True))
    lap("signatures")
    edges = candidate_edges(band_frame(sigs, cfg)).localCheckpoint()
    n_edges = edges.count()
    lap("lsh_candidate_edges")
    if n_edges:
        comps, rounds = connected_components(edges, oriented=True, edge_count=n_edges)
    else:
        comps, rounds = spark.createDataFrame([], "node string, component string"), 0
    lap("connected_components")  # as in the job: the components are not materialised again here
    result = apply_decisions(tagged, decide(sigs, comps), DROP)
    (result.where(F.col(DROP).isNotNull()).select("id", F.col(DROP).alias("reason"))
     .write.mode("overwrite").parquet(os.path.join(work, "removed")))
    lap("decide_and_write")
    spark.stop()
    print(json.dumps({"rows_in": rows_in, "candidate_edges": n_edges, "component_rounds": rounds,
                      "stage_seconds": times}), flush=True)


if __name__ == "__main__":
    main()
