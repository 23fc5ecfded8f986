"""Retries are safe on the real stack (issue 7.4): a finished task run again, and a task killed half-way.

A finished data task (``refine.dedup`` of the tiny demo's refresh), cleared and run again by the
scheduler, replaces its version with the same one: same counts, same drop reasons, same number
of files, no leftovers of the first attempt.

``kill -9`` of every process of the job (horovodrun and its ranks) is what a lost node or
the OOM killer does. The task fails, Airflow retries it (the test stack's retry delay is
1 s), and the retry must:

- resume from the last checkpoint of this DAG run, not start again;
- continue the same MLflow run, now tagged with the retry's try number, and finish it at
  ``max_steps`` with one loss curve (no step logged from a restart at 0);
- return the same kind of result as an uninterrupted run (a registered model version).

Runs on the shared stack after the tiny demo (conftest.FILE_ORDER), which made the shards.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from stack_support import missing_requirements, require_demo, task_log_text

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]
_missing = missing_requirements()
pytestmark.append(pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}"))

MAX_STEPS = 200
CHECKPOINT_STEP = 100  # training.config.TrainConfig.checkpoint_every


def _job_pids(marker: str) -> list[int]:
    """PIDs whose command line mentions ``marker`` (the run's own checkpoint folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids


def _wait_for(path: Path, client, run_id: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        state = client.get_run("pretrain", run_id)["state"]
        if state in ("success", "failed") or time.monotonic() > deadline:
            pytest.fail(f"pretrain run {run_id} is {state} and {path} never appeared")
        time.sleep(0.2)


def test_a_killed_training_task_is_retried_and_resumes_its_checkpoint_and_mlflow_run(stack, tiny_demo):
    from ops.clients import mlflow_helpers
    from ops.clients.airflow_api import AirflowClient
    from ops.dagkit.versions import safe_name
    from ops.stack import layout
    from ops.stack.demo_runs import explain_failure, task_log_path

    require_demo(tiny_demo)
    client = AirflowClient(stack.airflow_url, layout.airflow_home(stack))
    client.set_paused("pretrain", False)
    run_id = client.trigger("pretrain", {"max_steps": MAX_STEPS, "batch_size": 4, "np": 2},
                            note="retry-resume test")["dag_run_id"]
    ckpt_dir = Path(stack.data_root, "checkpoints", "pretrain", safe_name(run_id))
    _wait_for(ckpt_dir / f"step-{CHECKPOINT_STEP:08d}.pt", client, run_id)

    victims = _job_pids(str(ckpt_dir))
    assert victims, f"no training process mentions {ckpt_dir}"
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    final = client.wait_for_run("pretrain", run_id, timeout=900, progress=None)
    assert final["state"] == "success", explain_failure(client, stack, "pretrain", run_id)
    (train,) = [t for t in client.task_instances("pretrain", run_id) if t["task_id"] == "train"]
    assert train["try_number"] == 2, "the kill must fail the first try and the retry must succeed"

    retry_log = task_log_text(task_log_path(stack, "pretrain", run_id, "train", 2))
    assert "resumed from" in retry_log and ckpt_dir.name in retry_log, retry_log[-3000:]

    result = client.xcom("pretrain", run_id, "train")
    first_log = task_log_text(task_log_path(stack, "pretrain", run_id, "train", 1))
    assert result["run_id"] in first_log, "the retry must continue the first try's MLflow run"
    run = mlflow_helpers.get_run(stack.mlflow_uri, result["run_id"])
    tags = mlflow_helpers.run_tags(run)
    assert tags["airflow.run_id"] == run_id and tags["airflow.try_number"] == "2"
    same_dag_run = mlflow_helpers._post(stack.mlflow_uri, "runs/search", {
        "experiment_ids": [run["info"]["experiment_id"]], "max_results": 100,
        "filter": f"tags.`airflow.run_id` = '{run_id}'"}).get("runs", [])
    assert [r["info"]["run_id"] for r in same_dag_run] == [result["run_id"]], \
        "one MLflow run per DAG run, retries included"

    points = mlflow_helpers._get(stack.mlflow_uri, "metrics/get-history", run_id=result["run_id"],
                                 metric_key="train/loss", max_results="25000").get("metrics", [])
    steps = {int(p.get("step", 0)) for p in points}
    assert max(steps) == MAX_STEPS and min(steps) >= 1
    assert CHECKPOINT_STEP + 1 in steps  # the retry logged from just after the checkpoint on
    assert result.get("model_version"), result


def _version_facts(folder: Path) -> dict:
    """What must not change when a version is rewritten (created_at and part-file names may)."""
    import json

    m = json.loads((folder / "_manifest.json").read_text())
    return {"rows": (m["rows_in"], m["rows_out"]), "dropped": m["dropped"], "schema": m["schema"],
            "n_files": len(m["files"]), "on_disk": sorted(p.name for p in folder.parent.iterdir()
                                                          if p.name.startswith(("v=", "_tmp", "_old")))}


def test_a_finished_data_task_run_again_rewrites_the_same_version(stack, tiny_demo):
    from ops.clients.airflow_api import AirflowClient
    from ops.lake.datasets import DatasetVersion
    from ops.stack import layout
    from ops.stack.demo_runs import explain_failure

    require_demo(tiny_demo)
    client = AirflowClient(stack.airflow_url, layout.airflow_home(stack))
    run_id = tiny_demo.runs["data_refresh"]["dag_run_id"]
    dedup = [t for t in client.task_instances("data_refresh", run_id) if t["task_id"] == "refine.dedup"][0]
    version = client.xcom("data_refresh", run_id, "refine.dedup")["version"]
    folder = Path(stack.data_root, "corpus", f"v={version}")
    before = _version_facts(folder)
    data_before = Path(DatasetVersion.from_uri(str(folder)).data_uri)  # the generation its manifest names
    files_before = {p.name for p in data_before.rglob("*") if p.is_file()}

    cleared = client.clear_tasks("data_refresh", run_id, ["refine.dedup"])
    assert [t["task_id"] for t in cleared] == ["refine.dedup"]
    final = client.wait_for_run("data_refresh", run_id, timeout=900, progress=None)
    assert final["state"] == "success", explain_failure(client, stack, "data_refresh", run_id)
    again = [t for t in client.task_instances("data_refresh", run_id) if t["task_id"] == "refine.dedup"][0]
    assert again["try_number"] == dedup["try_number"] + 1, "the task must really have run again"

    assert _version_facts(folder) == before  # replaced, not appended: no second copy, no temp folders
    data_after = Path(DatasetVersion.from_uri(str(folder)).data_uri)
    files_after = {p.name for p in data_after.rglob("*") if p.is_file()}
    assert len(files_after) == len(files_before) and data_after != data_before
    # the superseded generation stays whole for readers that resolved it, until the grace period ends
    assert {p.name for p in data_before.rglob("*") if p.is_file()} == files_before
