"""What the demo does with Airflow's DAG runs, through the REST API: trigger data_refresh (taking
the due weekly slot), read the data stages' outputs from their XComs (the sharded crawl's
merged), and explain a failed run from its failed tasks' logs."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ops.clients.airflow_api import AirflowAPIError, AirflowClient
from ops.launch.settings import Settings
from ops.stack import layout

# Stage -> its task id in data_refresh (stages sit in task groups).
DATA_TASKS = {"crawl": "ingest.crawl", "extract": "ingest.extract", "clean": "refine.clean",
              "dedup": "refine.dedup", "tokenize": "package.tokenize"}


def _due_slot(dag: dict) -> str | None:
    """The pending weekly slot of a paused, never-run DAG, if it is already due."""
    slot = dag.get("next_dagrun_logical_date")
    if not dag.get("is_paused") or not slot:
        return None
    when = datetime.fromisoformat(slot.replace("Z", "+00:00"))
    return slot if when <= datetime.now(timezone.utc) else None


def trigger_refresh(client: AirflowClient, conf: dict, echo: Callable[[str], None]) -> dict:
    """Trigger data_refresh (taking the due weekly slot if there is one), then unpause it."""
    slot = _due_slot(client.get_dag("data_refresh"))
    try:
        run = client.trigger("data_refresh", conf, logical_date=slot, note="crawl2model demo")
    except AirflowAPIError as exc:
        if exc.status != 409 or slot is None:
            raise
        run = client.trigger("data_refresh", conf, note="crawl2model demo")  # slot already taken
    client.set_paused("data_refresh", False)
    echo(f"triggered data_refresh run {run['dag_run_id']}")
    return run


def data_outputs(client: AirflowClient, run_id: str) -> dict[str, Any]:
    """Each data stage's output in a data_refresh run (its task's XCom), in stage order."""
    outputs = {}
    for stage, task_id in DATA_TASKS.items():
        if stage == "crawl":  # mapped: one XCom per crawl shard
            outputs[stage] = crawl_output(client, run_id)
        else:
            outputs[stage] = client.xcom("data_refresh", run_id, task_id)
    return outputs


MAX_CRAWL_SHARDS = 64  # the crawl_shards Param's maximum


def crawl_output(client: AirflowClient, run_id: str) -> dict | None:
    """The crawl's summary: the mapped ``ingest.crawl`` tasks' XComs, in shard order, merged."""
    parts = []
    for index in range(MAX_CRAWL_SHARDS):
        part = client.xcom("data_refresh", run_id, DATA_TASKS["crawl"], map_index=index)
        if part is None:
            break
        parts.append(part)
    return merge_crawl_summaries(parts)


def merge_crawl_summaries(parts: list[dict]) -> dict | None:
    """One summary for a sharded crawl: counts and drop reasons added up, every raw version
    kept (``uris``); a single shard's summary is returned as it is."""
    if len(parts) <= 1:
        return parts[0] if parts else None
    dropped: dict[str, int] = {}
    for part in parts:
        for reason, n in (part.get("dropped") or {}).items():
            dropped[reason] = dropped.get(reason, 0) + (n or 0)
    return {"stage": "crawl", "uri": parts[0].get("uri"), "uris": [p.get("uri") for p in parts],
            "version": parts[0].get("version"), "versions": [p.get("version") for p in parts],
            "rows_in": sum(p.get("rows_in") or 0 for p in parts),
            "rows_out": sum(p.get("rows_out") or 0 for p in parts), "dropped": dropped}


# ---------------------------------------------------------------- a failed run

def task_log_path(s: Settings, dag_id: str, run_id: str, task_id: str, try_number: int) -> Path:
    return (layout.airflow_home(s) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
            / f"task_id={task_id}" / f"attempt={max(try_number, 1)}.log")


_ERROR_LINE = re.compile(r"\b\w*(Error|Exception)\b: \S")


def _log_events(path: Path, lines: int = 10) -> str:
    """The error lines and the last events of an Airflow 3 task log (JSON lines), as plain text.

    A launched job's own exception (e.g. ``ShardError: ...``) sits above the launcher's
    traceback, so the lines naming an exception come first, then the tail.
    """
    try:
        raw = path.read_text(errors="replace").splitlines()
    except OSError:
        return "  (log not found)"
    events = []
    for line in raw:
        try:
            events.append(str(json.loads(line).get("event", "")))
        except ValueError:
            events.append(line)
    errors = list(dict.fromkeys(e.strip() for e in events if _ERROR_LINE.search(e)))[-5:]
    parts = ["  errors:"] + [f"    {e[:400]}" for e in errors] if errors else []
    parts += ["  last lines:"] + [f"    {e[:400]}" for e in events[-lines:]]
    return "\n".join(parts)


def explain_failure(client: AirflowClient, s: Settings, dag_id: str, run_id: str) -> str:
    parts = [f"{dag_id} run {run_id} failed. {s.airflow_url}/dags/{dag_id}/runs/{run_id}"]
    for ti in client.failed_tasks(dag_id, run_id):
        if ti.get("state") != "failed":
            continue
        log = task_log_path(s, dag_id, run_id, ti["task_id"], ti.get("try_number") or 1)
        parts.append(f"task {ti['task_id']} failed (try {ti.get('try_number')}):\n"
                     f"  UI:  {s.airflow_url}/dags/{dag_id}/runs/{run_id}/tasks/{ti['task_id']}\n"
                     f"  log: {log}\n{_log_events(log)}")
    return "\n".join(parts)
