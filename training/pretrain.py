"""Pretrain a GPT or BERT on token shards: ``python -m training.pretrain --shards DATA/shards/v=V``.

Launched as K processes by ``horovodrun -np K`` (or as one plain process). The loop is
linear: set the lr, run ``grad_accum`` micro-batches, average gradients across ranks,
clip, step; evaluate, log and checkpoint now and then. Rerunning the same command
resumes from the newest checkpoint in ``--checkpoint-dir`` and continues the same
MLflow run. At the end rank 0 registers the model (``c2m-base`` for a GPT), moves the
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
import time
from pathlib import Path

import numpy as np
import torch

from ops.lake import progress, roots, storage
from ops.lake.jobconfig import add_arguments, from_args
from training import checkpoint, distributed
from training.config import (
    OBJECTIVE_ARCHS,
    JobConfig,
    ObjectiveConfig,
    OptimConfig,
    TrainConfig,
    fit_to_data,
    model_config,
    model_diff,
)
from training.data.collators import Mixture
from training.data.shards import CollatedLoader, ShardDataset, ShardInfo, read_shard_info
from training.guards import EarlyStopping, TrainingDiverged, inject_fault, raise_if_diverged
from training.job_settings import PRETRAIN_SETTINGS
from training.job_result import finish
from training.models import build_model
from training.objectives import build_collator, compute_loss
from training.optim import build_optimizer, get_lr, set_lr

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


def resume(
    cfg: JobConfig, model, optimizer, loader: CollatedLoader, scaler, early: EarlyStopping
) -> dict | None:
    """Restore model, optimiser, scaler, data position, early stopping and RNG from the newest checkpoint.

    Every rank reads the same file (a shared filesystem locally), so all ranks resume alike.
    All ranks seed alike, so their RNG states are equal and rank 0's saved state is each one's.
    """
    state = checkpoint.load_latest(cfg.checkpoint_dir)
    if state is None:
        return None
    saved = state["config"]
    diff = model_diff(saved["model"], cfg.model)
    if diff:
        fields = ", ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in sorted(diff.items()))
        raise RuntimeError(
            f"{state['path']} holds a different model ({fields}); use a fresh --checkpoint-dir "
            "or the same --model and shards"
        )
    for what, before, now in (
        ("objective", saved.get("objective", {}).get("name", "clm"), cfg.objective.name),
        ("optimizer", saved.get("optim", {}).get("name", "adamw"), cfg.optim.name),
    ):
        if before != now:
            raise RuntimeError(
                f"{state['path']} was trained with {what} {before!r}, this run asks for {now!r}; "
                "use a fresh --checkpoint-dir"
            )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    loader.load_state_dict(state["data"])
    if "scaler" in state and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    if "early_stop" in state:
        early.load_state_dict(state["early_stop"])
    checkpoint.set_rng_state(state["rng"])
    return state


def flops_per_token(cfg: JobConfig, n_params: int) -> float:
    """Training FLOPs per token, 6N + 12 L d T (PaLM appendix B: matmuls plus attention)."""
    m = cfg.model
    return 6 * n_params + 12 * m.n_layer * m.d_model * m.block_size


def train(cfg: JobConfig, info: ShardInfo, dist: distributed.Distributed, peak_tflops: float = 0.0) -> dict:
    seed_everything(cfg.train.seed)
    tc = cfg.train
    device = torch.device(f"cuda:{dist.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    model = build_model(cfg.model).to(device)
    model.activation_checkpointing = tc.activation_checkpointing
    optimizer = build_optimizer(model, cfg.optim)
    collator = build_collator(cfg.objective, info, cfg.model.arch)
    train_loader = CollatedLoader(
        ShardDataset(info, "train", tc.verify_shards), collator, tc.batch_size, dist.rank, dist.size, tc.seed
    )
    val_loader = CollatedLoader(
        ShardDataset(info, "val", tc.verify_shards), collator, tc.batch_size, dist.rank, dist.size, tc.seed,
        train=False,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")
    early = EarlyStopping(tc.early_stop_patience, tc.early_stop_min_delta)
    # Wrap before loading: Horovod's DistributedOptimizer is a new optimiser built from the
    # param groups alone, so state loaded into the unwrapped one would be silently dropped.
    optimizer = dist.wrap_optimizer(optimizer, model, backward_passes_per_step=tc.grad_accum)
    state = resume(cfg, model, optimizer, train_loader, scaler, early)
    step = state["step"] if state else 0
    train_loss, val_loss = state["losses"] if state else (float("nan"), float("nan"))
    last_checkpoint = state["path"] if state else None
    dist.broadcast_state(model, optimizer)
    forward_model = compiled_for_training(model, tc.compile_backend) if tc.compile else model

    tracker = None
    if dist.is_main:
        from training.pretrain_tracker import PretrainTracker

        tracker = PretrainTracker(cfg, info, state.get("mlflow_run_id") if state else None, dist.size)
        resumed = f" (resumed from {state['path']})" if state else ""
        print(
            f"[pretrain] {dist.backend} x{dist.size}, {cfg.model.arch} {cfg.objective.name} "
            f"{model.num_parameters():,} params, {tc.precision}, {cfg.optim.name}, "
            f"step {step}/{tc.max_steps}{resumed}",
            flush=True,
        )
        # rank 0's [progress] line every 10 s: step/max, loss, tokens/s, ETA (ops/lake/progress.py)
        progress.start("pretrain", unit="steps", total=tc.max_steps).update(done=step)

    tokens_per_step = tc.batch_size * tc.grad_accum * dist.size * cfg.model.block_size
    flops_token = flops_per_token(cfg, model.num_parameters())
    # (step, loss, lr, grad norm) until the next flush; loss and norm stay tensors so a
    # step never waits for the device, and one collective per flush averages the losses.
    pending: list[tuple[int, torch.Tensor, float, torch.Tensor]] = []
    t_start, steps_timed = time.perf_counter(), 0
    # Seconds spent on what is not a training step, kept out of tokens/s and reported apart.
    side = {"eval_seconds": 0.0, "checkpoint_seconds": 0.0, "log_seconds": 0.0}
    t_interval = time.perf_counter()
    try:
        while step < tc.max_steps and not early.stopped:
            lr = get_lr(step, cfg.optim, tc.max_steps)
            set_lr(optimizer, lr)
            micro_losses = []
            for _ in range(tc.grad_accum):
                batch = _to(train_loader.next_batch(), device)
                with autocast_for(tc.precision, device):
                    loss = compute_loss(forward_model, batch, cfg.objective.temperature) / tc.grad_accum
                scaler.scale(loss).backward()
                micro_losses.append(loss.detach().double())  # summed in float64, as logged before
            grad_norm = dist.step(
                optimizer, model.parameters(), cfg.optim.grad_clip, scaler if scaler.is_enabled() else None
            )
            dist.zero_grad(optimizer)
            step += 1
            steps_timed += 1
            progress.update(done=step)  # a no-op on ranks other than 0
            inject_fault(step, dist.rank)  # no-op unless a fail-fast test sets C2M_TEST_FAULT
            pending.append((step, sum(micro_losses), lr, grad_norm))

            evaluating = step % tc.eval_every == 0 or step == tc.max_steps
            saving = step == tc.max_steps or (tc.checkpoint_every and step % tc.checkpoint_every == 0)
            if step % tc.log_every == 0 or evaluating or saving:
                # One allreduce and one device read per interval; checked before anything
                # is evaluated, saved or logged, so a diverged step never reaches a checkpoint.
                losses = dist.allreduce_mean(torch.stack([p[1] for p in pending]).double()).tolist()
                norms = torch.stack([p[3] for p in pending]).double().tolist()
                logged = [(st, loss, lr_, n) for (st, _, lr_, _), loss, n in zip(pending, losses, norms)]
                raise_if_diverged(logged, not scaler.is_enabled(), last_checkpoint)
                train_loss = logged[-1][1]
                seconds = time.perf_counter() - t_interval
                if tracker:
                    tokens_s = len(pending) * tokens_per_step / seconds if seconds > 0 else 0.0
                    progress.update(loss=train_loss, tokens_per_s=tokens_s)
                    perf = {"perf/tokens_per_s": tokens_s}
                    if peak_tflops:
                        perf["perf/mfu"] = tokens_s * flops_token / (peak_tflops * 1e12 * dist.size)
                    t_log = time.perf_counter()
                    tracker.log_steps(logged, perf)
                    side["log_seconds"] += time.perf_counter() - t_log
                pending = []
            if evaluating:
                t_eval = time.perf_counter()
                val_loss, parts = evaluate(model, val_loader, tc.eval_batches, dist, cfg, device)
                side["eval_seconds"] += time.perf_counter() - t_eval
                if early.update(val_loss):
                    saving = True
                if tracker:
                    t_log = time.perf_counter()
                    tracker.log_eval(step, train_loss, val_loss, lr, parts)
                    side["log_seconds"] += time.perf_counter() - t_log
            if dist.is_main and saving:
                t_save = time.perf_counter()
                ckpt = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "data": train_loader.state_dict(),
                    "early_stop": early.state_dict(),
                    "rng": checkpoint.rng_state(),
                    "config": cfg.to_dict(),
                    "mlflow_run_id": tracker.run_id,
                    "losses": (train_loss, val_loss),
                }
                last_checkpoint = str(checkpoint.save(cfg.checkpoint_dir, step, ckpt, keep_last=tc.keep_last))
                side["checkpoint_seconds"] += time.perf_counter() - t_save  # includes an fsync
            t_interval = time.perf_counter() if not pending else t_interval

        progress.stop()
        train_seconds = time.perf_counter() - t_start - sum(side.values())
        steps_per_s = steps_timed / train_seconds if steps_timed and train_seconds > 0 else 0.0
        digest = params_digest(model)
        result = {
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_perplexity": math.exp(min(val_loss, 50.0)) if math.isfinite(val_loss) else float("inf"),
            "best_val_loss": early.best,
            "stopped_early": early.stopped,
            "steps": step,
            "tokens_seen": step * tokens_per_step,
            "steps_per_s": steps_per_s,
            "tokens_per_s": steps_per_s * tokens_per_step,
            **{k: round(v, 3) for k, v in side.items()},
            "world_size": dist.size,
            "backend": dist.backend,
            "objective": cfg.objective.name,
            "arch": cfg.model.arch,
            "optimizer": cfg.optim.name,
            "precision": tc.precision,
            "params_sha256": digest,
            "ranks_agree": ranks_agree(digest, dist),
            "checkpoint_dir": cfg.checkpoint_dir,
        }
        if tracker:
            result.update(tracker.finish(model, result))
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
