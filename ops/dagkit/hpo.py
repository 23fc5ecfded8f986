"""Where an HPO study's Optuna storage lives. Its URL may hold a database password, so it reaches
the job through the environment only (never XCom, argv or logs)."""
from __future__ import annotations

import os
from pathlib import Path

from ops.dagkit.versions import safe_name
from ops.launch.settings import Settings

OPTUNA_STORAGE_ENV = "C2M_OPTUNA_STORAGE"


def optuna_storage(s: Settings, study: str) -> str:
    """The study's shared storage: $C2M_OPTUNA_STORAGE (Postgres on a cluster), else SQLite here."""
    return os.environ.get(OPTUNA_STORAGE_ENV) or f"sqlite:///{s.stack_dir / 'optuna' / safe_name(study)}.db"


def optuna_env(s: Settings, study: str) -> dict[str, str]:
    """The job's environment entry naming the study's storage (its URL may hold a DB password, so it
    travels by environment only: never XCom, argv, logs); a local SQLite file's folder is created."""
    url = optuna_storage(s, study)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return {OPTUNA_STORAGE_ENV: url}
