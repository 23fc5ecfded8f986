"""Read-only MLflow lookups over its REST API (standard library only).

The demo and the integration test run in the Airflow venv, which has no ``mlflow`` package,
and only need to find runs, registered aliases and the UI links to them. Training code logs
and registers through the ``mlflow`` client itself (training/tracking.py).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class MlflowLookupError(RuntimeError):
    """MLflow answered with an error or could not be reached."""


def _request(tracking_uri: str, path: str, query: dict[str, str] | None = None,
             body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET (``query``) or POST (``body``) one MLflow REST call; errors say where and why."""
    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/{path}"
    if query:
        url += f"?{urllib.parse.urlencode(query)}"
    req = urllib.request.Request(url)
    if body is not None:
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        raise MlflowLookupError(f"MLflow {path} {query or ''} -> HTTP {exc.code}: {text[:300]}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise MlflowLookupError(f"MLflow at {tracking_uri} is unreachable ({exc}); is the stack up?") from exc


def _get(tracking_uri: str, path: str, **query: str) -> dict[str, Any]:
    return _request(tracking_uri, path, query=query)


def _post(tracking_uri: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return _request(tracking_uri, path, body=body)


def child_runs(tracking_uri: str, experiment_id: str, parent_run_id: str) -> list[dict[str, Any]]:
    """Nested runs under ``parent_run_id`` (e.g. HPO trials)."""
    body = {"experiment_ids": [experiment_id], "max_results": 1000,
            "filter": f"tags.mlflow.parentRunId = '{parent_run_id}'"}
    return _post(tracking_uri, "runs/search", body).get("runs", [])


def get_run(tracking_uri: str, run_id: str) -> dict[str, Any]:
    """``{"info": {...experiment_id, status...}, "data": {metrics, params, tags}}``."""
    return _get(tracking_uri, "runs/get", run_id=run_id)["run"]


def experiment_name(tracking_uri: str, experiment_id: str) -> str:
    return _get(tracking_uri, "experiments/get", experiment_id=experiment_id)["experiment"]["name"]


def run_tags(run: dict[str, Any]) -> dict[str, str]:
    """A run's tags (as returned by :func:`get_run`) as a plain dict."""
    return {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}


def alias_version(tracking_uri: str, name: str, alias: str = "champion") -> dict[str, Any] | None:
    """The model version an alias points to, or None when the alias (or model) does not exist."""
    try:
        return _get(tracking_uri, "registered-models/alias", name=name, alias=alias)["model_version"]
    except MlflowLookupError as exc:
        # MLflow answers 404 for a missing model, 400 "alias ... not found" for a model without the alias.
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "HTTP 404" in str(exc) or "not found" in str(exc):
            return None
        raise


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def run_link(tracking_uri: str, run_id: str) -> str:
    """UI link of a run, looked up by its id."""
    info = get_run(tracking_uri, run_id)["info"]
    return run_url(tracking_uri, info["experiment_id"], run_id)


def artifact_url(tracking_uri: str, run_id: str, path: str) -> str:
    """Direct link to one artefact of a run (the tracking server's ``get-artifact`` route)."""
    query = urllib.parse.urlencode({"path": path, "run_uuid": run_id})
    return f"{tracking_uri.rstrip('/')}/get-artifact?{query}"


def data_card_run(tracking_uri: str, shards_uri: str,
                  experiment: str = "data_refresh") -> dict[str, Any] | None:
    """The newest data-card run of a shards version (tag ``c2m.shards``), or None."""
    try:
        exp = _get(tracking_uri, "experiments/get-by-name", experiment_name=experiment)["experiment"]
    except MlflowLookupError as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "HTTP 404" in str(exc):
            return None
        raise
    value = str(shards_uri).replace("'", "\\'")
    body = {"experiment_ids": [exp["experiment_id"]], "max_results": 1,
            "order_by": ["attributes.start_time DESC"],
            "filter": f"tags.c2m.job = 'data_card' and tags.c2m.shards = '{value}'"}
    runs = _post(tracking_uri, "runs/search", body).get("runs", [])
    return runs[0] if runs else None


def list_artifacts(tracking_uri: str, run_id: str, path: str = "") -> list[dict[str, Any]]:
    """``[{"path", "is_dir", "file_size"}]`` of a run's artefacts under ``path``."""
    query = {"run_id": run_id, **({"path": path} if path else {})}
    return _request(tracking_uri, "artifacts/list", query=query).get("files", [])
