"""Pretraining objectives, LAMB, mixed precision, divergence, early stopping, champion gate (in-process)."""

import pytest
import torch

from training.guards import EarlyStopping, TrainingDiverged

STEPS = 12
GPT_NAME, BERT_NAME = "c2m-base-obj-test", "c2m-bert-obj-test"


def _args(shards_uri, tmp, name, *extra, steps=STEPS):
    return [
        "--shards",
        shards_uri,
        "--max-steps",
        str(steps),
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--warmup-steps",
        "3",
        "--eval-every",
        "6",
        "--eval-batches",
        "2",
        "--log-every",
        "4",
        "--checkpoint-every",
        "6",
        "--checkpoint-dir",
        str(tmp / name),
        "--experiment",
        "pretrain-objectives-test",
        "--run-name",
        name,
        "--register-name",
        GPT_NAME,
        *extra,
    ]


@pytest.fixture
def run(shards_uri, mlflow_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    from training import pretrain

    def go(name, *extra, steps=STEPS):
        return pretrain.main(_args(shards_uri, tmp_path, name, *extra, steps=steps))

    return go


def _client(mlflow_uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


@pytest.mark.parametrize(
    "objective, extra, kind",
    [
        ("span", [], "gpt-lm"),
        ("mixture", ["--mixture", "clm=0.4,span=0.3,mlm=0.3"], "gpt-lm"),
        ("mlm", ["--whole-word-mask"], "bert-mlm"),
        ("contrastive", ["--crop-len", "24"], "bert-mlm"),
    ],
)
def test_each_objective_trains_logs_and_registers(run, mlflow_uri, monkeypatch, objective, extra, kind):
    from training import tracking

    name = GPT_NAME if kind == "gpt-lm" else BERT_NAME
    result = run(objective, "--objective", objective, "--register-name", name, *extra)
    assert result["objective"] == objective and result["steps"] == STEPS
    client = _client(mlflow_uri)
    losses = [m.value for m in client.get_metric_history(result["run_id"], "train/loss")]
    assert len(losses) == STEPS and losses[-1] < losses[0]
    run_data = client.get_run(result["run_id"]).data
    assert run_data.params["objective.name"] == objective
    assert run_data.tags["c2m.objective"] == objective
    for key in ("train/grad_norm", "train/lr", "perf/tokens_per_s", "val/loss"):
        assert key in run_data.metrics, key
    if objective == "mixture":
        assert {"val/loss_clm", "val/loss_span", "val/loss_mlm"} <= set(run_data.metrics)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    bundle = tracking.load_model_bundle(result["model_uri"])
    assert bundle.config["kind"] == kind and bundle.config["objective"] == objective


def test_lamb_and_mixed_precision(run, tmp_path):
    lamb = run("lamb", "--optimizer", "lamb", "--lr", "2e-2", "--promote", "never")
    assert lamb["optimizer"] == "lamb" and lamb["val_loss"] < 5.7  # from ln(V) = ln(400) ~ 6.0
    bf16 = run("bf16", "--precision", "bf16", "--promote", "never")
    fp32 = run("fp32", "--promote", "never")
    assert bf16["val_loss"] == pytest.approx(fp32["val_loss"], rel=0.02)
    fp16 = run("fp16", "--precision", "fp16", "--promote", "never")
    assert fp16["val_loss"] == pytest.approx(fp32["val_loss"], rel=0.02)
    saved = torch.load(tmp_path / "fp16" / f"step-{STEPS:08d}.pt", weights_only=True)
    assert saved["scaler"]["scale"] > 0 and "_growth_tracker" in saved["scaler"]


def test_divergence_stops_at_the_step_with_a_message(run, mlflow_uri):
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+: the gradient norm is nan.*Lower --lr"):
        run("nan", "--lr", "1e30", "--grad-clip", "0", "--promote", "never")
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+: the training loss is nan"):
        run("nan16", "--lr", "1e30", "--precision", "fp16", "--promote", "never")
    runs = _client(mlflow_uri).search_runs(
        [_client(mlflow_uri).get_experiment_by_name("pretrain-objectives-test").experiment_id],
        filter_string="attributes.run_name = 'nan'",
    )
    assert runs[0].info.status == "FAILED"


def test_early_stopping_stops_and_a_rerun_does_not_train_on(run):
    argv = (
        "--early-stop-patience",
        "1",
        "--early-stop-min-delta",
        "100",
        "--eval-every",
        "2",
        "--promote",
        "never",
    )  # no eval can improve by 100: stop at the second one
    first = run("early", *argv, steps=30)
    assert first["stopped_early"] and first["steps"] == 4
    again = run("early", *argv, steps=30)
    assert again["steps"] == 4 and again["params_sha256"] == first["params_sha256"]
    stop = EarlyStopping(patience=2)
    assert [stop.update(v) for v in (3.0, 2.0, 2.5, 2.1, 1.0)] == [False, False, False, True, False]


def test_champion_moves_only_when_val_loss_improves(run, mlflow_uri):
    client = _client(mlflow_uri)
    good = run("gate-good", "--register-name", "c2m-gate-test")
    assert good["promoted"]
    worse = run("gate-worse", "--register-name", "c2m-gate-test", "--lr", "1e-5")
    assert not worse["promoted"] and "does not beat" in worse["gate"]
    assert worse["model_version"] == good["model_version"] + 1  # still registered
    champion = client.get_model_version_by_alias("c2m-gate-test", "champion")
    assert int(champion.version) == good["model_version"]
    forced = run("gate-forced", "--register-name", "c2m-gate-test", "--lr", "1e-5", "--promote", "always")
    assert forced["promoted"]
    assert (
        int(client.get_model_version_by_alias("c2m-gate-test", "champion").version) == forced["model_version"]
    )


def test_bad_combinations_fail_before_training(run):
    with pytest.raises(ValueError, match="model.arch='gpt' cannot train objective 'mlm'"):
        run("bad-arch", "--objective", "mlm", "--model", "tiny")
    run("arch-change", "--promote", "never", steps=2)
    with pytest.raises(RuntimeError, match="n_layer: 2 in the checkpoint, 6 now"):
        run("arch-change", "--model", "small", steps=4)
    with pytest.raises(RuntimeError, match="optimizer 'adamw', this run asks for 'lamb'"):
        run("arch-change", "--optimizer", "lamb", steps=4)


def test_resume_is_exact_for_bert_mlm_with_dropout_lamb_and_fp16(run, tmp_path):
    """Dropout draws (torch RNG), masks (collator seeds), LAMB moments and the fp16 scale all resume."""
    argv = (
        "--objective",
        "mlm",
        "--register-name",
        BERT_NAME,
        "--optimizer",
        "lamb",
        "--lr",
        "1e-2",
        "--precision",
        "fp16",
        "--promote",
        "never",
    )
    first = run("resume-mlm", *argv)
    (tmp_path / "resume-mlm" / f"step-{STEPS:08d}.pt").unlink()  # as if killed after step 6
    again = run("resume-mlm", *argv)
    assert again["params_sha256"] == first["params_sha256"]
    assert again["val_loss"] == first["val_loss"] and again["run_id"] == first["run_id"]
