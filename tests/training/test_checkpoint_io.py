"""Checkpoint round trip, pruning, and falling back past a corrupt newest file."""

import random

import numpy as np
import torch

from training import checkpoint
from training.config import OptimConfig, model_config
from training.models.gpt import GPT, lm_loss
from training.optim import build_optimizer


def _trained_state():
    torch.manual_seed(0)
    model = GPT(model_config("tiny", vocab_size=50, block_size=8))
    opt = build_optimizer(model, OptimConfig())
    x = torch.randint(0, 50, (2, 8))
    lm_loss(model(x), x).backward()
    opt.step()
    return model, opt


def test_round_trip_restores_everything(tmp_path):
    model, opt = _trained_state()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "data": {"epoch": 1, "consumed": 16},
        "rng": checkpoint.rng_state(),
        "config": {"model": {"n_layer": 2}},
    }
    checkpoint.save(str(tmp_path), 7, state)
    expected_draws = (random.random(), np.random.rand(), torch.rand(1).item())

    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    loaded = checkpoint.load_latest(str(tmp_path))
    assert loaded["step"] == 7 and loaded["data"] == {"epoch": 1, "consumed": 16}
    assert loaded["config"] == {"model": {"n_layer": 2}}
    checkpoint.set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected_draws

    fresh = GPT(model.cfg)
    fresh.load_state_dict(loaded["model"])
    fresh_opt = build_optimizer(fresh, OptimConfig())
    fresh_opt.load_state_dict(loaded["optimizer"])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    restored, original = fresh_opt.state_dict()["state"][0], opt.state_dict()["state"][0]
    assert all(torch.equal(restored[k], original[k]) for k in ("step", "exp_avg", "exp_avg_sq"))


def test_keeps_newest_k_and_ignores_temp_files(tmp_path):
    for step in (10, 20, 30, 40):
        checkpoint.save(str(tmp_path), step, {"x": torch.tensor(step)}, keep_last=2)
    (tmp_path / ".step-00000050.pt.abc.tmp").write_bytes(b"half written")
    assert [p.name for p in checkpoint.list_checkpoints(str(tmp_path))] == [
        "step-00000030.pt",
        "step-00000040.pt",
    ]
    assert checkpoint.load_latest(str(tmp_path))["step"] == 40


def test_corrupt_newest_falls_back_to_previous(tmp_path):
    checkpoint.save(str(tmp_path), 10, {"x": torch.tensor(1)})
    newest = checkpoint.save(str(tmp_path), 20, {"x": torch.tensor(2)})
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated, as by a full disk
    loaded = checkpoint.load_latest(str(tmp_path))
    assert loaded["step"] == 10 and loaded["x"].item() == 1


def test_no_checkpoint_means_fresh_start(tmp_path):
    assert checkpoint.load_latest(str(tmp_path / "missing")) is None
