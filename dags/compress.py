"""Compress a fine-tuned model, triggered by hand: distillation, int8 quantisation or pruning.

The Params form picks the registered model (``models:/c2m-sentiment@champion`` by default),
the method and its settings (student size, temperature and soft-target weight for
distillation; target sparsity and structured/unstructured for pruning; recovery epochs).
``compress`` runs ``python -m training.compress`` on the configured launcher; the job logs
to the MLflow experiment ``compress`` (run ``compress.compress@<run id>``, tagged with this
DAG run's URL), registers the compressed model with its comparison table (accuracy, size,
parameters, latency) and returns the result JSON. On Kubernetes the task defers while the
MPIJob runs (``ops.dagkit.training_operator.TrainingOperator``). The DAG run's note links to
the MLflow run.

Job contract (``ops.dagkit.flags.compress_args``): ``--model --method --experiment --run-name
--result-file`` plus, as they apply, ``--register-name --max-examples --sparsity
--structured --student-layers --temperature --alpha --finetune-epochs``; rank 0 writes JSON
with ``run_id`` and ``model_version``.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag

from ops.dagkit.callbacks import OWNER_ML, task_defaults
from ops.dagkit.dag_params import compress_params
from ops.dagkit.training_operator import TrainingOperator
from ops.launch.settings import get_settings

PARAMS = {name: Param(**spec) for name, spec in compress_params(get_settings()).items()}
COMPRESS_MODULE = "training.compress"


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(OWNER_ML, retries=1, timeout=timedelta(hours=12)),
    params=PARAMS,
    tags=["crawl2model", "training", "compression"],
)
def compress():
    """Distil, quantise or prune ``model`` and register the result with its comparison table."""
    TrainingOperator(task_id="compress", plan=plan, doc_md="Run training.compress on the launcher and "
                     "return its result JSON with the MLflow link.")


def plan(ctx, job) -> dict:
    """training.compress's flags for this DAG run; locally, the module must be in this checkout."""
    from ops.dagkit.flags import compress_args
    from ops.dagkit.training_task import require_module

    params = dict(ctx["params"])
    if job.launcher.kind == "local":
        require_module(job.s, COMPRESS_MODULE, "Run the DAG from a full crawl2model checkout.")
    return {"module": COMPRESS_MODULE, "args": compress_args(params, job.run_name, job.result_file),
            "np": params["np"], "extra": {"model": params["model"], "method": params["method"]},
            "note": f"compress ({params['method']})"}


compress()
