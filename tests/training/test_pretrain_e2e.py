"""Pretrain end to end in one process against a file-backed MLflow, resume exactly, then fine-tune.

This is the walking skeleton's training half: shards -> pretrain -> models:/…@champion
-> finetune -> a registered sentiment model, with params, batched metrics, dataset
lineage and checkpoints checked on the way.
"""

import json
import os

import pytest
import torch

N_STEPS = 30


def _pretrain_args(shards_uri, tmp, steps=N_STEPS):
    return [
        "--shards",
        shards_uri,
        "--model",
        "tiny",
        "--max-steps",
        str(steps),
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--warmup-steps",
        "5",
        "--eval-every",
        "10",
        "--eval-batches",
        "2",
        "--log-every",
        "5",
        "--checkpoint-every",
        "10",
        "--keep-last",
        "5",
        "--checkpoint-dir",
        str(tmp / "ckpt"),
        "--experiment",
        "pretrain-test",
        "--register-name",
        "c2m-base-test",
        "--run-name",
        "e2e",
        "--result-file",
        str(tmp / "pretrain.json"),
    ]


@pytest.fixture(scope="module")
def pretrained(shards_uri, mlflow_uri, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrain")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        from training import pretrain

        result = pretrain.main(_pretrain_args(shards_uri, tmp))
    return result, tmp


def test_pretrain_writes_result_registers_champion_and_logs(pretrained, mlflow_uri):
    from mlflow import MlflowClient

    result, tmp = pretrained
    assert json.loads((tmp / "pretrain.json").read_text()) == result
    assert result["steps"] == N_STEPS and result["world_size"] == 1 and result["ranks_agree"]
    assert result["tokens_seen"] == N_STEPS * 8 * 32
    assert result["model_uri"] == f"models:/c2m-base-test/{result['model_version']}"

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    assert (
        int(client.get_model_version_by_alias("c2m-base-test", "champion").version) == result["model_version"]
    )
    run = client.get_run(result["run_id"])
    assert run.data.params["model.n_layer"] == "2" and run.data.params["train.max_steps"] == str(N_STEPS)
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["shards-v=t1"]
    losses = [m.value for m in client.get_metric_history(result["run_id"], "train/loss")]
    assert len(losses) == N_STEPS  # every step, sent in batches
    assert losses[-1] < 0.7 * losses[0]
    assert len(client.get_metric_history(result["run_id"], "val/loss")) == 3
    assert result["val_loss"] < losses[0]
    # xz's bits per byte on the same held-out text, beside the model's (recorded, not blocking).
    assert result["baseline"] == "xz-9" and 0 < result["baseline_bpb"] < 8
    assert result["lift_bpb"] == pytest.approx(result["val_bpb"] - result["baseline_bpb"])
    assert run.data.metrics["val/baseline_bpb"] == pytest.approx(result["baseline_bpb"])
    tags = client.get_model_version("c2m-base-test", str(result["model_version"])).tags
    assert tags["c2m.gate.baseline_name"] == "xz-9" and "xz-9 baseline" in tags["c2m.gate.reason"]
    note = run.data.tags["mlflow.note.content"]  # the run page's description
    assert note.startswith("Pretraining (") and "shards " in note and "version t1" in note
    assert f"val loss {result['val_loss']:.4f}" in note
    assert f"c2m-base-test v{result['model_version']}" in note
    version = client.get_model_version("c2m-base-test", str(result["model_version"]))
    assert "Promotion decision: promoted to champion" in version.description


def test_rerun_resumes_from_the_newest_good_checkpoint_bit_for_bit(
    pretrained, shards_uri, mlflow_uri, monkeypatch
):
    from training import pretrain

    first, tmp = pretrained
    ckpt = tmp / "ckpt"
    assert sorted(p.name for p in ckpt.iterdir()) == [f"step-000000{s}.pt" for s in (10, 20, 30)]
    (ckpt / "step-00000030.pt").unlink()  # as if the job died after step 20
    (ckpt / "step-00000020.pt").write_bytes(b"corrupt")  # ...and the step-20 write was torn
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("MLFLOW_RUN_CONTEXT", '{"airflow.try_number": "2"}')  # what an Airflow retry sets
    again = pretrain.main(_pretrain_args(shards_uri, tmp))
    assert again["params_sha256"] == first["params_sha256"]  # model, optimiser, data position, RNG restored
    assert again["run_id"] == first["run_id"]  # the same MLflow run continues
    import mlflow

    assert mlflow.MlflowClient(mlflow_uri).get_run(again["run_id"]).data.tags["airflow.try_number"] == "2"
    assert again["model_version"] == first["model_version"] + 1


def test_a_checkpoint_in_the_first_format_resumes_bit_for_bit(
    pretrained, shards_uri, mlflow_uri, monkeypatch
):
    """Format 1 kept the step's losses, MLflow run id and RNG states at the top level; such a
    checkpoint (written before the train state had its own entry) still resumes exactly."""
    from training import pretrain

    first, tmp = pretrained
    ckpt = tmp / "ckpt"
    state = torch.load(ckpt / "step-00000020.pt", weights_only=True)
    train_state = state.pop("train_state")
    del state["format"]
    state.update(
        losses=(train_state["train_loss"], train_state["val_loss"]),
        mlflow_run_id=train_state["mlflow_run_id"],
        rng=train_state["rng"],
    )
    torch.save(state, ckpt / "step-00000020.pt")
    (ckpt / "step-00000030.pt").unlink()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    again = pretrain.main(_pretrain_args(shards_uri, tmp) + ["--promote", "never"])
    assert again["params_sha256"] == first["params_sha256"] and again["run_id"] == first["run_id"]
    assert again["tokens_seen"] == first["tokens_seen"]


def test_registered_model_loads_both_ways(pretrained, mlflow_uri, monkeypatch):
    import mlflow

    from training import tracking
    from training.config import ModelConfig
    from training.models.gpt import GPT

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    bundle = tracking.load_model_bundle("models:/c2m-base-test@champion")
    assert bundle.config["kind"] == "gpt-lm" and bundle.tokenizer_path.exists()
    model = GPT(ModelConfig(**bundle.config["model"])).eval()
    model.load_state_dict(bundle.state_dict())
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # our own registry: trusted
    module = mlflow.pytorch.load_model("models:/c2m-base-test@champion")
    assert isinstance(module, GPT)
    idx = torch.randint(0, bundle.config["model"]["vocab_size"], (2, 12))
    assert torch.allclose(module(idx), model(idx))


def test_finetune_from_champion(pretrained, mlflow_uri, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from training import finetune

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    result = finetune.main(
        [
            "--base-model",
            "models:/c2m-base-test@champion",
            "--task",
            "sentiment",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--max-examples",
            "240",
            "--experiment",
            "finetune-test",
            "--register-name",
            "c2m-sentiment-test",
            "--result-file",
            str(tmp_path / "finetune.json"),
            "--promote",
            "always",  # two epochs of a tiny model may stay below the TF-IDF+LR baseline
        ]
    )
    assert json.loads((tmp_path / "finetune.json").read_text()) == result
    assert result["baseline"] == "TF-IDF+LR" and 0.0 <= result["baseline_accuracy"] <= 1.0
    assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["f1"] <= 1.0
    assert result["steps"] == 2 * (result["examples"]["train"] // 8)
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    assert (
        int(client.get_model_version_by_alias("c2m-sentiment-test", "champion").version)
        == result["model_version"]
    )
    run = client.get_run(result["run_id"])
    assert run.data.params["base_model_version"] == str(result["base_model_version"])
    assert run.data.metrics["test/accuracy"] == pytest.approx(result["accuracy"])
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["pang-lee-polarity-sentences"]
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("Fine-tuning for the classification task 'sentiment' from models:/c2m-base-test")
    assert f"test accuracy {result['accuracy']:.4f}" in note and "promoted to champion" in note
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_uri


def test_a_val_split_smaller_than_one_batch_is_evaluated(tmp_path, mlflow_uri, monkeypatch):
    """What the tiny demo met on CI: a corpus version whose val split is one short document
    (fewer sequences than --batch-size) must train and report val loss, not refuse to start."""
    from training import pretrain
    from training_test_data import write_shards

    uri = write_shards(tmp_path / "data", version="small-val", val_every=200)
    val_rows = json.loads((tmp_path / "data/shards/v=small-val/_manifest.json").read_text())["splits"]["val"]
    assert 0 < val_rows["sequences"] < 8
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    args = _pretrain_args(uri, tmp_path, steps=4) + ["--eval-every", "2", "--run-name", "small-val"]
    args[args.index("--register-name") + 1] = "c2m-small-val-test"
    result = pretrain.main(args)
    assert result["steps"] == 4 and result["val_loss"] == result["val_loss"]  # a number, not NaN
