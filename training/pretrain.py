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

from ops import progress, storage
from ops.settings import get_settings
from training import budget, checkpoint, distributed
from training.config import (
    COMPILE_BACKENDS,
    OBJECTIVE_ARCHS,
    OBJECTIVES,
    OPTIMIZERS,
    PRECISIONS,
    PROMOTE_MODES,
    SCHEDULES,
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
from training.job_result import finish
from training.models import build_model
from training.objectives import build_collator, compute_loss
from training.optim import build_optimizer, get_lr, set_lr

DEFAULT_MODEL = {"gpt": "tiny", "bert": "bert_tiny_cpu"}
DEFAULT_REGISTER = {"gpt": "c2m-base", "bert": "c2m-bert"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--shards", required=True, help="shards dataset version folder ({root}/shards/v=V)")
    p.add_argument("--objective", choices=OBJECTIVES, default="clm")
    p.add_argument(
        "--model",
        default=None,
        help="named model config in training/config.py (default: tiny for GPT objectives, "
        "bert_tiny_cpu for mlm/contrastive)",
    )
    p.add_argument("--max-steps", type=int, default=TrainConfig.max_steps)
    p.add_argument(
        "--time-budget",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="pick model size, batch and steps for this wall time from measured throughput "
        "(training/budget.py; overrides --model, --batch-size and --max-steps)",
    )
    p.add_argument(
        "--batch-size", type=int, default=TrainConfig.batch_size, help="sequences per rank per micro-step"
    )
    p.add_argument("--grad-accum", type=int, default=TrainConfig.grad_accum)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=OptimConfig.name)
    p.add_argument("--lr", type=float, default=OptimConfig.lr)
    p.add_argument("--warmup-steps", type=int, default=OptimConfig.warmup_steps)
    p.add_argument("--schedule", choices=SCHEDULES, default=OptimConfig.schedule)
    p.add_argument("--weight-decay", type=float, default=OptimConfig.weight_decay)
    p.add_argument("--grad-clip", type=float, default=OptimConfig.grad_clip, help="max grad norm (0 = off)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=TrainConfig.precision,
        help="fp32; bf16 autocast; fp16 autocast with a GradScaler",
    )
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    p.add_argument("--eval-batches", type=int, default=TrainConfig.eval_batches)
    p.add_argument(
        "--early-stop-patience",
        type=int,
        default=0,
        help="stop after this many evaluations without a better val loss (0 = never)",
    )
    p.add_argument("--early-stop-min-delta", type=float, default=0.0)
    p.add_argument("--log-every", type=int, default=TrainConfig.log_every)
    p.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every)
    p.add_argument("--keep-last", type=int, default=TrainConfig.keep_last)
    p.add_argument(
        "--checkpoint-dir", default="", help="default: {data root}/checkpoints/pretrain/<run-name>"
    )
    p.add_argument(
        "--run-name", default="", help="default: <model>-shards-<version> (stable, so retries resume)"
    )
    p.add_argument("--experiment", default="pretrain")
    p.add_argument("--register-name", default="", help="default: c2m-base for a GPT, c2m-bert for a BERT")
    p.add_argument(
        "--promote",
        choices=PROMOTE_MODES,
        default=TrainConfig.promote,
        help="champion alias: gate (only if the new model beats the champion: bits per byte on the "
        "same held-out text for a GPT, val loss for a BERT), always, never",
    )
    p.add_argument(
        "--promote-margin",
        type=float,
        default=TrainConfig.promote_margin,
        help="the gate promotes only a win by more than this (bits per byte for a GPT)",
    )
    p.add_argument(
        "--bpb-max-bytes",
        type=int,
        default=TrainConfig.bpb_max_bytes,
        help="UTF-8 bytes of held-out text that bits per byte is measured on",
    )
    p.add_argument("--result-file", default="", help="rank 0 writes a JSON summary here")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (0 = torch's default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--compile-backend",
        choices=COMPILE_BACKENDS,
        default=TrainConfig.compile_backend,
        help="torch.compile backend: inductor (fast kernels, slow to compile) or aot_eager (cheap graph "
        "capture of forward and backward, for tests)",
    )
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--no-verify-shards", action="store_true", help="skip the shards' sha256 check")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=0.0,
        help="per-rank peak TFLOP/s for MFU (e.g. 989 for an H100's dense bf16); 0 = don't log MFU",
    )
    o = ObjectiveConfig()
    p.add_argument("--mlm-probability", type=float, default=o.mlm_probability)
    p.add_argument("--whole-word-mask", action="store_true", help="mlm: mask all pieces of a chosen word")
    p.add_argument(
        "--noise-density", type=float, default=o.noise_density, help="span: share of tokens corrupted"
    )
    p.add_argument("--mean-span", type=float, default=o.mean_span, help="span: mean corrupted span length")
    p.add_argument(
        "--temperature", type=float, default=o.temperature, help="contrastive: InfoNCE temperature"
    )
    p.add_argument(
        "--crop-len", type=int, default=o.crop_len, help="contrastive: random window length (0 = off)"
    )
    p.add_argument("--mixture", default=o.mixture, help="mixture weights, e.g. clm=0.5,span=0.3,mlm=0.2")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace, info: ShardInfo) -> JobConfig:
    """CLI flags + the shards' vocab and sequence length -> one validated config."""
    objective = ObjectiveConfig(
        name=args.objective,
        mlm_probability=args.mlm_probability,
        whole_word=args.whole_word_mask,
        noise_density=args.noise_density,
        mean_span=args.mean_span,
        temperature=args.temperature,
        crop_len=args.crop_len,
        mixture=args.mixture,
    )
    model_name = args.model or DEFAULT_MODEL[OBJECTIVE_ARCHS[args.objective][0]]
    named = model_config(model_name)
    version = info.manifest.get("version") or Path(info.uri).name.removeprefix("v=")
    suffix = "" if args.objective == "clm" else f"-{args.objective}"
    run_name = args.run_name or f"{model_name}-shards-{version}{suffix}"
    checkpoint_dir = args.checkpoint_dir or storage.join(
        get_settings().data_root, "checkpoints", "pretrain", run_name
    )
    cfg = JobConfig(
        model=named,
        optim=OptimConfig(
            lr=args.lr,
            warmup_steps=args.warmup_steps,
            schedule=args.schedule,
            weight_decay=args.weight_decay,
            grad_clip=args.grad_clip,
            name=args.optimizer,
        ),
        train=TrainConfig(
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            grad_accum=args.grad_accum,
            seed=args.seed,
            eval_every=args.eval_every,
            eval_batches=args.eval_batches,
            log_every=args.log_every,
            checkpoint_every=args.checkpoint_every,
            keep_last=args.keep_last,
            precision=args.precision,
            early_stop_patience=args.early_stop_patience,
            early_stop_min_delta=args.early_stop_min_delta,
            compile=args.compile,
            compile_backend=args.compile_backend,
            activation_checkpointing=args.activation_checkpointing,
            verify_shards=not args.no_verify_shards,
            promote=args.promote,
            promote_margin=args.promote_margin,
            bpb_max_bytes=args.bpb_max_bytes,
            time_budget_min=args.time_budget,
        ),
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
        # rank 0's [progress] line every 10 s: step/max, loss, tokens/s, ETA (ops/progress.py)
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
        info = read_shard_info(args.shards)
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
