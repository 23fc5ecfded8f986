"""Every DAG imports cleanly, touches no DB or network while parsing, and is wired as designed.

Run with .venv-airflow/bin/pytest tests/dags.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest.importorskip("airflow", reason="DAG tests run under .venv-airflow")

from airflow.sdk import Asset  # noqa: E402
from airflow.sdk.definitions.param import ParamValidationError  # noqa: E402

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {"data_refresh", "pretrain", "finetune"}


def _no_network(*args, **kwargs):
    raise AssertionError(f"network access while parsing DAGs: {args!r}")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", _no_network)
    mp.setattr(socket, "getaddrinfo", _no_network)
    mp.setattr(socket, "create_connection", _no_network)
    try:
        bag = DagBag(dag_folder=str(DAGS_DIR))
    finally:
        mp.undo()
    return bag


def test_every_dag_file_imports_without_db_or_network(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED


def test_each_dag_has_docs_tags_and_a_static_start_date(dagbag):
    for dag in dagbag.dags.values():
        assert dag.doc_md, f"{dag.dag_id} needs a docstring"
        assert "crawl2model" in dag.tags
        assert dag.start_date.tzinfo is not None
        assert dag.catchup is False
        for t in dag.tasks:
            assert t.doc_md or t.doc, f"{dag.dag_id}.{t.task_id} needs a docstring"


def test_data_refresh_is_weekly_and_linear(dagbag):
    dag = dagbag.dags["data_refresh"]
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert dag.timetable.expression in ("@weekly", "0 0 * * 0")
    assert dag.max_active_runs == 1
    order = ["plan", "crawl", "extract", "clean", "dedup", "tokenize"]
    for up, down in zip(order, order[1:]):
        assert down in dag.get_task(up).downstream_task_ids
    for t in dag.tasks:
        assert t.retries == 2 and t.retry_delay.total_seconds() > 0


def test_data_refresh_emits_the_corpus_asset_last(dagbag):
    dag = dagbag.dags["data_refresh"]
    emitters = [t.task_id for t in dag.tasks if Asset("corpus") in t.outlets]
    assert emitters == ["tokenize"]


def test_pretrain_is_scheduled_on_corpus(dagbag):
    dag = dagbag.dags["pretrain"]
    condition = dag.timetable.asset_condition
    assert list(condition.objects) == [Asset("corpus")]


def test_finetune_is_manual(dagbag):
    assert type(dagbag.dags["finetune"].timetable).__name__ == "NullTimetable"


def test_default_params_validate(dagbag):
    for dag in dagbag.dags.values():
        dag.params.validate()


@pytest.mark.parametrize("dag_id,name,bad", [
    ("data_refresh", "max_pages", -1),
    ("data_refresh", "max_pages", "many"),
    ("data_refresh", "seeds", []),
    ("data_refresh", "seeds", ["ftp://example.org/"]),
    ("data_refresh", "version", "../escape"),
    ("data_refresh", "vocab_size", 10),
    ("data_refresh", "pretrain", {"max_steps": 0}),
    ("data_refresh", "pretrain", {"unknown": 1}),
    ("pretrain", "max_steps", 0),
    ("pretrain", "np", 0),
    ("finetune", "task", "translation"),
    ("finetune", "base_model", "/tmp/model"),
    ("finetune", "epochs", 0),
])
def test_params_reject_bad_values(dagbag, dag_id, name, bad):
    with pytest.raises(ParamValidationError):
        dagbag.dags[dag_id].params.get_param(name).resolve(bad)


def test_seeds_default_to_the_demo_site(dagbag):
    from ops.settings import get_settings

    seeds = dagbag.dags["data_refresh"].params["seeds"]
    assert seeds == [f"{get_settings().site_url}/"]
