"""Config validation, round trip and flattening; the LR schedule as a pure function."""

import math

import pytest

from training.tasks.config import TaskConfig
from training.config import JobConfig, OptimConfig, TrainConfig, flatten, model_config
from training.models.gpt import GPT
from training.optim import build_optimizer, get_lr


def test_named_sizes_and_overrides():
    cfg = model_config("tiny", vocab_size=500, block_size=64)
    assert (cfg.n_layer, cfg.n_head, cfg.d_model, cfg.vocab_size) == (2, 2, 64, 500)
    assert model_config("small").n_layer == 6
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        model_config("huge")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: model_config("tiny", d_model=65), "not divisible by n_head"),
        (lambda: OptimConfig(lr=0), "optim.lr"),
        (lambda: OptimConfig(schedule="step"), "choose one of cosine, linear, constant"),
        (lambda: TrainConfig(max_steps=0), "train.max_steps"),
        (lambda: TrainConfig(keep_last=0), "keep at least one"),
        (lambda: TaskConfig(task="nope"), "task='nope'"),
    ],
)
def test_invalid_values_fail_with_the_field_name(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_job_config_round_trip_and_flatten():
    cfg = JobConfig(model=model_config("tiny", vocab_size=300), train=TrainConfig(max_steps=7), data_uri="x")
    again = JobConfig.from_dict(cfg.to_dict())
    assert again == cfg
    flat = flatten(cfg.to_dict())
    assert (
        flat["model.vocab_size"] == 300
        and flat["train.max_steps"] == 7
        and flat["optim.betas"] == (0.9, 0.95)
    )
    with pytest.raises(ValueError, match="unknown config keys"):
        JobConfig.from_dict({**cfg.to_dict(), "nope": 1})
    ft = TaskConfig(epochs=2)
    assert TaskConfig.from_dict(ft.to_dict()) == ft


def test_lr_warmup_then_cosine_to_floor():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [get_lr(s, cfg, max_steps=110) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # linear warmup
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.5 * 0.9)  # cosine midpoint
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay
    assert lrs[110] == pytest.approx(0.1) and lrs[119] == pytest.approx(0.1)  # holds the floor
    assert get_lr(50, OptimConfig(lr=0.5, warmup_steps=0, schedule="constant"), 100) == 0.5
    assert not math.isnan(get_lr(0, OptimConfig(warmup_steps=0), max_steps=1))


def test_no_weight_decay_on_norms_and_biases():
    model = GPT(model_config("tiny", vocab_size=50, block_size=8))
    decay, no_decay = build_optimizer(model, OptimConfig(weight_decay=0.1)).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
