"""WARC/WET/ARC records → rows for the extract steps (one Spark task per file).

HTTP ``response`` records (WARC, and ARC records) and ``resource`` records carry their
bytes in ``html`` with their content type (extract keeps HTML and drops the rest as
``not_html``); ``conversion`` records (Common Crawl's WET files) and ``text/plain``
resources carry text, decoded into ``text``. Damaged or truncated stretches become rows
with ``warc_error`` set, which :class:`~spark_jobs.extract.steps.WarcRecordFilter` drops as
``corrupt_record`` (undecodable text as ``decode_error``), so they are counted instead of
stopping the job or vanishing. Other record types (warcinfo, request, metadata, revisit)
are not documents and make no rows.
"""
from __future__ import annotations

import fnmatch
import glob as globlib
from pathlib import Path
from typing import Any, Iterator

from ops.lake import storage
from spark_jobs.extract.decode import DecodeError, decode_html
from spark_jobs.extract.warc_scan import open_warc, scan_source
from spark_jobs.records import SOURCE_CRAWL, doc_id, sha1_hex

RAW_COLUMNS = [("id", "string"), ("url", "string"), ("html", "binary"), ("html_bytes", "bigint"),
               ("content_type", "string"), ("http_status", "int"), ("fetched_at", "string"),
               ("source", "string"), ("text", "string"), ("warc_error", "string")]
READ_CAP = 2 * 1024 * 1024  # bytes read per record; longer bodies are flagged by html_bytes
BATCH_ROWS = 128
SOURCE_WARC = "warc"  # records ingested from someone else's crawl
CORRUPT_PREFIX = "corrupt_record"
UNDECODABLE_PREFIX = "decode_error"


def iter_warc(uri: str, read_cap: int = READ_CAP, source: str = SOURCE_CRAWL) -> Iterator[dict[str, Any]]:
    """Document rows of one WARC/WET/ARC file, and one row per damaged stretch (its ``url`` is
    ``<file>#offset=<byte>``; in a file gzipped whole, the offset in the decompressed stream, or
    of the damaged gzip member)."""
    with open_warc(uri) as src:
        for item in scan_source(src, read_cap):
            if item.kind == "corrupt":
                where = f"{uri}#offset={item.offset}"
                yield {"id": sha1_hex(where), "url": where, "source": source,
                       "warc_error": f"{CORRUPT_PREFIX}: {item.error}"}
            elif item.rec_type == "conversion" or (item.rec_type == "resource" and _is_text(item)):
                yield _conversion_row(item, source)
            elif item.rec_type in ("response", "resource"):
                body = item.body
                yield {"id": doc_id(item.url, body.decode("latin-1") if not item.url else None),
                       "url": item.url, "html": body, "html_bytes": len(body),
                       "content_type": item.content_type, "http_status": item.http_status,
                       "fetched_at": item.date, "source": source}


def _is_text(item) -> bool:
    return (item.content_type or "").split(";", 1)[0].strip().lower() == "text/plain"


def _conversion_row(item, source: str) -> dict[str, Any]:
    row = {"id": doc_id(item.url, item.body.decode("latin-1") if not item.url else None), "url": item.url,
           "content_type": item.content_type, "fetched_at": item.date, "source": source,
           "html_bytes": len(item.body)}
    try:
        row["text"] = decode_html(item.body, item.content_type or "text/plain; charset=utf-8")
    except DecodeError as exc:
        row["warc_error"] = f"{UNDECODABLE_PREFIX}: {exc}"
    return row


def warc_files(folder_or_glob: str) -> list[str]:
    """The WARC/WET files of a raw version folder (``*.warc.gz``), one file, or those a glob names.

    Globs work locally and on ``s3://bucket/prefix/*.warc.gz`` (matched on the key).
    """
    pattern = folder_or_glob
    if not any(ch in pattern for ch in "*?["):
        if storage.is_s3(pattern) and not pattern.endswith("/") and storage.is_file(pattern):
            return [pattern]
        if not storage.is_s3(pattern) and Path(pattern).is_file():
            return [pattern]
        pattern = storage.join(folder_or_glob, "*.warc.gz")
    if storage.is_s3(pattern):
        prefix = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0].rsplit("/", 1)[0]
        return [u for u in storage.list_files(prefix) if glob_match(pattern, u)]
    return sorted(p for p in globlib.glob(pattern, recursive=True) if Path(p).is_file())


def glob_match(pattern: str, uri: str) -> bool:
    """Whether ``uri`` matches ``pattern`` as a local glob would: ``*``, ``?`` and ``[...]`` stay
    within one path segment and ``**`` spans any number of them. Object keys have no folders,
    so a plain fnmatch would let ``raw/*.warc.gz`` also take ``raw/g=1/x.warc.gz``."""
    return _match_parts(pattern.split("/"), uri.split("/"))


def _match_parts(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match_parts(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match_parts(pattern[1:], parts[1:])


def warc_frame(spark, folder_or_glob: str, source: str = SOURCE_CRAWL):
    """A DataFrame of document rows, read in parallel, one task per WARC file."""
    from spark_jobs.records import ddl

    files = warc_files(folder_or_glob)
    if not files:
        raise FileNotFoundError(f"no WARC files match {folder_or_glob}; run the crawl or ingest stage first, "
                                "or check the --warc-glob pattern")
    paths = spark.createDataFrame(spark.sparkContext.parallelize([(f,) for f in files], len(files)),
                                  "path string")
    names = [c for c, _ in RAW_COLUMNS]

    def read(batches):
        import pandas as pd

        for pdf in batches:
            for path in pdf["path"]:
                rows = []
                for row in iter_warc(path, source=source):
                    rows.append([row.get(c) for c in names])
                    if len(rows) >= BATCH_ROWS:
                        yield pd.DataFrame(rows, columns=names)
                        rows = []
                yield pd.DataFrame(rows, columns=names)

    return paths.mapInPandas(read, ddl(RAW_COLUMNS))
