"""Every DAG imports cleanly, touches no DB or network while parsing, and is wired as designed.

Run with .venv-airflow/bin/pytest tests/dags.
"""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("airflow", reason="DAG tests run under .venv-airflow")

from airflow.sdk.definitions.param import ParamValidationError  # noqa: E402

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {"data_refresh", "pretrain", "finetune", "hpo", "compress", "end_to_end"}
MANUAL = ("finetune", "hpo", "compress", "end_to_end")


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


def test_data_refresh_is_weekly_and_linear_in_stage_groups(dagbag):
    dag = dagbag.dags["data_refresh"]
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert dag.timetable.expression in ("@weekly", "0 0 * * 0")
    assert dag.max_active_runs == 1
    order = ["plan", "ingest.crawl", "ingest.extract", "refine.clean", "refine.dedup", "package.tokenize",
             "package.publish"]
    for up, down in zip(order, order[1:]):
        assert down in dag.get_task(up).downstream_task_ids
    assert set(dag.task_group.children) == {"plan", "ingest", "refine", "package"}
    for t in dag.tasks:
        assert t.retries == 2 and t.retry_delay.total_seconds() > 0


def test_data_refresh_fans_the_crawl_out_over_mapped_shards(dagbag):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag = dagbag.dags["data_refresh"]
    crawl = dag.get_task("ingest.crawl")
    assert isinstance(crawl, MappedOperator)
    assert crawl.upstream_task_ids == {"plan", "ingest.shards"}
    assert not isinstance(dag.get_task("ingest.extract"), MappedOperator)
    assert dag.get_task("ingest.extract").upstream_task_ids == {"plan", "ingest.crawl", "ingest.warc"}
    shards = dag.params.get_param("crawl_shards")
    assert shards.resolve(1) == 1 and shards.value == 1
    for bad in (0, 65, "two"):
        with pytest.raises(ParamValidationError):
            shards.resolve(bad)


def test_data_refresh_branches_between_crawl_and_warc_ingest(dagbag):
    dag = dagbag.dags["data_refresh"]
    source = dag.get_task("ingest.source")
    assert source.downstream_task_ids == {"ingest.shards", "ingest.warc"}
    assert dag.get_task("ingest.extract").trigger_rule == "none_failed_min_one_success"
    assert dag.params.get_param("source").value == "crawl"  # the demo relies on it
    for good in ("warc", "both"):
        dag.params.get_param("source").resolve(good)
    for good in ("/data/cc/*.warc.gz", "s3://bucket/cc/CC-MAIN-*/*.warc.wet.gz", None):
        dag.params.get_param("warc_glob").resolve(good)
    for bad in ("relative/*.warc.gz", "http://x/a.warc.gz", ""):
        with pytest.raises(ParamValidationError):
            dag.params.get_param("warc_glob").resolve(bad)
    with pytest.raises(ParamValidationError):
        dag.params.get_param("source").resolve("ftp")


def _corpus_assets(dag) -> list:
    return [(t.task_id, a) for t in dag.tasks for a in t.outlets if getattr(a, "name", None) == "corpus"]


def test_data_refresh_emits_the_corpus_asset_last(dagbag):
    from ops.dagkit.assets import CORPUS

    dag = dagbag.dags["data_refresh"]
    assert _corpus_assets(dag) == [("package.publish", CORPUS)]
    assert not dag.get_task("package.publish").downstream_task_ids


def test_pretrain_is_scheduled_on_the_asset_data_refresh_emits(dagbag):
    from ops.dagkit.assets import CORPUS, corpus_uri
    from ops.launch.settings import get_settings

    condition = dagbag.dags["pretrain"].timetable.asset_condition
    assert list(condition.objects) == [CORPUS]
    assert (CORPUS.name, CORPUS.uri) == ("corpus", corpus_uri(get_settings().data_root))


def test_the_corpus_uri_names_the_shards_dataset_under_the_data_root(tmp_path):
    from ops.dagkit.assets import corpus_uri

    assert corpus_uri("s3://lake/data/") == "s3://lake/data/shards"
    assert corpus_uri(str(tmp_path)) == f"file://{tmp_path.resolve()}/shards"


@pytest.mark.parametrize("dag_id", MANUAL)
def test_manual_dags_have_no_schedule(dagbag, dag_id):
    assert type(dagbag.dags[dag_id].timetable).__name__ == "NullTimetable"


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
    ("pretrain", "model", "huge"),
    ("pretrain", "lr", 0),
    ("pretrain", "lr", 2.0),
    ("pretrain", "shards_uri", "relative/path"),
    ("finetune", "base_model", "models:/c2m-base"),
    ("finetune", "base_model", "models:/c2m base@champion"),
    ("finetune", "subset", "tweets"),
    ("finetune", "promote", "sometimes"),
    ("hpo", "n_trials", 0),
    ("hpo", "sampler", "grid"),
    ("hpo", "lr_max", -1e-3),
    ("hpo", "study_name", "../x"),
    ("compress", "method", "zip"),
    ("compress", "sparsity", 1.0),
    ("compress", "temperature", 0),
    ("compress", "model", "s3://bucket/model"),
    ("end_to_end", "max_pages", 0),
    ("end_to_end", "model", "huge"),
    ("data_refresh", "langs", ["english"]),
    ("data_refresh", "min_lang_score", 1.5),
    ("data_refresh", "dedup_threshold", 0.2),
    ("data_refresh", "dedup_against", "../escape"),
    ("data_refresh", "dedup_against", "v1,,v2"),
])
def test_params_reject_bad_values(dagbag, dag_id, name, bad):
    with pytest.raises(ParamValidationError):
        dagbag.dags[dag_id].params.get_param(name).resolve(bad)


def test_seeds_default_to_the_demo_site(dagbag):
    from ops.launch.settings import get_settings

    seeds = dagbag.dags["data_refresh"].params["seeds"]
    assert seeds == [f"{get_settings().site_url}/"]


@pytest.mark.parametrize("dag_id,name,bad", [
    ("data_refresh", "max_pages", 0),
    ("pretrain", "lr", 5.0),
    ("finetune", "base_model", "not-a-uri"),
    ("hpo", "sampler", "grid"),
    ("compress", "method", "zip"),
    ("end_to_end", "epochs", 0),
])
def test_a_bad_value_fails_whole_dag_validation_naming_the_field(dagbag, dag_id, name, bad):
    """What the API and the trigger form do with a run's conf: merge, validate, name the field."""
    import copy

    params = copy.deepcopy(dagbag.dags[dag_id].params)
    with pytest.raises(ParamValidationError, match=rf"param {name}\b"):
        params[name] = bad
        params.validate()


def test_every_param_has_a_form(dagbag):
    """Every Param of every DAG: a title, a description and a JSON-schema type for the form."""
    for dag in dagbag.dags.values():
        assert dag.params, f"{dag.dag_id} has no Params form"
        for name, param in dag.params.items():
            schema = param.schema
            assert param.description, f"{dag.dag_id}.{name} needs a description"
            assert schema.get("title"), f"{dag.dag_id}.{name} needs a title"
            assert schema.get("type"), f"{dag.dag_id}.{name} needs a type"
            numeric = schema["type"] in ("integer", "number") or (
                isinstance(schema["type"], list) and {"integer", "number"} & set(schema["type"]))
            if numeric:
                assert {"minimum", "exclusiveMinimum"} & set(schema), f"{dag.dag_id}.{name} needs a range"


def test_enums_and_patterns_where_users_pick_names(dagbag):
    from training.config import MODEL_SIZES
    from training.tasks.config import TASKS

    models = dagbag.dags["pretrain"].params.get_param("model").schema["enum"]
    assert models == [*MODEL_SIZES, None] and {"tiny", "small"} <= set(models)  # None: by objective
    assert set(dagbag.dags["finetune"].params.get_param("task").schema["enum"]) == set(TASKS)
    lr = dagbag.dags["finetune"].params.get_param("lr").schema
    assert lr["exclusiveMinimum"] == 0 and lr["maximum"] == 1
    for dag_id in ("finetune", "hpo"):
        base = dagbag.dags[dag_id].params.get_param("base_model")
        for good in ("models:/c2m-base@champion", "models:/c2m-base/3", "runs:/" + "a" * 32 + "/model"):
            base.resolve(good)


def test_every_task_retries_with_backoff_a_timeout_and_failure_reports(dagbag):
    from ops.dagkit.callbacks import report_failure, report_retry

    for dag in dagbag.dags.values():
        for t in dag.tasks:
            where = f"{dag.dag_id}.{t.task_id}"
            assert t.owner in ("data-platform", "ml-platform"), where
            assert t.execution_timeout is not None and t.execution_timeout.total_seconds() >= 3600, where
            assert report_failure in _callbacks(t.on_failure_callback), where
            if t.retries:
                assert t.retry_exponential_backoff == 2.0 and t.max_retry_delay is not None, where
                assert report_retry in _callbacks(t.on_retry_callback), where


def _callbacks(value) -> list:
    return value if isinstance(value, list) else [value] if value else []


def test_end_to_end_triggers_each_stage_in_turn_and_waits(dagbag):
    dag = dagbag.dags["end_to_end"]
    order = ["plan", "stages.data_refresh", "stages.pretrain", "stages.finetune"]
    for up, down in zip(order, order[1:]):
        assert down in dag.get_task(up).downstream_task_ids
    for stage in ("data_refresh", "pretrain", "finetune"):
        t = dag.get_task(f"stages.{stage}")
        assert t.trigger_dag_id == stage
        assert t.wait_for_completion and t.deferrable and t.reset_dag_run and t.fail_when_dag_is_paused
        assert t.conf.operator.task_id == "plan" and t.conf.key == stage  # the planned conf, via XCom
        assert t.retries == 0


def test_hpo_fans_trials_out_with_dynamic_task_mapping(dagbag):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    hpo = dagbag.dags["hpo"]
    trial = hpo.get_task("search.trial")
    assert isinstance(trial, MappedOperator)
    assert trial.upstream_task_ids == {"search.slots"}
    assert hpo.get_task("search.slots").upstream_task_ids == {"plan", "search.setup"}
    assert hpo.get_task("search.finalize").upstream_task_ids == {"plan", "search.setup", "search.trial"}
    assert "np" not in hpo.params  # training.hpo runs one rank per process
    assert [t.task_id for t in dagbag.dags["compress"].tasks] == ["compress"]


def test_a_broken_dag_file_does_not_break_the_others(tmp_path):
    """A syntax error in one file is an import error for that file only."""
    import shutil

    from airflow.dag_processing.dagbag import DagBag

    for f in DAGS_DIR.glob("*.py"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "broken.py").write_text("from airflow.sdk import dag\n\n@dag(\ndef oops(:\n")
    bag = DagBag(dag_folder=str(tmp_path))
    assert list(bag.import_errors) == [str(tmp_path / "broken.py")]
    assert set(bag.dag_ids) == EXPECTED
