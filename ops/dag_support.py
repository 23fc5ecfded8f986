"""Plain helpers behind the DAGs: versions, job flags, manifest summaries, result files.

DAG files stay orchestration only; what they compute (which version a run writes, which
flags a stage gets, what small summary goes to XCom) lives here as plain functions, so it is
unit-tested without Airflow and shared with the demo. Nothing here imports Airflow, Spark or
torch.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ops import storage
from ops.datasets import DatasetVersion, check_version
from ops.settings import Settings

# CLI stage -> the dataset stage folder it writes (ARCHITECTURE.md §1).
OUTPUT_STAGE = {
    "crawl": "raw", "extract": "extracted", "clean": "clean", "dedup": "corpus", "tokenize": "shards",
}
DATA_STAGES = tuple(OUTPUT_STAGE)
# Keys of the corpus Asset event extra, read by the pretrain DAG.
EXTRA_SHARDS_URI = "shards_uri"
EXTRA_PRETRAIN = "pretrain"


def derive_version(logical_date: datetime | None, run_id: str) -> str:
    """A dataset version for a DAG run: its logical date when it has one, else its run_id.

    Weekly runs get readable versions (``2026-11-29``); manual runs without a logical date get
    their sanitised run_id, which is unique per DAG. Either way a retry of the same run writes
    the same version, so it replaces rather than duplicates.
    """
    if logical_date is not None:
        if (logical_date.hour, logical_date.minute, logical_date.second) == (0, 0, 0):
            return logical_date.strftime("%Y-%m-%d")
        return logical_date.strftime("%Y-%m-%dT%H%M%S")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_.-")
    if len(text) > 64:  # keep the unique tail (timestamps, random suffixes)
        text = text[-64:].lstrip("_.-")
    return check_version(text or "run")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def seed_hosts(seeds: list[str]) -> list[str]:
    """``host[:port]`` of each seed URL, in order, without repeats."""
    hosts: list[str] = []
    for url in seeds:
        netloc = urlsplit(url).netloc
        if not netloc:
            raise ValueError(f"seed {url!r} is not an absolute http(s) URL")
        if netloc not in hosts:
            hosts.append(netloc)
    return hosts


def crawl_args(params: dict[str, Any], root: str, version: str) -> list[str]:
    """Flags for spark_jobs/jobs/crawl.py from the data_refresh Params."""
    seeds = list(params["seeds"])
    domains = list(params.get("allow_domains") or []) or seed_hosts(seeds)
    args = [
        "--root", root, "--version", version,
        "--seeds", ",".join(seeds),
        "--allow-domains", ",".join(domains),
        "--max-pages", str(params["max_pages"]),
        "--max-depth", str(params["max_depth"]),
        "--delay", str(params["delay"]),
    ]
    if params.get("allow_private"):
        args.append("--allow-private")
    return args


def stage_args(stage: str, params: dict[str, Any], root: str, version: str) -> list[str]:
    """Flags for one data stage; every stage reads the same version of its input."""
    if stage == "crawl":
        return crawl_args(params, root, version)
    args = ["--root", root, "--version", version, "--input-version", version]
    if stage == "tokenize":
        args += ["--vocab-size", str(params["vocab_size"]), "--seq-len", str(params["seq_len"])]
        if params.get("val_fraction") is not None:
            args += ["--val-fraction", str(params["val_fraction"])]
    return args


def manifest_summary(root: str, stage: str, version: str) -> dict[str, Any]:
    """The small facts of a finished stage, for XCom and the demo summary."""
    ds = DatasetVersion(root, OUTPUT_STAGE[stage], version)
    m = ds.read_manifest()
    out = {
        "stage": stage, "uri": ds.uri, "version": version,
        "rows_in": m.get("rows_in"), "rows_out": m.get("rows_out"), "dropped": m.get("dropped", {}),
    }
    if stage == "tokenize":
        splits = m.get("splits", {})
        out["tokens"] = {name: split.get("tokens") for name, split in splits.items()}
        out["sequences"] = {name: split.get("sequences") for name, split in splits.items()}
        out["vocab_size"] = m.get("vocab_size")
        out["seq_len"] = m.get("seq_len")
    return out


def result_path(s: Settings, dag_id: str, run_id: str, task_id: str) -> Path:
    """Where a training task asks rank 0 to write its result JSON (local: horovodrun is local)."""
    return s.stack_dir / "results" / dag_id / safe_name(run_id) / f"{task_id}.json"


def read_result(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RuntimeError(
            f"the training job exited 0 but wrote no result file at {path}; "
            "rank 0 must write it (--result-file)") from None


def training_overrides(params: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Params with the asset event's overrides on top (only keys the Params already have)."""
    merged = dict(params)
    for key, value in (overrides or {}).items():
        if key in merged and value is not None:
            merged[key] = value
    return merged


def resolve_pretrain(params: dict[str, Any], run_type: str, event_extra: dict[str, Any] | None,
                     data_root: str) -> tuple[dict[str, Any], str]:
    """The Params and shards a pretrain run uses.

    An asset-triggered run trains on the shards its corpus event names, with the overrides the
    refresh carried; a manual run uses its Params, and without ``shards_uri`` the newest
    complete shards version under the data root.
    """
    from ops.datasets import latest_version

    shards = params.get("shards_uri")
    if run_type == "asset_triggered":
        extra = event_extra or {}
        shards = shards or extra.get(EXTRA_SHARDS_URI)
        params = training_overrides(params, extra.get(EXTRA_PRETRAIN))
    if not shards:
        version = latest_version(data_root, "shards")
        if version is None:
            raise RuntimeError(f"no complete shards under {data_root}/shards: run the data_refresh DAG "
                               "(or `crawl2model tokenize`) first, or pass shards_uri")
        shards = DatasetVersion(data_root, "shards", version).uri
    return params, shards


def pretrain_args(p: dict[str, Any], shards_uri: str, root: str, run_name: str,
                  result_file: Path) -> list[str]:
    args = [
        "--shards", shards_uri, "--model", str(p["model"]), "--max-steps", str(p["max_steps"]),
        "--checkpoint-dir", storage.join(root, "checkpoints", "pretrain", run_name),
        "--experiment", "pretrain", "--register-name", "c2m-base", "--result-file", str(result_file),
    ]
    if p.get("batch_size"):
        args += ["--batch-size", str(p["batch_size"])]
    return args + [str(a) for a in p.get("extra_args") or []]


def finetune_args(p: dict[str, Any], result_file: Path) -> list[str]:
    args = [
        "--base-model", str(p["base_model"]), "--task", str(p["task"]), "--epochs", str(p["epochs"]),
        "--experiment", "finetune", "--register-name", f"c2m-{p['task']}", "--result-file", str(result_file),
    ]
    return args + [str(a) for a in p.get("extra_args") or []]
