"""A crawl round's Spark partition: fetch hosts, store their pages from the executor, return metadata.

Each host job of a round names the WARC file its pages go to (``HostJob.warc``, under the
crawl state, see :mod:`spark_jobs.crawl.state`). The task fetches the host's URLs
(:func:`spark_jobs.crawl.fetcher.fetch_host_jobs`), writes every stored page to that file as
one gzip member per record, and yields each URL's result without ``body`` and ``headers``:
URL, status, reason, sizes, times and outlinks. So the driver collects a few hundred bytes
per URL, not up to hosts x ``--checkpoint-every`` x ``--max-bytes`` of pages per round.

The file is written whole or not at all (:func:`ops.lake.storage.open_write`: temp file and
rename locally, a spooled upload on S3), and only once the host's last URL is done; the
host's rows are yielded after that, so a row with reason ``ok`` always has its record on
storage. A task that fails (and Spark's retry of it) rewrites the same file.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Any, Iterator

from spark_jobs.crawl import fetcher
from spark_jobs.crawl.fetcher import OK, HostJob

BODY_FIELDS = ("body", "headers")  # what stays on the executor


def fetch_and_store(jobs: Iterator[HostJob]) -> Iterator[dict[str, Any]]:
    """The Spark partition function of a crawl round: one host after another."""
    for job in jobs:
        yield from _fetch_host(job)


def _fetch_host(job: HostJob) -> list[dict[str, Any]]:
    from warcio.warcwriter import WARCWriter

    from ops.lake import storage
    from spark_jobs.crawl.warc import write_response

    rows = []
    with ExitStack() as stack:
        writer = None
        for result in fetcher.fetch_host_jobs(iter([job])):
            if result["reason"] == OK:
                if writer is None:  # a host without stored pages leaves no file
                    writer = WARCWriter(stack.enter_context(storage.open_write(job.warc)), gzip=True)
                write_response(writer, result)
            rows.append({k: v for k, v in result.items() if k not in BODY_FIELDS})
    return rows
