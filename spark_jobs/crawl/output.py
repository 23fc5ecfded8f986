"""Run a crawl into a staging folder and publish raw/v=V with its manifest.

Layout: ``part-*.warc.gz`` (stored pages), ``fetch_log/part-00000.parquet`` (every
attempted URL with its reason), ``removed/{reason}/part-00000.parquet`` (the fetch-log
rows of each failure reason). rows_in = URLs attempted, rows_out = pages stored.
"""
from __future__ import annotations

import os
from typing import Any

from spark_jobs.crawl.bfs import LOG_COLUMNS, CrawlConfig, crawl
from spark_jobs.crawl.fetcher import OK
from spark_jobs.crawl.warc import WarcSink
from spark_jobs.runner import KEPT, publish_version
from spark_jobs.staging import Staging

LOG_SCHEMA = {"url": "string", "final_url": "string", "status": "int", "reason": "string", "bytes": "bigint",
              "seconds": "double", "depth": "int", "fetched_at": "string", "content_type": "string",
              "host": "string"}


def _log_table(rows: list[dict[str, Any]]):
    import pyarrow as pa

    types = {"string": pa.string(), "int": pa.int32(), "bigint": pa.int64(), "double": pa.float64()}
    schema = pa.schema([(c, types[LOG_SCHEMA[c]]) for c in LOG_COLUMNS])
    return pa.Table.from_pylist(rows, schema=schema)


def write_crawl(spark, cfg: CrawlConfig, staging: Staging, config: dict[str, Any], level_runner=None) -> dict:
    import pyarrow.parquet as pq

    sink = WarcSink(staging.path)
    kwargs = {"level_runner": level_runner} if level_runner else {}
    result = crawl(spark, cfg, sink, **kwargs)
    os.makedirs(staging.join("fetch_log"))
    pq.write_table(_log_table(result.log), staging.join("fetch_log", "part-00000.parquet"))
    for reason in sorted(set(result.counts) - {OK}):
        os.makedirs(staging.join("removed", reason))
        rows = [r for r in result.log if r["reason"] == reason]
        pq.write_table(_log_table(rows), staging.join("removed", reason, "part-00000.parquet"))
    counts = {(KEPT if k == OK else k): v for k, v in result.counts.items()}
    return publish_version(
        staging, rows_in=len(result.log), counts=counts, parents=list(cfg.seeds), config=config,
        schema=LOG_SCHEMA,
        extra={"warc_files": result.warc_files, "fetch_log": "fetch_log/part-00000.parquet",
               "robots": result.robots, "pages_stored": result.counts.get(OK, 0)},
    )
