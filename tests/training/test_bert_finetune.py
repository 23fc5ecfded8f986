"""Classification and tagging from an MLM-pretrained BERT base, on small synthetic data.

A tiny BERT is registered as a ``bert-mlm`` straight from its initial weights (the tests are
about the plumbing: masks, pooling, freezing, export, re-scoring), then fine-tuned through
the CLI. The tasks are the synthetic ones of test_finetune_tasks.py that a model must learn.
"""

import json

import pytest
import torch

from test_finetune_tasks import (
    ensure_experiments,
    finetune_args,
    write_classification_jsonl,
    write_tagging_jsonl,
)


def register_bert(mlflow_uri: str, shards_uri: str, name: str, root) -> str:
    import mlflow

    from training import tracking
    from training.config import model_config
    from training.data.shards import read_shard_info
    from training.models.bert import BERT

    ensure_experiments(mlflow_uri, root, "base-test")
    info = read_shard_info(shards_uri)
    cfg = model_config("bert_tiny_cpu", vocab_size=info.vocab_size, block_size=info.seq_len)
    torch.manual_seed(0)
    mlflow.set_experiment("base-test")
    with mlflow.start_run(run_name=name):
        tracking.log_and_register_model(
            BERT(cfg),
            registered_name=name,
            tokenizer_path=info.tokenizer_path,
            model_config={
                "kind": "bert-mlm", "model": cfg.__dict__, "eos_id": info.eos_id, "pad_id": info.pad_id
            },
            signature=tracking.lm_signature(cfg.vocab_size),
        )
    return f"models:/{name}@champion"


@pytest.fixture(scope="module")
def bert_base(mlflow_uri, shards_uri, tmp_path_factory):
    root = tmp_path_factory.mktemp("bert-finetune")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        ensure_experiments(mlflow_uri, root, "finetune-test")
        yield register_bert(mlflow_uri, shards_uri, "c2m-bert-ft-test", root), root


def test_bert_classifier_masks_pads_and_pools_the_mean():
    from training.config import model_config
    from training.models.bert import BERT
    from training.models.heads import SequenceClassifier

    torch.manual_seed(0)
    bert = BERT(model_config("bert_tiny_cpu", vocab_size=50, block_size=16))
    clf = SequenceClassifier(bert, 2, pad_id=1).eval()
    assert clf.pooling == "mean"
    ids = torch.tensor([[5, 6, 7, 0]])
    padded = torch.tensor([[5, 6, 7, 0, 1, 1, 1]])
    # pads are neither attended to nor pooled: padding a text does not change its logits
    assert torch.allclose(clf(ids), clf(padded), atol=1e-5)
    last = SequenceClassifier(clf.backbone, 2, pad_id=1, pooling="last").eval()
    last.head.load_state_dict(clf.head.state_dict())
    assert not torch.allclose(last(ids), clf(ids))
    with pytest.raises(ValueError, match="pooling='max'"):
        SequenceClassifier(clf.backbone, 2, pad_id=1, pooling="max")


def test_bert_freezing_groups_and_mlm_head():
    from training.config import model_config
    from training.models.bert import BERT
    from training.models.heads import SequenceClassifier
    from training.optim import param_groups
    from training.tasks.backbone import freeze_layers

    model = SequenceClassifier(BERT(model_config("bert_tiny_cpu", vocab_size=50, block_size=8)), 2, pad_id=0)
    depths = {g["depth"] for g in param_groups(model, 0.1, layer_lr_decay=0.5)}
    assert depths == {0, 1, 2, 3}  # head (+ MLM head), top layer, bottom layer, embeddings incl. emb_ln
    freeze_layers(model.backbone, 1)
    assert not model.backbone.emb_ln.weight.requires_grad
    assert not model.backbone.layers[0].fc.weight.requires_grad
    assert model.backbone.layers[1].fc.weight.requires_grad


def test_classification_from_a_bert_base_learns_registers_and_rescoring_agrees(bert_base, tmp_path):
    from training import finetune, tracking
    from training.tasks import export, task_for_model

    base, _ = bert_base
    data = write_classification_jsonl(tmp_path / "cls")
    result = finetune.main(finetune_args(
        base, "c2m-bert-cls-test", "--task", "classification", "--data", str(data), "--epochs", "4",
        "--promote", "always", "--result-file", str(tmp_path / "r.json")))
    assert result["accuracy"] >= 0.9 and result["promoted"]
    bundle = tracking.load_model_bundle(f"models:/c2m-bert-cls-test/{result['model_version']}")
    assert bundle.config["model"]["arch"] == "bert" and bundle.config["pooling"] == "mean"
    tuned, start = bundle.state_dict(), tracking.load_model_bundle(base).state_dict()
    # the MLM head is frozen (no task trains it); the encoder layers trained
    assert torch.equal(tuned["backbone.mlm_dense.weight"], start["mlm_dense.weight"])
    assert not torch.equal(tuned["backbone.layers.0.fc.weight"], start["layers.0.fc.weight"])
    again = task_for_model(bundle).evaluate(export.load_module(bundle), "test")
    assert again["accuracy"] == pytest.approx(result["accuracy"])
    assert json.loads((tmp_path / "r.json").read_text())["accuracy"] == result["accuracy"]


def test_a_classifier_with_an_ngram_bag_on_a_train_subset_registers_both_and_rescores(bert_base, tmp_path):
    from training import finetune, tracking
    from training.tasks import export, task_for_model

    base, _ = bert_base
    data = write_classification_jsonl(tmp_path / "cls")
    result = finetune.main(finetune_args(
        base, "c2m-bert-bag-test", "--task", "classification", "--data", str(data), "--epochs", "4",
        "--ngram-buckets", "4096", "--train-examples", "200", "--promote", "always"))
    assert result["examples"] == {"train": 200, "val": 60, "test": 60}  # val and test whole
    assert result["accuracy"] >= 0.9
    assert 0 <= result["transformer_only_accuracy"] <= 1 and result["ngrams_only_accuracy"] >= 0.8
    bundle = tracking.load_model_bundle(f"models:/c2m-bert-bag-test/{result['model_version']}")
    assert bundle.config["ngram_buckets"] == 4096 and bundle.config["train_examples"] == 200
    assert bundle.state_dict()["ngrams.weight"].abs().sum() > 0  # the bag trained and was registered
    task = task_for_model(bundle)
    assert task.size("train") == 200
    again = task.evaluate(export.load_module(bundle), "test")
    assert again["accuracy"] == pytest.approx(result["accuracy"])


def test_tagging_from_a_bert_base_learns(bert_base, tmp_path):
    from training import finetune

    base, _ = bert_base
    data = write_tagging_jsonl(tmp_path / "tag")
    result = finetune.main(finetune_args(
        base, "c2m-bert-tag-test", "--task", "tagging", "--data", str(data), "--epochs", "3",
        "--promote", "never"))
    assert result["entity_f1"] >= 0.8


def test_generation_refuses_a_bert_base(bert_base, tmp_path):
    from training import finetune

    base, _ = bert_base
    data = tmp_path / "gen"
    data.mkdir()
    for split in ("train", "val", "test"):
        (data / f"{split}.jsonl").write_text(
            "".join(json.dumps({"prompt": f"a{i}", "completion": f" b{i}"}) + "\n" for i in range(40)))
    with pytest.raises(ValueError, match="generation needs a GPT base"):
        finetune.main(finetune_args(base, "c2m-bert-gen-test", "--task", "generation", "--data", str(data),
                                    "--epochs", "1"))
