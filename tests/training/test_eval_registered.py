"""``training.evaluate`` on registered models: scores match the fine-tuning run, artefacts land in MLflow."""

import json

import pytest

from test_finetune_tasks import base_in_mlflow, finetune_args, write_tagging_jsonl


@pytest.fixture(scope="module")
def env(mlflow_uri, shards_uri, tmp_path_factory):
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("eval")
    with base_in_mlflow(mlflow_uri, shards_uri, root, "c2m-base-eval", "finetune-test",
                        "evaluate-test") as base:
        yield base, root, MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


def _evaluate(*args):
    from training import evaluate

    return evaluate.main(["--experiment", "evaluate-test", *args])


def _artifacts(client, run_id):
    return sorted(f.path for f in client.list_artifacts(run_id, "eval"))


def test_sentiment_champion_scores_as_at_training_with_artefacts(env, tmp_path):
    from training import finetune

    base, _, client = env
    trained = finetune.main(
        finetune_args(
            base, "c2m-sentiment-evaltest", "--task", "sentiment", "--epochs", "1", "--max-examples", "200",
            "--promote", "always",  # one epoch of a tiny model may stay below TF-IDF+LR
        )
    )
    result = _evaluate(
        "--model",
        "models:/c2m-sentiment-evaltest@champion",
        "--max-examples",
        "200",
        "--worst-k",
        "5",
        "--result-file",
        str(tmp_path / "e.json"),
    )
    assert result["accuracy"] == pytest.approx(trained["accuracy"]) and result["f1"] == pytest.approx(
        trained["f1"]
    )
    assert result["examples"] == trained["examples"]["test"] and len(result["worst"]) == 5
    worst = result["worst"]
    assert worst[0]["loss"] >= worst[-1]["loss"] and {"text", "label", "predicted", "p_label"} <= set(
        worst[0]
    )
    assert json.loads((tmp_path / "e.json").read_text())["run_id"] == result["run_id"]
    assert _artifacts(client, result["run_id"]) == [
        "eval/confusion_matrix.json",
        "eval/confusion_matrix.png",
        "eval/metrics.json",
        "eval/worst_examples.csv",
        "eval/worst_examples.json",
    ]
    assert result["report"] == "report/index.html"
    assert {f.path for f in client.list_artifacts(result["run_id"], "report")} == {
        f"report/{name}" for name in ("baseline_vs_model.png", "confusion_matrix.png", "index.html",
                                      "report.json")}  # no training here: no learning curves
    run = client.get_run(result["run_id"])
    assert run.data.metrics["test/accuracy"] == pytest.approx(result["accuracy"])
    # The same baseline on the same split as at training, beside the model in run and report.
    assert result["baseline"] == "TF-IDF+LR" and run.data.tags["c2m.baseline"] == "TF-IDF+LR"
    assert result["baseline_accuracy"] == pytest.approx(trained["baseline_accuracy"])
    lift = result["accuracy"] - result["baseline_accuracy"]
    assert run.data.metrics["test/lift_accuracy"] == pytest.approx(lift)
    assert json.loads((tmp_path / "e.json").read_text())["lift_f1"] == pytest.approx(result["lift_f1"])
    assert run.data.params["model_version"] == str(trained["model_version"])
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("Evaluation of ") and f"accuracy {result['accuracy']:.4f}" in note
    assert "tagged_version" not in result  # a subset is not the test split the gate compares on


def test_tagger_entity_f1_and_version_tag(env, tmp_path):
    from training import finetune

    base, _, client = env
    data = write_tagging_jsonl(tmp_path / "tags", n=200)
    trained = finetune.main(
        finetune_args(
            base, "c2m-tagger-evaltest", "--task", "tagging", "--data", str(data), "--epochs", "1", "--crf"
        )
    )
    result = _evaluate("--model", f"models:/c2m-tagger-evaltest/{trained['model_version']}")
    assert result["entity_f1"] == pytest.approx(trained["entity_f1"])
    assert result["token_accuracy"] == pytest.approx(trained["token_accuracy"])
    assert "THING_f1" in result and "eval/per_type.json" in _artifacts(client, result["run_id"])
    assert "eval/per_tag.json" in _artifacts(client, result["run_id"])
    assert "report/per_tag_f1.png" in {f.path for f in client.list_artifacts(result["run_id"], "report")}
    assert result["baseline"] == "most-frequent-tag"
    assert result["baseline_entity_f1"] == pytest.approx(trained["baseline_entity_f1"])
    tags = client.get_model_version("c2m-tagger-evaltest", str(trained["model_version"])).tags
    assert float(tags["c2m.test.entity_f1"]) == pytest.approx(result["entity_f1"])


def test_language_model_perplexity_and_bleu(env, shards_uri, tmp_path):
    base, _, client = env
    prompts = tmp_path / "gen.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"prompt": p, "target": t}) + "\n"
            for p, t in [("The cat sees", " the red ball"), ("A dog likes", " a quiet river")]
        )
    )
    result = _evaluate(
        "--model",
        base,
        "--shards",
        shards_uri,
        "--generation",
        str(prompts),
        "--max-new-tokens",
        "4",
        "--worst-k",
        "3",
    )
    assert result["split"] == "val" and 1.0 < result["perplexity"] < 1000 and result["tokens"] > 0
    assert 0.0 <= result["bleu"] <= 100.0 and len(result["worst"]) == 3 and result["worst"][0]["text"]
    assert "eval/worst_generations.json" in _artifacts(client, result["run_id"])


def test_lm_needs_matching_shards_and_task_models_need_their_data(env, tmp_path):
    from conftest import write_shards

    base, _, _ = env
    with pytest.raises(ValueError, match="needs --shards"):
        _evaluate("--model", base)
    other = write_shards(tmp_path, version="other", n_docs=200, vocab_size=300, seed=3)
    with pytest.raises(ValueError, match="another tokenizer"):
        _evaluate("--model", base, "--shards", other)
