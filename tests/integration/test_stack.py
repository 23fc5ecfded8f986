"""The platform end to end: the real stack, the real DAGs, driven over REST.

Starts Airflow, MLflow and a small generated website on free ports with a temporary stack dir
and data root (never the default ports), then, in order:

1. every DAG parses, and Params outside their schema are refused with HTTP 400 naming the field;
2. a finetune run whose job fails (a base model that does not exist) retries, fails, and its
   task log ends with the failure summary and the job's last output lines;
3. the demo's ``tiny`` profile (data_refresh → asset-triggered pretrain → finetune) succeeds,
   models are registered, and each MLflow run sits in its DAG's experiment, is named after
   its Airflow task and tagged with its DAG run URL, while the DAG run's note links back;
4. ``end_to_end`` triggers the three DAGs in turn and waits for each, without the corpus
   Asset starting a second pretrain run (the run is conftest's ``end_to_end_run``, whose
   data_refresh ``test_warc_source.py`` checks).

``hpo`` and ``compress`` are checked in ``test_scheduler_restart.py``, on the hpo run that
test has to make anyway.

The stack (conftest.py's session fixture, shared with the browser and fault tests) is stopped
by PID at the end, whatever happens.

Run with: .venv-airflow/bin/pytest -m integration tests/integration  (about 8-12 minutes)
"""
from __future__ import annotations

import pytest

from stack_support import missing_requirements, task_log_text

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

_missing = missing_requirements()
pytestmark.append(pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}"))

ALL_DAGS = ["data_refresh", "pretrain", "finetune", "hpo", "compress", "end_to_end"]


def _client(stack):
    from ops.clients.airflow_api import AirflowClient
    from ops.stack import layout

    return AirflowClient(stack.airflow_url, layout.airflow_home(stack))


def test_every_dag_parses_and_bad_params_are_refused_naming_the_field(stack):
    from ops.clients.airflow_api import AirflowAPIError
    from ops.stack import services

    assert services.up(stack, echo=lambda m: None) == {}, "up() on a healthy stack must do nothing"
    client = _client(stack)
    client.wait_for_dags(ALL_DAGS)
    assert client.import_errors() == []
    for dag_id, conf, field in [("data_refresh", {"max_pages": -1}, "max_pages"),
                                ("pretrain", {"lr": 5.0}, "lr"),
                                ("finetune", {"base_model": "/tmp/model"}, "base_model"),
                                ("hpo", {"sampler": "grid"}, "sampler"),
                                ("compress", {"method": "zip"}, "method")]:
        with pytest.raises(AirflowAPIError) as bad:
            client.trigger(dag_id, conf)
        assert bad.value.status == 400, (dag_id, bad.value)
        assert f"param {field}" in str(bad.value.detail), (dag_id, bad.value.detail)
        assert client.list_runs(dag_id) == [], f"{dag_id}: a refused conf must not create a run"


def test_a_failing_job_retries_and_its_last_lines_reach_the_task_log(stack):
    from ops.stack.demo_runs import task_log_path

    client = _client(stack)
    client.set_paused("finetune", False)
    run = client.trigger("finetune", {"base_model": "models:/c2m-missing@champion", "np": 1})
    final = client.wait_for_run("finetune", run["dag_run_id"], timeout=600, progress=None)
    assert final["state"] == "failed"
    (ti,) = client.task_instances("finetune", run["dag_run_id"])
    assert ti["state"] == "failed" and ti["try_number"] == 2, ti  # one retry, with backoff
    first = task_log_text(task_log_path(stack, "finetune", run["dag_run_id"], "train", 1))
    last = task_log_text(task_log_path(stack, "finetune", run["dag_run_id"], "train", 2))
    assert "finetune.train failed, will retry (try 1 of 2" in first
    assert "[crawl2model] finetune.train FAILED (try 2 of 2" in last
    assert "lines of the job's output" in last and "    | " in last
    summary = last[last.index("[crawl2model] finetune.train FAILED"):]
    assert "c2m-missing" in summary, summary[:3000]  # the job's own error, in the summary's tail


def test_tiny_demo_runs_every_dag_and_registers_models(stack, tiny_demo):
    from ops.clients.mlflow_helpers import alias_version, experiment_name, get_run, run_tags
    from ops.dagkit.airflow_context import dag_run_url

    client = _client(stack)
    result = tiny_demo
    assert result.ok, result.failure
    assert {d: r["state"] for d, r in result.runs.items()} == {
        "data_refresh": "success", "pretrain": "success", "finetune": "success"}
    assert result.runs["pretrain"]["run_type"] == "asset_triggered"

    crawl, tok = result.outputs["crawl"], result.outputs["tokenize"]
    assert crawl["rows_out"] >= 5
    assert crawl["dropped"].get("robots_disallowed", 0) >= 1  # /whatsnew/ is linked but forbidden
    assert tok["tokens"]["train"] > 0
    # No scheduled duplicate of the weekly refresh was started next to the demo's run.
    assert [r["run_type"] for r in client.list_runs("data_refresh")] == ["manual"]
    refresh_id = result.runs["data_refresh"]["dag_run_id"]
    assert client.task_states("data_refresh", refresh_id)["package.publish"] == "success"

    pre, fin = result.outputs["pretrain"], result.outputs["finetune"]
    for dag_id, out in (("pretrain", pre), ("finetune", fin)):
        run_id = result.runs[dag_id]["dag_run_id"]
        mlrun = get_run(stack.mlflow_uri, out["run_id"])
        assert mlrun["info"]["status"] == "FINISHED"
        assert experiment_name(stack.mlflow_uri, mlrun["info"]["experiment_id"]) == dag_id  # one per DAG
        assert mlrun["info"]["run_name"] == f"{dag_id}.train@{run_id}"
        tags = run_tags(mlrun)
        assert tags["airflow.dag_run_url"] == dag_run_url(stack.airflow_url, dag_id, run_id)
        assert tags["airflow.task_id"] == "train"
        assert out["mlflow_run_url"].endswith(f"/runs/{out['run_id']}")
        note = client.get_run(dag_id, run_id).get("note") or ""
        assert out["mlflow_run_url"] in note, note  # and the DAG run links back
    base = alias_version(stack.mlflow_uri, "c2m-base", "champion")
    sentiment = alias_version(stack.mlflow_uri, "c2m-sentiment", "champion")
    assert base is not None and str(base["version"]) == str(pre["model_version"])
    assert 0.0 <= fin["accuracy"] <= 1.0
    # The gate promotes the sentiment model only when it reaches its TF-IDF+LR baseline on the test split.
    assert fin["baseline"] == "TF-IDF+LR" and 0.0 <= fin["baseline_accuracy"] <= 1.0
    assert fin["promoted"] == (fin["lift_accuracy"] >= 0), fin["gate"]
    champion_is_new = sentiment is not None and str(sentiment["version"]) == str(fin["model_version"])
    assert champion_is_new == fin["promoted"]
    assert pre["baseline"] == "xz-9"
    assert pre["lift_bpb"] == pytest.approx(pre["val_bpb"] - pre["baseline_bpb"])


def test_the_tiny_demo_never_sat_silent_and_its_summary_links_the_data_card(tiny_demo):
    """While it waited on the DAG runs the demo printed a line at least every 20 s (task states,
    relayed [progress] lines, heartbeats naming the running task), and ended with the data card."""
    result = tiny_demo
    assert result.ok, result.failure
    times = [when for when, _ in result.printed]
    gaps = [b - a for a, b in zip(times, times[1:])]
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    assert gaps[worst] < 20, (f"{gaps[worst]:.1f} s of silence after: {result.printed[worst][1]!r}, "
                              f"before: {result.printed[worst + 1][1]!r}")
    heartbeats = [text for _, text in result.printed if " running: running " in text]
    assert heartbeats, "no heartbeat named a running task"  # the tasks outlast the 12 s heartbeat
    card = [text for _, text in result.printed if "\n  data card       " in text]
    assert card and "/#/experiments/" in card[0].split("\n  data card       ", 1)[1].split("\n", 1)[0]


def test_end_to_end_chains_the_three_dags(stack, end_to_end_run):
    from ops.stack.demo_runs import explain_failure

    client = _client(stack)
    run = {"dag_run_id": end_to_end_run.run_id}
    final, children = end_to_end_run.final, end_to_end_run.children
    asset_runs = end_to_end_run.asset_runs_before
    if final["state"] != "success":
        from ops.clients.airflow_api import AirflowAPIError

        why = [explain_failure(client, stack, "end_to_end", run["dag_run_id"])]
        for dag_id, child_id in children.items():
            try:
                if client.get_run(dag_id, child_id)["state"] == "failed":
                    why.append(explain_failure(client, stack, dag_id, child_id))
            except AirflowAPIError:
                pass
        pytest.fail("\n".join(why))
    for dag_id, child_id in children.items():
        child = client.get_run(dag_id, child_id)
        assert child["state"] == "success" and child["run_type"] in ("manual", "operator_triggered")
    refresh = client.task_states("data_refresh", f"{run['dag_run_id']}__data_refresh")
    assert refresh["package.publish"] == "skipped"  # so the corpus Asset started no second pretrain
    pre = client.xcom("pretrain", f"{run['dag_run_id']}__pretrain", "train")
    tok = client.xcom("data_refresh", f"{run['dag_run_id']}__data_refresh", "package.tokenize")
    assert pre["shards_uri"] == tok["uri"]
    assert len(client.list_runs("pretrain", run_type="asset_triggered")) == asset_runs

