"""Flags every stage shares, and how a stage finds its input.

``--root`` (default $C2M_DATA_ROOT or ./data), ``--version`` (required),
``--input-version`` (default: --version) and ``--input-jsonl`` (bring your own corpus:
JSON lines with at least text, read instead of the previous stage's output; a line that is
no record goes to removed/<reason>/ of the stage's version, see spark_jobs/jsonl.py).
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from ops.lake.datasets import DatasetVersion, check_version


def base_parser(stage: str, description: str, jsonl: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"crawl2model {stage}", description=description)
    parser.add_argument("--root", default=os.environ.get("C2M_DATA_ROOT") or "./data",
                        help="data root: local path or s3://bucket/prefix (default $C2M_DATA_ROOT or ./data)")
    parser.add_argument("--version", required=True, type=check_version,
                        help="version to write, e.g. 2026-11-29")
    parser.add_argument("--input-version", type=check_version, default=None,
                        help="version of the previous stage to read (default: --version)")
    if jsonl:
        parser.add_argument("--input-jsonl", default=None,
                            help="read JSON lines (at least text) instead of the previous stage; a line that "
                                 "is no record goes to removed/<reason>/ (invalid_json, bad_field_type, ...)")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.input_version is None:
        args.input_version = args.version
    return args


def input_frame(spark, args: argparse.Namespace, stage: str, extra_jsonl: tuple[str, ...] = ()):
    """The stage's input DataFrame and its parent URIs (a previous version or a JSONL path).

    Of a JSONL input only the lines that are records; :func:`write_rejected` writes the others
    and :func:`input_rows` counts them all."""
    from spark_jobs.runner import read_jsonl_input, read_version

    if getattr(args, "input_jsonl", None):
        records = read_jsonl_input(spark, args.input_jsonl, extra=extra_jsonl).records
        return records, [os.path.abspath(args.input_jsonl)]
    parent = DatasetVersion(args.root, stage, args.input_version)
    return read_version(spark, parent), [parent.uri]


def input_rows(spark, args: argparse.Namespace, df) -> int:
    """The stage's rows_in: every line of a JSONL input (records or not), else the input's rows."""
    from spark_jobs.runner import count_jsonl_lines

    if getattr(args, "input_jsonl", None):
        return count_jsonl_lines(spark, args.input_jsonl)
    return df.count()


def write_rejected(spark, args: argparse.Namespace, staging,
                   extra_jsonl: tuple[str, ...] = ()) -> dict[str, int]:
    """Write the JSONL lines that are no record under removed/<reason>/ (the raw line, capped, with
    its size and sha1; reasons in spark_jobs/jsonl.py) and return their counts by reason.

    Call it after the stage's own rows are written and read back: its files have their own schema."""
    from spark_jobs.runner import read_jsonl_input, write_rows

    if not getattr(args, "input_jsonl", None):
        return {}
    rejected = read_jsonl_input(spark, args.input_jsonl, extra=extra_jsonl).rejected
    return write_rows(spark, rejected, staging, keep_rows=False)


def common_config(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as a JSON-able dict for the manifest."""
    return {k: v for k, v in vars(args).items() if k not in ("root",)}


def print_summary(manifest: dict[str, Any]) -> None:
    print(f"[crawl2model] {manifest['stage']} v={manifest['version']}: rows_in={manifest['rows_in']} "
          f"rows_out={manifest['rows_out']} dropped={manifest['dropped']} -> {manifest['uri']}", flush=True)
