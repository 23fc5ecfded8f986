"""How stages are launched: spark-submit for data jobs, horovodrun for training.

The local launcher (the default) runs both through the jobs venv on this machine. Task
code in the DAGs and the CLI call the same two functions, so a stage behaves the same
from either. Output streams through to the caller's stdout (Airflow task logs, the
terminal), and a non-zero exit raises :class:`LaunchError` with the command to rerun and
the job's last lines of output, so the reason shows up where the failure is reported.

:class:`Launcher` is the interface the cluster launcher (:mod:`ops.launch.kubernetes`: Spark on
Kubernetes, Horovod as an MPIJob) and the podman one (:mod:`ops.launch.podman`) implement too;
they build on this module's job environment and :func:`run`. :mod:`ops.launch.choose` picks one.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Protocol

from ops.lake import secret_env
from ops.launch import s3_client
from ops.launch.settings import Settings, get_settings

TAIL_LINES = 40  # lines of a failed job's output carried in its LaunchError


class LaunchError(RuntimeError):
    """A launched job failed or could not start.

    ``tail`` holds the job's last lines of output; they are part of the message too, so a
    task log or a terminal shows why the job failed without opening another log.
    """

    def __init__(self, message: str, tail: list[str] | tuple[str, ...] = (), returncode: int | None = None):
        self.tail = [line.rstrip("\n") for line in tail]
        self.returncode = returncode
        self.summary = message
        if self.tail:
            message = (f"{message}\n--- last {len(self.tail)} lines of the job's output ---\n"
                       + "\n".join(self.tail))
        super().__init__(message)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise LaunchError(f"{what} not found at {path}. Run `make venvs` (or `make test`) to create it.")
    return path


def check_java() -> None:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise LaunchError(
            "Java was not found: Spark needs Java 17. Install it with "
            "`apt-get install -y openjdk-17-jre-headless` (make does this) or set JAVA_HOME."
        )


def job_env(settings: Settings | None = None) -> dict[str, str]:
    """Environment for jobs: the allow-listed part of this one (:mod:`ops.lake.secret_env`; never the
    Airflow task's ``AIRFLOW__*`` settings), loopback Spark, the jobs venv's python, MLflow URI,
    no telemetry; in S3 mode also the stack's S3 endpoint and credentials (a real bucket's come
    from AWS_*). Secrets in it travel by environment only, never on a command line."""
    s = settings or get_settings()
    py = str(s.jobs_python)
    env = secret_env.job_environment()
    env.update(
        SPARK_LOCAL_IP=s.host,
        PYSPARK_PYTHON=py,
        PYSPARK_DRIVER_PYTHON=py,
        MLFLOW_TRACKING_URI=s.mlflow_uri,
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONUNBUFFERED="1",
        C2M_DATA_ROOT=s.data_root,
    )
    if s.s3_mode:  # the stack's own S3 server: endpoint and credentials, through the environment only
        s3_client.apply_client_env(env, s)
    env["PATH"] = f"{s.jobs_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # The job imports crawl2model from the checkout it was launched from (its script's), installed or not.
    env["PYTHONPATH"] = str(s.repo_root)
    return env


# Driver JVM options of a local (``local[*]``) job, where the driver JVM is the executor too.
# C1-only JIT: C2's compiler threads take CPU from the Python workers that do these stages' heavy
# work, so on 2 cores clean, dedup and tokenize take 8-30% less time, start-up apart (bench/README.md
# gives the interleaved pairs, up to the bench corpus's 22,297 documents and 180 MB of text).
# Crawl and extract, and cluster executors, keep the JVM's default JIT: not measured. For much
# larger local runs (many cores, JVM-heavy joins) ``C2M_SPARK_DRIVER_JAVA_OPTIONS`` replaces them
# for every job (set it empty for the JVM's defaults).
C1_ONLY = "-XX:TieredStopAtLevel=1"
LOCAL_JAVA_OPTIONS = {"clean": C1_ONLY, "dedup": C1_ONLY, "tokenize": C1_ONLY}


def check_stage(job: str) -> None:
    from spark_jobs.jobs import STAGES

    if job not in STAGES:
        raise LaunchError(f"no Spark stage {job!r}; the stages are {', '.join(STAGES)}")


def entry_file(root: Path) -> Path:
    """The one file spark-submit runs for every stage (``python -m spark_jobs <stage>`` as a file):
    the stage's name is its first argument."""
    return root / "spark_jobs" / "__main__.py"


def spark_submit_command(job: str, args: list[str], settings: Settings | None = None) -> list[str]:
    s = settings or get_settings()
    check_stage(job)
    script = entry_file(s.repo_root)
    if not script.exists():
        raise LaunchError(f"the Spark stages' entry file is missing (looked for {script})")
    java = LOCAL_JAVA_OPTIONS.get(job) if s.spark_master.startswith("local") else None
    java = os.environ.get("C2M_SPARK_DRIVER_JAVA_OPTIONS", java)
    return [
        str(_require(s.jobs_venv / "bin" / "spark-submit", "spark-submit (jobs venv)")),
        "--master", s.spark_master,
        "--name", f"crawl2model-{job}",
        "--conf", "spark.ui.enabled=false",
        "--conf", f"spark.driver.host={s.host}",
        "--conf", f"spark.driver.bindAddress={s.host}",
        "--conf", "spark.sql.shuffle.partitions=8",
        "--driver-memory", os.environ.get("C2M_SPARK_DRIVER_MEMORY", "2g"),
        *(["--driver-java-options", java] if java else []),
        *_compat_jars(),
        str(script),
        job,
        *args,
    ]


def _compat_jars() -> list[str]:
    """``--jars`` with the cached hadoop-aws 3.3.1 test jars when ``C2M_SPARK_S3A_COMPAT`` asks for
    them (tests and local s3a only): on the command line, so the driver's Hadoop finds S3A too;
    a session's ``spark.jars`` reaches only the executors once the driver JVM runs."""
    if not os.environ.get("C2M_SPARK_S3A_COMPAT", "").strip():
        return []
    from ops.lake.s3a_test_jars import cached_jars

    jars = cached_jars()
    return ["--jars", ",".join(jars)] if jars else []


def horovodrun_command(module: str, args: list[str], np: int | None = None,
                       settings: Settings | None = None, secrets_file: bool = False) -> list[str]:
    """``horovodrun`` on ``np`` local ranks over Gloo; with ``secrets_file`` each rank starts through
    ``ops.lake.secret_env``, which loads the secrets from the 0600 file named by $C2M_RANK_ENV_FILE."""
    s = settings or get_settings()
    n = np if np is not None else s.train_np
    if n < 1:
        raise LaunchError(f"np={n}: need at least one training process")
    entry = ["-m", "ops.lake.secret_env", module] if secrets_file else ["-m", module]
    return [
        str(_require(s.jobs_venv / "bin" / "horovodrun",
                     "horovodrun (jobs venv; built by ops/install/build_horovod.sh)")),
        "-np", str(n), "-H", f"localhost:{n}", "--gloo",
        "--network-interfaces", "lo",
        str(s.jobs_python), *entry, *args,
    ]


def run(cmd: list[str], env: dict[str, str] | None = None, what: str = "job",
        tail_lines: int = TAIL_LINES, mask_env: dict[str, str] | None = None) -> None:
    """Run a command, streaming its output; raise LaunchError with the command on failure.

    The last ``tail_lines`` lines are kept in memory and put into the error: the job's own
    exception is usually among them, above the launcher's traceback. Secrets (URL passwords,
    secret-named values of ``env`` and ``mask_env``) are masked in everything printed.
    """
    hide = secret_env.masker({**(env or {}), **(mask_env or {})})
    print(f"[crawl2model] launching {what}: {hide(shlex.join(cmd))}", flush=True)
    tail: deque[str] = deque(maxlen=max(tail_lines, 0))
    try:
        # Relay line by line through Python's stdout rather than handing over a file
        # descriptor: Airflow's task logger and pytest's capture replace sys.stdout.
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1)
    except OSError as exc:
        raise LaunchError(f"could not start {what}: {exc}") from exc
    with proc:
        for line in proc.stdout:
            line = hide(line)
            sys.stdout.write(line)
            tail.append(line)
        sys.stdout.flush()
    if proc.returncode != 0:
        raise LaunchError(f"{what} failed with exit code {proc.returncode}. "
                          f"Command: {hide(shlex.join(cmd))}",
                          tail=list(tail), returncode=proc.returncode)


def spark_submit(job: str, args: list[str], settings: Settings | None = None) -> None:
    check_java()
    s = settings or get_settings()
    run(spark_submit_command(job, args, s), env=job_env(s), what=f"spark job {job}")


def horovodrun(module: str, args: list[str], np: int | None = None, settings: Settings | None = None,
               extra_env: dict[str, str] | None = None) -> None:
    """Train with ``np`` local ranks; ``extra_env`` reaches every rank (e.g. MLflow run tags)."""
    s = settings or get_settings()
    env = job_env(s)
    env.update(extra_env or {})
    env.setdefault("OMP_NUM_THREADS", "1")
    # Fail fast, not hang: horovodrun gives up on starting the ranks after this long (its
    # default 30 s is tight on a busy 2-core box); once they run, a rank that exits ends
    # the job at once, and training/distributed.py sets the collective timeouts.
    env.setdefault("HOROVOD_START_TIMEOUT", "120")
    # No MALLOC_* default here: training/distributed.py raises glibc's mmap *and* trim
    # thresholds in-process for every launcher, and an environment value would switch that off.
    # horovodrun --gloo writes every exported variable into each rank's `sh -c` command line:
    # secrets go to a 0600 file instead, which each rank loads at start (ops.lake.secret_env).
    env, secrets = secret_env.split_secrets(env)
    if not secrets:
        run(horovodrun_command(module, args, np, s), env=env, what=f"training {module}")
        return
    path = secret_env.write_env_file(secrets)
    try:
        run(horovodrun_command(module, args, np, s, secrets_file=True),
            env={**env, secret_env.ENV_FILE_VAR: str(path)}, what=f"training {module}",
            mask_env=secrets)
    finally:
        secret_env.remove_env_file(path)


# ---------------------------------------------------------------- the interface every launcher implements

class Launcher(Protocol):
    """What task code needs: run a Spark stage, run a training module on ``np`` ranks."""

    kind: str

    def spark(self, job: str, args: list[str]) -> None: ...

    def train(self, module: str, args: list[str], np: int | None = None, *, name: str = "",
              env: dict[str, str] | None = None) -> None: ...


class LocalLauncher:
    """spark-submit --master local[*] and horovodrun on this machine, through the jobs venv."""

    kind = "local"

    def __init__(self, settings: Settings | None = None):
        self.settings = settings

    def spark(self, job: str, args: list[str]) -> None:
        spark_submit(job, args, self.settings)

    def train(self, module: str, args: list[str], np: int | None = None, *, name: str = "",
              env: dict[str, str] | None = None) -> None:
        horovodrun(module, args, np, self.settings, extra_env=env)
