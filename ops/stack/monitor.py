"""Is the stack up: each component's health check (S3: an authenticated S3 call), its status and
URLs, and the wait for health at start-up that fails early when a component exits."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Callable

from ops.launch import s3_client
from ops.launch.settings import Settings, get_settings
from ops.stack import s3_server
from ops.stack.components import components
from ops.stack.layout import S3, StackError, log_file
from ops.stack.mode import stack_components
from ops.stack.processes import log_tail, read_pid, reap
from ops.stack.spark_cluster import running_spark_cluster

# Health keys in Airflow's /api/v2/monitor/health and the component each belongs to.
_AIRFLOW_HEALTH_KEYS = {
    "metadatabase": "airflow-api-server",
    "scheduler": "airflow-scheduler",
    "dag_processor": "airflow-dag-processor",
    "triggerer": "airflow-triggerer",
}


def _get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


def health(s: Settings | None = None) -> dict[str, bool]:
    """Which components answer their health checks right now (S3: an authenticated S3 call)."""
    s = s or get_settings()
    comps = components(s)
    result = {name: False for name in stack_components(s)}
    code, body = _get(comps["airflow-api-server"].health_url)
    if code == 200:
        try:
            info = json.loads(body)
        except ValueError:
            info = {}
        for key, name in _AIRFLOW_HEALTH_KEYS.items():
            result[name] = (info.get(key) or {}).get("status") == "healthy"
    for name in ("mlflow", "site", "reviews"):
        result[name] = _get(comps[name].health_url)[0] == 200
    if S3 in result:
        result[S3] = s3_server.ready(s)
    return result


def status(s: Settings | None = None) -> dict[str, dict]:
    """Per component: pid (ours, alive), healthy, log path; plus the URLs."""
    s = s or get_settings()
    healthy = health(s)
    return {
        name: {"pid": read_pid(s, name), "healthy": healthy[name], "log": str(log_file(s, name))}
        for name in healthy
    }


def urls(s: Settings | None = None) -> dict[str, str]:
    s = s or get_settings()
    out = {"airflow": s.airflow_url, "mlflow": s.mlflow_uri, "site": s.site_url, "reviews site": s.reviews_url}
    if s.s3_mode:
        out["s3"] = f"{s.s3_endpoint} (bucket {s.s3_bucket}; credentials in {s3_client.credentials_file(s)})"
    cluster = running_spark_cluster(s)
    if cluster is not None:
        out["spark master"] = f"{cluster.ui_url} ({cluster.master_url})"
    return out


def urls_line(s: Settings) -> str:
    line = f"Airflow {s.airflow_url}  MLflow {s.mlflow_uri}  sites {s.site_url} {s.reviews_url}"
    return f"{line}  S3 {s.s3_endpoint} (data {s.data_root})" if s.s3_mode else line


def wait_healthy(s: Settings, started: list[str], t0: float, timeout: float,
                 echo: Callable[[str], None], names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Wait until ``names`` (default: the whole stack) are healthy; fail early when one exits."""
    ready: dict[str, float] = {}
    while True:
        reap()
        healthy = health(s)
        watched = names or tuple(healthy)
        for name in watched:
            if healthy[name] and name not in ready:
                ready[name] = round(time.monotonic() - t0, 1)
                if name in started:
                    echo(f"  {name} healthy after {ready[name]} s")
        if all(healthy[n] for n in watched):
            if names is None:
                echo(f"stack up: {urls_line(s)}")
            return {n: ready[n] for n in started if n in ready}
        for name in watched:
            if read_pid(s, name) is None and not healthy[name]:
                raise StackError(
                    f"{name} exited during start-up. Last lines of {log_file(s, name)}:\n"
                    f"{log_tail(log_file(s, name))}\n"
                    "Fix the cause, then run `crawl2model down && crawl2model up`."
                )
        if time.monotonic() - t0 > timeout:
            bad = [n for n in watched if not healthy[n]]
            tails = "\n".join(f"--- {n} ({log_file(s, n)}):\n{log_tail(log_file(s, n), 15)}" for n in bad)
            raise StackError(f"not healthy after {timeout:.0f} s: {', '.join(bad)}\n{tails}")
        time.sleep(1.0)
