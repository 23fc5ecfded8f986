"""Fine-tuning defaults picked from the number of training examples.

A fixed "3 epochs at 3e-4" is wrong at both ends: a few hundred examples give a tiny model
a few dozen steps (it never leaves the head's random start), a hundred thousand give it
far more than it needs. So the flags a user leaves out (``TaskConfig.size_defaults``) are
picked here from the training-set size, and early stopping on the validation split keeps
the best epoch whatever the epoch count:

- ``epochs``: enough passes for about ``TARGET_STEPS`` optimizer steps, within
  ``[MIN_EPOCHS, MAX_EPOCHS]``;
- ``lr``: ``LR`` (AdamW; the backbone is small and the head new);
- ``warmup_steps``: about ``WARMUP_FRACTION`` of the steps;
- ``patience``: stop after ``PATIENCE`` epochs without a better validation score; the
  best epoch's weights are the ones tested and registered (training/tasks/loop.py).

Measured on the demo's sentiment task (README, "Recipes, measured"; ``bench/finetune_recipe.py``):
against the old fixed 2 epochs at 3e-4 (test accuracy 0.585) these defaults gave 0.676 from the
same kind of tiny GPT; lr 1e-3 did as well as 3e-4 on one BERT base (0.676 vs 0.668, within
noise) and peaked an epoch sooner; every run's best epoch came after 400-800 steps, so the
2,000-step aim leaves room for slower starts while early stopping ends a run ``PATIENCE`` epochs
after its best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

TARGET_STEPS = 2000  # optimizer steps the picked epochs aim at
MIN_EPOCHS, MAX_EPOCHS = 3, 20
LR = 1e-3
WARMUP_FRACTION = 0.05
PATIENCE = 3


@dataclass(frozen=True)
class Recipe:
    epochs: int
    lr: float
    warmup_steps: int
    patience: int

    def describe(self) -> str:
        return (
            f"{self.epochs} epochs, lr {self.lr:g}, {self.warmup_steps} warmup steps, "
            f"early stop after {self.patience} epochs without a better val score"
        )


def pick(n_train: int, batch_size: int, ranks: int = 1) -> Recipe:
    """The defaults for ``n_train`` examples in global batches of ``batch_size * ranks``."""
    if n_train <= 0:
        raise ValueError(f"n_train={n_train}: the training split is empty; check the task data")
    steps_per_epoch = max(1, n_train // (batch_size * ranks))
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps_per_epoch)))
    warmup = max(1, round(WARMUP_FRACTION * epochs * steps_per_epoch))
    return Recipe(epochs=epochs, lr=LR, warmup_steps=warmup, patience=PATIENCE)


def resolve(cfg, n_train: int, ranks: int = 1):
    """``cfg`` (a TaskConfig) with its ``size_defaults`` fields set from :func:`pick`; the rest kept.

    ``size_defaults`` stays listed, so the logged config says which values were picked."""
    if not cfg.size_defaults:
        return cfg
    r = pick(n_train, cfg.batch_size, ranks)
    top = {k: getattr(r, k) for k in ("epochs", "patience") if k in cfg.size_defaults}
    optim = {k: getattr(r, k) for k in ("lr", "warmup_steps") if k in cfg.size_defaults}
    return replace(cfg, **top, optim=replace(cfg.optim, **optim))


def describe_picked(cfg, n_train: int) -> str:
    """One log line: which fields were picked for ``n_train`` examples, and the values that run."""
    return (
        f"picked for {n_train} train examples ({', '.join(cfg.size_defaults)}): {cfg.epochs} epochs, "
        f"lr {cfg.optim.lr:g}, {cfg.optim.warmup_steps} warmup steps, patience {cfg.patience}"
    )
