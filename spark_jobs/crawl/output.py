"""Run (or resume) a crawl and publish raw/v=V with its manifest.

Layout: ``part-*.warc.gz`` (stored pages), ``fetch_log/part-00000.parquet`` (every
attempted URL with its reason), ``removed/{reason}/part-00000.parquet`` (the fetch-log
rows of each failure reason). rows_in = URLs attempted, rows_out = pages stored.

Progress lives in the crawl state (:mod:`spark_jobs.crawl.state`) until the version is
published; the WARC files are then assembled from the rounds' files in round order, each
copied in chunks.
Rerunning a published crawl returns its manifest and fetches nothing.
"""
from __future__ import annotations

import os
from contextlib import closing
from typing import Any

from ops.lake import storage
from ops.lake.datasets import DatasetVersion
from spark_jobs.crawl.bfs import LOG_COLUMNS, CrawlConfig, CrawlResult, crawl, run_level
from spark_jobs.crawl.fetcher import OK
from spark_jobs.crawl.state import CrawlState
from spark_jobs.crawl.warc import WarcSink
from spark_jobs.runner import KEPT, publish_version
from spark_jobs.stage import Written
from spark_jobs.staging import Staging

LOG_SCHEMA = {"url": "string", "final_url": "string", "status": "int", "reason": "string", "bytes": "bigint",
              "seconds": "double", "depth": "int", "fetched_at": "string", "content_type": "string",
              "host": "string", "attempts": "int"}


def _log_table(rows: list[dict[str, Any]]):
    import pyarrow as pa

    types = {"string": pa.string(), "int": pa.int32(), "bigint": pa.int64(), "double": pa.float64()}
    schema = pa.schema([(c, types[LOG_SCHEMA[c]]) for c in LOG_COLUMNS])
    return pa.Table.from_pylist(rows, schema=schema)


def run_crawl(spark, cfg: CrawlConfig, out: DatasetVersion, state: CrawlState, config: dict[str, Any],
              level_runner=run_level) -> dict:
    """Crawl (resuming ``state``), publish ``out``, then drop the rounds; idempotent on rerun.

    The crawl stage (:mod:`spark_jobs.jobs.crawl`) runs these same pieces through the stage runner;
    this function runs them without it, e.g. with a level runner that needs no Spark."""
    manifest = published(out, state, cfg)
    if manifest is not None:
        return manifest
    result = crawl(spark, cfg, state, level_runner=level_runner)
    with Staging(out) as staging:
        written = write_crawl(result, staging)
        manifest = publish_version(staging, rows_in=written.rows_in, counts=written.counts,
                                   parents=list(cfg.seeds), config=config, schema=written.schema,
                                   extra=written.extra)
    state.mark_published(result.checkpoint)
    return manifest


def published(out: DatasetVersion, state: CrawlState, cfg: CrawlConfig) -> dict | None:
    """The manifest of this crawl when it is already published (a rerun fetches nothing), else None."""
    ckpt = state.load_checkpoint(cfg.fingerprint())
    if ckpt and ckpt.get("published"):
        if out.is_complete():
            print(f"[crawl2model] crawl v={out.version} is already published; nothing to fetch "
                  "(use --restart to crawl it again)", flush=True)
            return out.read_manifest()
        state.discard()  # the version was deleted since: crawl it afresh
    return None


def write_crawl(result: CrawlResult, staging: Staging) -> Written:
    """The WARC files, fetch_log/ and removed/<reason>/ of a finished crawl, in the staging folder."""
    import pyarrow.parquet as pq

    sink = WarcSink(staging.path)
    for uri, records in result.warcs:  # streamed: the driver never holds a round's pages
        with closing(storage.open_read(uri)) as stream:
            sink.append(stream, records)
    sink.close()
    os.makedirs(staging.join("fetch_log"))
    pq.write_table(_log_table(result.log), staging.join("fetch_log", "part-00000.parquet"))
    for reason in sorted(set(result.counts) - {OK}):
        os.makedirs(staging.join("removed", reason))
        rows = [r for r in result.log if r["reason"] == reason]
        pq.write_table(_log_table(rows), staging.join("removed", reason, "part-00000.parquet"))
    return Written(
        {(KEPT if k == OK else k): v for k, v in result.counts.items()}, rows_in=len(result.log),
        schema=LOG_SCHEMA,
        extra={"warc_files": list(sink.files), "fetch_log": "fetch_log/part-00000.parquet",
               "robots": result.robots, "pages_stored": result.counts.get(OK, 0)})
