"""The pretrain and finetune DAGs' training task: run on the launcher chosen at run time and,
on Kubernetes, defer to the MPIJob trigger while the job trains (no worker slot held)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

from airflow.sdk import BaseOperator

from ops.dagkit.tracking import mlflow_note
from ops.dagkit.training_task import TrainingTask
from ops.launch.mpijob_wait import MPIJobTrigger, raise_for_event
from ops.launch.settings import get_settings


class TrainingOperator(BaseOperator):
    """A training task on the launcher chosen at run time (``ops.dagkit.launcher_choice.task_launcher``).

    ``plan(context, job)`` (the DAG's; ``job`` an ``ops.dagkit.training_task.TrainingTask``) returns
    ``{"module", "args", "np", "extra", "note"}``: what to run, what to add to the result, and
    the label of the DAG run's note. Local launcher: run and wait within the task. Kubernetes:
    create the MPIJob, defer to :class:`MPIJobTrigger` (no worker slot held while it trains),
    resume in :meth:`execute_complete`. Either way the task returns the job's result JSON with
    ``mlflow_run_url`` and ``extra``, and notes the MLflow run on the DAG run.
    """

    def __init__(self, *, plan: Callable[[Any, Any], dict[str, Any]],
                 wait_timeout: timedelta = timedelta(hours=24), **kwargs):
        super().__init__(**kwargs)
        self.plan, self.wait_timeout = plan, wait_timeout

    def execute(self, context) -> dict[str, Any]:
        job = self._job(context)
        plan = self.plan(context, job)
        if job.launcher.kind != "kubernetes":
            return self._finish(job, plan, job.run(plan["module"], plan["args"], plan["np"]))
        name = job.submit(plan["module"], plan["args"], plan["np"])
        cfg = job.launcher.cfg
        self.defer(trigger=MPIJobTrigger(name, cfg.namespace, cfg.poll_seconds),
                   method_name="execute_complete", kwargs={"plan": plan}, timeout=self.wait_timeout)

    def execute_complete(self, context, event: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
        job = self._job(context)
        raise_for_event(event, job.launcher, plan["module"])
        return self._finish(job, plan, job.collect())

    @staticmethod
    def _job(context) -> TrainingTask:
        return TrainingTask(context, get_settings())

    @staticmethod
    def _finish(job, plan: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        result = {**result, **plan.get("extra", {})}
        job.note(mlflow_note(plan["note"], result))
        return result
