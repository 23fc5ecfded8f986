"""Plan pretraining for a wall-clock budget: model size, batch and steps from measured throughput.

``training.pretrain --time-budget MINUTES`` asks: what is the best model this hardware can
train in N minutes? The starting rule is compute-optimal training (Hoffmann et al. 2022,
"Chinchilla"): about ``TOKENS_PER_PARAM`` = 20 training tokens per parameter. So:

1. each candidate size of the ladder (:data:`LADDER`, smallest first, the architecture and
   vocabulary of the job) is timed for a few real training steps (forward, backward, AdamW)
   on this machine, on every rank at once, and the ranks' tokens/s averaged;
2. the largest candidate whose ``20 x parameters`` tokens fit in the budget (less
   :data:`RESERVE` for evaluation, checkpoints and registration) is chosen; if none fits,
   the smallest, and the plan says how few tokens per parameter it gets;
3. the chosen model trains for the whole budget (steps = budget x tokens/s / tokens per
   step): more tokens than 20 per parameter never hurt a model that size; the batch
   shrinks (to at least ``MIN_BATCH``) when the budget would give fewer than ``MIN_STEPS``.

The plan is written to ``{checkpoint_dir}/budget_plan.json`` before training, and a
resumed run reuses it (re-measuring could pick another size and the checkpoint would no
longer fit). Rank 0 logs it to MLflow (params ``budget.*`` and the file as an artefact).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

TOKENS_PER_PARAM = 20
RESERVE = 0.15  # share of the budget kept for evaluation, checkpoints, bits per byte and registering
MIN_STEPS, MIN_BATCH = 100, 4
TIMED_STEPS = 3  # measured steps per candidate, after one untimed warm-up step
PLAN_FILE = "budget_plan.json"
# Candidate shapes, smallest first; each keeps the job's architecture, vocabulary and positions.
LADDER = (
    ("2x64", dict(n_layer=2, n_head=2, d_model=64)),
    ("4x128", dict(n_layer=4, n_head=4, d_model=128)),
    ("4x256", dict(n_layer=4, n_head=4, d_model=256)),
    ("6x384", dict(n_layer=6, n_head=6, d_model=384)),
    ("8x512", dict(n_layer=8, n_head=8, d_model=512)),
    ("12x768", dict(n_layer=12, n_head=12, d_model=768)),
)


@dataclass
class Plan:
    budget_min: float
    model_size: str
    model: dict  # the ModelConfig fields to train
    parameters: int
    batch_size: int
    max_steps: int
    tokens: int
    tokens_per_param: float
    tokens_per_s: float  # measured, all ranks together, at the chosen batch
    measured: list[dict] = field(default_factory=list)  # every candidate timed: size, params, tokens/s
    note: str = ""

    def describe(self) -> str:
        return (
            f"{self.budget_min:g} min budget: {self.model_size} ({self.parameters:,} params), batch "
            f"{self.batch_size}, {self.max_steps} steps = {self.tokens:,} tokens "
            f"({self.tokens_per_param:.1f} per parameter) at {self.tokens_per_s:,.0f} tokens/s"
            + (f"; {self.note}" if self.note else "")
        )


def count_parameters(model_cfg) -> int:
    from training.models import build_model

    return build_model(model_cfg).num_parameters()


def make_plan(
    budget_min: float,
    base_model,
    batch_size: int,
    measure: Callable[[object, int], float],
    ladder=LADDER,
    ranks: int = 1,
) -> Plan:
    """The plan for ``budget_min`` minutes; ``measure(model_cfg, batch) -> tokens/s`` of one rank.

    Candidates are measured smallest first, and measuring stops at the first that cannot
    fit its 20 tokens per parameter (a larger one is slower still)."""
    if budget_min <= 0:
        raise ValueError(f"--time-budget {budget_min}: give a positive number of minutes")
    seconds = budget_min * 60 * (1 - RESERVE)
    tokens_per_step = batch_size * ranks * base_model.block_size
    measured, chosen = [], None
    for name, shape in ladder:
        cfg = replace(base_model, **shape)
        params = count_parameters(cfg)
        tps = measure(cfg, batch_size) * ranks
        affordable = int(seconds * tps)
        measured.append({"size": name, "parameters": params, "tokens_per_s": round(tps, 1),
                         "affordable_tokens": affordable})
        if affordable < TOKENS_PER_PARAM * params:
            break
        chosen = (name, cfg, params, tps)
    note = ""
    if chosen is None:
        first = measured[0]
        smallest = replace(base_model, **ladder[0][1])
        chosen = (ladder[0][0], smallest, first["parameters"], first["tokens_per_s"])
        per_param = first["affordable_tokens"] / first["parameters"]
        note = (
            f"even the smallest size gets only {per_param:.1f} tokens per parameter (under "
            f"{TOKENS_PER_PARAM}); a longer budget or more ranks would train it fully"
        )
    name, cfg, params, tps = chosen
    steps, batch = int(seconds * tps) // tokens_per_step, batch_size
    while steps < MIN_STEPS and batch > MIN_BATCH:
        batch = max(MIN_BATCH, batch // 2)
        tps = measure(cfg, batch) * ranks
        steps = int(seconds * tps) // (batch * ranks * base_model.block_size)
    steps = max(steps, 1)
    tokens = steps * batch * ranks * base_model.block_size
    return Plan(
        budget_min, name, asdict(cfg), params, batch, steps, tokens, tokens / params, tps, measured, note
    )


def measure_throughput(model_cfg, batch_size: int, objective: str = "clm", steps: int = TIMED_STEPS) -> float:
    """Tokens/s of ``steps`` real training steps (forward, loss, backward, AdamW) after a warm-up step.

    Random token ids stand in for data: the cost of a step does not depend on which tokens
    it sees. A BERT's MLM loss is taken over every position, as a GPT's is."""
    import torch
    import torch.nn.functional as F

    from training.models import build_model

    model = build_model(model_cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model_cfg.vocab_size, (batch_size, model_cfg.block_size), generator=gen)

    def step() -> None:
        logits = model(ids)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size * model_cfg.block_size / (time.perf_counter() - t0)


def apply(cfg, dist):
    """``cfg`` (a JobConfig with ``train.time_budget_min``) with the planned model, batch and steps.

    Every rank measures at the same time (the throughput training will see) and the ranks'
    mean decides, so all ranks plan alike. A plan already in the checkpoint folder is reused."""
    from ops.lake import storage

    path = storage.join(cfg.checkpoint_dir, PLAN_FILE)
    if storage.exists(path):
        plan = Plan(**json.loads(storage.read_text(path)))
        reused = True
    else:
        plan = make_plan(
            cfg.train.time_budget_min,
            cfg.model,
            cfg.train.batch_size,
            lambda m, b: dist.allreduce_mean(measure_throughput(m, b, cfg.objective.name)),
            ranks=dist.size,
        )
        reused = False
        if dist.is_main:
            storage.write_text(path, json.dumps(asdict(plan), indent=1))
    if dist.is_main:
        print(f"[pretrain] {'reusing the plan for a ' if reused else ''}{plan.describe()}", flush=True)
    from training.config import ModelConfig

    train = replace(cfg.train, batch_size=plan.batch_size, max_steps=plan.max_steps)
    return replace(cfg, model=ModelConfig(**plan.model), train=train, model_size=plan.model_size)


def log_plan(cfg) -> None:
    """Rank 0, inside the pretraining run: the plan as params ``budget.*`` and ``budget_plan.json``."""
    import mlflow

    from ops.lake import storage

    path = storage.join(cfg.checkpoint_dir, PLAN_FILE)
    if not storage.exists(path):
        return
    plan = json.loads(storage.read_text(path))
    mlflow.log_params({f"budget.{k}": plan[k] for k in (
        "budget_min", "model_size", "parameters", "batch_size", "max_steps", "tokens", "tokens_per_param",
        "tokens_per_s")})
    mlflow.log_dict(plan, PLAN_FILE)
