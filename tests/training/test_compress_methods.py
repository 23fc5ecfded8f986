"""Compression of registered task models (int8, pruning, distillation), each registered with its table.

Classifiers and generation models take all three methods; a tagger takes int8 and
pruning, and distillation of it fails before any work with the supported methods named.
A generation model's table also carries decode latency (greedy generation of a fixed
number of new tokens) next to the forward-pass latency.
"""

import pytest
import torch

from test_finetune_tasks import base_in_mlflow, finetune_args, write_classification_jsonl


@pytest.fixture(scope="module")
def teacher(mlflow_uri, shards_uri, tmp_path_factory):
    from mlflow import MlflowClient

    from training import finetune

    root = tmp_path_factory.mktemp("compress")
    with base_in_mlflow(mlflow_uri, shards_uri, root, "c2m-base-compress", "finetune-test",
                        "compress-test") as base:
        data = write_classification_jsonl(root / "cls")
        trained = finetune.main(
            finetune_args(
                base, "c2m-cmp-test", "--task", "classification", "--data", str(data), "--epochs", "3",
                # the transformer alone: int8 quantises Linear layers, and the float n-gram bag
                # (2 MB) would outweigh this tiny backbone in the size ratio asserted below
                "--ngram-buckets", "0",
                "--promote", "always",  # the teacher is the champion whatever its baseline scores
            )
        )
        yield trained, MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


def _compress(method, *extra):
    from training import compress

    return compress.main(
        [
            "--model",
            "models:/c2m-cmp-test@champion",
            "--method",
            method,
            "--experiment",
            "compress-test",
            "--latency-repeats",
            "5",
            "--batch-size",
            "16",
            *extra,
        ]
    )


def _load(uri):
    from training import tracking
    from training.tasks import export

    return export.load_module(tracking.load_model_bundle(uri))


def test_int8_quantisation_keeps_accuracy_and_registers_with_a_table(teacher):
    trained, client = teacher
    result = _compress("quantize")
    assert result["register_name"] == "c2m-cmp-test-quantize" and result["model_version"] == 1
    assert abs(result["delta_accuracy"]) <= 0.05 and result["original"]["accuracy"] == trained["accuracy"]
    assert (
        result["size_ratio"] < 0.7 and result["compressed"]["parameters"] == result["original"]["parameters"]
    )
    for row in (result["original"], result["compressed"]):
        assert all(row[f"latency_b{b}_{q}_ms"] > 0 for b in (1, 32) for q in ("p50", "p95"))
    arts = sorted(f.path for f in client.list_artifacts(result["run_id"], "comparison"))
    assert arts == ["comparison/comparison.csv", "comparison/comparison.json", "comparison/comparison.md"]
    version = client.get_model_version("c2m-cmp-test-quantize", "1")
    assert version.tags["c2m.compression"] == "dynamic-int8" and version.tags["c2m.gate"] == "promoted"
    assert "Promotion decision: promoted to champion" in version.description
    note = client.get_run(result["run_id"]).data.tags["mlflow.note.content"]
    assert note.startswith("quantize compression of ") and "c2m-cmp-test-quantize v1" in note
    model = _load("models:/c2m-cmp-test-quantize/1")
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
    assert model(torch.tensor([[5, 6, 7]])).shape == (1, 2)


@pytest.mark.parametrize("structured", [False, True], ids=["unstructured", "structured"])
def test_magnitude_pruning_reaches_the_target_and_is_permanent(teacher, structured):
    result = _compress(
        "prune", "--sparsity", "0.5", "--finetune-epochs", "1", *(["--structured"] if structured else [])
    )
    assert result["pruned_layers_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert result["recovery_steps"] > 0 and 0 < result["sparsity"] < 0.5  # embeddings are not pruned
    model = _load(result["model_uri"])
    assert not any(k.endswith(("weight_orig", "weight_mask")) for k in model.state_dict())
    qkv = model.backbone.blocks[0].attn.qkv.weight
    zero_rows = int((qkv.abs().sum(dim=1) == 0).sum())
    assert (zero_rows == qkv.size(0) // 2) if structured else (0 < (qkv == 0).float().mean() < 1)


def test_distillation_to_half_the_layers_keeps_most_accuracy(teacher):
    trained, _ = teacher
    result = _compress(
        "distill", "--finetune-epochs", "3", "--lr", "3e-3", "--temperature", "2", "--alpha", "0.5"
    )
    assert result["compressed"]["parameters"] < result["original"]["parameters"]
    assert result["compressed"]["accuracy"] >= 0.95 * trained["accuracy"]
    student = _load(result["model_uri"])
    assert len(student.backbone.blocks) == 1


def test_soft_target_loss_and_bad_arguments():
    from training import compress

    class Task:
        kind = "classification"

        def inputs(self, split, idx):
            return torch.zeros(len(idx), 3, dtype=torch.long)

        data = type("D", (), {"targets": {"train": [0, 1]}})()

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 2))
    hard_only = compress.DistillTask(Task(), model, temperature=2.0, alpha=0.0).loss(model, [0, 1])
    expected = torch.nn.functional.cross_entropy(
        model(torch.zeros(2, 3, dtype=torch.long)), torch.tensor([0, 1])
    )
    assert hard_only.item() == pytest.approx(expected.item())
    soft_only = compress.DistillTask(Task(), model, temperature=2.0, alpha=1.0).loss(model, [0, 1])
    assert soft_only.item() == pytest.approx(0.0, abs=1e-6)  # a model distilled into itself
    with pytest.raises(SystemExit):
        compress.parse_args(["--model", "models:/x@champion", "--method", "prune", "--sparsity", "1.5"])


# --- generation models -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generator(mlflow_uri, shards_uri, tmp_path_factory):
    """A tiny GPT fine-tuned on the synthetic prompt -> completion task and registered."""
    from mlflow import MlflowClient

    from test_generation_task import write_generation_jsonl
    from training import finetune

    root = tmp_path_factory.mktemp("compress-gen")
    with base_in_mlflow(mlflow_uri, shards_uri, root, "c2m-base-compress-gen", "finetune-test",
                        "compress-test") as base:
        data = write_generation_jsonl(root / "gen", n=120)
        trained = finetune.main(
            finetune_args(
                base, "c2m-cmp-gen", "--task", "generation", "--data", str(data), "--epochs", "4",
                "--max-new-tokens", "12", "--promote", "always",  # nearest-prompt is exact on this data
            )
        )
        yield trained, MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


def _compress_gen(method, *extra):
    return _compress(method, "--model", "models:/c2m-cmp-gen@champion", *extra)


def test_int8_quantisation_of_a_generation_model_reports_bleu_perplexity_and_latencies(generator):
    from training import tracking
    from training.tasks import task_for_model
    from training.tasks.generation import GenerationLM

    trained, client = generator
    result = _compress_gen("quantize")
    original, compressed = result["original"], result["compressed"]
    assert result["metric"] == "bleu" and result["register_name"] == "c2m-cmp-gen-quantize"
    assert original["bleu"] == pytest.approx(trained["bleu"]) and trained["bleu"] > 10  # it learned
    assert {"bleu", "chrf", "perplexity"} <= set(compressed) and "delta_perplexity" in result
    assert abs(result["delta_bleu"]) <= 5 and compressed["perplexity"] < 1.05 * original["perplexity"]
    assert result["size_ratio"] < 0.9 and compressed["parameters"] == original["parameters"]
    for row in (original, compressed):
        assert all(row[f"latency_b{b}_{q}_ms"] > 0 for b in (1, 32) for q in ("p50", "p95"))
        assert row["latency_input"] == "forward pass: batch x 32 tokens (teacher-forced; no decoding)"
        assert all(row[f"decode_b{b}_{q}_ms"] > 0 for b in (1, 32) for q in ("p50", "p95"))
        # 32 new tokens asked for; max_len 32 leaves room for 31 after a one-token prompt
        assert row["decode_input"].startswith("greedy decode: batch x 31 new tokens (eos ignored)")
        # 31 forward passes take longer than one at the same batch size
        assert row["decode_b1_p50_ms"] > row["latency_b1_p50_ms"]
    assert result["decode_speedup_b1_p50"] > 0 and result["decode_speedup_b32_p50"] > 0
    table = client.download_artifacts(result["run_id"], "comparison/comparison.md")
    text = open(table).read()
    header = text.splitlines()[0]
    assert "| latency_input |" in header and "no decoding" in text and "perplexity" in text
    assert "| decode_b32_p95_ms |" in header and "| decode_input |" in header
    version = client.get_model_version("c2m-cmp-gen-quantize", str(result["model_version"]))
    assert version.tags["c2m.compression"] == "dynamic-int8" and version.tags["c2m.gate.metric"] == "bleu"

    bundle = tracking.load_model_bundle(result["model_uri"])  # what was registered is what was measured
    model = _load(result["model_uri"])
    assert isinstance(model, GenerationLM)
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
    rescored = task_for_model(bundle).evaluate(model, "test")
    assert rescored["bleu"] == pytest.approx(compressed["bleu"], abs=1e-4)


def test_magnitude_pruning_of_a_generation_model_recovers_on_val_loss(generator):
    result = _compress_gen("prune", "--sparsity", "0.5", "--finetune-epochs", "1", "--lr", "3e-4")
    assert result["metric"] == "bleu" and result["pruned_layers_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert result["recovery_steps"] > 0 and 0 < result["sparsity"] < 0.5
    assert result["compressed"]["perplexity"] < float("inf")
    model = _load(result["model_uri"])
    assert not any(k.endswith(("weight_orig", "weight_mask")) for k in model.state_dict())
    assert model(torch.tensor([[5, 6, 7]])).shape[:2] == (1, 3)


def test_distillation_of_a_generation_model_beats_the_truncated_student(generator, mlflow_uri, monkeypatch):
    from training import compress, tracking
    from training.tasks import task_for_model
    from training.tasks.generation import GenerationLM

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    trained, client = generator
    result = _compress_gen(
        "distill", "--finetune-epochs", "2", "--lr", "1e-3", "--temperature", "2", "--alpha", "0.5",
        "--decode-tokens", "12",
    )  # fmt: skip
    original, compressed = result["original"], result["compressed"]
    assert result["register_name"] == "c2m-cmp-gen-distill" and result["metric"] == "bleu"
    assert {"bleu", "chrf", "perplexity", "loss"} <= set(original) & set(compressed)
    assert {"delta_bleu", "delta_perplexity", "decode_speedup_b32_p50"} <= set(result)
    assert original["bleu"] == pytest.approx(trained["bleu"]) and result["recovery_steps"] > 0
    assert compressed["parameters"] < original["parameters"]
    for row in (original, compressed):
        assert all(row[f"decode_b{b}_{q}_ms"] > 0 for b in (1, 32) for q in ("p50", "p95"))
        assert row["decode_input"].startswith("greedy decode: batch x 12 new tokens")
    version = client.get_model_version("c2m-cmp-gen-distill", str(result["model_version"]))
    assert version.tags["c2m.compression"] == "distilled"

    bundle = tracking.load_model_bundle(result["model_uri"])
    student = _load(result["model_uri"])
    teacher = _load("models:/c2m-cmp-gen@champion")
    assert isinstance(student, GenerationLM) and bundle.config["model"]["n_layer"] == 1
    assert len(student.backbone.blocks) == len(teacher.backbone.blocks) // 2 == 1
    task = task_for_model(bundle)
    assert task.evaluate(student, "test")["perplexity"] == pytest.approx(compressed["perplexity"], rel=1e-4)
    # The same half-depth student before distillation: what the distillation had to recover.
    truncated = task.evaluate(compress.make_student(teacher, 1).eval(), "test")
    assert compressed["perplexity"] < 0.8 * truncated["perplexity"], (compressed, truncated)
    assert compressed["bleu"] > truncated["bleu"] + 5, (compressed, truncated)


def _tiny_generation_task(shards_uri, folder):
    from test_generation_task import encoder, write_generation_jsonl
    from training.config import model_config
    from training.data.shards import read_shard_info
    from training.models.gpt import GPT
    from training.tasks.generation import GenerationLM, GenerationTask, load_data

    info = read_shard_info(shards_uri)
    data = load_data("generation", data=str(write_generation_jsonl(folder, n=12)))
    task = GenerationTask(data, encoder(info))
    torch.manual_seed(0)
    model = GenerationLM(GPT(model_config("tiny", vocab_size=info.vocab_size, block_size=32)))
    return task, model.eval()


class _OffCompletionNoise(torch.nn.Module):
    """``model``'s logits with large noise wherever ``noisy`` (B, T) is True."""

    def __init__(self, model, noisy):
        super().__init__()
        self.model, self.noisy = model, noisy

    def forward(self, ids):
        logits = self.model(ids)
        return logits + 10 * torch.randn_like(logits) * self.noisy[..., None]


def test_token_level_soft_targets_count_only_completion_positions(shards_uri, tmp_path):
    from training import compress
    from training.tasks.generation import IGNORE

    task, model = _tiny_generation_task(shards_uri, tmp_path / "gen")
    rows = [0, 1, 2, 3]
    hard_only = compress.DistillTask(task, model, temperature=2.0, alpha=0.0).loss(model, rows)
    assert hard_only.item() == pytest.approx(task.loss(model, rows).item(), rel=1e-5)  # the task's own loss
    assert compress.DistillTask(task, model, 2.0, 1.0).loss(model, rows).item() == pytest.approx(0, abs=1e-6)

    _, labels = task.batch("train", rows)
    supervised = torch.zeros(labels.shape, dtype=torch.bool)
    supervised[:, :-1] = labels[:, 1:] != IGNORE  # logits at t predict the label at t + 1
    assert 0 < supervised.sum() < supervised.numel()  # prompts and padding exist in this batch
    off = compress.DistillTask(task, _OffCompletionNoise(model, ~supervised), 2.0, 1.0).loss(model, rows)
    assert off.item() == pytest.approx(0, abs=1e-6)  # the teacher on prompt or padding is never heard
    on = compress.DistillTask(task, _OffCompletionNoise(model, supervised), 2.0, 1.0).loss(model, rows)
    assert on.item() > 0.1


def test_distillation_of_a_tagger_fails_naming_what_is_supported():
    from training import compress

    with pytest.raises(ValueError, match=r"distill is not supported for tagging models.*quantize"):
        compress.check_supported("distill", "tagging")
    with pytest.raises(ValueError, match="use --method quantize or --method prune"):
        compress.check_supported("distill", "tagging")
    compress.check_supported("distill", "classification")
    compress.check_supported("distill", "generation")
