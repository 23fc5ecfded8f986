"""Flags every stage shares.

``--root`` (default $C2M_DATA_ROOT or ./data), ``--version`` (required),
``--input-version`` (default: --version) and ``--input-jsonl`` (bring your own corpus:
JSON lines with at least text, read instead of the previous stage's output; a line that is
no record goes to removed/<reason>/ of the stage's version, see spark_jobs/jsonl.py).
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from ops.lake.datasets import check_version


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


def common_config(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as a JSON-able dict for the manifest."""
    return {k: v for k, v in vars(args).items() if k not in ("root",)}
