"""The fine-tuning loop shared by every task: epochs of steps, validation, the best weights kept.

Linear on purpose: set the (scaled) lr, take this rank's slice of the global batch, loss,
backward, average gradients and step; after each epoch score the validation split
(counts summed over ranks) and keep a copy of the weights when the selection score
improves: the task's primary metric, or with ``select_on="loss"`` the validation loss
(generation's default: BLEU on a small split is noisy). Each is compared in its own
direction (``training.metrics.higher_is_better``). The best weights, not the last, are
what the caller tests and registers (model selection on validation). ``on_epoch`` lets
HPO report each epoch to Optuna and prune a hopeless trial by raising.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ops.lake import progress, storage
from training import distributed
from training.data.shards import ShardSampler
from training.metrics import higher_is_better
from training.optim import build_optimizer, get_lr, set_lr


class StopTraining(Exception):
    """Raised by an ``on_epoch`` callback to end a run on purpose (an HPO trial pruned)."""


@dataclass
class FitResult:
    steps: int
    seconds: float
    best_epoch: int
    best_val: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    selected_on: str = ""  # the validation key that picked best_epoch, e.g. "loss" or "bleu"


def selection_key(task, select_on: str = "metric") -> str:
    """The validation key that picks the best epoch: the task's primary metric or ``loss``."""
    if select_on not in ("metric", "loss"):
        raise ValueError(f"select_on={select_on!r}: choose metric or loss")
    return task.primary_metric if select_on == "metric" else "loss"


def improves(score: float, best: float | None, key: str) -> bool:
    """Whether ``score`` beats ``best`` (None: nothing yet) on ``key``, in that key's direction."""
    if best is None:
        return True
    return score > best if higher_is_better(key) else score < best


def save_best(state: dict, directory: str, meta: dict) -> str:
    """Write ``best.pt`` under ``directory`` (a folder or an ``s3://`` prefix); return its URI.

    Atomic either way: locally a temp file renamed over the old one, on S3 an upload of a
    local temp file (an object appears whole or not at all), so a crash never leaves half
    a checkpoint."""
    target = storage.join(directory, "best.pt")
    if storage.is_s3(directory):
        with tempfile.TemporaryDirectory(prefix="c2m-best-") as tmp_dir:
            tmp = Path(tmp_dir, "best.pt")
            torch.save({"model": state, **meta}, tmp)
            storage.upload_file(tmp, target)
        return target
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    torch.save({"model": state, **meta}, tmp)
    os.replace(tmp, path)
    return target


def fit(
    cfg,
    task,
    model: torch.nn.Module,
    dist: distributed.Distributed,
    log: Callable[..., None] | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``task``'s train split per ``cfg`` (a TaskConfig); leave the best weights in it."""
    n_train = task.size("train")
    steps_per_epoch = n_train // (cfg.batch_size * dist.size)
    if steps_per_epoch == 0:
        raise ValueError(
            f"only {n_train} training examples, but one step needs batch_size={cfg.batch_size} "
            f"x {dist.size} ranks; lower --batch-size or use more examples"
        )
    optimizer = dist.wrap_optimizer(build_optimizer(model, cfg.optim, cfg.layer_lr_decay), model)
    dist.broadcast_state(model, optimizer)  # the new head's init must match on every rank
    sampler = ShardSampler(n_train, cfg.batch_size, dist.rank, dist.size, cfg.seed)
    total_steps = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]

    key = selection_key(task, getattr(cfg, "select_on", "metric") or "metric")
    if dist.is_main:
        direction = "higher" if higher_is_better(key) else "lower"
        print(f"[finetune] model selection on val/{key} ({direction} is better)", flush=True)
        progress.start("finetune", unit="steps", total=total_steps)  # [progress] every 10 s on rank 0

    step, t0 = 0, time.perf_counter()
    best_state, best_val, best_epoch, history, stale = None, {}, 0, [], 0
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        for _ in range(steps_per_epoch):
            set_lr(optimizer, get_lr(step, cfg.optim, total_steps))
            loss = task.loss(model, sampler.next_indices())
            loss.backward()
            dist.step(optimizer, params, cfg.optim.grad_clip)
            dist.zero_grad(optimizer)
            step += 1
            progress.update(done=step, epoch=epoch)  # a no-op on ranks other than 0
            if log:
                log(step, **{"train/loss": loss.item()})  # rank 0's batch: indicative, no collective
                progress.update(loss=loss.item())
        if hasattr(task, "calibrate"):
            task.calibrate(model, "val", dist)  # a classifier's n-gram bag weight, picked on validation
        val = task.evaluate(model, "val", dist)
        history.append({"epoch": epoch, **val})
        if log:
            log(step, epoch=epoch, **{f"val/{k}": v for k, v in val.items()})
        if key not in val:
            raise ValueError(
                f"model selection on {key!r}, but the {task.kind} task's validation reports only "
                f"{sorted(val)}; use --select-on metric"
            )
        if improves(val[key], best_val.get(key) if best_state is not None else None, key):
            best_state = copy.deepcopy(model.state_dict())
            best_val, best_epoch, stale = val, epoch, 0
            if cfg.checkpoint_dir and dist.is_main:
                meta = {"epoch": epoch, "val": val, "selected_on": key, "config": cfg.to_dict()}
                save_best(best_state, cfg.checkpoint_dir, meta)
        else:
            stale += 1
        if on_epoch:
            on_epoch(epoch, val)
        if cfg.patience and stale >= cfg.patience:
            break
    progress.stop()
    model.load_state_dict(best_state)
    return FitResult(
        steps=step,
        seconds=time.perf_counter() - t0,
        best_epoch=best_epoch,
        best_val=best_val,
        history=history,
        stopped_early=epoch < cfg.epochs,
        selected_on=key,
    )
