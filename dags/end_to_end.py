"""A first run of the whole platform: data_refresh → pretrain → finetune, one after the other.

Why trigger the DAGs rather than copy their tasks: each stage runs as a normal run of its
own DAG, so it shows up where users look for it (its DAG's grid, its MLflow experiment),
its conf is checked against that DAG's Params, and there is one copy of the task code.

``plan`` fixes the dataset version (this run's id) and builds the three confs. Each
``TriggerDagRunOperator`` then starts its DAG with a run id derived from this run's and
waits, deferred to the triggerer, until that run succeeds (or fails this task). The refresh
runs with ``publish=false``, so the ``corpus`` Asset does not also start a pretrain run;
pretrain is given that version's shards explicitly, and finetune uses the new
``c2m-base@champion``.

data_refresh, pretrain and finetune must be unpaused (the trigger fails fast with "Dag …
is paused" otherwise). Clearing a trigger task re-runs its DAG run (``reset_dag_run``);
every stage is idempotent, and pretraining resumes from its checkpoint.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, get_current_context, task, task_group

from ops.dagkit.callbacks import OWNER_ML, task_defaults, trigger_poke_interval
from ops.dagkit.dag_params import end_to_end_params
from ops.launch.settings import get_settings

PARAMS = {name: Param(**spec) for name, spec in end_to_end_params(get_settings()).items()}
STAGES = ("data_refresh", "pretrain", "finetune")


@dag(
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    # The triggered DAGs retry their own tasks; a trigger task itself does not retry.
    default_args=task_defaults(OWNER_ML, retries=0, timeout=timedelta(hours=48)),
    params=PARAMS,
    tags=["crawl2model", "data", "training"],
)
def end_to_end():
    """Chain data_refresh → pretrain → finetune for a first run, each as a run of its own DAG."""

    @task(multiple_outputs=True)
    def plan() -> dict:
        """Fix the dataset version and the conf of each triggered DAG run."""
        from ops.dagkit.run_params import end_to_end_confs
        from ops.dagkit.versions import derive_version

        ctx = get_current_context()
        version = derive_version(None, ctx["run_id"])
        return end_to_end_confs(dict(ctx["params"]), version, get_settings().data_root)

    @task_group
    def stages(confs):
        """Each stage's DAG run, started and waited for in turn."""
        previous = None
        for dag_id in STAGES:
            trigger = TriggerDagRunOperator(
                task_id=dag_id,
                doc_md=f"Trigger `{dag_id}` with the planned conf and wait for it to succeed.",
                trigger_dag_id=dag_id,
                trigger_run_id="{{ run_id }}__" + dag_id,
                conf=confs[dag_id],
                note="Started by the end_to_end DAG.",
                wait_for_completion=True,
                deferrable=True,
                poke_interval=trigger_poke_interval(),
                reset_dag_run=True,
                fail_when_dag_is_paused=True,
            )
            if previous is not None:
                previous >> trigger
            previous = trigger

    stages(plan())


end_to_end()
