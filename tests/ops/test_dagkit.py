"""The plain helpers behind the DAGs (ops.dagkit): versions, crawl shards, job flags, results,
callbacks, launcher choice, MLflow links."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ops.dagkit import (airflow_context, callbacks, fanout, flags, hpo, launcher_choice, results, run_params,
                        tracking, training_task, versions)
from ops.dagkit import dag_params as dp
from ops.lake.datasets import DatasetVersion, check_version


def test_version_from_a_weekly_logical_date():
    weekly = datetime(2026, 11, 29, tzinfo=timezone.utc)
    later = datetime(2026, 11, 29, 5, 4, 3, tzinfo=timezone.utc)
    assert versions.derive_version(weekly, "scheduled__x") == "2026-11-29"
    assert versions.derive_version(later, "m") == "2026-11-29T050403"


def test_version_from_a_manual_run_id_is_valid_and_stable():
    run_id = "manual__2026-11-29T05:04:00.678525+00:00"
    v = versions.derive_version(None, run_id)
    assert check_version(v) == v
    assert v == versions.derive_version(None, run_id)
    long = "asset_triggered__" + "x" * 100 + "__tail123"
    assert versions.derive_version(None, long).endswith("tail123")


def test_crawl_args_default_the_scope_to_the_seed_hosts():
    params = {"seeds": ["http://127.0.0.1:28000/", "http://127.0.0.1:28000/b"], "allow_domains": [],
              "max_pages": 5, "max_depth": 1, "delay": 0.5, "allow_private": True}
    args = flags.stage_args("crawl", params, "/data", "v1")
    assert args[args.index("--allow-domains") + 1] == "127.0.0.1:28000"
    assert args[args.index("--seeds") + 1] == "http://127.0.0.1:28000/,http://127.0.0.1:28000/b"
    assert "--allow-private" in args and args[:4] == ["--root", "/data", "--version", "v1"]
    assert "--max-retries" not in args and "--user-agent" not in args  # the job's defaults
    more = flags.stage_args("crawl", {**params, "max_retries": 0, "retry_budget": 30.0, "fetch_deadline": 20.0,
                                   "user_agent": "bot/1"}, "/data", "v1")
    for flag, value in (("--max-retries", "0"), ("--retry-budget", "30.0"), ("--fetch-deadline", "20.0"),
                        ("--user-agent", "bot/1")):
        assert more[more.index(flag) + 1] == value
    from spark_jobs.jobs.crawl import build_parser

    parsed = build_parser().parse_args(more)  # the job accepts what the DAG passes
    assert (parsed.max_retries, parsed.retry_budget, parsed.fetch_deadline, parsed.user_agent) == \
        (0, 30.0, 20.0, "bot/1")


def test_later_stages_read_the_same_version():
    params = {"vocab_size": 512, "seq_len": 32}
    expected = ["--root", "/d", "--version", "v", "--input-version", "v"]
    assert flags.stage_args("clean", params, "/d", "v") == expected
    tok = flags.stage_args("tokenize", params, "/d", "v")
    assert tok[-4:] == ["--vocab-size", "512", "--seq-len", "32"]


def test_seed_must_be_absolute():
    with pytest.raises(ValueError, match="absolute"):
        fanout.seed_hosts(["/relative"])


def test_manifest_summary_reads_counts_and_tokens(tmp_path):
    v = DatasetVersion(str(tmp_path), "shards", "v1")
    (tmp_path / "shards" / "v=v1").mkdir(parents=True)
    (tmp_path / "shards" / "v=v1" / "train-00000.bin").write_bytes(b"\0" * 8)
    v.write_manifest(rows_in=3, rows_out=3, dropped={}, parents=[], config={}, extra={
        "splits": {"train": {"tokens": 100, "sequences": 3}, "val": {"tokens": 10, "sequences": 1}},
        "vocab_size": 512, "seq_len": 32})
    out = results.manifest_summary(str(tmp_path), "tokenize", "v1")
    assert out["uri"] == v.uri and out["rows_out"] == 3
    assert out["tokens"] == {"train": 100, "val": 10} and out["vocab_size"] == 512


def test_overrides_only_touch_known_params():
    params = {"max_steps": 300, "model": "tiny", "np": 2}
    merged = run_params.training_overrides(params, {"max_steps": 10, "bogus": 1, "np": None})
    assert merged == {"max_steps": 10, "model": "tiny", "np": 2}


def _shards(root, version):
    v = DatasetVersion(str(root), "shards", version)
    (root / "shards" / f"v={version}").mkdir(parents=True)
    v.write_manifest(rows_in=1, rows_out=1, dropped={}, parents=[], config={})
    return v.uri


def test_asset_triggered_pretrain_uses_the_event_shards_and_overrides(tmp_path):
    params = {"shards_uri": None, "max_steps": 300, "np": 2}
    extra = {run_params.EXTRA_SHARDS_URI: "/d/shards/v=7", run_params.EXTRA_PRETRAIN: {"max_steps": 10}}
    p, shards = run_params.resolve_pretrain(params, "asset_triggered", extra, str(tmp_path))
    assert shards == "/d/shards/v=7" and p["max_steps"] == 10 and p["np"] == 2


def test_manual_pretrain_defaults_to_the_latest_shards(tmp_path):
    _shards(tmp_path, "v1")
    newest = _shards(tmp_path, "v2")
    params = {"shards_uri": None, "max_steps": 300}
    extra = {run_params.EXTRA_PRETRAIN: {"max_steps": 1}}
    p, shards = run_params.resolve_pretrain(params, "manual", extra, str(tmp_path))
    assert shards == newest and p["max_steps"] == 300
    assert run_params.resolve_pretrain({"shards_uri": "/x"}, "manual", None, str(tmp_path))[1] == "/x"


def test_pretrain_without_shards_says_what_to_run(tmp_path):
    with pytest.raises(RuntimeError, match="data_refresh"):
        run_params.resolve_pretrain({"shards_uri": None}, "manual", None, str(tmp_path))


def test_training_args(tmp_path):
    p = {"model": "tiny", "max_steps": 10, "batch_size": None, "extra_args": ["--lr", "0.001"]}
    args = flags.pretrain_args(p, "/d/shards/v=1", "/d", "run_1", tmp_path / "r.json")
    assert args[:2] == ["--shards", "/d/shards/v=1"] and args[-2:] == ["--lr", "0.001"]
    assert "--batch-size" not in args
    assert args[args.index("--checkpoint-dir") + 1] == "/d/checkpoints/pretrain/run_1"
    ft = {"base_model": "models:/c2m-base@champion", "task": "sentiment", "epochs": 1}
    f = flags.finetune_args(ft, tmp_path)
    assert f[f.index("--register-name") + 1] == "c2m-sentiment" and f[f.index("--epochs") + 1] == "1"
    assert "--epochs" not in flags.finetune_args({**ft, "epochs": None}, tmp_path)  # the job picks them


# ---------------------------------------------------------------- Params, failures, launch, MLflow links

def test_param_choices_come_from_the_training_code():
    from ops.launch.settings import Settings
    from training import config
    from training.tasks.config import TASKS

    s = Settings()
    assert dp.pretrain_params(s)["model"]["enum"] == [*config.NAMED_CONFIGS, None]
    assert dp.pretrain_params(s)["objective"]["enum"] == list(config.OBJECTIVES)
    assert dp.finetune_params(s)["task"]["enum"] == list(TASKS)
    assert dp.finetune_params(s)["promote"]["enum"] == list(config.PROMOTE_MODES)


def test_every_param_spec_is_a_complete_form_field():
    from ops.launch.settings import Settings

    s = Settings()
    for dag_id, specs in ((d, f(s)) for d, f in dp.PARAM_SPECS.items()):
        for name, spec in specs.items():
            assert {"default", "title", "description", "type"} <= set(spec), f"{dag_id}.{name}"


def test_model_uri_pattern():
    import re

    ok = ["models:/c2m-base@champion", "models:/c2m-base/12", "runs:/" + "0" * 32 + "/model"]
    bad = ["models:/c2m-base", "/tmp/model", "models:/@champion", "runs:/xyz/model", "s3://b/m"]
    from training.tasks.config import MODEL_URI_PATTERN

    assert all(re.match(MODEL_URI_PATTERN, u) for u in ok)
    assert not any(re.match(MODEL_URI_PATTERN, u) for u in bad)


def test_dedup_flags_only_when_not_the_default():
    assert flags.stage_args("dedup", {"near_dedup": True, "dedup_threshold": None, "dedup_against": "earlier"},
                         "/d", "v") == ["--root", "/d", "--version", "v", "--input-version", "v"]
    args = flags.stage_args("dedup", {"near_dedup": False, "dedup_threshold": 0.8, "dedup_against": "none"},
                         "/d", "v")
    assert args[6:] == ["--no-near-dedup", "--threshold", "0.8", "--dedup-against", "none"]


def test_clean_stage_gets_language_flags():
    args = flags.stage_args("clean", {"langs": ["en", "de"], "min_lang_score": 0.7}, "/d", "v")
    assert args[-4:] == ["--langs", "en,de", "--min-lang-score", "0.7"]


def test_task_defaults_back_off_exponentially_and_report(monkeypatch):
    from datetime import timedelta

    monkeypatch.delenv(callbacks.RETRY_DELAY_ENV, raising=False)
    d = callbacks.task_defaults(callbacks.OWNER_ML, retries=2, timeout=timedelta(hours=1))
    assert d["retry_exponential_backoff"] == 2.0 and d["retry_delay"] == timedelta(minutes=1)
    assert d["on_failure_callback"] is callbacks.report_failure
    assert d["execution_timeout"] == timedelta(hours=1)
    monkeypatch.setenv(callbacks.RETRY_DELAY_ENV, "2")
    d = callbacks.task_defaults(callbacks.OWNER_ML, retries=1, timeout=timedelta(hours=1))
    assert d["retry_delay"] == timedelta(seconds=2) and d["max_retry_delay"] == timedelta(seconds=8)


def test_trigger_poke_interval_is_ten_seconds_unless_the_environment_shortens_it(monkeypatch):
    monkeypatch.delenv(callbacks.TRIGGER_POKE_ENV, raising=False)
    assert callbacks.trigger_poke_interval() == 10.0
    monkeypatch.setenv(callbacks.TRIGGER_POKE_ENV, "1")
    assert callbacks.trigger_poke_interval() == 1.0
    monkeypatch.setenv(callbacks.TRIGGER_POKE_ENV, "0")
    assert callbacks.trigger_poke_interval() == 0.5  # never a busy loop in the triggerer


class _TI:
    dag_id, task_id, run_id, try_number, max_tries, map_index = "pretrain", "train", "manual__1", 2, 2, -1


def test_failure_summary_names_dag_task_try_and_the_jobs_last_lines(monkeypatch, caplog):
    from ops.launch.local import LaunchError

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://af:8080")
    exc = LaunchError("training training.pretrain failed with exit code 1. Command: horovodrun ...",
                      tail=["step 3 ...", "ShardError: no train-*.bin under /d/shards/v=1"])
    text = callbacks.failure_summary({"ti": _TI(), "exception": exc})
    assert text.splitlines()[0] == "[crawl2model] pretrain.train FAILED (try 2 of 3, run manual__1)"
    assert "error: LaunchError: training training.pretrain failed with exit code 1" in text
    assert "last 2 lines of the job's output:" in text and "| ShardError: no train-*.bin" in text
    assert "task: http://af:8080/dags/pretrain/runs/manual__1/tasks/train" in text
    assert text.count("ShardError") == 1  # the tail is shown once, not again inside the message
    with caplog.at_level("WARNING", logger="crawl2model"):
        callbacks.report_retry({"ti": _TI(), "exception": ValueError("bad\nsecond line")})
    assert "failed, will retry" in caplog.text and "ValueError: bad" in caplog.text


def test_failure_summary_explains_a_timeout():
    class AirflowTaskTimeout(Exception):
        pass

    text = callbacks.failure_summary({"ti": _TI(), "exception": AirflowTaskTimeout("Timeout, PID: 1")})
    assert "execution_timeout" in text


def test_tracking_env_tags_the_mlflow_run_with_the_airflow_links():
    env = tracking.tracking_env("finetune", "manual__2026-01-01T00:00:00+00:00", "train", 1, "http://af:8080")
    tags = json.loads(env["MLFLOW_RUN_CONTEXT"])
    url = "http://af:8080/dags/finetune/runs/manual__2026-01-01T00:00:00+00:00"
    assert tags["airflow.dag_run_url"] == url
    assert tags["airflow.task_id"] == "train" and env["C2M_AIRFLOW_RUN_URL"] == tags["airflow.dag_run_url"]
    assert tracking.mlflow_run_name("finetune", "r1", "train") == "finetune.train@r1"
    assert tracking.mlflow_run_name("hpo", "r1", "trial", 3) == "hpo.trial[3]@r1"


def test_result_location_is_local_or_on_the_data_root(tmp_path):
    from ops.launch.settings import Settings

    s = Settings(stack_dir=tmp_path, data_root="s3://b/data")
    local = results.result_location(s, "local", "pretrain", "r:1", "train")
    assert local == str(tmp_path / "results/pretrain/r_1/train.json")
    assert results.result_location(s, "kubernetes", "pretrain", "r:1", "train") == \
        "s3://b/data/_airflow/results/pretrain/r_1/train.json"


def test_task_launcher_reads_the_variable_at_run_time(monkeypatch):
    from ops.launch.kubernetes.launcher import KubernetesLauncher
    from ops.launch.local import LocalLauncher
    from ops.launch.settings import Settings

    monkeypatch.delenv("C2M_LAUNCHER", raising=False)
    variables = {}
    assert isinstance(launcher_choice.task_launcher(Settings(), variables.get), LocalLauncher)
    variables.update(c2m_launcher="kubernetes", c2m_cluster='{"namespace": "ml", "workers": 4}')
    launcher = launcher_choice.task_launcher(Settings(), variables.get)
    assert isinstance(launcher, KubernetesLauncher) and launcher.cfg.workers == 4
    assert airflow_context.airflow_variable("c2m_launcher") is None  # outside a task: no Variable, no error


def test_s3_connection_becomes_the_task_environment_without_logging_the_secret(monkeypatch, caplog):
    class Conn:
        login, password = "AKIDCONN", "conn-secret-5e1f"
        extra_dejson = {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"}

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "")  # recorded, so the test's exports are undone afterwards
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # already set: the environment wins
    caplog.set_level("INFO", logger="crawl2model")
    assert launcher_choice.apply_s3_connection({"c2m_s3": Conn()}.get)
    import os

    assert (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]) == ("AKIDCONN", "conn-secret-5e1f")
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert "AWS_SECRET_ACCESS_KEY" in caplog.text and "conn-secret-5e1f" not in caplog.text
    assert not launcher_choice.apply_s3_connection({}.get)  # no connection: nothing to do
    assert airflow_context.airflow_connection("c2m_s3") is None  # outside a task: no error


def test_training_task_launches_with_tags_and_returns_the_result(tmp_path, monkeypatch):
    from ops.launch.settings import Settings

    class FakeLauncher:
        kind = "local"

        def train(self, module, args, np=None, *, name="", env=None):
            self.seen = (module, args, np, name, env)
            result = Path(args[args.index("--result-file") + 1])
            result.write_text(json.dumps({"run_id": "abc", "model_version": 3}))

    monkeypatch.setattr(training_task, "mlflow_url", lambda uri, run_id: f"http://mlflow/#/runs/{run_id}")
    launcher = FakeLauncher()
    job = training_task.TrainingTask({"ti": _TI()}, Settings(stack_dir=tmp_path), launcher)
    Path(job.result_file).parent.mkdir(parents=True)
    Path(job.result_file).write_text("stale")  # a result left by an earlier try is removed first
    result = job.run("training.pretrain", ["--result-file", job.result_file], 2)
    assert result == {"run_id": "abc", "model_version": 3, "mlflow_run_url": "http://mlflow/#/runs/abc"}
    module, _, np, name, env = launcher.seen
    assert (module, np) == ("training.pretrain", 2) and "MLFLOW_RUN_CONTEXT" in env
    assert job.run_name == "pretrain.train@manual__1"
    note = tracking.mlflow_note("pretrain", result)
    assert "[abc](http://mlflow/#/runs/abc)" in note and "model: `3`" in note


def test_a_missing_job_module_fails_before_launch(tmp_path):
    from ops.launch.settings import Settings

    with pytest.raises(RuntimeError, match="training.hpo is not available"):
        training_task.require_module(Settings(repo_root=tmp_path), "training.hpo", "Build it first.")


def _job_parse(spec, args: list[str]):
    """Parse flags with the parser a training job builds from its settings (no torch import)."""
    import argparse

    from ops.lake.jobconfig import add_arguments

    return add_arguments(argparse.ArgumentParser(), spec).parse_args(args)


def test_finetune_and_hpo_flags():
    from training.job_settings import FINETUNE_SETTINGS, HPO_SETTINGS

    p = {"base_model": "models:/c2m-base@champion", "task": "pos", "subset": "wsj", "data": "",
         "max_examples": 64, "lr": 3e-4, "batch_size": 8, "freeze_layers": 0, "promote": "never", "epochs": 1,
         "extra_args": ["--lr", "0.01"]}
    args = flags.finetune_args(p, "/r.json", ["--run-name", "x"])
    assert args[-4:] == ["--run-name", "x", "--lr", "0.01"]  # the user's extra flags come last and win
    assert "--data" not in args and "--freeze-layers" not in args  # the job's defaults are not repeated
    got = _job_parse(FINETUNE_SETTINGS, args)
    assert (got.task, got.subset, got.max_examples, got.batch_size, got.promote, got.epochs, got.lr,
            got.register_name, got.result_file) == \
        ("pos", "wsj", 64, 8, "never", 1, 0.01, "c2m-pos", "/r.json")
    hp = {**p, "n_trials": 4, "sampler": "tpe", "pruner": "median", "lr_min": 1e-5, "lr_max": 1e-3,
          "extra_args": []}
    setup = flags.hpo_args(hp, "pos-r1", "hpo@r1", "/r.json", trials=0)
    got = _job_parse(HPO_SETTINGS, setup)
    assert got.n_trials == 0 and "--storage" not in setup  # the URL travels by environment only
    assert got.experiment == "hpo" and got.study_name == "pos-r1" and got.no_finalize
    assert got.lr_max == 1e-3 and got.parent_run_id == ""
    trial = _job_parse(HPO_SETTINGS, flags.hpo_args(hp, "pos-r1", "hpo@r1", "/r.json", trials=3,
                                                 parent_run_id="p1"))
    assert trial.parent_run_id == "p1" and trial.n_trials == 3 and trial.no_finalize
    final = flags.hpo_args(hp, "pos-r1", "hpo@r1", "/r.json", trials=0, parent_run_id="p1", finalize=True)
    assert "--no-finalize" not in final


def test_trials_are_split_evenly_over_the_mapped_tasks():
    assert fanout.split_trials(8, 3) == [3, 3, 2]
    assert fanout.split_trials(2, 5) == [1, 1]
    assert fanout.split_trials(4, 1) == [4]


def test_compress_flags_carry_the_changed_knobs():
    from training.job_settings import COMPRESS_SETTINGS

    base = {"model": "models:/c2m-sentiment@champion", "register_name": "", "max_examples": 0,
            "sparsity": 0.5, "structured": True, "student_layers": 1, "temperature": 2.0, "alpha": 0.5,
            "finetune_epochs": 1, "extra_args": []}
    q = flags.compress_args({**base, "method": "quantize"}, "n", "/r.json")
    assert "--sparsity" not in q and "--temperature" not in q and "--finetune-epochs" not in q  # defaults
    pr = flags.compress_args({**base, "method": "prune", "sparsity": 0.7}, "n", "/r.json")
    got = _job_parse(COMPRESS_SETTINGS, pr)
    assert (got.method, got.sparsity, got.structured, got.run_name) == ("prune", 0.7, True, "n")
    assert _job_parse(COMPRESS_SETTINGS, q).model == base["model"]


def test_cross_field_checks():
    with pytest.raises(ValueError, match="data"):
        run_params.check_training_params({"task": "tagging", "data": None})
    with pytest.raises(ValueError, match="does not belong"):
        run_params.check_training_params({"task": "sentiment", "subset": "wsj"})
    with pytest.raises(ValueError, match="lr_min"):
        run_params.check_training_params({"task": "sentiment", "lr_min": 1e-3, "lr_max": 1e-4})
    run_params.check_training_params({"task": "pos", "subset": "oanc", "lr_min": 1e-5, "lr_max": 1e-3})


def test_optuna_storage_is_shared_sqlite_here_or_from_env(tmp_path, monkeypatch):
    from ops.launch.settings import Settings

    monkeypatch.delenv("C2M_OPTUNA_STORAGE", raising=False)
    assert hpo.optuna_storage(Settings(stack_dir=tmp_path), "s/1") == f"sqlite:///{tmp_path}/optuna/s_1.db"
    monkeypatch.setenv("C2M_OPTUNA_STORAGE", "postgresql://optuna@db/optuna")
    assert hpo.optuna_storage(Settings(stack_dir=tmp_path), "s") == "postgresql://optuna@db/optuna"


def test_end_to_end_confs_chain_the_version_without_publishing():
    p = {"seeds": ["http://x/"], "max_pages": 5, "model": "tiny", "max_steps": 3, "task": "sentiment",
         "epochs": 1, "refresh_conf": {"delay": 0.0, "publish": True}, "pretrain_conf": {"np": 1},
         "finetune_conf": {"extra_args": ["--max-examples", "8"]}}
    confs = run_params.end_to_end_confs(p, "e2e_1", "/data")
    assert confs["data_refresh"] == {"delay": 0.0, "seeds": ["http://x/"], "max_pages": 5, "version": "e2e_1",
                                     "publish": False}
    assert confs["pretrain"] == {"np": 1, "model": "tiny", "max_steps": 3,
                                 "shards_uri": "/data/shards/v=e2e_1"}
    assert confs["finetune"] == {"extra_args": ["--max-examples", "8"], "task": "sentiment", "epochs": 1}


def test_encoder_objectives_register_under_their_own_name():
    from ops.dagkit.flags import pretrain_args

    base = {"model": "tiny", "max_steps": 5}
    for objective, name in ((None, "c2m-base"), ("clm", "c2m-base"), ("span", "c2m-base"),
                            ("mlm", "c2m-bert"), ("contrastive", "c2m-bert")):
        args = pretrain_args({**base, "objective": objective}, "s", "/r", "run", "/res.json")
        assert args[args.index("--register-name") + 1] == name, objective


# ---------------------------------------------------------------- crawl shards

CRAWL = {"allow_domains": [], "max_pages": 100, "max_depth": 1, "delay": 0.5, "allow_private": True}
SEEDS = ["http://b.test/", "http://a.test/x", "http://c.test:8080/", "http://a.test/y", "http://d.test/",
         "http://e.test/"]


def _hosts(shard: dict) -> set[str]:
    return set(fanout.seed_hosts(shard["seeds"]))


def test_one_crawl_shard_is_todays_crawl():
    for extra in ({}, {"crawl_shards": 1}, {"allow_domains": ["a.test", "b.test"]}):
        params = {**CRAWL, "seeds": SEEDS, **extra}
        (shard,) = fanout.crawl_shards(params, "v1")
        assert shard["version"] == "v1" and shard["index"] == 0
        assert flags.shard_crawl_args(params, "/d", shard) == flags.stage_args("crawl", params, "/d", "v1")
    today = flags.stage_args("extract", CRAWL, "/d", "v1")
    assert flags.stage_args("extract", CRAWL, "/d", "v1", inputs=["v1"]) == today


@pytest.mark.parametrize("requested", [2, 3, 5, 64])
def test_crawl_shards_keep_hosts_together_and_share_max_pages(requested):
    params = {**CRAWL, "seeds": SEEDS, "crawl_shards": requested}
    shards = fanout.crawl_shards(params, "v1")
    assert len(shards) == min(requested, 5)  # five distinct hosts
    assert sum(s["max_pages"] for s in shards) == 100 and min(s["max_pages"] for s in shards) >= 1
    assert sorted(u for s in shards for u in s["seeds"]) == sorted(SEEDS)  # every seed, once
    hosts = [_hosts(s) for s in shards]
    assert sum(len(h) for h in hosts) == 5  # no host in two shards
    for s in shards:
        assert sorted(s["allow_domains"]) == sorted(fanout.seed_hosts(s["seeds"]))  # the scope is its own hosts
        assert s["version"] == f"v1-c{s['index']}" and check_version(s["version"])
    a = next(s for s in shards if "a.test" in _hosts(s))
    assert [u for u in a["seeds"] if "a.test" in u] == ["http://a.test/x", "http://a.test/y"]  # seed order
    assert fanout.crawl_shards(dict(params), "v1") == shards  # deterministic
    assert fanout.crawl_shards({**params, "seeds": list(reversed(SEEDS))}, "v1")[0]["allow_domains"] == \
        shards[0]["allow_domains"]  # assignment does not depend on seed order


def test_crawl_shards_never_exceed_max_pages():
    shards = fanout.crawl_shards({**CRAWL, "seeds": SEEDS, "crawl_shards": 8, "max_pages": 2}, "v")
    assert [s["max_pages"] for s in shards] == [1, 1]


def test_user_scope_is_split_so_no_host_is_in_two_shards():
    params = {**CRAWL, "crawl_shards": 4, "seeds": ["http://a.test/", "http://x.a.test/", "http://b.test/",
                                                      "http://nowhere.test/"],
              "allow_domains": ["a.test", "x.a.test:80", "b.test", "links-only.test"]}
    shards = fanout.crawl_shards(params, "v")
    assert len(shards) == 2  # a.test admits x.a.test: one unit; b.test another
    scopes = [set(s["allow_domains"]) for s in shards]
    assert set().union(*scopes) == set(params["allow_domains"]) and sum(map(len, scopes)) == 4
    a = next(s for s in shards if "a.test" in s["allow_domains"])
    assert set(a["allow_domains"]) >= {"a.test", "x.a.test:80"}
    assert {"http://a.test/", "http://x.a.test/"} <= set(a["seeds"])
    assert "http://nowhere.test/" in shards[0]["seeds"]  # out of scope anyway, as with one shard


def test_shard_versions_stay_valid_and_distinct_for_long_versions():
    long = "x" * 64
    shard_versions = {versions.shard_version(long, k) for k in range(64)}
    assert len(shard_versions) == 64 and all(check_version(v) == v for v in shard_versions)


def test_extract_reads_every_shard():
    args = flags.stage_args("extract", CRAWL, "/d", "v", inputs=["v-c0", "v-c1"])
    assert args == ["--root", "/d", "--version", "v", "--input-versions", "v-c0,v-c1"]
    from spark_jobs.jobs.extract import build_parser

    assert build_parser().parse_args(args).input_versions == ["v-c0", "v-c1"]


def test_crawl_shards_param_is_bounded():
    spec = dp.data_refresh_params(ds_settings())["crawl_shards"]
    assert (spec["default"], spec["minimum"], spec["maximum"], spec["section"]) == (1, 1, 64, "Crawl")
    assert spec["description"]


def test_demo_merges_the_crawl_shards_summaries():
    from ops.stack.demo_runs import merge_crawl_summaries

    one = {"stage": "crawl", "uri": "/d/raw/v=v", "version": "v", "rows_in": 3, "rows_out": 2,
           "dropped": {"robots_disallowed": 1}}
    assert merge_crawl_summaries([one]) == one and merge_crawl_summaries([]) is None
    two = {**one, "uri": "/d/raw/v=v-c1", "version": "v-c1",
           "dropped": {"robots_disallowed": 2, "http_404": 1}}
    merged = merge_crawl_summaries([one, two])
    assert (merged["rows_in"], merged["rows_out"]) == (6, 4)
    assert merged["dropped"] == {"robots_disallowed": 3, "http_404": 1}
    assert merged["uris"] == ["/d/raw/v=v", "/d/raw/v=v-c1"]


def ds_settings():
    from ops.launch.settings import get_settings

    return get_settings()


def test_the_optuna_url_goes_to_the_job_environment_only(tmp_path, monkeypatch):
    from ops.launch.settings import Settings

    monkeypatch.delenv("C2M_OPTUNA_STORAGE", raising=False)
    env = hpo.optuna_env(Settings(stack_dir=tmp_path), "s/1")
    assert env == {"C2M_OPTUNA_STORAGE": f"sqlite:///{tmp_path}/optuna/s_1.db"}
    assert (tmp_path / "optuna").is_dir()  # SQLite needs the folder
    monkeypatch.setenv("C2M_OPTUNA_STORAGE", "postgresql://optuna:pw-123@db/optuna")
    assert hpo.optuna_env(Settings(stack_dir=tmp_path), "s") == {
        "C2M_OPTUNA_STORAGE": "postgresql://optuna:pw-123@db/optuna"}
    p = {"base_model": "m", "task": "pos", "epochs": 1, "sampler": "tpe", "pruner": "median",
         "lr_min": 1e-5, "lr_max": 1e-3}
    assert not [a for a in flags.hpo_args(p, "s", "hpo@r", "/r.json", 2) if "pw-123" in a or "sqlite" in a]


def test_ingest_version_and_args():
    from ops.dagkit.flags import ingest_args
    from ops.dagkit.versions import OUTPUT_STAGE, ingest_version

    assert ingest_version("2026-03-01", "warc") == "2026-03-01"  # the only raw input: the run's version
    assert ingest_version("2026-03-01", "both") == "2026-03-01-w"  # beside the crawl's
    long = ingest_version("v" * 64, "both")
    assert len(long) <= 64 and long.endswith("-w") and long != ingest_version("v" * 63 + "x", "both")
    params = {"source": "warc", "warc_glob": " s3://b/cc/*.warc.gz "}
    assert ingest_args(params, "/data", "v1") == ["--root", "/data", "--version", "v1",
                                                  "--warc-glob", "s3://b/cc/*.warc.gz"]
    with pytest.raises(ValueError, match="warc_glob"):
        ingest_args({"source": "warc", "warc_glob": None}, "/data", "v1")
    assert OUTPUT_STAGE["ingest"] == "raw"
