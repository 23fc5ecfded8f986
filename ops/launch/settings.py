"""One typed view of the platform's local settings, read from the environment.

Every component (CLI, DAGs, launchers, service start-up) asks this module where the
repo, the data root, the venvs and the local servers live, so that a value changes in
one place. Values come from ``C2M_*`` environment variables; defaults are the embedded
local stack of the README.

S3 mode (``C2M_S3=1``, or ``crawl2model up --s3``) runs a local S3 server for the stack and
moves the default data root to ``s3://$C2M_S3_BUCKET/data``; an explicit ``C2M_DATA_ROOT``
always wins (e.g. a real bucket).
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ops.lake import roots
from ops.lake.roots import REPO_ROOT



def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _port(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a port number; set it to an integer 1024-65535") from None
    if not 1024 <= port <= 65535:
        raise ValueError(f"{name}={port} is out of range; choose a port between 1024 and 65535")
    return port


def _flag(name: str) -> bool:
    return _env(name, "0").strip().lower() not in ("0", "false", "no", "off", "")


def _bucket() -> str:
    bucket = _env("C2M_S3_BUCKET", "c2m-lake")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ValueError(f"C2M_S3_BUCKET={bucket!r} is not a valid S3 bucket name "
                         "(3-63 characters: lower-case letters, digits, '.' and '-')")
    return bucket


def _s3_port() -> int:
    port = _port("C2M_S3_PORT", 28333)
    # The local S3 server also needs the ports after it and one 10000 above (ops/stack/s3_server.py).
    if port > 55500:
        raise ValueError(f"C2M_S3_PORT={port} is too high: the S3 server uses ports up to "
                         f"{port} + 10004; choose a port between 1024 and 55500")
    return port


def _data_root() -> str:
    """$C2M_DATA_ROOT, else the stack's bucket in S3 mode, else ./data."""
    if _flag("C2M_S3"):
        return _env(roots.DATA_ROOT_ENV, f"s3://{_bucket()}/data")
    return roots.data_root()


@dataclass(frozen=True)
class Settings:
    """Where things live and which ports the local stack uses."""

    repo_root: Path = REPO_ROOT
    data_root: str = field(default_factory=_data_root)
    stack_dir: Path = field(default_factory=lambda: Path(_env("C2M_STACK_DIR", str(REPO_ROOT / ".stack"))))
    jobs_venv: Path = field(default_factory=lambda: Path(_env("C2M_JOBS_VENV", str(REPO_ROOT / ".venv-jobs"))))
    airflow_venv: Path = field(
        default_factory=lambda: Path(_env("C2M_AIRFLOW_VENV", str(REPO_ROOT / ".venv-airflow")))
    )
    host: str = field(default_factory=lambda: _env("C2M_HOST", "127.0.0.1"))
    # Keep Airflow's login on the local stack (off: every visitor is admin, loopback only).
    airflow_login: bool = field(default_factory=lambda: _flag("C2M_AIRFLOW_LOGIN"))
    airflow_port: int = field(default_factory=lambda: _port("C2M_AIRFLOW_PORT", 28080))
    mlflow_port: int = field(default_factory=lambda: _port("C2M_MLFLOW_PORT", 25000))
    site_port: int = field(default_factory=lambda: _port("C2M_SITE_PORT", 28000))
    reviews_port: int = field(default_factory=lambda: _port("C2M_REVIEWS_PORT", 28001))  # the second demo site
    spark_master: str = field(default_factory=lambda: _env("C2M_SPARK_MASTER", "local[*]"))
    train_np: int = field(default_factory=lambda: int(_env("C2M_TRAIN_NP", "2")))
    # Seconds between two parses of an unchanged DAG file: an edited DAG shows up this fast, and
    # each parse costs a process. The test stacks, whose DAG files never change, parse rarely.
    dag_reparse_s: int = field(default_factory=lambda: int(_env("C2M_DAG_REPARSE_S", "10")))
    # S3 mode: a local S3 server (SeaweedFS) on s3_port and the ports derived from it.
    s3_mode: bool = field(default_factory=lambda: _flag("C2M_S3"))
    s3_port: int = field(default_factory=_s3_port)
    s3_bucket: str = field(default_factory=_bucket)

    @property
    def mlflow_uri(self) -> str:
        return _env("MLFLOW_TRACKING_URI", f"http://{self.host}:{self.mlflow_port}")

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def site_url(self) -> str:
        return f"http://{self.host}:{self.site_port}"

    @property
    def reviews_url(self) -> str:
        return f"http://{self.host}:{self.reviews_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def host_is_loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def jobs_python(self) -> Path:
        return self.jobs_venv / "bin" / "python"


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1); any other name or address is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def get_settings() -> Settings:
    """Read the settings afresh (the environment may have changed since import)."""
    return Settings()
