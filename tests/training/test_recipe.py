"""The fine-tuning defaults picked from the training-set size, and how flags override them."""

import pytest

from training.tasks import recipe
from training.tasks.config import TaskConfig


def test_pick_aims_at_a_step_count_within_the_epoch_bounds():
    small, demo, large = (recipe.pick(n, batch_size=16) for n in (300, 3207, 500_000))
    assert small.epochs == recipe.MAX_EPOCHS  # 18 steps an epoch: as many passes as allowed
    assert demo.epochs == -(-recipe.TARGET_STEPS // (3207 // 16))  # ceil(target / steps per epoch)
    assert large.epochs == recipe.MIN_EPOCHS
    assert small.epochs >= demo.epochs >= large.epochs
    assert demo.warmup_steps == round(recipe.WARMUP_FRACTION * demo.epochs * (3207 // 16))
    assert all(r.patience == recipe.PATIENCE and r.lr == recipe.LR for r in (small, demo, large))
    # more ranks, bigger global batches: fewer steps per epoch, so more epochs
    assert recipe.pick(3207, 16, ranks=2).epochs > demo.epochs
    with pytest.raises(ValueError, match="training split is empty"):
        recipe.pick(0, 16)


def test_resolve_fills_only_the_fields_left_out():
    cfg = TaskConfig(epochs=7, size_defaults=("lr", "warmup_steps", "patience"))
    out = recipe.resolve(cfg, 3207)
    r = recipe.pick(3207, cfg.batch_size)
    assert out.epochs == 7 and out.patience == r.patience
    assert (out.optim.lr, out.optim.warmup_steps) == (r.lr, r.warmup_steps)
    assert out.optim.weight_decay == cfg.optim.weight_decay and out.size_defaults == cfg.size_defaults
    assert recipe.resolve(TaskConfig(), 3207) == TaskConfig()  # nothing left out: nothing picked
    with pytest.raises(ValueError, match="only epochs, lr, warmup_steps, patience"):
        TaskConfig(size_defaults=("batch_size",))


def test_cli_leaves_unset_flags_to_the_recipe_and_hpo_keeps_searched_values():
    from training import finetune, hpo

    auto = finetune.build_config(finetune.parse_args(["--task", "sentiment"]))
    assert auto.size_defaults == ("epochs", "lr", "warmup_steps", "patience")
    given = finetune.build_config(finetune.parse_args(["--epochs", "2", "--lr", "1e-4", "--patience", "0"]))
    assert given.size_defaults == ("warmup_steps",) and given.epochs == 2 and given.optim.lr == 1e-4
    trial = hpo.trial_config(auto, {"lr": 5e-4}, 0)
    assert trial.optim.lr == 5e-4 and "lr" not in trial.size_defaults
    assert recipe.resolve(trial, 3207).optim.lr == 5e-4
