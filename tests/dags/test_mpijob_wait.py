"""The MPIJob wait on the triggerer: the trigger's async polling against a scripted status source
(no Kubernetes API here), and the operator that creates the job and defers to it."""
from __future__ import annotations

import asyncio
import importlib
from datetime import timedelta

import pytest

pytest.importorskip("airflow.triggers.base", reason="DAG tests run under .venv-airflow")

from ops.launch.local import LaunchError  # noqa: E402
from ops.launch.mpijob_wait import MAX_READ_ERRORS, MPIJobOperator, MPIJobTrigger  # noqa: E402

RUNNING = {"status": {"conditions": [{"type": "Running", "status": "True"}]}}


def _ended(kind: str) -> dict:
    return {"status": {"conditions": [{"type": "Running", "status": "False"},
                                      {"type": kind, "status": "True", "reason": "Boom",
                                       "message": "launcher exited 1"}]}}


class ScriptedTrigger(MPIJobTrigger):
    """The trigger with its one API read replaced by a script: dicts, None (404) or exceptions."""

    script: list = []

    async def fetch(self):
        self.reads = getattr(self, "reads", 0) + 1
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def _events(script: list) -> tuple[list[dict], int]:
    trigger = ScriptedTrigger("pretrain-x", "ml", poll_seconds=0)
    trigger.script = list(script)

    async def collect():
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect()), trigger.reads


def test_the_trigger_polls_until_the_job_succeeds():
    events, reads = _events([RUNNING, {"status": {}}, RUNNING, _ended("Succeeded")])
    assert events == [{"state": "Succeeded", "name": "pretrain-x", "reason": ""}] and reads == 4


def test_the_trigger_reports_a_failure_with_its_reason():
    events, _ = _events([RUNNING, _ended("Failed")])
    assert events == [{"state": "Failed", "name": "pretrain-x", "reason": "Boom: launcher exited 1"}]


def test_the_trigger_reports_a_job_deleted_while_running():
    events, _ = _events([RUNNING, None])
    assert [e["state"] for e in events] == ["Gone"]


def test_the_trigger_rides_out_api_errors_but_not_forever():
    events, reads = _events([ConnectionError("reset")] * (MAX_READ_ERRORS - 1) + [_ended("Succeeded")])
    assert [e["state"] for e in events] == ["Succeeded"] and reads == MAX_READ_ERRORS
    events, reads = _events([ConnectionError("reset")] * MAX_READ_ERRORS + [_ended("Succeeded")])
    assert [e["state"] for e in events] == ["Unreachable"] and reads == MAX_READ_ERRORS
    assert "ConnectionError: reset" in events[0]["reason"]


def test_the_trigger_serializes_to_an_importable_class_and_its_arguments():
    path, kwargs = MPIJobTrigger("pretrain-x", "ml", poll_seconds=7).serialize()
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert (again.name, again.namespace, again.poll_seconds) == ("pretrain-x", "ml", 7)


class _NotFound(Exception):
    status = 404


class FakeK8s:
    """CustomObjectsApi + CoreV1Api calls the operator makes."""

    def __init__(self):
        self.jobs, self.calls = {}, []

    def get_namespaced_custom_object(self, group, version, ns, plural, name):
        if name not in self.jobs:
            raise _NotFound()
        return self.jobs[name]

    def create_namespaced_custom_object(self, group, version, ns, plural, body):
        self.calls.append(("create", ns, body["metadata"]["name"]))
        self.jobs[body["metadata"]["name"]] = body

    def list_namespaced_pod(self, ns, label_selector):
        pod = type("Pod", (), {"metadata": type("Meta", (), {"name": "launcher"})()})()
        return type("PodList", (), {"items": [pod]})()

    def read_namespaced_pod_log(self, name, ns, tail_lines):
        return "step 10\nRuntimeError: NCCL timeout"


@pytest.fixture
def operator(monkeypatch):
    from ops.launch.kubernetes.launcher import KubernetesLauncher

    api = FakeK8s()
    monkeypatch.setattr(KubernetesLauncher, "apis", lambda self: (api, api))
    op = MPIJobOperator(task_id="train", module="training.pretrain", args=["--max-steps", 5], np=2,
                        job_name="pretrain-x", cluster={"namespace": "ml", "poll_seconds": 3})
    return op, api


def test_the_task_creates_the_job_and_defers_without_holding_a_worker(operator):
    from airflow.sdk.exceptions import TaskDeferred

    op, api = operator
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context={})
    assert api.calls == [("create", "ml", "pretrain-x")]
    trigger = deferred.value.trigger
    assert isinstance(trigger, MPIJobTrigger)
    assert (trigger.name, trigger.namespace, trigger.poll_seconds) == ("pretrain-x", "ml", 3)
    assert deferred.value.method_name == "execute_complete" and deferred.value.timeout == timedelta(hours=24)
    cmd = api.jobs["pretrain-x"]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert cmd["command"][-3:] == ["training.pretrain", "--max-steps", "5"]


def test_the_resumed_task_succeeds_or_fails_with_the_launchers_last_lines(operator):
    op, _ = operator
    assert op.execute_complete({}, {"state": "Succeeded", "name": "pretrain-x", "reason": ""}) == "pretrain-x"
    with pytest.raises(LaunchError) as err:
        op.execute_complete({}, {"state": "Failed", "name": "pretrain-x",
                                 "reason": "Boom: launcher exited 1"})
    assert "Boom: launcher exited 1" in str(err.value) and err.value.tail[-1] == "RuntimeError: NCCL timeout"
    with pytest.raises(LaunchError, match="disappeared"):
        op.execute_complete({}, {"state": "Gone", "name": "pretrain-x", "reason": ""})
    with pytest.raises(RuntimeError, match="may still run"):
        op.execute_complete({}, {"state": "Unreachable", "name": "pretrain-x", "reason": "timeout"})
