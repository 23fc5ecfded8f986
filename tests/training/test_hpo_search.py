"""HPO: Optuna TPE + median pruning over fine-tuning trials, nested MLflow runs, a shared SQLite study."""

import json

import pytest

from test_finetune_tasks import ensure_experiments, register_base, write_classification_jsonl

SPACE = json.dumps(
    {
        "lr": ["log_float", 1e-3, 5e-3],
        "warmup_steps": ["int", 0, 5],
        "batch_size": ["categorical", [16, 32]],
        "freeze_layers": ["int", 0, 1],
    }
)


@pytest.fixture(scope="module")
def env(mlflow_uri, shards_uri, tmp_path_factory):
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("hpo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        ensure_experiments(mlflow_uri, root, "hpo-test")
        base = register_base(mlflow_uri, shards_uri, "c2m-base-hpo", root)
        yield base, root, MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri), {}


def _hpo(base, root, *extra):
    from training import hpo

    data = write_classification_jsonl(root / "cls", n=160)
    return hpo.main(
        [
            "--base-model",
            base,
            "--task",
            "classification",
            "--data",
            str(data),
            "--epochs",
            "2",
            "--experiment",
            "hpo-test",
            "--register-name",
            "c2m-hpo-test",
            "--study-name",
            "s1",
            "--storage",
            f"sqlite:///{root}/optuna.db",
            "--startup-trials",
            "2",
            "--space",
            SPACE,
            *extra,
        ]
    )


def test_three_trials_nest_under_one_parent_and_the_best_is_registered(env):
    import optuna

    base, root, client, shared = env
    result = shared["first"] = _hpo(base, root, "--trials", "3", "--result-file", str(root / "hpo.json"))
    assert json.loads((root / "hpo.json").read_text()) == result
    assert result["trials"] == 3 and result["complete"] + result["pruned"] == 3
    assert result["promoted"] and result["model_uri"] == "models:/c2m-hpo-test/1"

    parent = client.get_run(result["parent_run_id"])
    assert parent.data.params["best.lr"] == str(result["best_params"]["lr"])
    assert parent.data.metrics["best/val_accuracy"] == pytest.approx(result["best_value"])
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result['parent_run_id']}'"
    )
    assert len(children) == 3
    assert {c.data.params["optim.lr"] for c in children} >= {str(result["best_params"]["lr"])}
    version = client.get_model_version("c2m-hpo-test", "1")
    assert version.run_id == result["parent_run_id"]  # the model is logged on the parent

    study = optuna.load_study(study_name="s1", storage=f"sqlite:///{root}/optuna.db")
    assert len(study.trials) == 3 and study.best_trial.params == result["best_params"]


def test_a_second_process_adds_trials_to_the_same_study_and_parent(env):
    base, root, client, shared = env
    parent = shared["first"]["parent_run_id"]
    result = _hpo(base, root, "--trials", "1", "--no-finalize", "--parent-run-id", parent)
    assert result["trials"] == 4 and "model_version" not in result and result["run_id"] == parent
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert len(children) == 4
    # Finalize only (the fan-in step): retrains the best trial's params when it ran elsewhere.
    final = _hpo(base, root, "--trials", "0")
    assert final["trials"] == 4 and final["model_version"] == 2
    runs = client.search_runs(
        [client.get_run(final["parent_run_id"]).info.experiment_id],
        f"tags.mlflow.parentRunId = '{final['parent_run_id']}'",
    )
    assert [r.info.run_name for r in runs] == [f"best-retrain-{final['best_trial']:03d}"]


def test_pruning_callback_stops_a_trial_and_space_overrides_are_checked():
    from training import hpo
    from training.tasks.loop import StopTraining

    class Trial:
        number, reports = 7, []

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return len(self.reports) >= 2

    cb = hpo.pruning_callback(Trial(), "accuracy")
    cb(1, {"accuracy": 0.5})
    with pytest.raises(StopTraining, match="trial 7 pruned after epoch 2"):
        cb(2, {"accuracy": 0.4})
    space = hpo.load_space('{"dropout": ["fixed", 0.2]}', max_freeze=2)
    assert space["dropout"] == ("fixed", 0.2) and space["freeze_layers"] == ("int", 0, 2)
    with pytest.raises(ValueError, match="searchable"):
        hpo.load_space('{"momentum": ["float", 0, 1]}', max_freeze=2)
