"""Flags every stage shares, and how a stage finds its input.

``--root`` (default $C2M_DATA_ROOT or ./data), ``--version`` (required),
``--input-version`` (default: --version) and ``--input-jsonl`` (bring your own corpus:
JSON lines with at least id and text, read instead of the previous stage's output).
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from ops.datasets import DatasetVersion, check_version


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
                            help="read JSON lines (at least id and text) instead of the previous stage")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.input_version is None:
        args.input_version = args.version
    return args


def input_frame(spark, args: argparse.Namespace, stage: str, extra_jsonl: tuple[str, ...] = ()):
    """The stage's input DataFrame and its parent URIs (a previous version or a JSONL path)."""
    from spark_jobs.runner import read_jsonl, read_version

    if getattr(args, "input_jsonl", None):
        return read_jsonl(spark, args.input_jsonl, extra=extra_jsonl), [os.path.abspath(args.input_jsonl)]
    parent = DatasetVersion(args.root, stage, args.input_version)
    return read_version(spark, parent), [parent.uri]


def common_config(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as a JSON-able dict for the manifest."""
    return {k: v for k, v in vars(args).items() if k not in ("root",)}


def print_summary(manifest: dict[str, Any]) -> None:
    print(f"[crawl2model] {manifest['stage']} v={manifest['version']}: rows_in={manifest['rows_in']} "
          f"rows_out={manifest['rows_out']} dropped={manifest['dropped']} -> {manifest['uri']}", flush=True)
