"""How stages are launched: spark-submit for data jobs, horovodrun for training.

The local launcher (the default) runs both through the jobs venv on this machine. Task
code in the DAGs and the CLI call the same two functions, so a stage behaves the same
from either. Output streams through to the caller's stdout (Airflow task logs, the
terminal), and a non-zero exit raises :class:`LaunchError` with the command to rerun.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ops.settings import Settings, get_settings


class LaunchError(RuntimeError):
    """A launched job failed or could not start."""


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
    """Environment for jobs: loopback Spark, the jobs venv's python, MLflow URI, no telemetry."""
    s = settings or get_settings()
    py = str(s.jobs_python)
    env = dict(os.environ)
    env.update(
        SPARK_LOCAL_IP=s.host,
        PYSPARK_PYTHON=py,
        PYSPARK_DRIVER_PYTHON=py,
        MLFLOW_TRACKING_URI=s.mlflow_uri,
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONUNBUFFERED="1",
        C2M_DATA_ROOT=s.data_root,
    )
    env["PATH"] = f"{s.jobs_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # The airflow venv's own packages must not leak into the jobs venv's interpreter.
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def spark_submit_command(job: str, args: list[str], settings: Settings | None = None) -> list[str]:
    s = settings or get_settings()
    script = s.repo_root / "spark_jobs" / "jobs" / f"{job}.py"
    if not script.exists():
        raise LaunchError(f"no Spark job {job!r} (looked for {script})")
    return [
        str(_require(s.jobs_venv / "bin" / "spark-submit", "spark-submit (jobs venv)")),
        "--master", s.spark_master,
        "--name", f"crawl2model-{job}",
        "--conf", "spark.ui.enabled=false",
        "--conf", f"spark.driver.host={s.host}",
        "--conf", f"spark.driver.bindAddress={s.host}",
        "--conf", "spark.sql.shuffle.partitions=8",
        "--driver-memory", os.environ.get("C2M_SPARK_DRIVER_MEMORY", "2g"),
        str(script),
        *args,
    ]


def horovodrun_command(module: str, args: list[str], np: int | None = None,
                       settings: Settings | None = None) -> list[str]:
    s = settings or get_settings()
    n = np if np is not None else s.train_np
    if n < 1:
        raise LaunchError(f"np={n}: need at least one training process")
    return [
        str(_require(s.jobs_venv / "bin" / "horovodrun", "horovodrun (jobs venv; built by ops/install/build_horovod.sh)")),
        "-np", str(n), "-H", f"localhost:{n}", "--gloo",
        "--network-interfaces", "lo",
        str(s.jobs_python), "-m", module, *args,
    ]


def run(cmd: list[str], env: dict[str, str] | None = None, what: str = "job") -> None:
    """Run a command, streaming its output; raise LaunchError with the command on failure."""
    print(f"[crawl2model] launching {what}: {shlex.join(cmd)}", flush=True)
    try:
        # Relay line by line through Python's stdout rather than handing over a file
        # descriptor: Airflow's task logger and pytest's capture replace sys.stdout.
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1)
    except OSError as exc:
        raise LaunchError(f"could not start {what}: {exc}") from exc
    with proc:
        for line in proc.stdout:
            sys.stdout.write(line)
        sys.stdout.flush()
    if proc.returncode != 0:
        raise LaunchError(f"{what} failed with exit code {proc.returncode}. Command: {shlex.join(cmd)}")


def spark_submit(job: str, args: list[str], settings: Settings | None = None) -> None:
    check_java()
    s = settings or get_settings()
    run(spark_submit_command(job, args, s), env=job_env(s), what=f"spark job {job}")


def horovodrun(module: str, args: list[str], np: int | None = None, settings: Settings | None = None) -> None:
    s = settings or get_settings()
    env = job_env(s)
    env.setdefault("OMP_NUM_THREADS", "1")
    # glibc otherwise mmaps/munmaps the large logits buffers every step: measured 135 -> 85 ms
    # per step for a T=128, vocab-4096 model on 2 cores.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "2147483647")
    run(horovodrun_command(module, args, np, s), env=env, what=f"training {module}")
