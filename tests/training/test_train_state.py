"""TrainState, the Checkpointer's round trip of a job's parts, old checkpoint formats, and the step timer."""

import math
import random
import time

import numpy as np
import pytest
import torch

from training import checkpoint
from training.config import JobConfig, OptimConfig, model_config
from training.data.shards import ShardSampler
from training.guards import EarlyStopping
from training.models.gpt import GPT, lm_loss
from training.optim import build_optimizer
from training.step_timer import StepTimer
from training.train_state import SavedConfig, TrainState


def _job(seed=0, cfg=None):
    torch.manual_seed(seed)
    cfg = cfg or JobConfig(model=model_config("tiny", vocab_size=50, block_size=8))
    model = GPT(cfg.model)
    optimizer = build_optimizer(model, cfg.optim)
    state = TrainState(tokens_per_step=16)
    parts = {
        "config": SavedConfig(cfg),
        "model": model,
        "optimizer": optimizer,
        "data": ShardSampler(100, 4, seed=3),
        "early_stop": EarlyStopping(patience=2),
        "train_state": state,
    }
    return parts


def _train(parts, steps=2):
    model, optimizer, state = parts["model"], parts["optimizer"], parts["train_state"]
    for _ in range(steps):
        x = torch.randint(0, 50, (2, 8))
        lm_loss(model(x), x).backward()
        optimizer.step()
        optimizer.zero_grad()
        parts["data"].next_indices()
        state.advance()
    state.train_loss, state.val_loss, state.mlflow_run_id = 1.5, 1.75, "run-abc"
    parts["early_stop"].update(1.75)


def _same_params(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_checkpointer_round_trip_restores_every_part_and_the_rng(tmp_path):
    parts = _job()
    _train(parts)
    saver = checkpoint.Checkpointer(str(tmp_path), parts, keep_last=2)
    path = saver.save(parts["train_state"].step)
    assert path.endswith("step-00000002.pt")
    draws = (random.random(), np.random.rand(), torch.rand(1).item())

    fresh = _job(seed=1)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    assert checkpoint.Checkpointer(str(tmp_path), fresh).load() == path
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws
    state = fresh["train_state"]
    assert (state.step, state.tokens_seen, state.train_loss, state.val_loss, state.mlflow_run_id) == (
        2, 32, 1.5, 1.75, "run-abc"
    )
    assert _same_params(fresh["model"], parts["model"])
    assert fresh["optimizer"].state_dict()["state"][0]["step"] == 2
    assert fresh["data"].state_dict() == parts["data"].state_dict()
    assert fresh["early_stop"].best == 1.75
    assert checkpoint.Checkpointer(str(tmp_path / "none"), _job()).load() is None


def test_a_first_format_checkpoint_loads(tmp_path):
    parts = _job()
    _train(parts)
    rng = checkpoint.rng_state()
    legacy = {  # what a format-1 pretraining checkpoint held
        "model": parts["model"].state_dict(),
        "optimizer": parts["optimizer"].state_dict(),
        "data": parts["data"].state_dict(),
        "early_stop": parts["early_stop"].state_dict(),
        "rng": rng,
        "config": parts["config"].state_dict(),
        "mlflow_run_id": "run-old",
        "losses": (2.5, 2.75),
    }
    checkpoint.save(str(tmp_path), 2, legacy)
    fresh = _job(seed=1)
    checkpoint.Checkpointer(str(tmp_path), fresh).load()
    state = fresh["train_state"]
    assert (state.step, state.tokens_seen, state.train_loss, state.val_loss, state.mlflow_run_id) == (
        2, 32, 2.5, 2.75, "run-old"
    )
    assert _same_params(fresh["model"], parts["model"])
    assert torch.equal(torch.get_rng_state(), rng["torch"])


def test_a_newer_format_or_a_missing_part_fails_saying_what_to_do(tmp_path):
    parts = _job()
    checkpoint.save(str(tmp_path / "new"), 1, {"format": checkpoint.FORMAT + 1, "model": {}})
    newer = r"step-00000001.pt is checkpoint format 3.*fresh"
    with pytest.raises(checkpoint.CheckpointMismatch, match=newer):
        checkpoint.Checkpointer(str(tmp_path / "new"), parts).load()
    checkpoint.save(str(tmp_path / "partial"), 1, {"format": checkpoint.FORMAT, "model": {}})
    missing = r"holds no config, optimizer.*fresh --checkpoint-dir"
    with pytest.raises(checkpoint.CheckpointMismatch, match=missing):
        checkpoint.Checkpointer(str(tmp_path / "partial"), parts).load()


def test_a_checkpoint_of_another_model_or_optimizer_is_refused_before_anything_loads(tmp_path):
    parts = _job()
    checkpoint.Checkpointer(str(tmp_path), parts).save(1)
    wider = JobConfig(model=model_config("tiny", vocab_size=50, block_size=8, d_model=32))
    other = _job(cfg=wider)
    with pytest.raises(checkpoint.CheckpointMismatch, match=r"holds a different model \(d_model: 64 in the"):
        checkpoint.Checkpointer(str(tmp_path), other).load()
    assert other["train_state"].step == 0
    lamb = JobConfig(model=wider.model, optim=OptimConfig(name="lamb"))
    with pytest.raises(checkpoint.CheckpointMismatch, match="was trained with optimizer 'adamw'.*'lamb'"):
        SavedConfig(lamb).load_state_dict(parts["config"].state_dict() | {"model": wider.to_dict()["model"]})


def test_step_timer_keeps_paused_time_out_of_throughput():
    timer = StepTimer(tokens_per_step=100, flops_per_token=6.0, peak_flops=1e3)
    for _ in range(4):
        timer.step()
    with timer.pause("eval"):
        time.sleep(0.05)
    perf = timer.interval()
    summary = timer.summary()
    assert summary["eval_seconds"] >= 0.05 and summary["checkpoint_seconds"] == 0.0
    assert perf["perf/tokens_per_s"] > 400 / 0.05  # the sleep is not counted as training time
    assert perf["perf/mfu"] == pytest.approx(perf["perf/tokens_per_s"] * 6.0 / 1e3)
    assert summary["tokens_per_s"] == pytest.approx(summary["steps_per_s"] * 100)
    assert timer.interval()["perf/tokens_per_s"] == 0.0  # a new interval with no steps yet
    assert math.isfinite(summary["steps_per_s"])
