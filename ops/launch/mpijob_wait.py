"""Waiting on a training MPIJob without holding an Airflow worker slot.

:class:`MPIJobOperator` creates the MPIJob (:meth:`ops.launch.kubernetes.launcher.KubernetesLauncher.submit`)
and defers to :class:`MPIJobTrigger`, which polls the job's status on the triggerer (async:
the Kubernetes client's blocking call runs in a thread) and fires once the job succeeded,
failed or disappeared. The task then resumes in :meth:`MPIJobOperator.execute_complete`,
which returns the job's name or raises with the launcher pod's last lines. A training run
of hours holds a worker slot for seconds at either end.

The training tasks of the pretrain, finetune, compress and hpo DAGs
(``ops.dagkit.training_operator``) defer to :class:`MPIJobTrigger` the same way and read the
job's result file when they resume.

Imported by Airflow processes only (the triggerer loads the trigger by its class path).
"""
from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, AsyncIterator

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

from ops.launch.kubernetes.cluster import ClusterConfig
from ops.launch.kubernetes.launcher import KubernetesLauncher
from ops.launch.kubernetes.mpijob import MPI_GROUP, MPI_PLURAL, MPI_VERSION, mpijob_reason, mpijob_state

SUCCEEDED, FAILED, GONE, UNREACHABLE = "Succeeded", "Failed", "Gone", "Unreachable"
MAX_READ_ERRORS = 5  # API errors in a row before the trigger gives up (the task then fails)


class MPIJobTrigger(BaseTrigger):
    """Fires one event once the MPIJob ``namespace/name`` ends: ``{"state", "name", "reason"}``,
    state one of Succeeded, Failed, Gone (deleted while running) or Unreachable (the API failed
    ``MAX_READ_ERRORS`` times in a row)."""

    def __init__(self, name: str, namespace: str, poll_seconds: float = 15.0):
        super().__init__()
        self.name, self.namespace, self.poll_seconds = name, namespace, poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"name": self.name, "namespace": self.namespace, "poll_seconds": self.poll_seconds})

    async def fetch(self) -> dict | None:
        """The MPIJob as the API returns it, or None when it does not exist."""
        return await asyncio.to_thread(self._read)

    def _read(self) -> dict | None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        try:
            return client.CustomObjectsApi().get_namespaced_custom_object(
                MPI_GROUP, MPI_VERSION, self.namespace, MPI_PLURAL, self.name)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def run(self) -> AsyncIterator[TriggerEvent]:
        errors = 0
        while True:
            try:
                job = await self.fetch()
                errors = 0
            except Exception as exc:  # a flaky API server: retry a few times, then report it
                errors += 1
                self.log.warning("reading MPIJob %s/%s failed (%d/%d): %s", self.namespace, self.name,
                                 errors, MAX_READ_ERRORS, exc)
                if errors >= MAX_READ_ERRORS:
                    yield self._event(UNREACHABLE, f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(self.poll_seconds)
                continue
            if job is None:
                yield self._event(GONE, "deleted while running")
                return
            state = mpijob_state(job)
            if state in (SUCCEEDED, FAILED):
                yield self._event(state, mpijob_reason(job) if state == FAILED else "")
                return
            await asyncio.sleep(self.poll_seconds)

    def _event(self, state: str, reason: str) -> TriggerEvent:
        return TriggerEvent({"state": state, "name": self.name, "reason": reason})


class MPIJobOperator(BaseOperator):
    """Run ``module`` as an MPIJob on ``np`` ranks and wait for it on the triggerer.

    ``cluster`` is a ClusterConfig mapping (e.g. the Variable ``c2m_cluster``); without it
    the config comes from ``C2M_K8S_*`` in the task's environment.
    """

    template_fields = ("args", "job_name", "env")

    def __init__(self, *, module: str, args: list[str], job_name: str, np: int | None = None,
                 env: dict[str, str] | None = None, cluster: dict[str, Any] | None = None,
                 wait_timeout: timedelta = timedelta(hours=24), **kwargs):
        super().__init__(**kwargs)
        self.module, self.args, self.job_name, self.np = module, args, job_name, np
        self.env, self.cluster, self.wait_timeout = env, cluster, wait_timeout

    def launcher(self) -> KubernetesLauncher:
        base = ClusterConfig.from_env()
        return KubernetesLauncher(ClusterConfig.from_mapping(self.cluster, base) if self.cluster else base)

    def execute(self, context) -> None:
        launcher = self.launcher()
        name = launcher.submit(self.module, [str(a) for a in self.args], self.np, name=self.job_name,
                               env=self.env)
        self.defer(trigger=MPIJobTrigger(name, launcher.cfg.namespace, launcher.cfg.poll_seconds),
                   method_name="execute_complete", timeout=self.wait_timeout)

    def execute_complete(self, context, event: dict[str, Any]) -> str:
        raise_for_event(event, self.launcher(), self.module)
        return event["name"]


def raise_for_event(event: dict[str, Any], launcher: KubernetesLauncher, module: str) -> None:
    """Return when the trigger's event says the MPIJob succeeded; else raise what went wrong (a
    failure carries the launcher pod's last lines)."""
    if event["state"] == SUCCEEDED:
        return
    if event["state"] == GONE:
        raise launcher.failure(event["name"], module, None)
    if event["state"] == UNREACHABLE:
        raise RuntimeError(f"lost track of MPIJob {launcher.cfg.namespace}/{event['name']}: the "
                           f"Kubernetes API kept failing ({event['reason']}); the job may still run")
    job = {"status": {"conditions": [{"type": FAILED, "status": "True", "reason": "",
                                      "message": event["reason"]}]}}
    raise launcher.failure(event["name"], module, job)
