"""A Spark standalone cluster on this machine: one master and N one-core workers on 127.0.0.1.

Started from the jobs venv's ``spark-class`` (the same Spark that ``spark-submit`` runs), so a
stage submitted with ``C2M_SPARK_MASTER=spark://127.0.0.1:PORT`` runs its tasks in executor
JVMs that the workers start, not in the driver. ``crawl2model up --spark-workers N`` and the
tests' cluster fixture both use :func:`start` and :func:`stop`.

Every daemon binds to 127.0.0.1 (``--host`` and ``SPARK_LOCAL_IP``, which the web UIs read)
on free ports, writes its log and scratch space under the folder it is given, and runs in its
own process group, so :func:`stop` ends it and the executor JVMs it started by PID.

Executors import the crawl2model code of the checkout given as ``code`` (default: this one;
``PYTHONPATH`` of every daemon), as the driver does through ``ops.launch.local.job_env``.

``isolate=True`` runs each worker in its own mount namespace with a private tmpfs over the
temp folder (``/tmp``; ``unshare -m``, root only), as each host of a real cluster has its own
disk: an executor that writes to a driver-local temp path writes into its own ``/tmp``, and
the driver never sees the file. What a worker needs to run stays visible at its own path,
wherever it lives: the ``shared`` folders (what a real cluster keeps on a shared volume),
the cluster's folder, the checkout, the venv and the Python it was made from.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
STATE_FILE = "cluster.json"
CHECKOUT = Path(__file__).resolve().parent.parent


class ClusterError(RuntimeError):
    """The cluster could not start, or did not become ready in time."""


@dataclass
class Cluster:
    """A running cluster: where to submit, where to look, and what to stop."""

    master_url: str  # spark://127.0.0.1:PORT, what C2M_SPARK_MASTER takes
    ui_url: str  # the master's web UI; ``{ui_url}/json/`` lists workers and applications
    folder: str  # logs, worker dirs and the state file
    pids: list[int] = field(default_factory=list)  # master first; each leads its process group

    def save(self) -> None:
        Path(self.folder, STATE_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: str | Path) -> "Cluster | None":
        path = Path(folder, STATE_FILE)
        return cls(**json.loads(path.read_text())) if path.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def daemon_env(base: dict[str, str] | None, python: str, folder: Path, name: str,
               code: str | Path = CHECKOUT) -> dict[str, str]:
    """Environment of one daemon: loopback only, its own log and scratch folders, the jobs python,
    and the checkout's code first on the path (executors inherit it; nothing else that was on
    ``PYTHONPATH``, such as the Airflow venv's packages, leaks in)."""
    env = dict(os.environ if base is None else base)
    env.update(SPARK_LOCAL_IP=HOST, SPARK_LOG_DIR=str(folder / "logs"),
               SPARK_LOCAL_DIRS=str(folder / name / "scratch"), PYSPARK_PYTHON=python,
               SPARK_NO_DAEMONIZE="1", PYTHONPATH=str(code))
    env.pop("VIRTUAL_ENV", None)
    return env


def worker_needs(spark_home_bin: str | Path, python: str, code: str | Path) -> list[str]:
    """Folders an isolated worker must still see: the checkout, the venv (and where its links
    point), and the prefix of the Python the venv was made from."""
    venv = Path(spark_home_bin).parent
    real_python = Path(os.path.realpath(python))
    found = [str(code), str(venv), os.path.realpath(venv), str(real_python.parent.parent),
             os.path.realpath(sys.base_prefix)]
    return [path for path in found if os.path.isdir(path)]


def isolated(cmd: list[str], shared: list[str], hold: str, private: str | None = None) -> list[str]:
    """``cmd`` in a new mount namespace whose temp folder (``private``, default the system's) is an
    empty tmpfs holding only the ``shared`` folders that lie inside it (the outermost of nested ones).

    The tmpfs is mounted on ``hold`` (an empty folder outside the temp folder, which the caller
    removes once the command runs), the shared folders are bound into it, and it is moved over
    the temp folder, so they stay reachable at the same paths; everything else there is hidden.
    """
    top = os.path.realpath(private or tempfile.gettempdir())
    script = ["set -e", f"new={shlex.quote(hold)}", 'mount -t tmpfs -o mode=1777 tmpfs "$new"']
    inside = sorted({os.path.realpath(p) for p in shared if os.path.realpath(p).startswith(top + "/")})
    for real in inside:
        if any(real.startswith(outer + "/") for outer in inside):
            continue  # visible through the folder around it, which is bound already
        inner = '"$new"/' + shlex.quote(real[len(top) + 1:])
        script += [f"mkdir -p {inner}", f"mount --bind {shlex.quote(real)} {inner}"]
    script += [f'mount --move "$new" {shlex.quote(top)}', "exec " + shlex.join(cmd)]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)]


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def master_state(ui_url: str, timeout: float = 5.0) -> dict:
    """The master's JSON status (workers with their state and cores, applications)."""
    with urllib.request.urlopen(f"{ui_url}/json/", timeout=timeout) as resp:
        return json.loads(resp.read())


def alive_workers(ui_url: str) -> list[dict]:
    try:
        return [w for w in master_state(ui_url).get("workers", []) if w.get("state") == "ALIVE"]
    except OSError:
        return []


def start(spark_home_bin: Path, python: str, folder: str | Path, workers: int = 2, cores: int = 1,
          memory: str = "1g", env: dict[str, str] | None = None, isolate: bool = False,
          shared: list[str] = (), timeout: float = 180.0, code: str | Path = CHECKOUT) -> Cluster:
    """Start a master and ``workers`` workers; return once the master lists them all ALIVE.

    ``spark_home_bin`` is the jobs venv's bin folder (it holds ``spark-class``); ``env`` is the
    workers' base environment (executors inherit it), default this process's; ``code`` the
    checkout whose crawl2model the executors import.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    missing = [p for p in shared if not os.path.isdir(p)]
    if missing:
        raise ClusterError(f"shared folders must exist before the workers start: {missing}")
    spark_class = str(Path(spark_home_bin) / "spark-class")
    port, ui_port = free_port(), free_port()
    cluster = Cluster(f"spark://{HOST}:{port}", f"http://{HOST}:{ui_port}", str(folder))
    holds: list[str] = []  # isolate: each worker's mount point for its tmpfs, removed once it runs
    menv = daemon_env(env, python, folder, "master", code)
    menv["SPARK_MASTER_OPTS"] = "-Dspark.master.rest.enabled=false"
    try:
        cluster.pids.append(_spawn([spark_class, MASTER_CLASS, "--host", HOST, "--port", str(port),
                                    "--webui-port", str(ui_port)], menv, folder / "logs" / "master.log"))
        cluster.save()
        _wait(lambda: _up(cluster.ui_url), timeout, "the master's web UI", cluster)
        for i in range(workers):
            name = f"worker-{i + 1}"
            wdir = folder / name
            (wdir / "work").mkdir(parents=True, exist_ok=True)
            wenv = daemon_env(env, python, folder, name, code)
            wenv["SPARK_WORKER_DIR"] = str(wdir / "work")
            cmd = [spark_class, WORKER_CLASS, "--cores", str(cores), "--memory", memory, "--host", HOST,
                   "--webui-port", str(free_port()), "--work-dir", str(wdir / "work"), cluster.master_url]
            if isolate:
                holds.append(tempfile.mkdtemp(prefix="c2m-ns-", dir="/run"))
                cmd = isolated(cmd, [*shared, str(folder), *worker_needs(spark_home_bin, python, code)],
                               holds[-1])
            cluster.pids.append(_spawn(cmd, wenv, folder / "logs" / f"{name}.log"))
            cluster.save()
        _wait(lambda: len(alive_workers(cluster.ui_url)) >= workers, timeout,
              f"{workers} ALIVE workers", cluster)
    except BaseException:
        stop(cluster)
        raise
    finally:
        for hold in holds:
            try:
                os.rmdir(hold)
            except OSError:
                pass
    return cluster


def _up(ui_url: str) -> bool:
    try:
        master_state(ui_url, timeout=2)
        return True
    except OSError:
        return False


def _wait(ready, timeout: float, what: str, cluster: Cluster) -> None:
    logs = Path(cluster.folder, "logs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        dead = [pid for pid in cluster.pids if not group_pids([pid])]
        if dead:
            raise ClusterError(f"Spark standalone cluster: a daemon (pid {dead[0]}) exited while waiting "
                               f"for {what}; see the logs in {logs}")
        time.sleep(0.5)
    raise ClusterError(f"Spark standalone cluster: no {what} after {timeout:.0f} s; see the logs in {logs}")


def stop(cluster: Cluster, grace: float = 15.0) -> None:
    """Stop workers first (they end their executors), then the master: SIGTERM to each process
    group, SIGKILL to what is left after ``grace`` seconds. Executors stay in their worker's group."""
    groups = list(reversed(cluster.pids))
    _signal(groups, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _reap(groups):
        time.sleep(0.2)
    if _reap(groups):
        _signal(groups, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _reap(groups):
            time.sleep(0.1)
    state = Path(cluster.folder, STATE_FILE)
    if state.exists():
        state.unlink()


def _signal(groups: list[int], sig: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(groups: list[int]) -> list[int]:
    """Collect our own exited children; return the live processes left in ``groups``."""
    for pid in groups:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child (another process started the cluster): init reaps it
    return group_pids(groups)


def group_pids(pgids: list[int]) -> list[int]:
    """Live processes in these process groups (from /proc): what :func:`stop` must leave empty."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) in pgids:
            found.append(int(entry.name))
    return found
