"""Optimisers (AdamW, LAMB) with decay-free norms and biases, optional layer-wise lr decay, and the
learning-rate schedule; shared by pretraining and fine-tuning.

``get_lr`` is a pure function of the step, so resuming needs only the step number and
there is no scheduler object to save or to get out of sync.

LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in 76
minutes") is Adam whose per-tensor update is rescaled by the trust ratio
``||w|| / ||adam_update + wd * w||``, so every layer moves by a similar fraction of its
own norm whatever the batch size. Written here: torch has none, and apex's FusedLAMB needs CUDA.
"""

from __future__ import annotations

import math

import torch

from training.config import OptimConfig

# Module names whose numbered children are the transformer blocks (GPT: blocks.N, BERT: layers.N).
BLOCK_CONTAINERS = ("blocks", "layers")


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
    if cfg.schedule == "linear":
        return cfg.lr - progress * (cfg.lr - min_lr)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - min_lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's ``lr`` times each group's layer-wise scale (``lr_scale``, 1 when absent)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def _block_index(parts: list[str]) -> int | None:
    for i, part in enumerate(parts[:-1]):
        if part in BLOCK_CONTAINERS and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def layer_depths(model: torch.nn.Module) -> dict[str, int]:
    """Each parameter's distance from the output: 0 for heads and final norms, i for the i-th
    block from the top (``blocks.N``/``layers.N``), n_layer + 1 for the embeddings (a module
    named ``*_emb`` or ``emb_*``, e.g. ``tok_emb``, ``pos_emb``, BERT's ``emb_ln``)."""
    blocks = {name: _block_index(name.split(".")) for name, _ in model.named_parameters()}
    n_layer = len({b for b in blocks.values() if b is not None})
    depths = {}
    for name, block in blocks.items():
        if any(p.endswith("_emb") or p.startswith("emb_") for p in name.split(".")[:-1]):
            depths[name] = n_layer + 1
        else:
            depths[name] = 0 if block is None else n_layer - block
    return depths


def param_groups(model: torch.nn.Module, weight_decay: float, layer_lr_decay: float = 1.0) -> list[dict]:
    """Parameter groups: matrices (Linear/Embedding weights, dim >= 2) decay; norms and biases don't.

    Decaying LayerNorm gains and biases pulls them to zero, which only hurts. With
    ``layer_lr_decay`` d < 1 the groups are split by depth too (:func:`layer_depths`), and a
    group at depth k trains at ``lr * d**k`` (its ``lr_scale``; ULMFiT's discriminative
    fine-tuning): the head learns fast while the embeddings move least. With d = 1 there are
    two groups, decay then no decay, which is what pretraining checkpoints hold. The parameters
    of a module with an ``lr_scale`` attribute get groups of their own at that multiple. Frozen
    parameters are left out; tied parameters appear once; empty groups are dropped.
    """
    if not 0 < layer_lr_decay <= 1:
        raise ValueError(f"layer_lr_decay={layer_lr_decay}: must be in (0, 1] (1 = one lr for all layers)")
    depths = layer_depths(model) if layer_lr_decay != 1.0 else {}
    scales = {  # a module's own multiplier (e.g. heads.NGRAM_LR_SCALE on the n-gram bag)
        f"{prefix}.{name}" if prefix else name: module.lr_scale
        for prefix, module in model.named_modules() if hasattr(module, "lr_scale")
        for name, _ in module.named_parameters()
    }
    groups: dict[tuple[int, bool, float], dict] = {}
    for name, param in model.named_parameters():  # tied parameters are yielded once
        if not param.requires_grad:
            continue
        depth, decays = depths.get(name, 0), param.dim() >= 2
        scale = scales.get(name, 1.0)
        group = groups.setdefault(
            (depth, not decays, scale),
            {
                "params": [],
                "weight_decay": weight_decay if decays else 0.0,
                "lr_scale": layer_lr_decay**depth * scale,
            },
        )
        if depths:
            group["depth"] = depth
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def build_optimizer(
    model: torch.nn.Module, cfg: OptimConfig, layer_lr_decay: float = 1.0
) -> torch.optim.Optimizer:
    """The optimiser ``cfg.name`` names (adamw or lamb) over :func:`param_groups`.

    Pretraining and fine-tuning both build theirs here. Fails, saying what to do, when no
    parameter is left to train.
    """
    groups = param_groups(model, cfg.weight_decay, layer_lr_decay)
    if not groups:
        raise ValueError("every parameter is frozen; train at least one layer (lower --freeze-layers)")
    kind = {"adamw": torch.optim.AdamW, "lamb": Lamb}[cfg.name]
    return kind(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


class Lamb(torch.optim.Optimizer):
    """LAMB: Adam moments, decoupled weight decay, and a per-tensor trust ratio.

    For each tensor w with gradient g, at step t::

        m = b1 m + (1 - b1) g          v = b2 v + (1 - b2) g^2
        u = m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd * w
        r = ||w|| / ||u||   (1 when either norm is 0; clipped to ``max_trust``)
        w = w - lr * r * u

    As in timm's and NVIDIA's implementations, groups without weight decay (norms and
    biases) skip the trust ratio unless ``always_adapt``: their norms are small and
    near-constant, and adapting them only adds noise.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        max_trust: float = 10.0,
        always_adapt: bool = False,
    ):
        if lr <= 0 or eps <= 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Lamb: lr={lr}, eps={eps}, betas={betas}: need lr, eps > 0 and betas in [0, 1)")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            max_trust=max_trust,
            always_adapt=always_adapt,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.float()
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                state["step"] += 1
                t = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                update = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt_().add_(group["eps"]))
                w = p.float()
                if group["weight_decay"]:
                    update.add_(w, alpha=group["weight_decay"])
                trust = 1.0
                if group["weight_decay"] or group["always_adapt"]:
                    w_norm, u_norm = torch.linalg.vector_norm(w), torch.linalg.vector_norm(update)
                    trust = torch.where(
                        (w_norm > 0) & (u_norm > 0),
                        (w_norm / u_norm).clamp(max=group["max_trust"]),
                        torch.ones_like(w_norm),
                    )
                p.add_((update * trust).to(p.dtype), alpha=-group["lr"])
        return loss
