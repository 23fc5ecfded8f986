"""Fine-tune the champion base model on a labelled task, with Horovod.

Triggered by hand with the Params form. The job loads ``base_model`` (by default the registry
alias ``models:/c2m-base@champion``), trains a task head, logs to MLflow and registers
``c2m-<task>``; the task returns the job's result JSON (accuracy, F1, model version).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag, get_current_context, task

from ops.settings import get_settings

PARAMS = {
    "base_model": Param("models:/c2m-base@champion", type="string", pattern="^(models|runs):/.+",
                        description="MLflow model URI of the pretrained base."),
    "task": Param("sentiment", type="string", enum=["sentiment"],
                  description="Labelled task to fine-tune on."),
    "epochs": Param(3, type="integer", minimum=1, maximum=1000),
    "np": Param(get_settings().train_np, type="integer", minimum=1, maximum=256,
                description="Number of Horovod processes."),
    "extra_args": Param([], type="array", items={"type": "string"},
                        description="More flags passed verbatim to training.finetune."),
}


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1),
                  "execution_timeout": timedelta(hours=24)},
    params=PARAMS,
    tags=["crawl2model", "training"],
)
def finetune():
    """Fine-tune ``base_model`` on ``task`` and register ``c2m-<task>``."""

    @task
    def train() -> dict:
        """Run horovodrun training.finetune and return its result JSON."""
        from ops.dag_support import finetune_args, read_result, result_path
        from ops.launchers import horovodrun

        ctx = get_current_context()
        s = get_settings()
        params = dict(ctx["params"])
        result_file = result_path(s, ctx["dag"].dag_id, ctx["run_id"], "train")
        result_file.parent.mkdir(parents=True, exist_ok=True)
        result_file.unlink(missing_ok=True)
        horovodrun("training.finetune", finetune_args(params, result_file), params["np"])
        return {**read_result(result_file), "base_model": params["base_model"]}

    train()


finetune()
