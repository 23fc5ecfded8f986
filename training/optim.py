"""AdamW parameter groups and the learning-rate schedule, shared by pretrain and finetune.

``get_lr`` is a pure function of the step, so resuming needs only the step number and
there is no scheduler object to save or to get out of sync.
"""

from __future__ import annotations

import math

import torch

from training.config import OptimConfig


def get_lr(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """Linear warmup over ``warmup_steps`` then cosine (or flat) decay to ``min_lr_ratio * lr``.

    ``step`` counts optimiser steps from 0; the first step uses lr / warmup_steps.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    min_lr = cfg.lr * cfg.min_lr_ratio
    decay_steps = max(1, max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - min_lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_adamw(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW where only matrices (weights of Linear/Embedding, dim >= 2) decay.

    Decaying LayerNorm gains and biases pulls them to zero, which only hurts.
    """
    decay, no_decay = [], []
    for param in model.parameters():  # tied parameters are yielded once
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
