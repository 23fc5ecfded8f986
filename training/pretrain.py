"""Pretrain a GPT or BERT on token shards: ``python -m training.pretrain --shards DATA/shards/v=V``.

Launched as K processes by ``horovodrun -np K`` (or as one plain process). ``train`` reads
top to bottom: set the lr, run ``grad_accum`` micro-batches, average gradients across
ranks, clip, step; evaluate, log and checkpoint now and then. The loop's own state is a
``TrainState`` (training/train_state.py), throughput is a ``StepTimer``
(training/step_timer.py), and what a checkpoint holds is the one dict of parts in
``checkpointer_for``. Rerunning the same command resumes from the newest checkpoint in
``--checkpoint-dir`` and continues the same MLflow run. At the end rank 0 registers the model (``c2m-base`` for a GPT), moves the
alias champion if it beats the champion (a GPT: bits per byte on the same held-out raw
text, so models with different tokenizers compare; see training/pretrain_tracker.py), and
writes the result file that the DAG passes on.

``--objective`` picks what is learnt (training/objectives.py): clm (default, GPT), span
(T5 span corruption as a prefix LM on the GPT), mixture (clm/span/mlm by weight on the
GPT), mlm and contrastive (BERT). The defaults - clm, ``--model tiny``, AdamW, fp32 - are
what the DAG runs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ops.lake import progress, roots, storage
from ops.lake.jobconfig import add_arguments, from_args
from training import budget, checkpoint, distributed
from training.config import (
    OBJECTIVE_ARCHS,
    JobConfig,
    ObjectiveConfig,
    OptimConfig,
    TrainConfig,
    fit_to_data,
    model_config,
)
from training.data.collators import Mixture
from training.data.shards import CollatedLoader, ShardDataset, ShardInfo, read_shard_info
from training.guards import EarlyStopping, TrainingDiverged, inject_fault, raise_if_diverged
from training.job_settings import PRETRAIN_SETTINGS
from training.job_result import finish
from training.models import build_model
from training.objectives import build_collator, compute_loss
from training.optim import build_optimizer, get_lr, set_lr
from training.step_timer import StepTimer
from training.train_state import SavedConfig, TrainState

DEFAULT_MODEL = {"gpt": "tiny", "bert": "bert_tiny_cpu"}
DEFAULT_REGISTER = {"gpt": "c2m-base", "bert": "c2m-bert"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__.splitlines()[0])
    return add_arguments(p, PRETRAIN_SETTINGS).parse_args(argv)


def build_config(args: argparse.Namespace, info: ShardInfo) -> JobConfig:
    """CLI flags + the shards' vocab and sequence length -> one validated config."""
    objective = from_args(ObjectiveConfig, args)
    model_name = args.model or DEFAULT_MODEL[OBJECTIVE_ARCHS[objective.name][0]]
    named = model_config(model_name)
    version = info.manifest.get("version") or Path(info.uri).name.removeprefix("v=")
    suffix = "" if objective.name == "clm" else f"-{objective.name}"
    run_name = args.run_name or f"{model_name}-shards-{version}{suffix}"
    checkpoint_dir = args.checkpoint_dir or storage.join(
        roots.data_root(), "checkpoints", "pretrain", run_name
    )
    cfg = JobConfig(
        model=named,
        optim=from_args(OptimConfig, args),
        train=from_args(TrainConfig, args),
        objective=objective,
        model_size=model_name,
        data_uri=info.uri,
        checkpoint_dir=checkpoint_dir,
        experiment=args.experiment,
        register_name=args.register_name or DEFAULT_REGISTER[named.arch],
        run_name=run_name,
    )  # validates that the model's architecture can train the objective
    collator = build_collator(objective, info, named.arch)
    cfg.model = fit_to_data(named, collator.positions(info.seq_len), info.vocab_size)
    return cfg


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast_for(precision: str, device: torch.device):
    """bf16/fp16 autocast on ``device``, or a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@torch.no_grad()
def evaluate(
    model,
    loader: CollatedLoader,
    batches: int,
    dist: distributed.Distributed,
    cfg: JobConfig,
    device: torch.device,
) -> tuple[float, dict[str, float]]:
    """Mean val loss over the same batches every time, averaged over ranks; per objective for a mixture.

    A mixture's val loss is the weighted sum of each objective's loss on the same rows,
    which is steadier than scoring whichever objective each eval batch would have drawn.
    """
    model.eval()
    parts = loader.collator.collators if isinstance(loader.collator, Mixture) else {None: loader.collator}
    losses = {}
    for name, collator in parts.items():
        values = []
        for batch in loader.eval_batches(batches, collator):
            with autocast_for(cfg.train.precision, device):
                values.append(compute_loss(model, _to(batch, device), cfg.objective.temperature).item())
        losses[name] = dist.allreduce_mean(sum(values) / len(values))
    model.train()
    if None in losses:
        return losses[None], {}
    weights = loader.collator.weights
    return sum(weights[n] * v for n, v in losses.items()), {f"val/loss_{n}": v for n, v in losses.items()}


def compiled_for_training(model: torch.nn.Module, backend: str) -> torch.nn.Module:
    """``torch.compile(model)`` for the training steps only; ``model`` itself stays the one to save.

    The wrapper shares ``model``'s parameters, so checkpoints, the registered model and the
    digests use ``model`` (plain parameter names, no ``_orig_mod.`` prefix, loadable with or
    without compile). The wrapper forwards other attributes to ``model`` uncompiled, so
    ``embed`` (contrastive's entry point) is compiled here too, or it would silently run eager.
    Evaluation uses ``model``: switching the wrapper to eval mode would recompile its graphs.
    """
    wrapper = torch.compile(model, backend=backend)
    if callable(getattr(model, "embed", None)):
        wrapper.embed = torch.compile(model.embed, backend=backend)
    return wrapper


def _to(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }


def params_digest(model: torch.nn.Module) -> str:
    """sha256 of all weights: equal on every rank iff the ranks agree bit for bit."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def ranks_agree(digest: str, dist: distributed.Distributed) -> bool:
    """True iff every rank has the same digest (the variance of its bytes over ranks is 0)."""
    v = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.float64)
    mean = dist.allreduce_mean(v)
    return dist.allreduce_mean(float(((v - mean) ** 2).sum())) == 0.0


def flops_per_token(cfg: JobConfig, n_params: int) -> float:
    """Training FLOPs per token, 6N + 12 L d T (PaLM appendix B: matmuls plus attention)."""
    m = cfg.model
    return 6 * n_params + 12 * m.n_layer * m.d_model * m.block_size


@dataclass
class Job:
    """The parts a pretraining run trains with, built once by :func:`build_job`."""

    dist: distributed.Distributed
    device: torch.device
    model: torch.nn.Module  # the module to save, evaluate and register
    forward: torch.nn.Module  # ``model`` or its torch.compile wrapper, for the training steps
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_loader: CollatedLoader
    val_loader: CollatedLoader
    early: EarlyStopping


def build_job(cfg: JobConfig, info: ShardInfo, dist: distributed.Distributed) -> Job:
    tc = cfg.train
    device = torch.device(f"cuda:{dist.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    model = build_model(cfg.model).to(device)
    model.activation_checkpointing = tc.activation_checkpointing
    optimizer = build_optimizer(model, cfg.optim)
    collator = build_collator(cfg.objective, info, cfg.model.arch)

    def loader(split: str) -> CollatedLoader:
        dataset = ShardDataset(info, split, tc.verify_shards)
        train = split == "train"
        return CollatedLoader(dataset, collator, tc.batch_size, dist.rank, dist.size, tc.seed, train=train)

    train_loader, val_loader = loader("train"), loader("val")
    scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")
    early = EarlyStopping(tc.early_stop_patience, tc.early_stop_min_delta)
    # Wrapped before a checkpoint is loaded into it: Horovod's DistributedOptimizer is a new
    # optimiser built from the param groups alone, so state loaded into the unwrapped one is lost.
    optimizer = dist.wrap_optimizer(optimizer, model, backward_passes_per_step=tc.grad_accum)
    forward = compiled_for_training(model, tc.compile_backend) if tc.compile else model
    return Job(dist, device, model, forward, optimizer, scaler, train_loader, val_loader, early)


def checkpointer_for(cfg: JobConfig, job: Job, state: TrainState) -> checkpoint.Checkpointer:
    """Everything a checkpoint holds, in the order it is loaded (the config is checked first)."""
    parts = {
        "config": SavedConfig(cfg),
        "model": job.model,
        "optimizer": job.optimizer,
        "scaler": job.scaler,
        "data": job.train_loader,
        "early_stop": job.early,
        "train_state": state,
    }
    return checkpoint.Checkpointer(cfg.checkpoint_dir, parts, keep_last=cfg.train.keep_last)


def start_tracking(cfg: JobConfig, info: ShardInfo, job: Job, state: TrainState):
    """Rank 0: the MLflow run (the same one on a resume), a banner and the [progress] line; None elsewhere."""
    if not job.dist.is_main:
        return None
    from training.pretrain_tracker import PretrainTracker

    tracker = PretrainTracker(cfg, info, state.mlflow_run_id, job.dist.size)
    state.mlflow_run_id = tracker.run_id
    resumed = f" (resumed from {state.last_checkpoint})" if state.last_checkpoint else ""
    print(
        f"[pretrain] {job.dist.backend} x{job.dist.size}, {cfg.model.arch} {cfg.objective.name} "
        f"{job.model.num_parameters():,} params, {cfg.train.precision}, {cfg.optim.name}, "
        f"step {state.step}/{cfg.train.max_steps}{resumed}",
        flush=True,
    )
    # rank 0's [progress] line every 10 s: step/max, loss, tokens/s, ETA (ops/lake/progress.py)
    progress.start("pretrain", unit="steps", total=cfg.train.max_steps).update(done=state.step)
    return tracker


def train_step(cfg: JobConfig, job: Job, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step over ``grad_accum`` micro-batches: (loss, grad norm), left on the device."""
    tc = cfg.train
    set_lr(job.optimizer, lr)
    micro_losses = []
    for _ in range(tc.grad_accum):
        batch = _to(job.train_loader.next_batch(), job.device)
        with autocast_for(tc.precision, job.device):
            loss = compute_loss(job.forward, batch, cfg.objective.temperature) / tc.grad_accum
        job.scaler.scale(loss).backward()
        micro_losses.append(loss.detach().double())  # summed in float64
    scaler = job.scaler if job.scaler.is_enabled() else None
    grad_norm = job.dist.step(job.optimizer, job.model.parameters(), cfg.optim.grad_clip, scaler)
    job.dist.zero_grad(job.optimizer)
    return sum(micro_losses), grad_norm


def log_interval(pending: list, job: Job, state: TrainState, timer: StepTimer, tracker) -> None:
    """Average the interval's losses over ranks and stop on divergence; rank 0 logs them.

    ``pending`` holds (step, loss, lr, grad norm) with loss and norm still tensors: one
    allreduce and one device read per interval. Checked before anything is evaluated, saved
    or logged, so a diverged step never reaches a checkpoint.
    """
    losses = job.dist.allreduce_mean(torch.stack([p[1] for p in pending]).double()).tolist()
    norms = torch.stack([p[3] for p in pending]).double().tolist()
    logged = [(step, loss, lr, norm) for (step, _, lr, _), loss, norm in zip(pending, losses, norms)]
    raise_if_diverged(logged, not job.scaler.is_enabled(), state.last_checkpoint)
    state.train_loss = logged[-1][1]
    perf = timer.interval()
    if tracker:
        progress.update(loss=state.train_loss, tokens_per_s=perf["perf/tokens_per_s"])
        with timer.pause("log"):
            tracker.log_steps(logged, perf)


def eval_and_log(cfg: JobConfig, job: Job, state: TrainState, timer: StepTimer, tracker, lr: float) -> bool:
    """Evaluate, update early stopping and log (rank 0); True when early stopping ends the run now."""
    with timer.pause("eval"):
        state.val_loss, parts = evaluate(
            job.model, job.val_loader, cfg.train.eval_batches, job.dist, cfg, job.device
        )
    stop = job.early.update(state.val_loss)
    if tracker:
        with timer.pause("log"):
            tracker.log_eval(state.step, state.train_loss, state.val_loss, lr, parts)
    return stop


def summarize(cfg: JobConfig, job: Job, state: TrainState, timer: StepTimer) -> dict:
    """The run's result (every rank; ``ranks_agree`` is a collective)."""
    digest = params_digest(job.model)
    val = state.val_loss
    return {
        "train_loss": state.train_loss,
        "val_loss": val,
        "val_perplexity": math.exp(min(val, 50.0)) if math.isfinite(val) else float("inf"),
        "best_val_loss": job.early.best,
        "stopped_early": job.early.stopped,
        "steps": state.step,
        "tokens_seen": state.tokens_seen,
        **timer.summary(),
        "world_size": job.dist.size,
        "backend": job.dist.backend,
        "objective": cfg.objective.name,
        "arch": cfg.model.arch,
        "optimizer": cfg.optim.name,
        "precision": cfg.train.precision,
        "params_sha256": digest,
        "ranks_agree": ranks_agree(digest, job.dist),
        "checkpoint_dir": cfg.checkpoint_dir,
    }


def train(cfg: JobConfig, info: ShardInfo, dist: distributed.Distributed, peak_tflops: float = 0.0) -> dict:
    tc = cfg.train
    seed_everything(tc.seed)
    job = build_job(cfg, info, dist)
    state = TrainState(tokens_per_step=tc.batch_size * tc.grad_accum * dist.size * cfg.model.block_size)
    checkpointer = checkpointer_for(cfg, job, state)
    state.last_checkpoint = checkpointer.load()
    dist.broadcast_state(job.model, job.optimizer)
    tracker = start_tracking(cfg, info, job, state)
    flops = flops_per_token(cfg, job.model.num_parameters())
    timer = StepTimer(state.tokens_per_step, flops, peak_tflops * 1e12 * dist.size)
    pending: list[tuple[int, torch.Tensor, float, torch.Tensor]] = []  # until the next log_interval
    try:
        while state.step < tc.max_steps and not job.early.stopped:
            lr = get_lr(state.step, cfg.optim, tc.max_steps)
            loss, grad_norm = train_step(cfg, job, lr)
            state.advance()
            timer.step()
            progress.update(done=state.step)  # a no-op on ranks other than 0
            inject_fault(state.step, dist.rank)  # no-op unless a fail-fast test sets C2M_TEST_FAULT
            pending.append((state.step, loss, lr, grad_norm))

            last = state.step == tc.max_steps
            evaluating = last or state.step % tc.eval_every == 0
            saving = last or (tc.checkpoint_every and state.step % tc.checkpoint_every == 0)
            if evaluating or saving or state.step % tc.log_every == 0:
                log_interval(pending, job, state, timer, tracker)
                pending = []
            if evaluating and eval_and_log(cfg, job, state, timer, tracker, lr):
                saving = True  # early stopping ends the run here: keep its last state
            if saving and dist.is_main:
                with timer.pause("checkpoint"):  # includes an fsync
                    state.last_checkpoint = checkpointer.save(state.step)

        progress.stop()
        result = summarize(cfg, job, state, timer)
        if tracker:
            result.update(tracker.finish(job.model, result))
        return result
    except BaseException:
        progress.stop()
        if tracker:
            tracker.fail()
        raise


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    dist = distributed.init(num_threads=args.threads or None)
    try:
        info = read_shard_info(args.shards_uri)
        cfg = build_config(args, info)
        if cfg.train.time_budget_min:
            cfg = budget.apply(cfg, dist)
        result = train(cfg, info, dist, peak_tflops=args.peak_tflops)
        return finish(dist, "pretrain", result, args.result_file)
    finally:
        dist.shutdown()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except TrainingDiverged as exc:
        print(f"[pretrain] {exc}", file=sys.stderr, flush=True)
        sys.exit(3)
