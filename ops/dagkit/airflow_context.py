"""What a running task reads from Airflow: its context's facts, Variables, Connections and the
UI links of its run. Airflow is imported lazily: outside a task these return None or defaults."""
from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from ops.launch.settings import Settings


def airflow_variable(key: str) -> str | None:
    """An Airflow Variable from inside a running task; None outside one or when unset."""
    try:
        from airflow.sdk import Variable
    except ImportError:
        return None
    try:
        return Variable.get(key, default=None)
    except Exception:  # no task context (CLI, tests) or no API: configuration falls back to env
        return None


def airflow_connection(conn_id: str):
    """An Airflow connection from inside a running task; None outside one or when it does not exist."""
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except Exception:  # not defined, or no task context (CLI, tests)
        return None


def ti_facts(context: dict[str, Any]) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    task = context.get("task")
    retries = getattr(task, "retries", None)
    max_tries = getattr(ti, "max_tries", None)
    return {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag, "dag_id", "?"),
        "task_id": getattr(ti, "task_id", None) or getattr(task, "task_id", "?"),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id", "?"),
        "try_number": getattr(ti, "try_number", None) or 1,
        "tries": 1 + (max_tries if isinstance(max_tries, int) else
                      retries if isinstance(retries, int) else 0),
        "map_index": getattr(ti, "map_index", -1),
    }


def airflow_base_url(s: Settings | None = None) -> str:
    """The UI/API base URL: Airflow's own setting when tasks have it, else the local stack's."""
    from ops.launch.settings import get_settings

    return (os.environ.get("AIRFLOW__API__BASE_URL") or (s or get_settings()).airflow_url).rstrip("/")


def dag_run_url(base: str, dag_id: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe=':+')}"


def task_url(base: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    url = f"{dag_run_url(base, dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    return f"{url}/mapped/{map_index}" if map_index is not None and map_index >= 0 else url
