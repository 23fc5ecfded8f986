"""What finished tasks hand back: a data stage's manifest summary (for XCom and the demo) and
where a training job's rank 0 writes its result JSON, and reading it back."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ops.dagkit.versions import OUTPUT_STAGE, safe_name
from ops.lake import storage
from ops.lake.datasets import DatasetVersion
from ops.launch.settings import Settings


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


def result_location(s: Settings, launcher_kind: str, dag_id: str, run_id: str, task_id: str) -> str:
    """Where rank 0 writes the result JSON: the stack dir locally, the data root on a cluster
    (the launcher pod and the Airflow task share no disk)."""
    if launcher_kind == "local":
        return str(result_path(s, dag_id, run_id, task_id))
    return storage.join(s.data_root, "_airflow", "results", dag_id, safe_name(run_id), f"{task_id}.json")


def read_result_uri(uri: str) -> dict[str, Any]:
    """Like :func:`read_result` for a local path or an s3:// URI."""
    if not storage.is_s3(uri):
        return read_result(Path(uri))
    try:
        return json.loads(storage.read_text(uri))
    except Exception as exc:
        raise RuntimeError(f"the training job exited 0 but its result file {uri} is unreadable ({exc}); "
                           "rank 0 must write it (--result-file)") from None
