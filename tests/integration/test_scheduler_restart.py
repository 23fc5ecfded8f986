"""A scheduler killed mid-run, restarted with the project's own ``up()``, picks up where it was.

SIGKILL is what the OOM killer or a lost node does: no shutdown, no handing over. The run is
an ``hpo`` run because it has work on both sides of the kill: ``plan``, ``setup`` and
``slots`` are done, the mapped trials are running, and ``finalize`` is still to be scheduled.

After the restart, the finished tasks are not run again; the running trials finish where they
were, on their first try (LocalExecutor workers supervise them and report to the API server,
not to the scheduler, so they outlive it); the new scheduler schedules ``finalize``; and what
the dead scheduler left behind is stopped by ``processes.stop_leftovers`` (which ``down()`` runs).

The same run, finished, is also what ``hpo`` itself must deliver (one run serves both files'
worth of checks, so the suite runs one HPO study, not two): its two trial tasks fan out over
one Optuna study, nested under one MLflow parent run in the ``hpo`` experiment, and
``compress`` quantises the model it registered, on the restarted stack.

Runs last on the shared stack (conftest.FILE_ORDER), after the tiny demo has registered the
base model the trials fine-tune.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from ops.lake.procs import start_time
from stack_support import missing_requirements, require_demo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]
_missing = missing_requirements()
pytestmark.append(pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}"))

SCHEDULER = "airflow-scheduler"
HPO_CONF = {"n_trials": 2, "parallel_trials": 2, "epochs": 1, "max_examples": 256,
            "sampler": "random", "pruner": "none"}


def _by_key(tis: list[dict]) -> dict[tuple[str, int], dict]:
    return {(t["task_id"], t.get("map_index", -1)): t for t in tis}


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _wait_until_trials_run(client, run_id: str, timeout: float = 600.0) -> dict[tuple[str, int], dict]:
    """Task instances once every trial is running (not merely queued in the executor's queue)."""
    deadline = time.monotonic() + timeout
    while True:
        tis = _by_key(client.task_instances("hpo", run_id))
        trials = [t for (task, _), t in tis.items() if task == "search.trial"]
        if trials and all(t["state"] == "running" for t in trials):
            return tis
        state = client.get_run("hpo", run_id)["state"]
        if state in ("success", "failed") or time.monotonic() > deadline:
            pytest.fail(f"hpo run {run_id} is {state} before its trials were seen running: "
                        f"{ {k: t['state'] for k, t in tis.items()} }")
        time.sleep(0.5)


@dataclass
class KilledRun:
    """An hpo run whose scheduler was killed while its trials ran, restarted, and waited for."""
    client: object
    run_id: str
    before: dict  # task instances by (task_id, map_index) when every trial was running
    old_pid: int
    killed_at: datetime
    started: dict  # what up() restarted
    final: dict  # the DAG run once it ended


@pytest.fixture(scope="module")
def killed_run(stack, tiny_demo) -> KilledRun:
    from ops.clients.airflow_api import AirflowClient
    from ops.stack import layout, processes, services

    require_demo(tiny_demo)
    client = AirflowClient(stack.airflow_url, layout.airflow_home(stack))
    client.set_paused("hpo", False)
    run_id = client.trigger("hpo", HPO_CONF, note="scheduler restart test")["dag_run_id"]
    before = _wait_until_trials_run(client, run_id)
    old = processes.read_pid(stack, SCHEDULER)
    assert old is not None, "the stack's scheduler is not running"
    os.kill(old, signal.SIGKILL)
    while start_time(old):  # SIGKILL lands asynchronously
        time.sleep(0.05)
    killed_at = datetime.now(timezone.utc)
    started = services.up(stack, timeout=300)
    final = client.wait_for_run("hpo", run_id, timeout=900, progress=None)
    return KilledRun(client, run_id, before, old, killed_at, started, final)


def test_a_killed_scheduler_restarted_picks_up_where_it_was(stack, killed_run):
    from ops.stack import layout, processes
    from ops.stack.demo_runs import explain_failure

    client, run_id, before, old = killed_run.client, killed_run.run_id, killed_run.before, killed_run.old_pid
    done_before = {k for k, t in before.items() if t["state"] == "success"}
    assert {("plan", -1), ("search.setup", -1), ("search.slots", -1)} <= done_before, before

    started = killed_run.started
    assert SCHEDULER in started, f"up() did not restart the killed scheduler: {started}"
    new = processes.read_pid(stack, SCHEDULER)
    assert new is not None and new != old
    assert f"{SCHEDULER} {old}" in layout.leftovers_file(stack).read_text()

    final = killed_run.final
    assert final["state"] == "success", explain_failure(client, stack, "hpo", run_id)
    after = _by_key(client.task_instances("hpo", run_id))
    for key in done_before:  # finished before the kill: not run again
        assert (after[key]["try_number"], after[key]["end_date"]) == \
            (before[key]["try_number"], before[key]["end_date"]), key
    trials = {k: t for k, t in after.items() if k[0] == "search.trial"}
    # Running at the kill, finished by their own supervisors: not reset, not run a second time.
    assert {(t["state"], t["try_number"]) for t in trials.values()} == {("success", 1)}, trials
    finalize = after[("search.finalize", -1)]
    assert finalize["state"] == "success" and finalize["try_number"] == 1
    assert _when(finalize["start_date"]) > killed_run.killed_at, \
        "finalize must be scheduled by the new scheduler"
    best = client.xcom("hpo", run_id, "search.finalize")
    assert best["trials"] >= 2 and best.get("run_id"), best

    # The dead scheduler's executor workers outlive it (that is how the trials finished);
    # down() stops them, and so does this, the same code.
    assert processes.stop_leftovers(stack, echo=print) == [old]
    assert [p for p in processes.group_members(old) if start_time(p)] == []


def test_hpo_fans_trials_out_and_compress_quantizes(stack, killed_run):
    from ops.clients.mlflow_helpers import child_runs, experiment_name, get_run
    from ops.stack.demo_runs import explain_failure

    client, run_id = killed_run.client, killed_run.run_id
    assert killed_run.final["state"] == "success", explain_failure(client, stack, "hpo", run_id)
    tis = client.task_instances("hpo", run_id)
    trials = [t for t in tis if t["task_id"] == "search.trial"]
    assert sorted(t["map_index"] for t in trials) == [0, 1] and {t["state"] for t in trials} == {"success"}
    best = client.xcom("hpo", run_id, "search.finalize")
    parent = get_run(stack.mlflow_uri, best["run_id"])
    exp = parent["info"]["experiment_id"]
    assert experiment_name(stack.mlflow_uri, exp) == "hpo"
    assert len(child_runs(stack.mlflow_uri, exp, best["run_id"])) >= 2  # one nested run per trial
    assert best["mlflow_run_url"] in (client.get_run("hpo", run_id).get("note") or "")

    # The version HPO registered (it is champion only if it reached its TF-IDF+LR baseline).
    client.set_paused("compress", False)
    run = client.trigger("compress", {"method": "quantize", "max_examples": 256, "model": best["model_uri"]})
    final = client.wait_for_run("compress", run["dag_run_id"], timeout=900)
    assert final["state"] == "success", explain_failure(client, stack, "compress", run["dag_run_id"])
    out = client.xcom("compress", run["dag_run_id"], "compress")
    mlrun = get_run(stack.mlflow_uri, out["run_id"])
    assert experiment_name(stack.mlflow_uri, mlrun["info"]["experiment_id"]) == "compress"
    assert out.get("model_version")
