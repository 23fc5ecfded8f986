"""The training tasks of the pretrain, finetune, hpo and compress DAGs: run on the launcher chosen
at run time and, on Kubernetes, defer to the MPIJob trigger while the job trains (no worker slot
held)."""
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

    ``plan(context, job, **inputs)`` (the DAG's; ``job`` an ``ops.dagkit.training_task.TrainingTask``;
    ``inputs`` templated, so it may hold upstream results and be mapped over) returns
    ``{"module", "args", "np"}`` (what to run) and optionally ``"env"`` (more job environment,
    which may hold secrets: it is never part of the deferral), ``"extra"`` (added to the result),
    ``"note"`` (label of the DAG run's note linking the MLflow run; none without it) and
    ``"keep"`` (the result keys the task returns; all without it). Local launcher: run and wait
    within the task. Kubernetes: create the MPIJob, defer to :class:`MPIJobTrigger` (no worker
    slot held while it trains), resume in :meth:`execute_complete`. Either way the task returns
    the job's result JSON with ``mlflow_run_url`` and ``extra``. The result file is named after
    the task and its map index, so the resumed task reads its own job's result.
    """

    template_fields = ("inputs",)

    def __init__(self, *, plan: Callable[..., dict[str, Any]], inputs: dict[str, Any] | None = None,
                 wait_timeout: timedelta = timedelta(hours=24), **kwargs):
        super().__init__(**kwargs)
        self.plan, self.inputs, self.wait_timeout = plan, inputs, wait_timeout

    def execute(self, context) -> dict[str, Any]:
        job = self._job(context)
        plan = dict(self.plan(context, job, **(self.inputs or {})))
        job.env.update(plan.pop("env", None) or {})
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
        if plan.get("note"):
            job.note(mlflow_note(plan["note"], result))
        if plan.get("keep"):
            result = {k: result.get(k) for k in plan["keep"]}
        return result
