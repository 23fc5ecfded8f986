"""What each component of the local stack runs: its command line, its environment (the
settings as C2M_* variables, Airflow's configuration, the S3 server's endpoint and keys in S3
mode) and the port and health URL it answers on. Everything binds to ``C2M_HOST`` (127.0.0.1).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ops.launch import s3_client
from ops.launch.settings import Settings
from ops.stack import s3_server
from ops.stack.layout import S3, airflow_home, dags_folder

MLFLOW_ARTIFACTS_PREFIX = "mlflow-artifacts"  # under the bucket, in S3 mode


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
    reviews_argv = [site_argv[0], "-m", "ops.stack.reviews_site", "--host", s.host, "--port", str(s.reviews_port)]
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
        "reviews": Component("reviews", reviews_argv, jenv, s.reviews_port, "C2M_REVIEWS_PORT",
                             f"{s.reviews_url}/robots.txt"),
    }
    comps[S3] = Component(S3, s3_server.command(s), s3_server.server_env(s) if s.s3_mode else {}, s.s3_port,
                          "C2M_S3_PORT", cwd=s3_server.data_dir(s))
    return comps
