"""WARC response records → rows for the extract steps (one Spark task per WARC file)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ops import storage
from spark_jobs.records import SOURCE_CRAWL, doc_id

RAW_COLUMNS = [("id", "string"), ("url", "string"), ("html", "binary"), ("html_bytes", "bigint"),
               ("content_type", "string"), ("http_status", "int"), ("fetched_at", "string"),
               ("source", "string")]
READ_CAP = 2 * 1024 * 1024  # bytes read per record; longer bodies are flagged by html_bytes
BATCH_ROWS = 128


def iter_warc(uri: str, read_cap: int = READ_CAP) -> Iterator[dict[str, Any]]:
    """Response records of one WARC file; bodies are read up to read_cap + 1 bytes."""
    from warcio.archiveiterator import ArchiveIterator

    handle = open(uri, "rb") if not storage.is_s3(uri) else _s3_stream(uri)
    with handle as fh:
        for rec in ArchiveIterator(fh):
            if rec.rec_type != "response":
                continue  # warcinfo, request, metadata, revisit: not documents
            url = rec.rec_headers.get_header("WARC-Target-URI")
            http = rec.http_headers
            body = rec.content_stream().read(read_cap + 1)
            status = http.get_statuscode() if http else None
            yield {
                "id": doc_id(url, body.decode("latin-1") if not url else None),
                "url": url,
                "html": body,
                "html_bytes": len(body),
                "content_type": http.get_header("Content-Type") if http else None,
                "http_status": int(status) if status and str(status).isdigit() else None,
                "fetched_at": rec.rec_headers.get_header("WARC-Date"),
                "source": SOURCE_CRAWL,
            }


def _s3_stream(uri: str):
    import io

    return io.BytesIO(storage.read_bytes(uri))


def warc_files(folder: str) -> list[str]:
    if storage.is_s3(folder):
        return storage.list_files(folder, suffix=".warc.gz")
    return sorted(str(p) for p in Path(folder).glob("*.warc.gz"))


def warc_frame(spark, folder: str):
    """A DataFrame of response records, read in parallel, one task per WARC file."""
    from spark_jobs.records import ddl

    files = warc_files(folder)
    if not files:
        raise FileNotFoundError(f"no *.warc.gz files in {folder}; run the crawl stage first")
    paths = spark.createDataFrame(spark.sparkContext.parallelize([(f,) for f in files], len(files)),
                                  "path string")
    names = [c for c, _ in RAW_COLUMNS]

    def read(batches):
        import pandas as pd

        for pdf in batches:
            for path in pdf["path"]:
                rows = []
                for row in iter_warc(path):
                    rows.append(row)
                    if len(rows) >= BATCH_ROWS:
                        yield pd.DataFrame(rows, columns=names)
                        rows = []
                yield pd.DataFrame(rows, columns=names)

    return paths.mapInPandas(read, ddl(RAW_COLUMNS))
