"""Compress a fine-tuned model (distil, int8-quantise or prune) and register the result.

    python -m training.compress --model models:/c2m-sentiment@champion --method quantize

Methods:

- ``distill``: a student with half the blocks (``--student-layers``), initialised from
  the teacher's embeddings, every other block and head, trained on the teacher's soft
  targets at temperature T plus the hard labels:
  ``loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, label)``
  (Hinton et al.; T^2 keeps the soft gradients' scale independent of T). For a
  generation model the same loss is taken per token (word-level KD, Kim & Rush 2016)
  over the completion positions only - the positions the generation task's own loss
  supervises (completion and eos; prompt and padding masked) - averaged over tokens.
- ``quantize``: post-training dynamic int8 quantisation of every Linear layer
  (``torch.ao.quantization.quantize_dynamic``): weights stored as int8, activations
  quantised on the fly, no calibration data needed.
- ``prune``: magnitude pruning to ``--sparsity``, unstructured (smallest |w| anywhere in
  the blocks, global ranking) or ``--structured`` (whole output rows by L2 norm, per
  layer); ``--finetune-epochs`` of recovery training with the masks held, then the masks
  are made permanent (``prune.remove``).

Which methods fit which model (:data:`SUPPORTED`): all three for classifiers and
generation models (GPT prompt -> completion); quantisation and pruning for taggers.
Distillation needs a soft-target loss per task kind and a tagger has none written yet;
asking for it there fails before anything runs, naming what is supported.

Each result is registered (default name ``<model>-<method>``) with a comparison table
artefact against the uncompressed model: the test scores (generation: BLEU, chrF and
perplexity), size on disk (raw and gzipped), parameter count (and non-zeros), CPU
latency p50/p95 at batch 1 and 32. Latency is one forward pass; for generation over a
fixed-length batch of ``max_len`` tokens (teacher-forced), and the table's
``latency_input`` column says which. Generation models also get decode latency
(``decode_b{1,32}_p{50,95}_ms``): greedy generation of ``--decode-tokens`` new tokens per
row through the task's own decoder, eos ignored so every row makes exactly that many,
described in ``decode_input`` (no KV cache: each new token re-reads the whole prefix, as
serving does). The promotion gate then decides whether the result becomes that name's
champion.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ops.lake.jobconfig import add_arguments
from training import distributed
from training.compress_measure import comparison, measure
from training.config import OptimConfig
from training.job_result import finish
from training.job_settings import COMPRESS_METHODS, COMPRESS_SETTINGS
from training.tasks.backbone import blocks_of

METHODS = COMPRESS_METHODS
# task kind -> the methods written for it (distillation: a soft-target loss per kind; none for tagging).
SUPPORTED = {
    "classification": METHODS,
    "tagging": ("quantize", "prune"),
    "generation": METHODS,
}
# Recovery fine-tunes (prune, distill) reuse the loop; it wants a TaskConfig of the same kind.
_RECOVERY_TASK = {"classification": "sentiment", "tagging": "ner", "generation": "generation"}


def check_supported(method: str, kind: str) -> None:
    """Fail before any work when ``method`` is not written for models of ``kind``, naming what is."""
    allowed = SUPPORTED.get(kind, ())
    if method not in allowed:
        others = "; ".join(f"{k}: {', '.join(m)}" for k, m in SUPPORTED.items())
        raise ValueError(
            f"--method {method} is not supported for {kind} models (supported: {others}); "
            f"use --method {' or --method '.join(allowed) or 'quantize'}"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.compress", description=__doc__.splitlines()[0])
    add_arguments(p, COMPRESS_SETTINGS)
    args = p.parse_args(argv)
    if args.temperature <= 0:
        p.error(f"--temperature {args.temperature}: must be > 0")
    return args


# --- methods -------------------------------------------------------------------------------------


def prunable_linears(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """The transformer blocks' Linear layers: the head is tiny, the embeddings are shared with lm_head."""
    return [(m, "weight") for m in blocks_of(model.backbone).modules() if isinstance(m, nn.Linear)]


def apply_pruning(model: nn.Module, sparsity: float, structured: bool) -> None:
    from torch.nn.utils import prune

    targets = prunable_linears(model)
    if structured:
        for module, name in targets:
            prune.ln_structured(module, name, amount=sparsity, n=2, dim=0)
    else:
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)


def make_permanent(model: nn.Module) -> None:
    from torch.nn.utils import prune

    for module, name in prunable_linears(model):
        if prune.is_pruned(module):
            prune.remove(module, name)


def make_student(teacher: nn.Module, n_layer: int) -> nn.Module:
    """The teacher with ``n_layer`` evenly spaced blocks kept (a warm start that distils much faster)."""
    student = copy.deepcopy(teacher)
    teacher_layers = len(blocks_of(teacher.backbone))
    if not 0 < n_layer < teacher_layers:
        raise ValueError(
            f"--student-layers {n_layer}: must be between 1 and the teacher's {teacher_layers - 1}"
        )
    keep = np.linspace(0, teacher_layers - 1, n_layer).round().astype(int).tolist()
    attr = "layers" if teacher.backbone.cfg.arch == "bert" else "blocks"  # what blocks_of reads
    setattr(student.backbone, attr, nn.ModuleList(blocks_of(student.backbone)[i] for i in keep))
    student.backbone.cfg = replace(teacher.backbone.cfg, n_layer=n_layer)
    return student


def soft_target_loss(
    student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, targets)``, per row.

    ``student`` and ``teacher`` are logits (N, C), ``targets`` (N,): N examples for a
    classifier, N supervised token positions for a generation model. Both terms are means
    over the N rows (KL ``batchmean``), so alpha weighs like against like.
    """
    kd = F.kl_div(
        F.log_softmax(student.float() / temperature, dim=-1),
        F.log_softmax(teacher.float() / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * kd * temperature**2 + (1 - alpha) * F.cross_entropy(student.float(), targets)


class DistillTask:
    """The task, with a loss that mixes the teacher's soft targets and the hard labels."""

    def __init__(self, task, teacher: nn.Module, temperature: float, alpha: float):
        check_supported("distill", task.kind)
        self.task, self.teacher, self.t, self.alpha = task, teacher.eval(), temperature, alpha

    def __getattr__(self, name):
        return getattr(self.task, name)

    def loss(self, model, indices, split: str = "train") -> torch.Tensor:
        if self.task.kind == "generation":
            return self._token_loss(model, indices, split)
        x = self.task.inputs(split, indices)
        with torch.no_grad():
            teacher = self.teacher(x)
        targets = torch.tensor([self.task.data.targets[split][i] for i in indices])
        return soft_target_loss(model(x), teacher, targets, self.t, self.alpha)

    def _token_loss(self, model, indices, split: str) -> torch.Tensor:
        """Token-level KD on the positions the generation loss supervises (completion + eos).

        Position t predicts token t+1; prompt and padding labels are IGNORE, so neither the
        teacher's opinion of the prompt nor of padding reaches the student.
        """
        from training.tasks.generation import IGNORE

        ids, labels = self.task.batch(split, indices)
        targets = labels[:, 1:]
        supervised = targets != IGNORE  # (B, T-1)
        with torch.no_grad():
            teacher = self.teacher(ids)[:, :-1][supervised]  # (N, V)
        student = model(ids)[:, :-1][supervised]
        return soft_target_loss(student, teacher, targets[supervised], self.t, self.alpha)


def recover(args, task, model, dist, epochs: int) -> dict:
    """A short fine-tune (best val epoch kept) after pruning or for the student."""
    from training.tasks.config import TaskConfig
    from training.tasks.loop import fit

    if epochs == 0:
        return {}
    cfg = TaskConfig(  # select_on follows the task kind's default (generation: val loss)
        optim=OptimConfig(lr=args.lr, warmup_steps=0, weight_decay=0.0),
        task=_RECOVERY_TASK[task.kind],
        base_model="models:/unused",
        epochs=epochs,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    fitted = fit(cfg, task, model, dist)
    return {"recovery_steps": fitted.steps, "recovery_best_epoch": fitted.best_epoch}


def compress(args, bundle, teacher, task, dist) -> tuple[nn.Module, dict, dict]:
    """(compressed model, its model_config changes, details)."""
    from training.tasks.export import INT8, quantize_int8

    torch.manual_seed(args.seed)
    if args.method == "quantize":
        return quantize_int8(copy.deepcopy(teacher)), {"compression": INT8}, {}
    if args.method == "prune":
        model = copy.deepcopy(teacher)
        apply_pruning(model, args.sparsity, args.structured)
        details = recover(args, task, model.train(), dist, args.finetune_epochs)
        make_permanent(model)
        weights = [m.weight for m, _ in prunable_linears(model)]
        zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
        details["pruned_layers_sparsity"] = round(zeros, 4)
        kind = "structured-l2-rows" if args.structured else "unstructured-l1-global"
        return model.eval(), {"compression": f"prune-{kind}", "sparsity": args.sparsity}, details
    n_layer = args.student_layers or max(1, len(blocks_of(teacher.backbone)) // 2)
    student = make_student(teacher, n_layer)
    details = recover(
        args,
        DistillTask(task, teacher, args.temperature, args.alpha),
        student.train(),
        dist,
        max(args.finetune_epochs, 1),
    )
    model_cfg = {**bundle.config["model"], "n_layer": n_layer}
    return (
        student.eval(),
        {
            "compression": "distilled",
            "model": model_cfg,
            "teacher": args.model,
            "temperature": args.temperature,
            "alpha": args.alpha,
        },
        details,
    )


# --- orchestration ------------------------------------------------------------------------------


def write_table(rows: list[dict], ratios: dict, out: Path) -> None:
    (out / "comparison.json").write_text(
        json.dumps({"rows": rows, "compressed_vs_original": ratios}, indent=2)
    )
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    lines += ["", "compressed vs original: " + ", ".join(f"{k} {v}" for k, v in ratios.items())]
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    with open(out / "comparison.csv", "w") as fh:
        fh.write(",".join(keys) + "\n")
        fh.writelines(",".join(str(r.get(k, "")) for k in keys) + "\n" for r in rows)


def log_comparison(args, rows: list[dict], ratios: dict) -> None:
    """Rank 0: the job's flags, both models' measurements and their ratios, and the comparison table."""
    import mlflow

    from training import tracking

    tracking.log_config({k: v for k, v in vars(args).items() if k != "result_file"})
    mlflow.log_metrics(
        {
            f"{r['model']}/{k}": float(v)
            for r in rows
            for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )
    mlflow.log_metrics({f"compressed_vs_original/{k}": float(v) for k, v in ratios.items()})
    with tempfile.TemporaryDirectory(prefix="c2m-compress-") as tmp:
        write_table(rows, ratios, Path(tmp))
        mlflow.log_artifacts(tmp, artifact_path="comparison")


def register_compressed(
    args, name: str, bundle, model, config_changes: dict, rows: list[dict], metric: str
) -> dict:
    """Rank 0: log and register the compressed model with its lineage; serving.log_model's result."""
    import mlflow

    from training import tracking
    from training.tasks import serving

    config = {
        **bundle.config,
        **config_changes,
        "source_model": args.model,
        "source_model_version": bundle.version,
    }
    logged = serving.log_model(
        model,
        config,
        bundle.tokenizer_path,
        registered_name=name,
        tags={"c2m.compression": config["compression"], "c2m.source_model": args.model},
    )
    tracking.describe_registration(  # lineage: the source model's corpus, task data and tokenizer
        name,
        logged["model_version"],
        model_description=(
            f"{name}: {args.method}-compressed versions of {args.model.split('@')[0]} "
            "(training.compress). "
            f"Consume models:/{name}@champion; the champion alias moves only when a version beats it on "
            f"the test {metric} (tags c2m.gate.*). Versions name the source model, its corpus "
            "(c2m.corpus.*), task data (c2m.task_data.*) and tokenizer (c2m.tokenizer_sha256)."
        ),
        version_description=(
            f"{args.method} of {args.model} (v{bundle.version}): {metric} {rows[1][metric]:.4f} against "
            f"{rows[0][metric]:.4f}; MLflow run {mlflow.active_run().info.run_id}"
        ),
        tags={
            **tracking.inherited_lineage(args.model, bundle),
            "c2m.source_model_version": str(bundle.version),
            "c2m.run_id": mlflow.active_run().info.run_id,
        },
    )
    return logged


def run(args, dist) -> dict:
    import mlflow

    from training import finetune, registry_gate, tracking
    from training.tasks import export, split_digest, task_for_model

    bundle = tracking.load_model_bundle(args.model)
    task = task_for_model(bundle, max_examples=args.max_examples)
    check_supported(args.method, task.kind)
    teacher = export.load_module(bundle)
    metric = task.primary_metric
    name = (
        args.register_name
        or f"{args.model.removeprefix('models:/').split('@')[0].split('/')[0]}-{args.method}"
    )
    if dist.is_main:
        mlflow.set_experiment(args.experiment)
        mlflow.start_run(
            run_name=args.run_name or f"{args.method}-{name}",
            tags={"c2m.job": "compress", "c2m.method": args.method, "c2m.source_model": args.model},
        )
    try:
        model, config_changes, details = compress(args, bundle, teacher, task, dist)
        if not dist.is_main:
            return {}
        rows = measure(
            {"original": teacher, args.method: model}, task, args.latency_repeats, args.decode_tokens
        )
        ratios = comparison(rows[0], rows[1], metric)
        log_comparison(args, rows, ratios)
        logged = register_compressed(args, name, bundle, model, config_changes, rows, metric)
        decision = registry_gate.gate(
            name,
            logged["model_version"],
            metric,
            rows[1][metric],
            split_digest(task, "test"),
            args.gate_margin,
            args.promote,
            rescore=finetune.rescorer(task),
        )
        result = {
            "run_id": mlflow.active_run().info.run_id,
            **logged,
            "register_name": name,
            "method": args.method,
            "metric": metric,
            "original": rows[0],
            "compressed": rows[1],
            **ratios,
            **details,
            "promoted": decision.promoted,
            "gate": decision.reason,
        }
        tracking.describe_run(
            f"{args.method} compression of {args.model} (v{bundle.version})",
            f"{task.data.name} ({task.data.source}), test split",
            f"test {metric} {rows[1][metric]:.4f} against the original's {rows[0][metric]:.4f}; "
            + tracking.registration_words(name, logged["model_version"], decision.promoted, decision.reason),
        )
        mlflow.end_run()
        return result
    except BaseException:
        if dist.is_main:
            mlflow.end_run(status="FAILED")
        raise


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    dist = distributed.init(num_threads=args.threads or None)
    try:
        return finish(dist, "compress", run(args, dist), args.result_file)
    finally:
        dist.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
