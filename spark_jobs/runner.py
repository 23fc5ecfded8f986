"""The one place with Spark wiring: session, readers, step runner, writer.

The stage runner (:func:`spark_jobs.stage.run_stage`) calls these for every stage: it hands
them a DataFrame of records and a list of plain-Python steps (:mod:`spark_jobs.steps`), which
:func:`apply_steps_df` applies with ``mapInPandas``, tagging each
row with ``_drop_reason`` (null = kept). Kept rows go to ``part-*.parquet`` and dropped
rows to ``removed/{reason}/``, both written in one pass. Counts per reason come from what
was written (the files' Parquet footers; a ``groupBy`` over them on ``s3a://``), not from
accumulators, which double-count retried tasks, so the manifest's rows_in = rows_out +
Σdropped is checked against the data on disk.

Where data moves on ``s3://`` roots is chosen by :func:`spark_jobs.s3io.mode`: in ``stage``
mode (the default) inputs are downloaded and outputs staged in a local folder that publishing
uploads; in ``s3a`` mode (clusters) :func:`read_version` hands Spark ``s3a://`` paths and
:func:`write_rows` writes to a staging prefix in the bucket, with :func:`get_spark` giving the
session the ``fs.s3a.*`` settings. The stages themselves only see :class:`Staging`.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Iterable, Iterator, NamedTuple
from urllib.parse import unquote

from ops.lake import storage
from ops.lake.datasets import REMOVED, DatasetVersion, check_accounting
from spark_jobs import s3io
from spark_jobs.records import RECORD_COLUMNS, ddl
from spark_jobs.staging import Staging, local_input
from spark_jobs.steps import apply_steps

DROP = "_drop_reason"
KEPT = "_kept"
ARROW_BATCH_ROWS = 256  # HTML rows are large; small Arrow batches bound worker memory


def get_spark(app_name: str = "crawl2model", master: str | None = None, conf: dict[str, str] | None = None):
    """A SparkSession; the master comes from spark-submit unless one is given (tests).

    In ``s3a`` mode it also gets ``fs.s3a.*`` settings from the environment, and with
    ``C2M_SPARK_S3A_COMPAT`` the cached hadoop-aws 3.3.1 test jars (:mod:`spark_jobs.s3io`).
    """
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH_ROWS),
        "spark.sql.sources.partitionOverwriteMode": "static",
    }
    jars = s3io.compat_jars()  # tests/local s3a only; the cluster image has its own on the classpath
    if jars:
        settings["spark.jars"] = ",".join(jars)
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("C2M_SPARK_LOG_LEVEL", "WARN"))
    s3io.configure(spark)  # fs.s3a.* from the environment when Spark reads and writes s3a:// itself
    from spark_jobs.progress import watch

    watch(spark, app_name)  # a [progress] line every 10 s: active stages, tasks done/total
    return spark


# ---------------------------------------------------------------- readers

def read_version(spark, dv: DatasetVersion):
    """The kept rows of a finished version (its manifest's generation; never removed/ or logs)."""
    folder = local_input(dv)
    parts = [f for f in storage.list_files(folder, suffix=".parquet")  # the top level only
             if os.path.dirname(f) == folder.rstrip("/") and os.path.basename(f).startswith("part-")]
    if not parts:
        raise FileNotFoundError(f"{dv.uri} has a manifest but no part-*.parquet files; "
                                f"rerun the {dv.stage} stage")
    # explicit files, not a glob: no partition discovery from "v=…", no stream-sink probing
    return spark.read.option("basePath", folder).parquet(*parts)


class JsonlInput(NamedTuple):
    """A JSONL input split in two: ``records`` (record columns + extra) and ``rejected`` (one row
    per line that is no record: ``_drop_reason`` plus :data:`spark_jobs.jsonl.REJECTED_COLUMNS`)."""

    records: Any
    rejected: Any


def read_jsonl_input(spark, path: str, extra: Iterable[str] = ()) -> JsonlInput:
    """Bring-your-own-corpus input, every line accounted for (rules: :mod:`spark_jobs.jsonl`).

    Spark reads the file(s) as text split on "\\n" only (a "\\r" before it is JSON whitespace),
    one row per line, empty lines included; each line is cast to its raw bytes (Spark's text
    reader does not validate UTF-8, so invalid bytes reach the parser as they are) and parsed
    in plain Python. Both halves are lazy views of one parse; each action reads the file again.
    """
    from pyspark.sql import functions as F

    from spark_jobs.jsonl import REJECTED_COLUMNS

    extra = tuple(extra)
    record_cols = RECORD_COLUMNS + [(name, "string") for name in extra]
    lines = (_jsonl_lines(spark, path)
             .select(F.col("value").cast("binary").alias("line"), F.input_file_name().alias("file")))
    parsed = lines.mapInPandas(_parse_lines_fn(record_cols, extra),
                               ddl(record_cols + [(DROP, "string")] + REJECTED_COLUMNS))
    records = parsed.filter(F.col(DROP).isNull()).select(*[name for name, _ in record_cols])
    rejected = parsed.filter(F.col(DROP).isNotNull()).select(DROP, *[name for name, _ in REJECTED_COLUMNS])
    return JsonlInput(records, rejected)


def _jsonl_lines(spark, path: str):
    return spark.read.option("lineSep", "\n").text(path)


def count_jsonl_lines(spark, path: str) -> int:
    """Every line of a JSONL input, counted without parsing: the rows_in of a stage that reads it."""
    return _jsonl_lines(spark, path).count()


def _parse_lines_fn(record_cols: list[tuple[str, str]], extra: tuple[str, ...]) -> Callable:
    from spark_jobs.jsonl import REJECTED_COLUMNS, parse_line_detail, rejected_row

    names = [name for name, _ in record_cols] + [DROP] + [name for name, _ in REJECTED_COLUMNS]
    empty_record = dict.fromkeys(name for name, _ in record_cols)
    empty_rejected = dict.fromkeys(name for name, _ in REJECTED_COLUMNS)

    def run(batches):
        import pandas as pd

        for pdf in batches:
            rows = []
            for raw, file in zip(pdf["line"], pdf["file"]):
                record, reason, error = parse_line_detail(bytes(raw), extra)
                if reason is None:
                    rows.append({**record, DROP: None, **empty_rejected})
                else:
                    rows.append({**empty_record, DROP: reason, **rejected_row(bytes(raw), file, error)})
            yield pd.DataFrame(rows, columns=names)

    return run


def read_jsonl(spark, path: str, extra: Iterable[str] = ()):
    """The usable records of a JSONL input (see :func:`read_jsonl_input`). Lines that are no
    record are left out without a count: stages use :func:`read_jsonl_input`, which keeps them."""
    return read_jsonl_input(spark, path, extra).records


# ---------------------------------------------------------------- applying steps

def _clean_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _records(pdf) -> Iterator[dict[str, Any]]:
    for rec in pdf.to_dict("records"):
        yield {k: _clean_value(v) for k, v in rec.items()}


def _row(doc: dict[str, Any], cols: list[tuple[str, str]]) -> list[Any]:
    row = []
    for name, kind in cols:
        value = doc.get(name)
        if kind == "string" and isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True, ensure_ascii=False)
        row.append(value)
    return row


def steps_batch_fn(steps: list[object], out_cols: list[tuple[str, str]]) -> Callable:
    """The mapInPandas function: every document through the steps, plus its drop reason."""
    names = [name for name, _ in out_cols] + [DROP]

    def run(batches):
        import pandas as pd

        for pdf in batches:
            rows = []
            for doc in _records(pdf):
                doc, reason = apply_steps(doc, steps)
                rows.append(_row(doc, out_cols) + [reason])
            yield pd.DataFrame(rows, columns=names)

    return run


def apply_steps_df(df, steps: list[object], out_cols: list[tuple[str, str]]):
    """Lazily apply steps; the result has ``out_cols`` plus ``_drop_reason``."""
    return df.mapInPandas(steps_batch_fn(steps, out_cols), ddl(out_cols + [(DROP, "string")]))


def spread(df, min_partitions: int | None = None):
    """Give every core work: small inputs arrive as one partition."""
    want = min_partitions or df.sparkSession.sparkContext.defaultParallelism
    if df.rdd.getNumPartitions() < want:
        return df.repartition(want)
    return df


# ---------------------------------------------------------------- writing

def write_rows(spark, result, staging: Staging, keep_rows: bool = True) -> dict[str, int]:
    """Write kept rows as part-*.parquet and dropped rows under removed/{reason}/.

    One Spark pass writes everything partitioned by reason; files are then moved into
    the contract layout (on S3 in ``s3a`` mode the moves are applied by publishing's copy).
    Returns row counts by reason, KEPT included, from the files.
    """
    from pyspark.sql import functions as F

    rows = "tagged_rows"  # no leading "_": Spark skips such paths when reading
    tagged = result.withColumn(DROP, F.coalesce(F.col(DROP), F.lit(KEPT)))
    if not keep_rows:
        tagged = tagged.filter(F.col(DROP) != KEPT)
    tagged.write.mode("overwrite").partitionBy(DROP).parquet(staging.spark_path(rows))
    written = staging.files(f"{rows}/{DROP}=*")
    counts = _count_by_reason(spark, staging, rows, written) if written else {}
    for part_dir in sorted({name.split("/")[1] for name in written}):
        reason = unquote(part_dir.split("=", 1)[1])
        if reason == KEPT:
            for name in sorted(staging.files(f"{rows}/{part_dir}/part-*.parquet")):
                staging.move(name, name.rsplit("/", 1)[1])
        else:
            staging.move(f"{rows}/{part_dir}", f"{REMOVED}/{reason}")
    staging.remove(rows)
    if keep_rows and not counts.get(KEPT):
        _write_empty_parquet(result.drop(DROP).schema, staging.spark_path("part-00000.parquet"))
    return counts


def _count_by_reason(spark, staging: Staging, rows: str, written: dict[str, str]) -> dict[str, int]:
    """Rows per ``_drop_reason`` in what ``write_rows`` just wrote.

    Local files: the row counts in their Parquet footers (no Spark job, no second read of
    the data). In ``s3a`` mode the objects are not local files, so Spark counts them."""
    if staging.direct:
        frame = spark.read.parquet(staging.spark_path(rows)).groupBy(DROP).count()
        return {str(rec[DROP]): int(rec["count"]) for rec in frame.collect()}
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    for name, path in written.items():
        if name.endswith(".parquet"):
            reason = unquote(name.split("/")[1].split("=", 1)[1])
            counts[reason] = counts.get(reason, 0) + pq.read_metadata(path).num_rows
    return {reason: n for reason, n in counts.items() if n}


def _write_empty_parquet(schema, uri: str) -> None:
    """A version with no kept rows still has a readable, typed part file."""
    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import to_arrow_schema

    with storage.open_write(uri) as fh:
        pq.write_table(to_arrow_schema(schema).empty_table(), fh)


def schema_dict(schema) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in schema.fields if f.name != DROP}


def publish_version(staging: Staging, *, rows_in: int, counts: dict[str, int], parents: list[str],
                    config: dict[str, Any], schema: dict[str, str] | None = None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check the accounting, publish the staged files as a new generation, then commit it by
    writing the manifest that names it (last)."""
    rows_out = counts.get(KEPT, 0)
    dropped = {k: v for k, v in counts.items() if k != KEPT and v}
    check_accounting(rows_in, rows_out, dropped, where=staging.uri)
    return staging.commit(lambda generation: staging.out.write_manifest(
        rows_in=rows_in, rows_out=rows_out, dropped=dropped, parents=parents, config=config, schema=schema,
        extra=extra, generation=generation))


def write_version(spark, result, out: DatasetVersion, *, rows_in: int, parents: list[str],
                  config: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write a tagged DataFrame as a complete version: data, removed/, manifest."""
    with Staging(out) as staging:
        counts = write_rows(spark, result, staging)
        return publish_version(staging, rows_in=rows_in, counts=counts, parents=parents, config=config,
                               schema=schema_dict(result.schema), extra=extra)
