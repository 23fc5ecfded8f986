"""Where the local stack lives and what it is made of: its component names, the files each
leaves in ``{stack_dir}`` (PIDs, logs, the recorded mode), the folder's privacy, and the refusal
to serve it beyond this machine without Airflow's login.

Airflow's UI has no login on this stack (``SIMPLE_AUTH_MANAGER_ALL_ADMINS``): it listens
on loopback only and is a developer's sandbox. ``C2M_AIRFLOW_LOGIN=1`` keeps the login; a
non-loopback ``C2M_HOST`` is refused unless it is on (:func:`check_exposure`).
"""
from __future__ import annotations

import os
from pathlib import Path

from ops.launch.settings import Settings

AIRFLOW_COMPONENTS = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
COMPONENTS = (*AIRFLOW_COMPONENTS, "mlflow", "site", "reviews")  # reviews: the second demo site
S3 = "s3"
ALL_COMPONENTS = (S3, *COMPONENTS)  # every name down() looks for
STOP_GRACE_S = 20.0


class StackError(RuntimeError):
    """The local stack could not be started or is unhealthy; the message says what to do."""


def airflow_home(s: Settings) -> Path:
    return s.stack_dir / "airflow"


def dags_folder(s: Settings) -> Path:
    return Path(os.environ.get("C2M_DAGS_FOLDER") or s.repo_root / "dags")


def pid_file(s: Settings, name: str) -> Path:
    return s.stack_dir / "pids" / f"{name}.pid"


def log_file(s: Settings, name: str) -> Path:
    return s.stack_dir / "logs" / f"{name}.log"


def mode_file(s: Settings) -> Path:
    return s.stack_dir / "mode.json"


def leftovers_file(s: Settings) -> Path:
    return s.stack_dir / "pids" / "leftovers"


def spark_dir(s: Settings) -> Path:
    """Logs, worker folders and the PIDs (``cluster.json``) of ``up --spark-workers``'s cluster."""
    return s.stack_dir / "spark"


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
