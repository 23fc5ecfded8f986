"""Hyperparameter search for a fine-tuning task with Optuna, trials fanned out as mapped tasks.

The Params form declares the study: base model and task (as in ``finetune``), the number
of trials and how many tasks run them at once, epochs per trial, sampler (TPE or random),
pruner, and the learning-rate range. Every process runs ``python -m training.hpo`` on the
configured launcher, one rank each, against one shared Optuna storage (SQLite under the
stack dir locally, ``$C2M_OPTUNA_STORAGE`` such as Postgres on a cluster). Each task resolves
the storage URL itself and hands it to the job in its environment, so the URL (and its
password) is never in XCom, the job's command line or a log line:

- ``plan`` checks the Params and fixes the study name (``<task>-<run id>`` unless given) and
  how the trials are split over ``parallel_trials`` slots;
- ``search.setup`` creates the study and the parent run in the MLflow experiment ``hpo``
  (named ``hpo@<run id>`` and tagged with this DAG run's URL), with no trials;
- ``search.slots`` gives each mapped trial task its share of the trials under the parent run;
- ``search.trial`` is mapped over the slots (dynamic task mapping): each adds its share of
  trials to the study, each trial a nested MLflow run under the parent, and returns its
  counts from its own result file (named after its map index);
- ``search.finalize`` logs the best trial's params and model on the parent, registers it
  and lets the promotion gate decide; its result (best value and params, model version)
  is the DAG's output, and the DAG run's note links to the parent run.

setup, trial and finalize are ``ops.dagkit.training_operator.TrainingOperator`` tasks with the
plan ``ops.dagkit.hpo.hpo_plan``: on Kubernetes each creates its MPIJob (one per map index) and
defers while it runs, so the trials hold no worker slot; the storage URL is not part of the
deferral. Locally each runs its job within the task.

A retried trial task adds its trials again (the study just grows); the sampler's seed is the
job's ``--seed``, so with several slots their first random trials coincide until
training/hpo.py offsets it per process.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag, get_current_context, task, task_group

from ops.dagkit.callbacks import OWNER_ML, task_defaults
from ops.dagkit.dag_params import hpo_params
from ops.dagkit.hpo import HPO_MODULE, hpo_plan
from ops.dagkit.training_operator import TrainingOperator
from ops.launch.settings import get_settings

PARAMS = {name: Param(**spec) for name, spec in hpo_params(get_settings()).items()}

@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(OWNER_ML, retries=1, timeout=timedelta(hours=48)),
    params=PARAMS,
    tags=["crawl2model", "training", "hpo"],
)
def hpo():
    """Search fine-tuning hyperparameters with Optuna; trials fan out over mapped tasks."""

    @task
    def plan() -> dict:
        """Check the Params; fix the study's name and the trials per slot."""
        from ops.dagkit.fanout import split_trials
        from ops.dagkit.launcher_choice import task_launcher
        from ops.dagkit.run_params import check_training_params
        from ops.dagkit.training_task import require_module
        from ops.dagkit.versions import safe_name

        ctx = get_current_context()
        s = get_settings()
        params = dict(ctx["params"])
        check_training_params(params)
        if task_launcher(s).kind == "local":
            require_module(s, HPO_MODULE, "Run the DAG from a full crawl2model checkout.")
        study = params.get("study_name") or safe_name(f"{params['task']}-{ctx['run_id']}")[:100]
        return {"study": study, "run_name": f"hpo@{ctx['run_id']}",
                "slots": split_trials(params["n_trials"], params["parallel_trials"])}

    @task_group
    def search(p: dict):
        """Set the study up, run its trials in parallel, then register the best."""
        setup = TrainingOperator(task_id="setup", plan=hpo_plan, inputs={"study": p},
                                 doc_md="Create the study and the MLflow parent run (no trials yet).")

        @task
        def slots(plan: dict, parent: dict) -> list[dict]:
            """Each mapped trial task's inputs: its share of the trials under the parent run."""
            share = {"study": plan, "parent": {"run_id": parent["run_id"]}}
            return [{**share, "trials": n} for n in plan["slots"]]

        trial = TrainingOperator.partial(
            task_id="trial", plan=hpo_plan,
            doc_md="Run this slot's trials on the shared study, nested under the parent run.",
        ).expand(inputs=slots(p, setup.output))
        finalize = TrainingOperator(
            task_id="finalize", plan=hpo_plan, inputs={"study": p, "parent": setup.output, "finalize": True},
            doc_md="Log and register the best trial on the parent run; link it from the DAG run.")
        trial >> finalize

    search(plan())


hpo()
