"""What the S3-mode integration test needs: the stack's environment, and searches for a leaked secret.

A plain module (like stack_support.py), so a developer can start the same S3-mode stack by hand
and run the tiny demo on it: ``python tests/integration/s3_stack.py /tmp/dir``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack_support import UNSET, stack_env  # noqa: E402  (shared with test_stack.py)

BUCKET = "c2m-it"
# Components' environments that must come from the stack, not from the developer's shell.
UNSET_S3 = (*UNSET, "C2M_DATA_ROOT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
            "AWS_PROFILE", "AWS_SESSION_TOKEN", "MLFLOW_S3_ENDPOINT_URL")


def s3_stack_env(base: Path) -> dict[str, str]:
    """stack_env() on free ports, in S3 mode: its own block of S3 ports and bucket, data root in it."""
    from ops.stack.s3_server import free_base_port

    env = stack_env(base)
    env.pop("C2M_DATA_ROOT", None)  # S3 mode's default: s3://<bucket>/data
    env.update(C2M_S3="1", C2M_S3_PORT=str(free_base_port()), C2M_S3_BUCKET=BUCKET)
    return env


def files_containing(root: Path, needle: str, skip: tuple[Path, ...] = ()) -> list[str]:
    """Every file under ``root`` (except under ``skip``) whose bytes contain ``needle``."""
    raw = needle.encode()
    hits = []
    for path in root.rglob("*"):
        if not path.is_file() or any(path.is_relative_to(p) for p in skip):
            continue
        try:
            if raw in path.read_bytes():
                hits.append(str(path))
        except OSError:
            continue
    return hits


def all_xcoms(client) -> Iterator[tuple[str, Any]]:
    """(where, value) of every XCom of every DAG run, over the REST API."""
    listing = client.request("GET", "/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries?limit=1000")
    for entry in listing["xcom_entries"]:
        path = (f"/api/v2/dags/{quote(entry['dag_id'], safe='')}/dagRuns/{quote(entry['run_id'], safe='')}"
                f"/taskInstances/{quote(entry['task_id'], safe='')}/xcomEntries/{quote(entry['key'], safe='')}"
                f"?map_index={entry.get('map_index', -1)}")
        where = f"{entry['dag_id']}/{entry['run_id']}/{entry['task_id']}/{entry['key']}"
        yield where, client.request("GET", path).get("value")


def all_mlflow_runs(tracking_uri: str) -> list[dict]:
    """Every run of every experiment (params and tags included), over MLflow's REST API."""
    from ops.clients.mlflow_helpers import _post

    experiments = _post(tracking_uri, "experiments/search", {"max_results": 1000}).get("experiments", [])
    ids = [e["experiment_id"] for e in experiments]
    return _post(tracking_uri, "runs/search", {"experiment_ids": ids, "max_results": 1000}).get("runs", [])


def _main() -> None:
    """Start an S3-mode stack by hand and run the tiny demo on it; prints the env to reuse it."""
    import argparse

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("base", type=Path, help="an empty folder for the stack and the site")
    parser.add_argument("--no-demo", action="store_true", help="start the stack only")
    args = parser.parse_args()
    env = s3_stack_env(args.base.resolve())
    for var in UNSET_S3:
        os.environ.pop(var, None)
    os.environ.update(env)
    from ops.launch.settings import get_settings
    from ops.stack import services
    from ops.stack.demo import run_demo

    s = get_settings()
    services.up(s, timeout=300)
    (args.base / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
    print(json.dumps(env, indent=1), flush=True)
    if not args.no_demo:
        result = run_demo("tiny", s)
        print("demo ok" if result.ok else f"demo FAILED: {result.failure}", flush=True)


if __name__ == "__main__":
    _main()
