"""``crawl2model demo``: the whole flow on this machine, driven through Airflow's REST API.

Start the stack, wait for the three DAGs, unpause them, trigger ``data_refresh`` with a
demo-sized conf, follow the ``pretrain`` run that the ``corpus`` Asset starts, trigger
``finetune``, and print a summary read from the real outputs (manifests via task XComs,
training result JSONs, MLflow). Nothing runs in-process: a user clicking in the UI gets the
same runs.

Why the demo may set a logical date: ``data_refresh`` is weekly with ``catchup=False``, so
unpausing it for the first time makes Airflow start the most recent missed weekly run at
once, with default Params, next to the demo's run. When that weekly slot is due, the demo's
run takes it (its logical date is the slot), and Airflow skips the duplicate.

The sizes are in :mod:`ops.stack.demo_profiles`, the calls about DAG runs (triggering, stage
outputs, explaining a failure) in :mod:`ops.stack.demo_runs`, and the summary in
:mod:`ops.stack.demo_summary`.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from ops.clients.airflow_api import AirflowClient, Heartbeat
from ops.launch.settings import Settings, get_settings
from ops.stack import layout, services
from ops.stack.demo_profiles import PROFILES, Profile
from ops.stack.demo_runs import data_outputs, explain_failure, trigger_refresh
from ops.stack.demo_summary import DemoResult, summary

DAGS = ("data_refresh", "pretrain", "finetune")
ALL_DAGS = DAGS + ("hpo", "compress", "end_to_end")


def run_demo(profile: str = "demo", s: Settings | None = None,
             echo: Callable[[str], None] = print) -> DemoResult:
    """Run the flow through Airflow; returns what ran and what it produced (``ok`` False on failure).

    Every line goes through one :class:`~ops.clients.airflow_api.Heartbeat`: when nothing was printed for
    12 s it says what the demo is waiting for, whatever step (or slow REST call) it is in."""
    s = s or get_settings()
    result = DemoResult()
    with Heartbeat(_recording(echo, result.printed)) as say:
        say.status = "starting the stack"
        _run_flow(PROFILES[profile], s, result, say)
    return result


def _run_flow(prof: Profile, s: Settings, result: DemoResult, echo: Heartbeat) -> None:
    services.up(s, echo=echo)
    client = AirflowClient(s.airflow_url, layout.airflow_home(s))
    echo("waiting for the DAGs to be parsed ...")
    client.wait_for_dags(list(ALL_DAGS), progress=echo)
    echo.status = "talking to Airflow's API"
    for dag_id in ("pretrain", "finetune"):
        client.set_paused(dag_id, False)

    refresh = trigger_refresh(client, prof.refresh_conf(s), echo)
    if not _wait(client, "data_refresh", refresh["dag_run_id"], result, s, prof.timeout_s, echo):
        return
    result.outputs.update(data_outputs(client, refresh["dag_run_id"]))

    started = result.runs["data_refresh"].get("start_date") or refresh.get("queued_at") or _now_iso()
    echo("waiting for the pretrain run started by the corpus Asset ...")
    pre = client.wait_for_new_run("pretrain", after=started, run_type="asset_triggered", progress=echo)
    if not _wait(client, "pretrain", pre["dag_run_id"], result, s, prof.timeout_s, echo):
        return
    result.outputs["pretrain"] = client.xcom("pretrain", pre["dag_run_id"], "train")

    fin = client.trigger("finetune", prof.finetune, note="crawl2model demo")
    echo(f"triggered finetune run {fin['dag_run_id']}")
    if not _wait(client, "finetune", fin["dag_run_id"], result, s, prof.timeout_s, echo):
        return
    result.outputs["finetune"] = client.xcom("finetune", fin["dag_run_id"], "train")
    result.ok = True
    echo.status = "reading the outputs for the summary"
    echo(summary(result, s))


def _wait(client: AirflowClient, dag_id: str, run_id: str, result: DemoResult, s: Settings,
          timeout: float, echo: Callable[[str], None]) -> bool:
    """Wait for one run to end; False, with the failure explained and printed, unless it succeeded."""
    echo(f"waiting for {dag_id} ({s.airflow_url}/dags/{dag_id}/runs/{run_id}) ...")
    run = client.wait_for_run(dag_id, run_id, timeout=timeout, progress=echo)
    result.runs[dag_id] = run
    if run["state"] != "success":
        result.failure = explain_failure(client, s, dag_id, run_id)
        echo(result.failure)
        return False
    return True


def _recording(echo: Callable[[str], None], printed: list[tuple[float, str]]) -> Callable[[str], None]:
    """``echo`` that also keeps each line with its time (the demo's longest silence is checked)."""
    def say(text: str) -> None:
        printed.append((time.monotonic(), text))
        echo(text)

    return say


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()
