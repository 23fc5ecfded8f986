"""The pretrain and finetune DAGs' training task on the Kubernetes launcher: it creates the MPIJob
and defers to the MPIJob trigger (no worker slot held while the job trains), then, resumed with
the trigger's event, reads the job's result file. The Kubernetes API is a scripted stand-in
(tests/dags/test_mpijob_wait.py's); the DAGs, the operator and the launcher are the real ones."""
from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest

pytest.importorskip("airflow.triggers.base", reason="DAG tests run under .venv-airflow")

from airflow.sdk.exceptions import TaskDeferred  # noqa: E402

from ops.launch.kubernetes import KubernetesLauncher, LaunchError  # noqa: E402
from ops.dagkit.training_operator import TrainingOperator  # noqa: E402
from ops.launch.mpijob_wait import MPIJobTrigger  # noqa: E402
from test_mpijob_wait import FakeK8s  # noqa: E402

RUN_ID = "manual__2026-01-01T00:00:00+00:00"
PARAMS = {"pretrain": {"shards_uri": "s3://lake/shards/v=1", "max_steps": 5},
          "finetune": {"task": "sentiment", "max_examples": 16}}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _TI:
    task_id, run_id, try_number, map_index, max_tries = "train", RUN_ID, 1, -1, 1

    def __init__(self, dag_id: str):
        self.dag_id = dag_id


class _DagRun:
    run_type = "manual"


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    """The Kubernetes launcher from the environment, its API scripted; no Airflow API, no MLflow."""
    api = FakeK8s()
    monkeypatch.setattr(KubernetesLauncher, "apis", lambda self: (api, api))
    monkeypatch.setenv("C2M_LAUNCHER", "kubernetes")
    monkeypatch.setenv("C2M_K8S_NAMESPACE", "ml")
    monkeypatch.setenv("C2M_DATA_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("C2M_AIRFLOW_PORT", str(_closed_port()))  # the run note: a courtesy that fails fast
    return api


def _context(dag, dag_id: str) -> dict:
    params = {k: dag.params[k] for k in dag.params.keys()}
    params.update(PARAMS[dag_id])
    return {"ti": _TI(dag_id), "dag_run": _DagRun(), "params": params, "run_id": RUN_ID}


@pytest.mark.parametrize("dag_id", ["pretrain", "finetune"])
def test_the_training_task_defers_on_kubernetes_and_resumes_with_the_result(dagbag, cluster, dag_id):
    op = dagbag.dags[dag_id].get_task("train")
    assert isinstance(op, TrainingOperator)
    ctx = _context(dagbag.dags[dag_id], dag_id)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    (name,) = cluster.jobs
    assert cluster.calls == [("create", "ml", name)] and name.startswith(f"{dag_id}-train-")
    trigger = deferred.value.trigger
    assert isinstance(trigger, MPIJobTrigger) and (trigger.name, trigger.namespace) == (name, "ml")
    assert deferred.value.method_name == "execute_complete" and deferred.value.timeout == timedelta(hours=24)
    plan = deferred.value.kwargs["plan"]
    assert plan["module"] == f"training.{dag_id}"
    launcher = cluster.jobs[name]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert launcher["command"][-len(plan["args"]):] == plan["args"]

    # the job ran elsewhere and wrote its result where the launcher pod writes it
    result_file = Path(plan["args"][plan["args"].index("--result-file") + 1])
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps({"model_version": 2}))
    resumed = dagbag.dags[dag_id].get_task("train")
    out = resumed.execute_complete(ctx, {"state": "Succeeded", "name": name, "reason": ""}, plan=plan)
    assert out == {"model_version": 2, **plan["extra"]}
    with pytest.raises(LaunchError, match="launcher exited 1"):
        resumed.execute_complete(ctx, {"state": "Failed", "name": name, "reason": "Boom: launcher exited 1"},
                                 plan=plan)
