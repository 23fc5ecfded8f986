"""An HPO study's processes: where its Optuna storage lives (its URL may hold a database password,
so it reaches the job through the environment only: never XCom, argv or logs) and the plan of
each ``training.hpo`` process the hpo DAG runs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


HPO_MODULE = "training.hpo"
TRIAL_KEYS = ("trials", "complete", "pruned", "failed", "best_value")  # what a trial task returns


def hpo_plan(ctx: dict[str, Any], job, study: dict[str, Any], trials: int = 0,
             parent: dict[str, Any] | None = None, finalize: bool = False) -> dict[str, Any]:
    """One ``training.hpo`` process of the study (a ``TrainingOperator`` plan; one rank: trials
    are independent). ``study`` is the DAG's plan (study and run name); no ``parent`` sets the
    study and the MLflow parent run up; ``trials`` adds that many trials under ``parent``;
    ``finalize`` registers the best trial and notes the parent run on the DAG run.

    The storage URL (a DB password on a cluster) goes to the job by environment only: never
    into XCom, the job's argv, a log line or the task's deferral."""
    from ops.dagkit.flags import hpo_args

    params = dict(ctx["params"])
    parent_run_id = parent["run_id"] if parent else None
    args = hpo_args(params, study["study"], study["run_name"], job.result_file, trials, parent_run_id,
                    finalize)
    plan = {"module": HPO_MODULE, "args": args, "np": 1, "env": optuna_env(job.s, study["study"])}
    if finalize:
        plan["note"] = f"hpo {params['task']}"
    elif parent:
        plan["keep"] = TRIAL_KEYS
    return plan
