"""The training tasks of the pretrain, finetune, compress and hpo DAGs on the Kubernetes launcher:
each creates its MPIJob and defers to the MPIJob trigger (no worker slot held while the job
trains), then, resumed with the trigger's event, reads its job's result file. The Kubernetes API
is a scripted stand-in (tests/dags/test_mpijob_wait.py's); the DAGs, the operator and the
launcher are the real ones. On the local launcher the same tasks run and wait within the task:
there the job is a stand-in ``horovodrun`` that writes the result file."""
from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest

pytest.importorskip("airflow.triggers.base", reason="DAG tests run under .venv-airflow")

from airflow.sdk.exceptions import TaskDeferred  # noqa: E402

from ops.launch.kubernetes.launcher import KubernetesLauncher  # noqa: E402
from ops.launch.local import LaunchError  # noqa: E402
from ops.dagkit.training_operator import TrainingOperator  # noqa: E402
from ops.launch.mpijob_wait import MPIJobTrigger  # noqa: E402
from test_mpijob_wait import FakeK8s  # noqa: E402

RUN_ID = "manual__2026-01-01T00:00:00+00:00"
PARAMS = {"pretrain": {"shards_uri": "s3://lake/shards/v=1", "max_steps": 5},
          "finetune": {"task": "sentiment", "max_examples": 16},
          "compress": {"method": "prune", "sparsity": 0.7},
          "hpo": {"task": "sentiment", "n_trials": 5, "parallel_trials": 2}}
TASK = {"pretrain": "train", "finetune": "train", "compress": "compress"}
STORAGE = "postgresql://optuna:hunter2@db.ml:5432/optuna"  # a URL with a password: a secret


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _TI:
    """The task instance as the task sees it; ``xcom_pull`` returns the upstream tasks' results."""

    run_id, try_number, max_tries = RUN_ID, 1, 1

    def __init__(self, dag_id: str, task_id: str, map_index: int = -1, xcoms: dict | None = None):
        self.dag_id, self.task_id, self.map_index, self.xcoms = dag_id, task_id, map_index, xcoms or {}

    def xcom_pull(self, task_ids: str, key: str = "return_value", default=None, map_indexes=None):
        return self.xcoms[task_ids]


class _DagRun:
    run_type = "manual"

    def __init__(self, conf: dict):
        self.conf = conf


def _no_services(monkeypatch) -> None:
    """The run note and the MLflow link are courtesies: here they fail fast (nothing listens)."""
    monkeypatch.setenv("C2M_AIRFLOW_PORT", str(_closed_port()))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("C2M_MLFLOW_PORT", str(_closed_port()))


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    """The Kubernetes launcher from the environment, its API scripted; no Airflow API, no MLflow."""
    api = FakeK8s()
    monkeypatch.setattr(KubernetesLauncher, "apis", lambda self: (api, api))
    monkeypatch.setenv("C2M_LAUNCHER", "kubernetes")
    monkeypatch.setenv("C2M_K8S_NAMESPACE", "ml")
    monkeypatch.setenv("C2M_DATA_ROOT", str(tmp_path / "lake"))
    _no_services(monkeypatch)
    return api


def _context(dag, task_id: str, map_index: int = -1, xcoms: dict | None = None) -> dict:
    params = {k: dag.params[k] for k in dag.params.keys()}
    params.update(PARAMS[dag.dag_id])
    return {"ti": _TI(dag.dag_id, task_id, map_index, xcoms), "dag_run": _DagRun(PARAMS[dag.dag_id]),
            "params": params, "run_id": RUN_ID, "dag": dag}


def _rendered(dag, task_id: str, ctx: dict, monkeypatch) -> TrainingOperator:
    """The task as the worker runs it: its templated ``inputs`` resolved from the upstream results
    (a mapped task's from its own map index), the DAG's operator left as it was."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    task = dag.get_task(task_id)
    if isinstance(task, MappedOperator):
        task.render_template_fields(ctx)  # renders the unmapped task it puts in the context
        return ctx["task"]
    monkeypatch.setattr(task, "inputs", task.inputs)
    task.render_template_fields(ctx)
    return task


def _write_result(plan: dict, result: dict) -> None:
    """What the job does where it ran: write its result JSON to the file named by --result-file."""
    result_file = Path(plan["args"][plan["args"].index("--result-file") + 1])
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result))


@pytest.mark.parametrize("dag_id", ["pretrain", "finetune", "compress"])
def test_the_training_task_defers_on_kubernetes_and_resumes_with_the_result(dagbag, cluster, dag_id):
    task_id = TASK[dag_id]
    op = dagbag.dags[dag_id].get_task(task_id)
    assert isinstance(op, TrainingOperator)
    ctx = _context(dagbag.dags[dag_id], task_id)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    (name,) = cluster.jobs
    assert cluster.calls == [("create", "ml", name)] and name.startswith(f"{dag_id}-{task_id}-")
    trigger = deferred.value.trigger
    assert isinstance(trigger, MPIJobTrigger) and (trigger.name, trigger.namespace) == (name, "ml")
    assert deferred.value.method_name == "execute_complete" and deferred.value.timeout == timedelta(hours=24)
    plan = deferred.value.kwargs["plan"]
    assert plan["module"] == f"training.{dag_id}"
    launcher = cluster.jobs[name]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert launcher["command"][-len(plan["args"]):] == plan["args"]

    # the job ran elsewhere and wrote its result where the launcher pod writes it
    _write_result(plan, {"model_version": 2})
    resumed = dagbag.dags[dag_id].get_task(task_id)
    out = resumed.execute_complete(ctx, {"state": "Succeeded", "name": name, "reason": ""}, plan=plan)
    assert out == {"model_version": 2, **plan["extra"]}
    with pytest.raises(LaunchError, match="launcher exited 1"):
        resumed.execute_complete(ctx, {"state": "Failed", "name": name, "reason": "Boom: launcher exited 1"},
                                 plan=plan)


def _mpijob_text(cluster, name: str) -> str:
    return json.dumps(cluster.jobs[name])


def _launcher_command(cluster, name: str) -> list[str]:
    launcher = cluster.jobs[name]["spec"]["mpiReplicaSpecs"]["Launcher"]
    return launcher["template"]["spec"]["containers"][0]["command"]


def test_hpo_setup_mapped_trials_and_finalize_each_defer_on_kubernetes(dagbag, cluster, monkeypatch):
    """Each hpo task creates its own MPIJob (a mapped trial: one per map index) and defers; resumed,
    each reads its own job's result. The Optuna storage URL reaches the jobs from the Secret named
    in secret_env only: it is neither in an MPIJob nor in the deferral Airflow stores."""
    monkeypatch.setenv("C2M_OPTUNA_STORAGE", STORAGE)
    monkeypatch.setenv("C2M_K8S_SECRET_ENV", json.dumps({"C2M_OPTUNA_STORAGE": "c2m-optuna"}))
    dag = dagbag.dags["hpo"]
    xcoms = {"plan": {"study": "sentiment-test", "run_name": f"hpo@{RUN_ID}", "slots": [3, 2]}}

    def run(task_id: str, result: dict, map_index: int = -1) -> tuple[str, dict, dict]:
        ctx = _context(dag, task_id, map_index, xcoms)
        with pytest.raises(TaskDeferred) as deferred:
            _rendered(dag, task_id, ctx, monkeypatch).execute(ctx)
        name, kwargs = deferred.value.trigger.name, deferred.value.kwargs
        assert isinstance(deferred.value.trigger, MPIJobTrigger)
        assert deferred.value.method_name == "execute_complete"
        assert "hunter2" not in json.dumps(kwargs) and "hunter2" not in _mpijob_text(cluster, name)
        assert "c2m-optuna" in _mpijob_text(cluster, name)  # the storage comes from the Secret
        _write_result(kwargs["plan"], result)
        ctx = _context(dag, task_id, map_index, xcoms)  # resumed: a new process renders the task again
        out = _rendered(dag, task_id, ctx, monkeypatch).execute_complete(
            ctx, {"state": "Succeeded", "name": name, "reason": ""}, **kwargs)
        return name, kwargs["plan"], out

    setup_name, _, parent = run("search.setup", {"run_id": "parent-1", "trials": 0})
    assert parent == {"run_id": "parent-1", "trials": 0}
    xcoms["search.setup"] = parent
    xcoms["search.slots"] = dag.get_task("search.slots").python_callable(xcoms["plan"], parent)
    names = [setup_name]
    for index, n in enumerate([3, 2]):
        counts = {"trials": n, "complete": n - 1, "pruned": 1, "failed": 0, "best_value": 0.5 + index}
        name, plan, out = run("search.trial", {**counts, "run_id": "parent-1", "storage": "masked"}, index)
        assert out == counts  # its own job's result, reduced to the counts
        command = _launcher_command(cluster, name)
        assert command[command.index("--trials") + 1] == str(n)
        assert command[command.index("--parent-run-id") + 1] == "parent-1"
        names.append(name)
    best = {"run_id": "parent-1", "trials": 5, "best_value": 1.5, "model_version": 4}
    name, plan, out = run("search.finalize", best)
    assert out == best and plan["note"] == "hpo sentiment"
    assert "--no-finalize" not in _launcher_command(cluster, name)
    names.append(name)
    assert sorted(names) == sorted(cluster.jobs) and len(set(names)) == 4
    assert all(n.startswith("hpo-search-") for n in names)


STAND_IN_HOROVODRUN = """#!{python}
# Stand-in for the jobs venv's horovodrun: writes the job's result file, with what the job was given.
import json, os, sys

args = sys.argv[1:]
module = args[args.index("-m") + 1]
if module == "ops.lake.secret_env":  # the rank loads its secrets from the file first
    module = args[args.index("-m") + 2]
secrets = {{}}
if os.environ.get("C2M_RANK_ENV_FILE"):
    with open(os.environ["C2M_RANK_ENV_FILE"]) as f:
        secrets = json.load(f)
trials = int(args[args.index("--trials") + 1]) if "--trials" in args else 0
result = {{"run_id": "run-1", "module": module, "argv": args, "storage": secrets.get("C2M_OPTUNA_STORAGE"),
          "trials": trials, "complete": trials, "pruned": 0, "failed": 0, "best_value": 0.5}}
out = args[args.index("--result-file") + 1]
with open(out, "w") as f:
    json.dump(result, f)
"""


@pytest.fixture
def local(monkeypatch, tmp_path):
    """The local launcher, its horovodrun a stand-in that writes the result file at once."""
    import sys

    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    horovodrun = bin_dir / "horovodrun"
    horovodrun.write_text(STAND_IN_HOROVODRUN.format(python=sys.executable))
    horovodrun.chmod(0o755)
    monkeypatch.setenv("C2M_LAUNCHER", "local")
    monkeypatch.setenv("C2M_JOBS_VENV", str(tmp_path / "venv"))
    monkeypatch.setenv("C2M_STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("C2M_DATA_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("C2M_OPTUNA_STORAGE", STORAGE)
    _no_services(monkeypatch)


def test_hpo_and_compress_run_within_the_task_on_the_local_launcher(dagbag, local, monkeypatch):
    hpo = dagbag.dags["hpo"]
    xcoms = {"plan": {"study": "sentiment-test", "run_name": f"hpo@{RUN_ID}", "slots": [3, 2]}}
    ctx = _context(hpo, "search.setup", xcoms=xcoms)
    parent = _rendered(hpo, "search.setup", ctx, monkeypatch).execute(ctx)  # no TaskDeferred: ran here
    assert parent["module"] == "training.hpo" and parent["storage"] == STORAGE  # by its secrets file
    assert "hunter2" not in json.dumps(parent["argv"])
    xcoms.update({"search.setup": parent,
                  "search.slots": hpo.get_task("search.slots").python_callable(xcoms["plan"], parent)})
    ctx = _context(hpo, "search.trial", 1, xcoms)
    out = _rendered(hpo, "search.trial", ctx, monkeypatch).execute(ctx)
    assert out == {"trials": 2, "complete": 2, "pruned": 0, "failed": 0, "best_value": 0.5}

    compress = dagbag.dags["compress"]
    ctx = _context(compress, "compress")
    out = compress.get_task("compress").execute(ctx)
    assert out["module"] == "training.compress" and (out["model"], out["method"]) == (
        "models:/c2m-sentiment@champion", "prune")
    assert out["argv"][out["argv"].index("--sparsity") + 1] == "0.7"
