"""The ingest stage: existing WARC/WET/ARC files (e.g. Common Crawl) → raw/v=V, laid out like a crawl.

    crawl2model ingest --version cc-2026-11 --warc-glob '/data/cc/*.warc.gz'
    python -m spark_jobs ingest --version cc-2026-11 --warc-glob 's3://bucket/cc/*.warc.wet.gz'

One Spark task per input file copies every readable document record (``response``, also
ARC records; ``resource``; WET ``conversion``) into ``part-NNNNN.warc.gz``: a gzip member
verbatim, a plain record (or one from a file gzipped whole) gzipped on the way, in blocks,
so memory does not grow with record or file size. An ``s3://`` file is downloaded to a
temporary file once (under ``$C2M_STAGING_DIR``), not read into memory. Extract, and
everything after it, runs unchanged. Damaged or truncated stretches are skipped and
counted as ``corrupt_record`` (see :mod:`spark_jobs.extract.warc_scan`); the copy resumes at
the next record boundary.

Layout: ``part-*.warc.gz``; ``fetch_log/part-*.parquet``, one row per document record or
damaged stretch (the crawler's columns; ``reason`` is ok or corrupt_record);
``removed/corrupt_record/``. rows_in = document records + damaged stretches, rows_out =
records copied. Records that are not documents (warcinfo, request, metadata, revisit)
are not rows; the manifest counts them in ``skipped_record_types``. The output files are
written by the executors: into the staging folder (local mode, or a shared filesystem),
or, for s3:// roots in ``s3a`` mode, uploaded by each executor to the staging prefix.
"""
import os

from ops.lake.jobconfig import add_arguments
from spark_jobs.jobs._args import base_parser, common_config, parse
from spark_jobs.jobs.config import IngestSettings
from spark_jobs.stage import Stage, Written, run_stage

OK = "ok"
CORRUPT_RECORD = "corrupt_record"
SKIPPED = "not_a_document"
ROW_SCHEMA = ("url string, final_url string, status int, reason string, bytes bigint, seconds double, "
              "depth int, fetched_at string, content_type string, host string, rec_type string, file string")
LOG_COLUMNS = ["url", "final_url", "status", "reason", "bytes", "seconds", "depth", "fetched_at",
               "content_type", "host"]


def build_parser():
    p = base_parser("ingest", "Copy the readable records of existing WARC/WET files into raw/v=V.",
                    jsonl=False)
    return add_arguments(p, IngestSettings)


def copy_records(src: str, dest: str) -> list[dict]:
    """Copy one file's document records to ``dest`` (gzip members); one row per record or damage.

    The file is read once, as a stream (an ``s3://`` object is downloaded to a temporary file
    first, see :func:`~spark_jobs.extract.warc_scan.open_warc`); records are copied in blocks.
    """
    from urllib.parse import urlsplit

    from spark_jobs.extract.warc_scan import DOCUMENT_TYPES, open_warc, scan_source

    rows = []
    tmp = dest + ".tmp"
    with open_warc(src) as source, open(source.path, "rb") as copy_fh, open(tmp, "wb") as out:
        for item in scan_source(source, read_cap=0):
            if item.kind == "corrupt":
                rows.append({"url": f"{src}#offset={item.offset}", "reason": CORRUPT_RECORD, "file": src})
                continue
            if item.rec_type not in DOCUMENT_TYPES:
                rows.append({"reason": SKIPPED, "rec_type": item.rec_type, "file": src})
                continue
            copy_range(copy_fh, item.offset, item.length, out, compress=not source.gz)
            rows.append({"url": item.url, "final_url": item.url, "status": item.http_status, "reason": OK,
                         "bytes": item.length, "fetched_at": item.date, "content_type": item.content_type,
                         "host": urlsplit(item.url or "").hostname, "rec_type": item.rec_type, "file": src})
    os.replace(tmp, dest)  # a retried task rewrites its own file whole
    return rows


def copy_range(fh, offset: int, length: int, out, compress: bool, block: int = 1 << 20) -> None:
    """Bytes ``offset..offset+length`` of ``fh`` to ``out`` in blocks: verbatim (a gzip member),
    or, for a plain record, as one gzip member with the record separator added."""
    import zlib

    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if compress else None
    fh.seek(offset)
    left = length
    while left > 0:
        data = fh.read(min(block, left))
        if not data:
            break
        left -= len(data)
        out.write(packer.compress(data) if packer else data)
    if packer:
        out.write(packer.compress(b"\r\n\r\n") + packer.flush())


def prepare(args) -> list[str]:
    """The input files, listed before Spark starts."""
    from spark_jobs.extract.warc_reader import warc_files

    files = warc_files(args.warc_glob)
    if not files:
        raise FileNotFoundError(f"--warc-glob {args.warc_glob!r} matches no files; check the pattern")
    return files


def read(spark, run):
    """One row per input file, one partition each: a Spark task copies one file."""
    files = run.prepared
    paths = spark.createDataFrame(spark.sparkContext.parallelize([(f,) for f in files], len(files)),
                                  "path string")
    return paths, files


def write(spark, paths, staging, run) -> Written:
    """The copies (part-NNNNN.warc.gz), fetch_log/ and removed/corrupt_record/, from the rows they log."""
    from pyspark.sql import functions as F

    from spark_jobs.crawl.output import LOG_SCHEMA
    from spark_jobs.extract.warc_reader import SOURCE_WARC
    from spark_jobs.runner import KEPT

    names = {f: f"part-{i:05d}.warc.gz" for i, f in enumerate(run.prepared)}
    work = staging.spark_path("work")
    paths.mapInPandas(_copy_fn(names, staging.spark_path()), ROW_SCHEMA).write.parquet(work)  # copies, once
    rows = spark.read.parquet(work)
    documents = rows.where(F.col("reason") != SKIPPED)
    documents.select(*LOG_COLUMNS).write.parquet(staging.spark_path("fetch_log"))
    corrupt = documents.where(F.col("reason") == CORRUPT_RECORD)
    counts = {r["reason"]: r["count"] for r in documents.groupBy("reason").count().collect()}
    if counts.get(CORRUPT_RECORD):
        corrupt.select(*LOG_COLUMNS).write.parquet(staging.spark_path("removed", CORRUPT_RECORD))
    skipped = {r["rec_type"]: r["count"] for r in
               rows.where(F.col("reason") == SKIPPED).groupBy("rec_type").count().collect()}
    staging.remove("work")
    return Written(
        {(KEPT if k == OK else k): v for k, v in counts.items()}, rows_in=sum(counts.values()),
        schema={c: LOG_SCHEMA[c] for c in LOG_COLUMNS},
        extra={"source": SOURCE_WARC, "warc_files": sorted(names.values()), "fetch_log": "fetch_log/",
               "skipped_record_types": dict(sorted(skipped.items())), "pages_stored": counts.get(OK, 0)})


def _copy_fn(names: dict[str, str], dest_dir: str):
    """The mapInPandas function: each file's records copied to ``dest_dir`` (in ``s3a`` mode the
    staging prefix, uploaded by the executor), its log rows returned."""
    from ops.lake import storage
    from spark_jobs.staging import local_output

    columns = [c.split()[0] for c in ROW_SCHEMA.split(", ")]

    def copy(batches):
        import pandas as pd

        for pdf in batches:
            for src in pdf["path"]:
                with local_output(storage.join(dest_dir, names[src])) as dest:
                    rows = copy_records(src, dest)
                yield pd.DataFrame([[r.get(c) for c in columns] for r in rows], columns=columns)

    return copy


STAGE = Stage(
    name="ingest", output="raw", settings=lambda argv: parse(build_parser(), argv),
    config=lambda run: common_config(run.args), prepare=prepare, read=read, write=write)


def main(argv=None, spark=None) -> dict:
    return run_stage(STAGE, argv, spark)
