"""``--compare-init random --seeds N``: both starts per seed, the per-seed lift and its spread, in MLflow."""

import json

import pytest

from test_finetune_tasks import base_in_mlflow, finetune_args, write_classification_jsonl
from training.tasks.transfer import mean_std, summarize, table


def test_summary_is_the_mean_and_sample_spread_of_per_seed_lifts():
    rows = [{"seed": 1, "pretrained": 0.70, "random": 0.60}, {"seed": 2, "pretrained": 0.64, "random": 0.62}]
    s = summarize(rows, "accuracy", ("pretrained", "random"))
    assert s["lift_mean"] == pytest.approx(0.06) and s["lift_std"] == pytest.approx(0.0565685, rel=1e-5)
    assert s["pretrained_mean"] == pytest.approx(0.67) and s["seeds"] == 2
    assert mean_std([0.5]) == (0.5, 0.0)
    text = table(s, rows, ("TF-IDF+LR", 0.68))
    assert "| 1 | 0.7000 | 0.6000 | +0.1000 |" in text and "+0.0600 ± 0.0566" in text
    assert "TF-IDF+LR baseline on the same test split: accuracy 0.6800" in text


@pytest.fixture(scope="module")
def base(mlflow_uri, shards_uri, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-init")
    with base_in_mlflow(mlflow_uri, shards_uri, root, "c2m-base-compare", "finetune-test") as uri:
        yield uri, root


def test_compare_init_runs_both_starts_per_seed_and_registers_nothing(base, mlflow_uri, tmp_path):
    from mlflow import MlflowClient

    from training import finetune

    data = write_classification_jsonl(tmp_path / "cls", n=150)
    out = tmp_path / "compare.json"
    result = finetune.main(finetune_args(
        base[0], "c2m-compare-test", "--task", "classification", "--data", str(data), "--epochs", "1",
        "--seed", "7", "--compare-init", "random", "--seeds", "2", "--result-file", str(out),
    ))
    assert json.loads(out.read_text()) == result
    assert [r["seed"] for r in result["rows"]] == [7, 8]
    assert all(0 <= r[k] <= 1 for r in result["rows"] for k in ("pretrained", "random"))
    lifts = [r["pretrained"] - r["random"] for r in result["rows"]]
    assert result["compare"]["lift_mean"] == pytest.approx(sum(lifts) / 2)
    assert result["baseline"] == "TF-IDF+LR" and "baseline_accuracy" in result
    # the default n-gram bag learns the same from either start: the transformer alone is compared too
    parts = result["compare_transformer_only"]
    assert parts["seeds"] == 2 and parts["metric"] == "transformer_only_accuracy"
    assert "The transformer part alone" in result["table"]
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    parent = client.get_run(result["run_id"])
    assert parent.data.tags["c2m.job"] == "compare-init"
    assert parent.data.metrics["compare/lift_accuracy_mean"] == pytest.approx(result["compare"]["lift_mean"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result['run_id']}'")
    assert sorted(c.data.params["init"] for c in children) == ["pretrained", "pretrained", "random", "random"]
    assert not client.search_registered_models("name = 'c2m-compare-test'")
    with pytest.raises(ValueError, match="compare pretrained with random"):
        finetune.main(finetune_args(base[0], "x", "--task", "classification", "--data", str(data),
                                    "--compare-init", "pretrained"))
