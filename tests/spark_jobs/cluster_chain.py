"""Every data stage, crawl → ingest → extract → clean → dedup → tokenize, on one or more roots, in
one Spark application: a driver that test_standalone_cluster.py submits to the standalone
cluster, so that three whole chains cost one application's start-up and one set of executors.

Each root runs in its S3 I/O mode (``local`` for a folder; ``stage`` or ``s3a`` for S3), set
as ``C2M_SPARK_S3_IO`` before its chain starts, the way a stage reads it. The session starts
in ``s3a`` mode when any root needs it, so that it gets the ``fs.s3a.*`` settings. A chain
that fails is recorded with its error and the next root still runs.

The same application first runs :func:`driver_local_write`, a wrong stage that the cluster
must catch (its executors' files land on their own hosts, not the driver's).

    spark-submit cluster_chain.py OUT.json SITE WARC_GLOB ROOT=MODE [ROOT=MODE ...]

The test session's ``local[2]`` reference runs the same :func:`jobs` in-process.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

CRAWL, WARC = "c", "w"
TOKENIZE = ["--vocab-size", "400", "--seq-len", "16", "--val-fraction", "0.3"]


def jobs(root: str, site: str, warc_glob: str) -> list[tuple[str, list[str]]]:
    """(job, its argv) for the whole chain: a crawl of ``site``, then ingest → … → tokenize of
    the WARC files (version ``w``)."""
    # A timeout far above the slow page's 2 s: the set of fetched pages must not depend on load.
    crawl = ["--seeds", site + "/", "--allow-private", "--delay", "0", "--max-retries", "0",
             "--timeout", "20", "--max-depth", "2"]
    common = ["--root", root, "--version", WARC]
    return [("crawl", ["--root", root, "--version", CRAWL, *crawl]),
            ("ingest", [*common, "--warc-glob", warc_glob]), ("extract", common),
            ("clean", [*common, "--filter-profile", "docs"]),
            ("dedup", [*common, "--bands", "10", "--rows", "4"]),
            ("tokenize", [*common, *TOKENIZE])]


def run_chain(spark, root: str, site: str, warc_glob: str) -> dict[str, float]:
    """The chain's jobs' ``main`` on ``spark``; seconds per job."""
    from importlib import import_module

    seconds = {}
    for job, argv in jobs(root, site, warc_glob):
        t0 = time.monotonic()
        import_module(f"spark_jobs.jobs.{job}").main(argv, spark=spark)
        seconds[job] = round(time.monotonic() - t0, 1)
    return seconds


def driver_local_write(spark) -> dict:
    """A wrong stage: executors write their part to a temp folder made on the driver, and the
    driver lists it. On ``local[*]`` it finds every part; on a cluster, none."""
    import tempfile

    out = tempfile.mkdtemp(prefix="c2m-driver-local-")  # on the driver's disk only

    def write_part(index, rows):
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, f"part-{index}.txt"), "w") as fh:
            fh.write("\n".join(str(r) for r in rows))
        yield index

    written = spark.sparkContext.parallelize(range(40), 4).mapPartitionsWithIndex(write_part).collect()
    return {"written": len(written), "found": sorted(os.listdir(out))}


def main(out_json: str, site: str, warc_glob: str, runs: list[str]) -> None:
    from spark_jobs import s3io
    from spark_jobs.runner import get_spark

    modes = [run.rsplit("=", 1) for run in runs]
    os.environ[s3io.MODE_ENV] = s3io.S3A if any(m == s3io.S3A for _, m in modes) else s3io.STAGE
    t0 = time.monotonic()
    spark = get_spark("crawl2model-cluster-chain")  # the master is spark-submit's
    result = {"start_seconds": round(time.monotonic() - t0, 1), "runs": {},
              "driver_local_write": driver_local_write(spark)}
    for root, mode in modes:
        os.environ[s3io.MODE_ENV] = s3io.STAGE if mode == "local" else mode
        try:
            result["runs"][mode] = {"root": root, "seconds": run_chain(spark, root, site, warc_glob)}
        except Exception:  # the other roots still run; the test shows this one's error
            result["runs"][mode] = {"root": root, "error": traceback.format_exc()[-4000:]}
    # executors that registered with this application (the driver's own entry left out)
    result["executors"] = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
    spark.stop()
    with open(out_json, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
