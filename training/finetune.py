"""Fine-tune the registered base GPT for sentiment: ``python -m training.finetune``.

Loads ``models:/c2m-base@champion`` (weights, config and tokenizer) from MLflow, adds a
classification head on the last token, and trains every layer with a small learning
rate for a few epochs on the movie-review polarity set. Launched like pretraining
(``horovodrun -np K`` or one process): each rank takes its slice of every global batch,
gradients are averaged, and evaluation sums a confusion matrix over ranks. Rank 0
logs to the ``finetune`` experiment, registers ``c2m-sentiment`` with alias champion
and writes the result file (accuracy and macro-F1 on the test split).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from ops import storage
from training import distributed
from training.config import FinetuneConfig, ModelConfig, OptimConfig
from training.data.polarity import LABELS, find_archive, load_splits
from training.data.shards import ShardSampler
from training.models.gpt import GPT
from training.models.heads import SequenceClassifier
from training.optim import build_adamw, get_lr, set_lr


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = FinetuneConfig()
    p = argparse.ArgumentParser(prog="python -m training.finetune", description=__doc__.splitlines()[0])
    p.add_argument("--base-model", default=d.base_model)
    p.add_argument("--task", default=d.task, help="sentiment (movie-review polarity)")
    p.add_argument("--subset", default=d.subset, help="polarity subset: sentences or reviews")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per rank per step")
    p.add_argument("--lr", type=float, default=d.optim.lr)
    p.add_argument("--warmup-steps", type=int, default=d.optim.warmup_steps)
    p.add_argument(
        "--max-examples", type=int, default=0, help="use a fixed subset of this many texts (0 = all)"
    )
    p.add_argument(
        "--max-len", type=int, default=0, help="tokens per text incl. eos (0 = the model's context)"
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--experiment", default=d.experiment)
    p.add_argument("--register-name", default=d.register_name)
    p.add_argument("--run-name", default="")
    p.add_argument("--result-file", default="")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (0 = torch's default)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(
        optim=OptimConfig(lr=args.lr, warmup_steps=args.warmup_steps, weight_decay=0.01),
        base_model=args.base_model,
        task=args.task,
        subset=args.subset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_examples=args.max_examples,
        max_len=args.max_len,
        seed=args.seed,
        experiment=args.experiment,
        register_name=args.register_name,
        run_name=args.run_name or f"{args.task}-{args.subset}",
    )


class Encoder:
    """Texts -> right-padded id tensors ending in eos, the token the classifier reads."""

    def __init__(self, tokenizer_path, eos_id: int, pad_id: int, max_len: int):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.eos_id, self.pad_id, self.max_len = eos_id, pad_id, max_len

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids[: self.max_len - 1] + [self.eos_id] for e in self.tok.encode_batch(texts)]

    def batch(self, ids: list[list[int]]) -> torch.Tensor:
        width = max(len(row) for row in ids)
        out = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        for i, row in enumerate(ids):
            out[i, : len(row)] = torch.tensor(row)
        return out


def metrics_from_confusion(confusion: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 from a (true, predicted) count matrix; F1 of an empty class is 0."""
    tp = np.diag(confusion).astype(float)
    fp, fn = confusion.sum(axis=0) - tp, confusion.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    total = confusion.sum()
    return {"accuracy": float(tp.sum() / total) if total else 0.0, "f1": float(f1.mean())}


@torch.no_grad()
def evaluate(
    model: SequenceClassifier,
    ids: list[list[int]],
    labels: list[int],
    encoder: Encoder,
    batch_size: int,
    dist: distributed.Distributed,
) -> dict[str, float]:
    """This rank scores every size-th example; the confusion matrix is summed over ranks."""
    model.eval()
    confusion = torch.zeros(len(LABELS), len(LABELS), dtype=torch.float64)
    mine = list(range(dist.rank, len(ids), dist.size))
    for i in range(0, len(mine), batch_size):
        chunk = mine[i : i + batch_size]
        pred = model(encoder.batch([ids[j] for j in chunk])).argmax(dim=-1)
        for j, p in zip(chunk, pred.tolist()):
            confusion[labels[j], p] += 1
    model.train()
    return metrics_from_confusion(dist.allreduce_sum(confusion).numpy())


def build_model(bundle, num_labels: int) -> SequenceClassifier:
    if bundle.config.get("kind") != "gpt-lm":
        raise RuntimeError(
            f"base model kind is {bundle.config.get('kind')!r}; fine-tuning needs a pretrained gpt-lm"
        )
    backbone = GPT(ModelConfig(**bundle.config["model"]))
    backbone.load_state_dict(bundle.state_dict())
    return SequenceClassifier(backbone, num_labels=num_labels, pad_id=bundle.config["pad_id"])


def encode_splits(cfg: FinetuneConfig, bundle) -> tuple[Encoder, dict]:
    """Polarity splits tokenised the way the base model was: ``{split: (ids, labels)}``."""
    splits = load_splits(cfg.subset, cfg.max_examples)
    block_size = bundle.config["model"]["block_size"]
    if cfg.max_len > block_size:
        raise ValueError(f"--max-len {cfg.max_len} exceeds the base model's context of {block_size} tokens")
    max_len = cfg.max_len or block_size
    encoder = Encoder(bundle.tokenizer_path, bundle.config["eos_id"], bundle.config["pad_id"], max_len)
    return encoder, {
        name: (encoder.encode([e.text for e in exs]), [e.label for e in exs]) for name, exs in splits.items()
    }


def train(cfg: FinetuneConfig, dist: distributed.Distributed) -> dict:
    from training import tracking  # every rank needs the base model's files from MLflow

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    bundle = tracking.load_model_bundle(cfg.base_model)
    encoder, data = encode_splits(cfg, bundle)
    train_ids, train_labels = data["train"]
    sizes = {name: len(ids) for name, (ids, _) in data.items()}

    model = build_model(bundle, num_labels=len(LABELS))
    optimizer = dist.wrap_optimizer(build_adamw(model, cfg.optim), model)
    dist.broadcast_state(model, optimizer)  # the new head's init must match on every rank
    sampler = ShardSampler(len(train_ids), cfg.batch_size, dist.rank, dist.size, cfg.seed)
    steps_per_epoch = len(train_ids) // (cfg.batch_size * dist.size)
    total_steps = steps_per_epoch * cfg.epochs

    metrics = None
    if dist.is_main:
        metrics = tracking.MetricBuffer(
            tracking.start_run(cfg.experiment, cfg.run_name, tags={"c2m.job": "finetune"})
        )
        tracking.log_config({**cfg.to_dict(), "base_model_version": bundle.version, "data": sizes})
        archive = find_archive()
        tracking.log_dataset(
            str(archive),
            name=f"pang-lee-polarity-{cfg.subset}",
            digest=tracking.digest_json([tracking.digest_file(archive), cfg.subset, cfg.max_examples]),
        )
        print(
            f"[finetune] {dist.backend} x{dist.size}: base {cfg.base_model} (v{bundle.version}), "
            f"{len(train_ids)} train texts, {total_steps} steps",
            flush=True,
        )
    try:
        t0, step, val = time.perf_counter(), 0, {}
        for epoch in range(1, cfg.epochs + 1):
            for _ in range(steps_per_epoch):
                set_lr(optimizer, get_lr(step, cfg.optim, total_steps))
                idx = sampler.next_indices()
                x = encoder.batch([train_ids[i] for i in idx])  # (B, T)
                loss = F.cross_entropy(model(x), torch.tensor([train_labels[i] for i in idx]))
                loss.backward()
                dist.step(optimizer, model.parameters(), cfg.optim.grad_clip)
                dist.zero_grad(optimizer)
                step += 1
                if metrics:
                    metrics.add(
                        step, **{"train/loss": loss.item()}
                    )  # rank 0's batch: indicative, no collective
            val = evaluate(model, *data["val"], encoder, cfg.batch_size, dist)
            if metrics:
                metrics.add(step, **{"val/accuracy": val["accuracy"], "val/f1": val["f1"], "epoch": epoch})
                metrics.flush()
                print(
                    f"[finetune] epoch {epoch}: val accuracy {val['accuracy']:.3f} f1 {val['f1']:.3f}",
                    flush=True,
                )
        seconds = time.perf_counter() - t0
        test = evaluate(model, *data["test"], encoder, cfg.batch_size, dist)
        result = {
            "accuracy": test["accuracy"],
            "f1": test["f1"],
            "val_accuracy": val.get("accuracy"),
            "val_f1": val.get("f1"),
            "steps": step,
            "steps_per_s": step / seconds if seconds else 0.0,
            "base_model_version": bundle.version,
            "world_size": dist.size,
            "examples": sizes,
        }
        if metrics:
            metrics.add(step, **{"test/accuracy": test["accuracy"], "test/f1": test["f1"]})
            metrics.flush()
            result.update(register(model, cfg, bundle, encoder), run_id=metrics.run_id)
            tracking.end_run()
        return result
    except BaseException:
        if metrics:
            tracking.end_run(status="FAILED")
        raise


def register(model: SequenceClassifier, cfg: FinetuneConfig, bundle, encoder: Encoder) -> dict:
    """Log the classifier with what serving needs (labels, tokenizer, max_len) and make it champion."""
    from training import tracking

    model_config = {
        "kind": "gpt-classifier",
        "model": bundle.config["model"],
        "labels": list(LABELS),
        "eos_id": encoder.eos_id,
        "pad_id": encoder.pad_id,
        "max_len": encoder.max_len,
        "base_model": cfg.base_model,
        "base_model_version": bundle.version,
    }
    version, model_uri = tracking.log_and_register_model(
        model,
        registered_name=cfg.register_name,
        tokenizer_path=bundle.tokenizer_path,
        model_config=model_config,
        signature=tracking.classifier_signature(len(LABELS)),
    )
    return {"model_version": version, "model_uri": model_uri}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    dist = distributed.init(num_threads=args.threads or None)
    try:
        result = train(build_config(args), dist)
        if dist.is_main and args.result_file:
            storage.write_text(args.result_file, json.dumps(result, indent=2, sort_keys=True))
        if dist.is_main:
            print(f"[finetune] done: {json.dumps(result, sort_keys=True)}", flush=True)
        # Leave together: a rank that tears down its connections while rank 0 is still
        # registering the model can abort the job (Gloo) or hang it.
        dist.barrier()
        return result
    finally:
        dist.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
