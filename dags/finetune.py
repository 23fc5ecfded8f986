"""Fine-tune the champion base model on a labelled task, with Horovod.

Triggered by hand with the Params form. The job loads ``base_model`` (by default the
registry alias ``models:/c2m-base@champion``), trains a task head, logs to the MLflow
experiment ``finetune`` (run ``finetune.train@<run id>``, tagged with this DAG run's URL),
registers ``c2m-<task>`` and lets the promotion gate move ``champion``. On Kubernetes the
task defers while the MPIJob trains (``ops.dagkit.training_operator.TrainingOperator``). The task returns
the job's result JSON (accuracy, F1 or, for ``generation``, BLEU; model version) plus
``mlflow_run_url``, and the DAG run's note links to the MLflow run. ``generation``
(prompt -> completion) registers ``c2m-generation`` and gates on test BLEU.

Params that leave a value empty use the job's own default. Cross-field rules (a data folder
for ``classification``/``tagging``, a subset that belongs to the task) are checked before
anything is launched.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag

from ops.dagkit.callbacks import OWNER_ML, task_defaults
from ops.dagkit.dag_params import finetune_params
from ops.dagkit.training_operator import TrainingOperator
from ops.launch.settings import get_settings

PARAMS = {name: Param(**spec) for name, spec in finetune_params(get_settings()).items()}


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(OWNER_ML, retries=1, timeout=timedelta(hours=24)),
    params=PARAMS,
    tags=["crawl2model", "training"],
)
def finetune():
    """Fine-tune ``base_model`` on ``task`` and register ``c2m-<task>``."""
    TrainingOperator(task_id="train", plan=plan, doc_md="Run training.finetune on the launcher and "
                     "return its result JSON with the MLflow link.")


def plan(ctx, job) -> dict:
    """training.finetune's flags for this DAG run, checked before anything is launched."""
    from ops.dagkit.flags import finetune_args
    from ops.dagkit.run_params import check_training_params

    params = dict(ctx["params"])
    check_training_params(params)
    more = ["--run-name", job.run_name]
    args = finetune_args(params, job.result_file, more)
    return {"module": "training.finetune", "args": args, "np": params["np"],
            "extra": {"base_model": params["base_model"]}, "note": f"finetune {params['task']}"}


finetune()
