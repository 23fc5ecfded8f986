"""Pretrain a GPT on token shards: ``python -m training.pretrain --shards DATA/shards/v=V``.

Launched as K processes by ``horovodrun -np K`` (or as one plain process). The loop is
linear: set the lr, run ``grad_accum`` micro-batches, average gradients across ranks,
clip, step; evaluate, log and checkpoint now and then. Rerunning the same command
resumes from the newest checkpoint in ``--checkpoint-dir`` and continues the same
MLflow run. At the end rank 0 registers the model as ``c2m-base`` with alias champion
and writes the result file that the DAG passes on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ops import storage
from ops.settings import get_settings
from training import checkpoint, distributed
from training.config import JobConfig, OptimConfig, TrainConfig, model_config
from training.data.shards import ShardDataset, ShardInfo, ShardLoader, read_shard_info
from training.models.gpt import GPT, lm_loss
from training.optim import build_adamw, get_lr, set_lr


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--shards", required=True, help="shards dataset version folder ({root}/shards/v=V)")
    p.add_argument("--model", default="tiny", help="named model size (tiny, small)")
    p.add_argument("--max-steps", type=int, default=TrainConfig.max_steps)
    p.add_argument(
        "--batch-size", type=int, default=TrainConfig.batch_size, help="sequences per rank per micro-step"
    )
    p.add_argument("--grad-accum", type=int, default=TrainConfig.grad_accum)
    p.add_argument("--lr", type=float, default=OptimConfig.lr)
    p.add_argument("--warmup-steps", type=int, default=OptimConfig.warmup_steps)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    p.add_argument("--eval-batches", type=int, default=TrainConfig.eval_batches)
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
    p.add_argument("--register-name", default="c2m-base")
    p.add_argument("--result-file", default="", help="rank 0 writes a JSON summary here")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (0 = torch's default)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace, info: ShardInfo) -> JobConfig:
    """CLI flags + the shards' vocab and sequence length -> one validated config."""
    version = info.manifest.get("version") or Path(info.uri).name.removeprefix("v=")
    run_name = args.run_name or f"{args.model}-shards-{version}"
    checkpoint_dir = args.checkpoint_dir or storage.join(
        get_settings().data_root, "checkpoints", "pretrain", run_name
    )
    return JobConfig(
        model=model_config(args.model, vocab_size=info.vocab_size, block_size=info.seq_len - 1),
        optim=OptimConfig(lr=args.lr, warmup_steps=args.warmup_steps),
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
        ),
        model_size=args.model,
        data_uri=info.uri,
        checkpoint_dir=checkpoint_dir,
        experiment=args.experiment,
        register_name=args.register_name,
        run_name=run_name,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: GPT, loader: ShardLoader, batches: int, dist: distributed.Distributed) -> float:
    """Mean val loss over the same ``batches`` batches every time, averaged over ranks."""
    model.eval()
    losses = [lm_loss(model(x), y).item() for x, y in loader.eval_batches(batches)]
    model.train()
    return dist.allreduce_mean(sum(losses) / len(losses))


def params_digest(model: torch.nn.Module) -> str:
    """sha256 of all weights: equal on every rank iff the ranks agree bit for bit."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def ranks_agree(digest: str, dist: distributed.Distributed) -> bool:
    """True iff every rank has the same digest (the variance of its bytes over ranks is 0)."""
    v = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.float64)
    mean = dist.allreduce_mean(v)
    return dist.allreduce_mean(float(((v - mean) ** 2).sum())) == 0.0


def resume(cfg: JobConfig, model: GPT, optimizer, loader: ShardLoader) -> dict | None:
    """Restore model, optimiser, data position and RNG from the newest good checkpoint, if any.

    Every rank reads the same file (a shared filesystem locally), so all ranks resume alike;
    the RNG states saved are rank 0's.
    """
    state = checkpoint.load_latest(cfg.checkpoint_dir)
    if state is None:
        return None
    if state["config"]["model"] != cfg.to_dict()["model"]:
        raise RuntimeError(
            f"{state['path']} holds a different model ({state['config']['model']}); "
            "use a fresh --checkpoint-dir or the same --model and shards"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    loader.load_state_dict(state["data"])
    checkpoint.set_rng_state(state["rng"])
    return state


def train(cfg: JobConfig, info: ShardInfo, dist: distributed.Distributed) -> dict:
    seed_everything(cfg.train.seed)
    tc = cfg.train
    model = GPT(cfg.model)
    optimizer = build_adamw(model, cfg.optim)
    train_loader = ShardLoader(ShardDataset(info, "train"), tc.batch_size, dist.rank, dist.size, tc.seed)
    val_loader = ShardLoader(ShardDataset(info, "val"), tc.batch_size, dist.rank, dist.size, tc.seed)
    state = resume(cfg, model, optimizer, train_loader)
    step = state["step"] if state else 0
    train_loss, val_loss = state["losses"] if state else (float("nan"), float("nan"))
    optimizer = dist.wrap_optimizer(optimizer, model, backward_passes_per_step=tc.grad_accum)
    dist.broadcast_state(model, optimizer)

    tracker = _Tracker(cfg, info, state.get("mlflow_run_id") if state else None) if dist.is_main else None
    if dist.is_main:
        resumed = f" (resumed from {state['path']})" if state else ""
        print(
            f"[pretrain] {dist.backend} x{dist.size}, {model.num_parameters():,} params, "
            f"step {step}/{tc.max_steps}{resumed}",
            flush=True,
        )

    tokens_per_step = tc.batch_size * tc.grad_accum * dist.size * cfg.model.block_size
    pending_losses: list[tuple[int, float, float]] = []  # (step, loss, lr) until the next log
    t_start, steps_timed, eval_seconds = time.perf_counter(), 0, 0.0
    try:
        while step < tc.max_steps:
            lr = get_lr(step, cfg.optim, tc.max_steps)
            set_lr(optimizer, lr)
            loss_sum = 0.0
            for _ in range(tc.grad_accum):
                x, y = train_loader.next_batch()  # (B, T) each
                loss = lm_loss(model(x), y) / tc.grad_accum
                loss.backward()
                loss_sum += loss.item()
            grad_norm = dist.step(optimizer, model.parameters(), cfg.optim.grad_clip)
            dist.zero_grad(optimizer)
            step += 1
            steps_timed += 1
            pending_losses.append((step, loss_sum, lr))

            if step % tc.log_every == 0 or step == tc.max_steps:
                # One collective per log interval: every step's loss, averaged over ranks.
                losses = dist.allreduce_mean(torch.tensor([loss for _, loss, _ in pending_losses])).tolist()
                train_loss = losses[-1]
                if tracker:
                    tracker.log_steps(pending_losses, losses, grad_norm)
                pending_losses = []
            if step % tc.eval_every == 0 or step == tc.max_steps:
                t_eval = time.perf_counter()
                val_loss = evaluate(model, val_loader, tc.eval_batches, dist)
                eval_seconds += time.perf_counter() - t_eval
                if tracker:
                    tracker.log_eval(step, train_loss, val_loss, lr)
            if dist.is_main and (
                step == tc.max_steps or (tc.checkpoint_every and step % tc.checkpoint_every == 0)
            ):
                state = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "data": train_loader.state_dict(),
                    "rng": checkpoint.rng_state(),
                    "config": cfg.to_dict(),
                    "mlflow_run_id": tracker.run_id,
                    "losses": (train_loss, val_loss),
                }
                checkpoint.save(cfg.checkpoint_dir, step, state, keep_last=tc.keep_last)

        train_seconds = time.perf_counter() - t_start - eval_seconds
        steps_per_s = steps_timed / train_seconds if steps_timed else 0.0
        digest = params_digest(model)
        agree = ranks_agree(digest, dist)
        result = {
            "train_loss": train_loss,
            "val_loss": val_loss,
            "steps": step,
            "tokens_seen": step * tokens_per_step,
            "steps_per_s": steps_per_s,
            "tokens_per_s": steps_per_s * tokens_per_step,
            "world_size": dist.size,
            "backend": dist.backend,
            "params_sha256": digest,
            "ranks_agree": agree,
            "checkpoint_dir": cfg.checkpoint_dir,
        }
        if tracker:
            result.update(tracker.finish(model, result))
        return result
    except BaseException:
        if tracker:
            tracker.fail()
        raise


class _Tracker:
    """Rank 0's MLflow side of the job (imported lazily: other ranks never load mlflow)."""

    def __init__(self, cfg: JobConfig, info: ShardInfo, run_id: str | None):
        from training import tracking

        self.tracking, self.cfg, self.info = tracking, cfg, info
        self.run_id = tracking.start_run(
            cfg.experiment, cfg.run_name, run_id=run_id, tags={"c2m.job": "pretrain", "c2m.shards": info.uri}
        )
        if run_id is None:  # params are logged once per run; a resumed run already has them
            tracking.log_config(cfg.to_dict())
            tracking.log_dataset(
                info.uri, name=f"shards-{Path(info.uri).name}", digest=tracking.digest_json(info.manifest)
            )
        self.metrics = tracking.MetricBuffer(self.run_id)
        print(
            f"[pretrain] MLflow run {self.run_id} in {cfg.experiment!r} at {tracking.tracking_uri()}",
            flush=True,
        )

    def log_steps(self, steps: list[tuple[int, float, float]], losses: list[float], grad_norm: float) -> None:
        """Per-step (rank-averaged) losses and lrs of one log interval, buffered for one batch call."""
        for (step, _, lr), loss in zip(steps, losses):
            self.metrics.add(step, **{"train/loss": loss, "train/lr": lr})
        self.metrics.add(steps[-1][0], **{"train/grad_norm": grad_norm})

    def log_eval(self, step: int, train_loss: float, val_loss: float, lr: float) -> None:
        self.metrics.add(step, **{"val/loss": val_loss})
        self.metrics.flush()
        print(f"[pretrain] step {step}: train {train_loss:.4f} val {val_loss:.4f} lr {lr:.2e}", flush=True)

    def finish(self, model: GPT, result: dict) -> dict:
        t = self.tracking
        self.metrics.add(
            result["steps"],
            **{"perf/steps_per_s": result["steps_per_s"], "perf/tokens_per_s": result["tokens_per_s"]},
        )
        self.metrics.flush()
        model_config = {
            "kind": "gpt-lm",
            "model": self.cfg.to_dict()["model"],
            "eos_id": self.info.eos_id,
            "pad_id": self.info.pad_id,
            "seq_len": self.info.seq_len,
            "shards": self.info.uri,
        }
        version, model_uri = t.log_and_register_model(
            model,
            registered_name=self.cfg.register_name,
            tokenizer_path=self.info.tokenizer_path,
            model_config=model_config,
            signature=t.lm_signature(self.cfg.model.vocab_size),
        )
        t.end_run()
        return {"run_id": self.run_id, "model_uri": model_uri, "model_version": version}

    def fail(self) -> None:
        self.metrics.flush()
        self.tracking.end_run(status="FAILED")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    dist = distributed.init(num_threads=args.threads or None)
    try:
        info = read_shard_info(args.shards)
        cfg = build_config(args, info)
        result = train(cfg, info, dist)
        if dist.is_main and args.result_file:
            storage.write_text(args.result_file, json.dumps(result, indent=2, sort_keys=True))
        if dist.is_main:
            print(f"[pretrain] done: {json.dumps(result, sort_keys=True)}", flush=True)
        # Leave together: a rank that tears down its connections while rank 0 is still
        # registering the model can abort the job (Gloo) or hang it.
        dist.barrier()
        return result
    finally:
        dist.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
