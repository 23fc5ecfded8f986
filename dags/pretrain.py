"""Pretrain a base language model on the newest token shards, with Horovod.

Scheduled on the ``corpus`` Asset, so each published data refresh trains a model on its
shards (the URI comes from the triggering event's extra). It can also be triggered by hand
with the Params form; without ``shards_uri`` it uses the newest complete shards version.

The job runs through the configured launcher (local ``horovodrun`` by default, an MPIJob on
Kubernetes with ``C2M_LAUNCHER=kubernetes`` or the Variable ``c2m_launcher``), the same
entry point as ``crawl2model pretrain``. On Kubernetes the task defers while the MPIJob
trains (the triggerer watches it; ``ops.dagkit.training_operator.TrainingOperator``). It logs to the
MLflow experiment ``pretrain`` in a run named ``pretrain.train@<run id>`` and tagged with
this DAG run's URL, and registers ``c2m-base`` (alias ``champion``). The checkpoint folder
is per DAG run, so a retry resumes from the last checkpoint and continues the same MLflow
run. The task returns the job's result JSON plus ``mlflow_run_url``, and the DAG run's note
links to the MLflow run.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag

from ops.dagkit.assets import CORPUS
from ops.dagkit.callbacks import OWNER_ML, task_defaults
from ops.dagkit.dag_params import pretrain_params
from ops.dagkit.training_operator import TrainingOperator
from ops.launch.settings import get_settings

PARAMS = {name: Param(**spec) for name, spec in pretrain_params(get_settings()).items()}


@dag(
    schedule=[CORPUS],
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(OWNER_ML, retries=1, timeout=timedelta(hours=24)),
    params=PARAMS,
    tags=["crawl2model", "training"],
)
def pretrain():
    """Train ``c2m-base`` on token shards whenever the ``corpus`` Asset updates (or by hand)."""
    TrainingOperator(task_id="train", plan=plan, doc_md="Resolve the shards, run training.pretrain "
                     "on the launcher, link the MLflow run.")


def plan(ctx, job) -> dict:
    """training.pretrain's flags for this DAG run: the shards (the corpus event's or the Params'),
    a checkpoint folder per DAG run (a retry resumes from it) and the MLflow run name."""
    from ops.dagkit.flags import pretrain_args
    from ops.dagkit.run_params import resolve_pretrain
    from ops.dagkit.versions import safe_name

    run_type = getattr(ctx["dag_run"].run_type, "value", ctx["dag_run"].run_type)
    extra = None
    if run_type == "asset_triggered":
        events = ctx["triggering_asset_events"][CORPUS]
        extra = dict(events[-1].extra or {}) if events else {}
    params, shards = resolve_pretrain(dict(ctx["params"]), run_type, extra, job.s.data_root)
    more = ["--run-name", job.run_name]
    checkpoints = safe_name(ctx["run_id"])
    args = pretrain_args(params, shards, job.s.data_root, checkpoints, job.result_file, more)
    return {"module": "training.pretrain", "args": args, "np": params["np"], "extra": {"shards_uri": shards},
            "note": "pretrain"}


pretrain()
