"""Run ingest → extract → clean → dedup (twice) → tokenize on S3 roots, in both I/O modes, in one JVM.

A separate process (started by test_stages_s3a.py) because the JVM must start with the
hadoop-aws jars on its classpath and the S3 credentials in its environment; the test
session's shared SparkSession has neither. A watcher thread records every file that appears
under ``$C2M_STAGING_DIR`` while each mode runs, so the test can tell what went through
the local disk.

    python s3a_chain.py OUT.json WARC_GLOB STAGE_ROOT S3A_ROOT
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

V1, V2 = "s1", "s2"


class Watcher(threading.Thread):
    """Every file name seen under a folder (polled; files live there for seconds at least)."""

    def __init__(self, folder: str):
        super().__init__(daemon=True)
        self.folder, self.seen, self.done = folder, set(), threading.Event()

    def run(self):
        while not self.done.is_set():
            for dirpath, _, names in os.walk(self.folder):
                self.seen.update(os.path.relpath(os.path.join(dirpath, n), self.folder) for n in names)
            time.sleep(0.02)

    def stop(self) -> list[str]:
        self.done.set()
        self.join()
        return sorted(self.seen)


def chain(spark, root: str, warc_glob: str) -> dict:
    from spark_jobs.jobs import clean, dedup, extract, ingest, tokenize

    common = ["--root", root, "--version", V1]
    return {
        "raw": ingest.main(common + ["--warc-glob", warc_glob], spark=spark),
        "extracted": extract.main(common, spark=spark),
        "clean": clean.main(common + ["--filter-profile", "docs"], spark=spark),
        "corpus": dedup.main(common + ["--bands", "10", "--rows", "4"], spark=spark),
        # against the first corpus version's saved signatures: every document is a near duplicate
        "corpus2": dedup.main(["--root", root, "--version", V2, "--input-version", V1, "--bands", "10",
                               "--rows", "4", "--dedup-against", V1], spark=spark),
        "shards": tokenize.main(common + ["--vocab-size", "400", "--seq-len", "16", "--val-fraction", "0.3"],
                                spark=spark),
    }


def main(out_json: str, warc_glob: str, stage_root: str, s3a_root: str) -> None:
    from spark_jobs import s3io
    from spark_jobs.runner import get_spark

    os.environ[s3io.MODE_ENV] = s3io.S3A  # before the session starts: get_spark sets fs.s3a.* then
    spark = get_spark("crawl2model-s3a-test", master="local[2]",
                      conf={"spark.sql.shuffle.partitions": "4", "spark.driver.host": "127.0.0.1",
                            "spark.driver.bindAddress": "127.0.0.1"})
    spark.sparkContext.setLogLevel("ERROR")
    result = {}
    for mode, root in ((s3io.S3A, s3a_root), (s3io.STAGE, stage_root)):
        os.environ[s3io.MODE_ENV] = mode
        watcher = Watcher(os.environ["C2M_STAGING_DIR"])
        watcher.start()
        t0 = time.monotonic()
        manifests = chain(spark, root, warc_glob)
        result[mode] = {"manifests": manifests, "local_files": watcher.stop(),
                        "seconds": round(time.monotonic() - t0, 1)}
    spark.stop()
    with open(out_json, "w") as fh:
        json.dump(result, fh, indent=1, sort_keys=True, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:])
