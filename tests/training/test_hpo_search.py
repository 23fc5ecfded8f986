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
    assert result["model_uri"] == "models:/c2m-hpo-test/1"
    # The final model meets the gate's baseline too: TF-IDF+LR solves this task (the object's
    # words name the class), so only a perfect best trial becomes champion.
    tags = client.get_model_version("c2m-hpo-test", "1").tags
    assert tags["c2m.gate.baseline_name"] == "TF-IDF+LR" and float(tags["c2m.gate.baseline"]) == 1.0
    assert result["promoted"] == (result["best_accuracy"] >= 1.0)
    assert result["promoted"] or tags["c2m.gate"] == "below-baseline"

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
    note = parent.data.tags["mlflow.note.content"]  # the parent run's description
    assert note.startswith("Hyperparameter search (Optuna study 's1'") and "3 trials" in note
    verdict = "promoted to champion" if result["promoted"] else "not promoted (accuracy"
    assert f"best trial {result['best_trial']}" in note and f"c2m-hpo-test v1, {verdict}" in note

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


def test_generation_trials_rank_on_val_bleu_from_the_task(env):
    """``hpo --task generation`` optimises the generation task's own metric (BLEU, maximised)."""
    import optuna

    from test_generation_task import write_generation_jsonl

    base, root, client, _ = env
    data = write_generation_jsonl(root / "gen", n=96)
    common = ["--base-model", base, "--task", "generation", "--data", str(data), "--epochs", "2"]
    common += ["--experiment", "hpo-test", "--storage", f"sqlite:///{root}/optuna.db"]
    common += ["--max-new-tokens", "8", "--space", SPACE, "--startup-trials", "2"]
    from training import hpo

    result = hpo.main(
        [*common, "--study-name", "gen", "--register-name", "c2m-hpo-gen-test", "--trials", "2"]
    )
    study = optuna.load_study(study_name="gen", storage=f"sqlite:///{root}/optuna.db")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2 and all("test_bleu" in t.user_attrs for t in done)
    assert result["best_value"] == max(t.value for t in done) and "best_bleu" in result
    parent = client.get_run(result["parent_run_id"])
    assert parent.data.metrics["best/val_bleu"] == pytest.approx(result["best_value"])
    assert parent.data.params["objective"] == "maximize val/bleu"
    assert client.get_model_version("c2m-hpo-gen-test", "1").tags["c2m.gate.metric"] == "bleu"

    # A study created for the other direction is refused rather than silently mis-ranked.
    optuna.create_study(study_name="gen-min", storage=f"sqlite:///{root}/optuna.db", direction="minimize")
    with pytest.raises(ValueError, match="pass a new --study-name"):
        hpo.main([*common, "--study-name", "gen-min", "--trials", "1"])


def test_the_objective_and_its_direction_come_from_the_task():
    from training import hpo
    from training.metrics import ACCURACY, BLEU, PERPLEXITY

    class Task:
        def __init__(self, metric):
            self.primary_metric = metric

    assert hpo.objective(Task(BLEU)) == (BLEU, "maximize")
    assert hpo.objective(Task(ACCURACY)) == (ACCURACY, "maximize")
    assert hpo.objective(Task(PERPLEXITY)) == (PERPLEXITY, "minimize")
    assert hpo.better(30.0, 20.0, "maximize") and not hpo.better(30.0, 20.0, "minimize")
    assert hpo.better(85.8, 110.0, "minimize") and hpo.better(1.0, None, "minimize")
