"""Links between MLflow and Airflow: the run name and tags that say which task made an MLflow
run, the MLflow link of a run, and the DAG run's note that points back at it."""
from __future__ import annotations

import json
import logging
import os
from typing import Any

from ops.dagkit.airflow_context import airflow_base_url, dag_run_url, task_url, ti_facts
from ops.launch.settings import Settings

log = logging.getLogger("crawl2model")


def mlflow_run_name(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """``dag_id.task_id[map]@run_id``: says which Airflow task made an MLflow run."""
    task = f"{task_id}[{map_index}]" if map_index is not None and map_index >= 0 else task_id
    return f"{dag_id}.{task}@{run_id}"


def task_tracking_env(ctx: dict[str, Any], s: Settings) -> dict[str, str]:
    """:func:`tracking_env` for the running task, from its Airflow context."""
    f = ti_facts(ctx)
    map_index = f["map_index"] if isinstance(f["map_index"], int) else -1
    return tracking_env(f["dag_id"], f["run_id"], f["task_id"], f["try_number"], airflow_base_url(s),
                        map_index)


def tracking_env(dag_id: str, run_id: str, task_id: str, try_number: int, base_url: str,
                 map_index: int = -1) -> dict[str, str]:
    """Environment linking a job's MLflow run to its Airflow task.

    MLflow applies ``MLFLOW_RUN_CONTEXT`` (JSON tags) to every run the job starts, with no
    code in the job; the ``C2M_AIRFLOW_*`` variables are there for code that wants them.
    """
    run_url = dag_run_url(base_url, dag_id, run_id)
    t_url = task_url(base_url, dag_id, run_id, task_id, map_index)
    tags = {"airflow.dag_id": dag_id, "airflow.run_id": run_id, "airflow.task_id": task_id,
            "airflow.try_number": str(try_number), "airflow.dag_run_url": run_url, "airflow.task_url": t_url}
    if map_index is not None and map_index >= 0:
        tags["airflow.map_index"] = str(map_index)
    return {
        "MLFLOW_RUN_CONTEXT": json.dumps(tags, sort_keys=True),
        "C2M_AIRFLOW_DAG_ID": dag_id, "C2M_AIRFLOW_RUN_ID": run_id, "C2M_AIRFLOW_TASK_ID": task_id,
        "C2M_AIRFLOW_TRY_NUMBER": str(try_number), "C2M_AIRFLOW_MAP_INDEX": str(map_index),
        "C2M_AIRFLOW_RUN_URL": run_url, "C2M_AIRFLOW_TASK_URL": t_url,
    }


def mlflow_url(tracking_uri: str, run_id: str | None) -> str | None:
    """The MLflow UI link of a run, or None (no run, or MLflow unreachable: links are a courtesy)."""
    if not run_id:
        return None
    from ops.clients.mlflow_helpers import MlflowLookupError, run_link

    try:
        return run_link(tracking_uri, run_id)
    except (MlflowLookupError, KeyError) as exc:
        log.warning("no MLflow link for run %s: %s", run_id, exc)
        return None


def mlflow_note(label: str, result: dict[str, Any]) -> str:
    """Markdown for a DAG run's note: the MLflow run and the model version it registered."""
    url = result.get("mlflow_run_url")
    parts = [f"**{label}** MLflow run: [{result.get('run_id')}]({url})" if url
             else f"**{label}** MLflow run: {result.get('run_id')}"]
    if result.get("model_uri") or result.get("model_version"):
        parts.append(f"model: `{result.get('model_uri') or result.get('model_version')}`")
    return "  \n".join(parts)


def set_run_note(dag_id: str, run_id: str, note: str, base_url: str) -> bool:
    """Set the DAG run's note over the REST API; False (and a warning) when that is not possible.

    On the local stack the API hands out tokens without a login; where a login is on, the
    admin password file under $AIRFLOW_HOME is used. The note is a convenience: the same link
    is in the task's XCom.
    """
    from ops.clients.airflow_api import AirflowAPIError, AirflowClient

    try:
        AirflowClient(base_url, os.environ.get("AIRFLOW_HOME"), timeout=10).set_note(dag_id, run_id, note)
        return True
    except AirflowAPIError as exc:
        log.warning("could not set the note of %s/%s: %s", dag_id, run_id, exc)
        return False
