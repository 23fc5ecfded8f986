"""A Spark stage is a declaration; :func:`run_stage` is the one runner of every stage.

Like a datatrove pipeline (reader → steps → writer, run by an executor), a :class:`Stage` names
its settings, its input, the output dataset stage, the per-row steps and its extra outputs;
the runner does the rest the same way for every stage::

    settings → prepare (checks and objects built before Spark starts, so bad settings fail fast)
    → done? (a finished version this run need not redo: its manifest is the result)
    → read the input and its parents → count rows_in → apply the steps (mapInPandas, per row)
    → in a staging folder: post (whole-frame steps) → write (kept rows, removed/<reason>/)
      → outputs (extra files and manifest fields) → the JSONL lines that are no record
      → publish (accounting checked, a new generation, the manifest written last)
    → after → the summary line

The input is, in this order: the ``--input-jsonl`` file of a stage that takes one (every line
accounted for: records go through the steps, the others to removed/<reason>/, see
:mod:`spark_jobs.jsonl`); the stage's own ``read``; the finished ``input`` version.
A stage with its own ``write`` (crawl, ingest, tokenize) lays out its files itself and may
report the rows it read (:attr:`Written.rows_in`), for inputs no cheaper count exists for.
"""
from __future__ import annotations

import os
from argparse import Namespace
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

from ops.lake import progress
from ops.lake.datasets import DatasetVersion
from spark_jobs.runner import (apply_steps_df, count_jsonl_lines, get_spark, publish_version,
                               read_jsonl_input, read_version, schema_dict, spread, write_rows)
from spark_jobs.staging import Staging


@dataclass
class Written:
    """What a stage's write put in its staging folder: rows by reason (``runner.KEPT``: rows out),
    the manifest's schema and extra fields, and the rows read when the writer counted them."""

    counts: dict[str, int]
    schema: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    rows_in: int | None = None


@dataclass
class Run:
    """One run of a stage: its settings, what ``prepare`` built, and what the hooks hand on."""

    args: Namespace
    out: DatasetVersion
    prepared: Any = None
    parents: list[str] = field(default_factory=list)
    rows_in: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # one hook's results for a later one


Hook = Callable[..., Any]


@dataclass(frozen=True)
class Stage:
    """A stage: ``name`` (the CLI's and spark-submit's), the dataset stage it writes, and its hooks.

    settings(argv) -> Namespace     the parsed flags (root, version, input_version, input_jsonl, ...)
    input                           the dataset stage read (its finished ``input_version``)
    read(spark, run) -> (df, parents)  an input that is no dataset version
    prepare(args) -> Any            built before Spark starts (steps, configs, file lists)
    steps(run) -> list              per-row steps (:mod:`spark_jobs.steps`)
    columns() -> [(name, type)]     the columns the steps write
    post(spark, df, staging, run) -> df   whole-frame steps, with the staging folder for work files
    write(spark, df, staging, run) -> Written   default: kept rows and removed/<reason>/ (write_rows)
    outputs: (spark, staging, run) -> dict   extra outputs, after the rows; their manifest fields
    config(run) -> dict             the manifest's config
    conf(spark) -> dict             Spark SQL settings for this run only
    done(run) -> manifest | None    a finished version this run returns without redoing it
    after(run, manifest)            once the version is published
    """

    name: str
    output: str
    settings: Callable[[list[str] | None], Namespace]
    config: Callable[[Run], dict[str, Any]]
    input: str | None = None
    read: Hook | None = None
    jsonl_extra: tuple[str, ...] = ()
    prepare: Hook | None = None
    steps: Hook | None = None
    columns: Hook | None = None
    post: Hook | None = None
    write: Hook | None = None
    outputs: tuple[Hook, ...] = ()
    conf: Hook | None = None
    done: Hook | None = None
    after: Hook | None = None


def run_stage(stage: Stage, argv: list[str] | None = None, spark=None) -> dict[str, Any]:
    """Run ``stage`` with these flags on ``spark`` (a SparkSession; None: one is started); its manifest."""
    args = stage.settings(argv)
    run = Run(args=args, out=DatasetVersion(args.root, stage.output, args.version))
    run.prepared = stage.prepare(args) if stage.prepare else None
    manifest = stage.done(run) if stage.done else None
    if manifest is None:
        spark = spark or get_spark(f"crawl2model-{stage.name}")
        with _session_conf(spark, stage):
            manifest = _produce(spark, stage, run)
        if stage.after:
            stage.after(run, manifest)
    print_summary(manifest)
    return manifest


def _session_conf(spark, stage: Stage):
    if not stage.conf:
        return nullcontext()
    from spark_jobs.tokens.shards import session_conf

    return session_conf(spark, stage.conf(spark))


def _produce(spark, stage: Stage, run: Run) -> dict[str, Any]:
    df, run.parents = read_input(spark, stage, run)
    if stage.write is None:  # rows_in: every JSONL line, or the input's rows
        run.rows_in = count_jsonl_lines(spark, _jsonl(run.args)) if _jsonl(run.args) else df.count()
        progress.update(documents_in=run.rows_in)  # named on the job's progress lines
    if stage.steps:
        df = apply_steps_df(spread(df), stage.steps(run), stage.columns())
    with Staging(run.out) as staging:
        if stage.post:
            df = stage.post(spark, df, staging, run)
        written = (stage.write or write_kept)(spark, df, staging, run)
        extra = dict(written.extra)
        for output in stage.outputs:
            extra.update(output(spark, staging, run))
        rejected = write_rejected(spark, run.args, staging, stage.jsonl_extra)  # after: own columns
        counts = {**written.counts, **rejected}
        if written.rows_in is None and run.rows_in is None:
            raise TypeError(f"the {stage.name} stage writes its own files: its write must report rows_in")
        rows_in = run.rows_in if written.rows_in is None else written.rows_in + sum(rejected.values())
        return publish_version(staging, rows_in=rows_in, counts=counts, parents=run.parents,
                               config=stage.config(run), schema=written.schema, extra=extra)


def write_kept(spark, df, staging: Staging, run: Run) -> Written:
    """The default write: kept rows as part-*.parquet, dropped ones under removed/<reason>/."""
    return Written(write_rows(spark, df, staging), schema=schema_dict(df.schema))


def _jsonl(args: Namespace) -> str | None:
    return getattr(args, "input_jsonl", None)


def read_input(spark, stage: Stage, run: Run):
    """The stage's input DataFrame and its parents: the records of a JSONL file, the stage's own
    read, or the finished ``input`` version (no input: ``None`` and no parents)."""
    args = run.args
    if _jsonl(args):
        records = read_jsonl_input(spark, args.input_jsonl, extra=stage.jsonl_extra).records
        return records, [os.path.abspath(args.input_jsonl)]
    if stage.read:
        return stage.read(spark, run)
    if stage.input:
        parent = DatasetVersion(args.root, stage.input, args.input_version)
        return read_version(spark, parent), [parent.uri]
    return None, []


def write_rejected(spark, args: Namespace, staging: Staging,
                   extra_jsonl: tuple[str, ...] = ()) -> dict[str, int]:
    """Write the JSONL lines that are no record under removed/<reason>/ (the raw line, capped, with
    its size and sha1; reasons in spark_jobs/jsonl.py) and return their counts by reason.

    Written after the stage's own rows, which may be read back: these files have their own schema."""
    if not _jsonl(args):
        return {}
    rejected = read_jsonl_input(spark, args.input_jsonl, extra=extra_jsonl).rejected
    return write_rows(spark, rejected, staging, keep_rows=False)


def print_summary(manifest: dict[str, Any]) -> None:
    print(f"[crawl2model] {manifest['stage']} v={manifest['version']}: rows_in={manifest['rows_in']} "
          f"rows_out={manifest['rows_out']} dropped={manifest['dropped']} -> {manifest['uri']}", flush=True)
