"""Where the checkout and the data root are, for code that runs inside a job.

Jobs read the data root from ``$C2M_DATA_ROOT``, which every launcher sets from the platform
settings (:func:`ops.launch.local.job_env`); a job started by hand without it uses the
checkout's ``data/`` folder, the local stack's default. The settings of the stack itself
(ports, venvs, S3 mode) stay in :mod:`ops.launch.settings`, above the jobs.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT_ENV = "C2M_DATA_ROOT"


def data_root() -> str:
    """``$C2M_DATA_ROOT`` (a local path or ``s3://bucket/prefix``), else ``<checkout>/data``."""
    return os.environ.get(DATA_ROOT_ENV) or str(REPO_ROOT / "data")
