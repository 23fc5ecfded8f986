"""Fine-tuning tasks end to end in one process against a file-backed MLflow.

A tiny base GPT is registered straight from its initial weights (no pretraining: these
tests are about the fine-tuning machinery). Two synthetic JSONL tasks that a model must
learn from context (is the object in the first half of the list? which words name the
object?) prove that classification and tagging actually learn; the built-in data sets
(polarity, Twitter NER, WSJ POS) are run on small subsets to prove the loaders and
scoring plumb through. Helpers here are imported by the other task-model tests.
"""

import json
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

from conftest import OBJECTS, SUBJECTS, VERBS

POSITIVE_OBJECTS = set(OBJECTS[:3])


def ensure_experiments(mlflow_uri: str, root: Path, *names: str) -> None:
    """Experiments with explicit artifact roots, so nothing lands in the working directory."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    for name in names:
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name, artifact_location=str(root / "artifacts" / name))


def register_base(mlflow_uri: str, shards_uri: str, name: str, root: Path, seed: int = 0) -> str:
    """Register an untrained tiny GPT on the test shards' tokenizer; return models:/name@champion."""
    import mlflow

    from training import tracking
    from training.config import model_config
    from training.data.shards import read_shard_info
    from training.models.gpt import GPT

    ensure_experiments(mlflow_uri, root, "base-test")
    info = read_shard_info(shards_uri)
    cfg = model_config("tiny", vocab_size=info.vocab_size, block_size=info.seq_len - 1)
    torch.manual_seed(seed)
    mlflow.set_experiment("base-test")
    with mlflow.start_run(run_name=name):
        tracking.log_and_register_model(
            GPT(cfg),
            registered_name=name,
            tokenizer_path=info.tokenizer_path,
            model_config={
                "kind": "gpt-lm",
                "model": cfg.__dict__,
                "eos_id": info.eos_id,
                "pad_id": info.pad_id,
            },
            signature=tracking.lm_signature(cfg.vocab_size),
        )
    return f"models:/{name}@champion"


@contextmanager
def base_in_mlflow(mlflow_uri: str, shards_uri: str, root: Path, base_name: str,
                   *experiments: str) -> Iterator[str]:
    """For a module fixture: MLFLOW_TRACKING_URI set, ``experiments`` created under ``root`` and a
    tiny base registered; yields its models:/ URI (the variable is restored on exit)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        ensure_experiments(mlflow_uri, root, *experiments)
        yield register_base(mlflow_uri, shards_uri, base_name, root)


def _sentence(rng):
    return rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)


def write_classification_jsonl(folder: Path, n: int = 300, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("val", n // 5), ("test", n // 5)):
        rows = []
        for _ in range(count):
            s, v, o = _sentence(rng)
            rows.append({"text": f"{s} {v} {o}", "label": "yes" if o in POSITIVE_OBJECTS else "no"})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def write_tagging_jsonl(folder: Path, n: int = 300, seed: int = 0) -> Path:
    """The object's adjective and noun are one THING entity, e.g. ``the [red ball]``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("val", n // 5), ("test", n // 5)):
        rows = []
        for _ in range(count):
            s, v, o = _sentence(rng)
            det, *thing = o.split()
            tokens = s.split() + [v, det] + thing
            tags = ["O"] * (len(s.split()) + 2) + ["B-THING"] + ["I-THING"] * (len(thing) - 1)
            rows.append({"tokens": tokens, "tags": tags})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def finetune_args(base: str, register: str, *extra: str) -> list[str]:
    return [
        "--base-model",
        base,
        "--experiment",
        "finetune-test",
        "--register-name",
        register,
        "--batch-size",
        "16",
        "--lr",
        "3e-3",
        "--warmup-steps",
        "5",
        *extra,
    ]


@pytest.fixture(scope="module")
def base(mlflow_uri, shards_uri, tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune-tasks")
    with base_in_mlflow(mlflow_uri, shards_uri, root, "c2m-base-tasks", "finetune-test") as base_uri:
        yield base_uri, root


@pytest.fixture
def mlflow_env(mlflow_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


def test_freezing_and_layer_wise_learning_rates():
    from training.config import model_config
    from training.models.gpt import GPT
    from training.models.heads import SequenceClassifier
    from training.optim import param_groups
    from training.tasks.backbone import count_parameters, freeze_layers

    model = SequenceClassifier(GPT(model_config("tiny", vocab_size=50, block_size=8)), 2, pad_id=0)
    groups = param_groups(model, weight_decay=0.1, layer_lr_decay=0.5)
    scales = {g["depth"]: g["lr_scale"] for g in groups}
    assert scales == {0: 1.0, 1: 0.5, 2: 0.25, 3: 0.125}  # head, top block, bottom block, embeddings
    assert all(g["weight_decay"] == (0.1 if g["params"][0].dim() >= 2 else 0.0) for g in groups)
    total, _ = count_parameters(model)
    frozen = freeze_layers(model.backbone, 1)
    assert (
        not model.backbone.tok_emb.weight.requires_grad
        and not model.backbone.blocks[0].ln_1.weight.requires_grad
    )
    assert model.backbone.blocks[1].ln_1.weight.requires_grad and model.head.weight.requires_grad
    assert count_parameters(model) == (total, total - frozen)
    assert {g["depth"] for g in param_groups(model, 0.1, 0.5)} == {0, 1}
    with pytest.raises(ValueError, match="only 2 blocks"):
        freeze_layers(model.backbone, 3)


def test_classification_learns_keeps_the_best_epoch_and_registers(base, mlflow_env, tmp_path):
    from training import finetune

    base_uri, root = base
    data = write_classification_jsonl(tmp_path / "cls")
    result = finetune.main(
        finetune_args(
            base_uri,
            "c2m-cls-test",
            "--task",
            "classification",
            "--data",
            str(data),
            "--epochs",
            "4",
            "--layer-lr-decay",
            "0.8",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--result-file",
            str(tmp_path / "r.json"),
            "--promote",
            "always",  # TF-IDF solves this task (the object's words name the class): the gate may refuse
        )
    )
    assert json.loads((tmp_path / "r.json").read_text()) == result
    assert result["accuracy"] >= 0.9 and result["metric"] == "accuracy" and result["promoted"]
    assert result["baseline"] == "TF-IDF+LR" and result["baseline_accuracy"] >= 0.9
    assert result["lift_accuracy"] == pytest.approx(result["accuracy"] - result["baseline_accuracy"])
    best = torch.load(tmp_path / "ckpt" / "best.pt", weights_only=False)
    assert best["epoch"] == result["best_epoch"] and best["val"]["accuracy"] == result["val_accuracy"]
    run = mlflow_env.get_run(result["run_id"])
    val_history = [m.value for m in mlflow_env.get_metric_history(result["run_id"], "val/accuracy")]
    assert len(val_history) == 4 and max(val_history) == result["val_accuracy"]
    assert run.data.params["layer_lr_decay"] == "0.8"
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["jsonl-cls"]
    assert run.data.metrics["test/baseline_accuracy"] == pytest.approx(result["baseline_accuracy"])
    assert run.data.metrics["test/lift_accuracy"] == pytest.approx(result["lift_accuracy"])
    version = mlflow_env.get_model_version_by_alias("c2m-cls-test", "champion")
    assert int(version.version) == result["model_version"]
    assert float(version.tags["c2m.test.accuracy"]) == pytest.approx(result["accuracy"])
    assert float(version.tags["c2m.gate.baseline"]) == pytest.approx(result["baseline_accuracy"])
    assert version.tags["c2m.gate"] == ("promoted" if result["lift_accuracy"] >= 0 else "forced")


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
def test_tagging_learns_entities(base, mlflow_env, tmp_path, crf):
    from training import finetune

    data = write_tagging_jsonl(tmp_path / "tags")
    result = finetune.main(
        finetune_args(
            base[0],
            "c2m-tag-test",
            "--task",
            "tagging",
            "--data",
            str(data),
            "--epochs",
            "3",
            *(["--crf"] if crf else []),
            "--promote",
            "never",
        )
    )
    assert result["metric"] == "entity_f1" and result["entity_f1"] >= 0.8, result
    assert result["token_accuracy"] >= 0.9 and result["promoted"] is False


@pytest.mark.parametrize(
    "task,extra",
    [
        ("sentiment", ["--subset", "sentences"]),
        ("ner", ["--crf"]),
        ("pos", ["--subset", "wsj", "--freeze-layers", "1"]),
    ],
)
def test_builtin_data_sets_run_through(base, mlflow_env, task, extra):
    from training import finetune

    result = finetune.main(
        finetune_args(
            base[0],
            f"c2m-{task}-smoke",
            "--task",
            task,
            "--epochs",
            "1",
            "--max-examples",
            "160",
            "--promote",
            "never",
            *extra,
        )
    )
    primary = {"sentiment": "accuracy", "ner": "entity_f1", "pos": "token_accuracy"}[task]
    assert result["metric"] == primary and 0.0 <= result[primary] <= 1.0
    assert sum(result["examples"].values()) == 160
    assert result["truncated"]["train"] > 0  # the test base reads only 32 tokens: cuts are counted
    assert result["model_version"] == 1


def test_bad_base_model_tokenizer_and_lengths_fail_clearly(base, mlflow_env, tmp_path):
    from training import finetune, tracking
    from training.tasks.backbone import check_tokenizer

    with pytest.raises(RuntimeError, match="could not fetch models:/no-such-model@champion"):
        finetune.main(finetune_args("models:/no-such-model@champion", "x", "--task", "sentiment"))
    bundle = tracking.load_model_bundle(base[0])
    with pytest.raises(ValueError, match="does not match the base model"):
        check_tokenizer(bundle.tokenizer_path, {**bundle.config, "eos_id": 7})
    with pytest.raises(ValueError, match="exceeds the base model's context"):
        finetune.main(finetune_args(base[0], "x", "--task", "sentiment", "--max-len", "999"))
    with pytest.raises(ValueError, match="needs --data|no built-in data"):
        finetune.main(finetune_args(base[0], "x", "--task", "tagging"))
    with pytest.raises(ValueError, match="crf"):
        finetune.main(finetune_args(base[0], "x", "--task", "sentiment", "--crf"))


def test_task_names_import_without_torch():
    """The Airflow venv reads TASKS for the DAG forms; it has no torch."""
    import subprocess
    import sys

    code = (
        "import sys, training.tasks.config as c; assert 'pos' in c.TASKS; "
        "heavy = {'torch', 'mlflow', 'numpy', 'tokenizers'} & set(sys.modules); "
        "print(sorted(heavy)); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
