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
- ``search.trial`` is mapped over the slots (dynamic task mapping): each adds its share of
  trials to the study, each trial a nested MLflow run under the parent;
- ``search.finalize`` logs the best trial's params and model on the parent, registers it
  and lets the promotion gate decide; its result (best value and params, model version)
  is the DAG's output, and the DAG run's note links to the parent run.

A retried trial task adds its trials again (the study just grows); the sampler's seed is the
job's ``--seed``, so with several slots their first random trials coincide until
training/hpo.py offsets it per process.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag, get_current_context, task, task_group

from ops.dagkit.callbacks import OWNER_ML, task_defaults
from ops.dagkit.dag_params import hpo_params
from ops.launch.settings import get_settings

PARAMS = {name: Param(**spec) for name, spec in hpo_params(get_settings()).items()}
HPO_MODULE = "training.hpo"


def _hpo(plan: dict, trials: int, parent_run_id: str | None = None, finalize: bool = False) -> dict:
    """Run one training.hpo process on the launcher (one rank: trials are independent)."""
    from ops.dagkit.flags import hpo_args
    from ops.dagkit.hpo import optuna_env
    from ops.dagkit.tracking import mlflow_note
    from ops.dagkit.training_task import TrainingTask

    ctx = get_current_context()
    params = dict(ctx["params"])
    s = get_settings()
    job = TrainingTask(ctx, s)
    # The storage URL (a DB password on a cluster) is resolved here and reaches the job through
    # its environment only: never through XCom, the job's argv or a log line.
    job.env.update(optuna_env(s, plan["study"]))
    args = hpo_args(params, plan["study"], plan["run_name"], job.result_file, trials,
                    parent_run_id, finalize)
    result = job.run(HPO_MODULE, args, 1)
    if finalize:
        job.note(mlflow_note(f"hpo {params['task']}", result))
    return result


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

        @task
        def setup(plan: dict) -> dict:
            """Create the study and the MLflow parent run (no trials yet)."""
            return _hpo(plan, trials=0)

        @task
        def slots(plan: dict) -> list[int]:
            """Trials per mapped task."""
            return plan["slots"]

        trial_doc = "Run this slot's trials on the shared study, nested under the parent run."

        @task(doc_md=trial_doc)  # mapped tasks do not pick up the docstring by themselves
        def trial(plan: dict, parent: dict, trials: int) -> dict:
            out = _hpo(plan, trials, parent["run_id"])
            return {k: out.get(k) for k in ("trials", "complete", "pruned", "failed", "best_value")}

        @task
        def finalize(plan: dict, parent: dict, done: list) -> dict:
            """Log and register the best trial on the parent run; link it from the DAG run."""
            return _hpo(plan, 0, parent["run_id"], finalize=True)

        parent = setup(p)
        done = trial.partial(plan=p, parent=parent).expand(trials=slots(p))
        finalize(p, parent, done)

    search(plan())


hpo()
