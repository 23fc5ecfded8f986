"""Every DAG's default_args (owners, retries with backoff, timeouts) and the failure and retry
callbacks that log what failed, on which try, why, and the job's last output lines."""
from __future__ import annotations

import contextlib
import logging
import os
from datetime import timedelta
from typing import Any

from ops.dagkit.airflow_context import airflow_base_url, task_url, ti_facts

OWNER_DATA = "data-platform"
OWNER_ML = "ml-platform"
RETRY_DELAY_ENV = "C2M_RETRY_DELAY_S"  # tests shorten the retry delay through this
TRIGGER_POKE_ENV = "C2M_TRIGGER_POKE_S"  # and how often end_to_end checks the runs it triggered
log = logging.getLogger("crawl2model")


def task_defaults(owner: str, retries: int, timeout: timedelta, retry_delay: timedelta = timedelta(minutes=1),
                  max_retry_delay: timedelta = timedelta(minutes=30)) -> dict[str, Any]:
    """default_args for a DAG: owner, retries with exponential backoff, a timeout, failure reports.

    The delay doubles with each try (1, 2, 4 … minutes, at most ``max_retry_delay``).
    ``$C2M_RETRY_DELAY_S`` (read at parse time, environment only) shortens it for tests.
    """
    raw = os.environ.get(RETRY_DELAY_ENV)
    if raw:
        retry_delay = timedelta(seconds=float(raw))
        max_retry_delay = max(retry_delay * 4, timedelta(seconds=1))
    return {
        "owner": owner,
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": max_retry_delay,
        "execution_timeout": timeout,
        "on_failure_callback": report_failure,
        "on_retry_callback": report_retry,
    }



def trigger_poke_interval(default: float = 10.0) -> float:
    """Seconds between two checks of a triggered DAG run (end_to_end's ``poke_interval``).

    ``$C2M_TRIGGER_POKE_S`` (read at parse time, environment only) shortens it for tests.
    """
    raw = os.environ.get(TRIGGER_POKE_ENV)
    return max(float(raw), 0.5) if raw else default

def failure_summary(context: dict[str, Any], will_retry: bool = False) -> str:
    """A few lines that say what failed, on which try, why, and the job's last output lines."""
    f = ti_facts(context)
    exc = context.get("exception")
    outcome = "failed, will retry" if will_retry else "FAILED"
    lines = [f"[crawl2model] {f['dag_id']}.{f['task_id']} {outcome} "
             f"(try {f['try_number']} of {f['tries']}, run {f['run_id']})"]
    if exc is not None:
        reason = getattr(exc, "summary", None) or str(exc).split("\n--- last", 1)[0]
        reason = "\n    ".join(reason.strip().splitlines()[:5]) or "(no message)"
        if type(exc).__name__ == "AirflowTaskTimeout":
            reason += " (execution_timeout reached; raise it in the DAG's default_args if the job needs it)"
        lines.append(f"  error: {type(exc).__name__}: {reason}")
        tail = getattr(exc, "tail", None) or []
        if tail:
            lines.append(f"  last {len(tail)} lines of the job's output:")
            lines += [f"    | {line}" for line in tail]
    with contextlib.suppress(Exception):  # a report must never fail on a missing setting
        url = task_url(airflow_base_url(), f["dag_id"], f["run_id"], f["task_id"], f["map_index"])
        lines.append(f"  task: {url}")
    return "\n".join(lines)


def report_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: log the summary into the task log (the last try)."""
    log.error("%s", failure_summary(context))


def report_retry(context: dict[str, Any]) -> None:
    """on_retry_callback: the same summary, marked as retried."""
    log.warning("%s", failure_summary(context, will_retry=True))
