"""The pretraining time-budget planner, with throughput injected (no timing in the default run)."""

import json

import pytest

from training import budget
from training.config import model_config


def fake_measure(tokens_per_s_by_width: dict):
    calls = []

    def measure(cfg, batch):
        calls.append((cfg.d_model, batch))
        return tokens_per_s_by_width[cfg.d_model]

    return measure, calls


BASE = model_config("tiny", vocab_size=512, block_size=64)
SPEEDS = {64: 40_000.0, 128: 12_000.0, 256: 3_000.0, 384: 800.0, 512: 300.0, 768: 100.0}


def test_picks_the_largest_size_whose_twenty_tokens_per_parameter_fit():
    measure, calls = fake_measure(SPEEDS)
    plan = budget.make_plan(10, BASE, 16, measure)
    usable = 10 * 60 * (1 - budget.RESERVE)
    sizes = {m["size"]: m for m in plan.measured}
    fits = [m for m in plan.measured if m["affordable_tokens"] >= budget.TOKENS_PER_PARAM * m["parameters"]]
    assert plan.model_size == fits[-1]["size"] and len(fits) < len(plan.measured)
    assert len(calls) == len(plan.measured)  # measuring stopped at the first size that did not fit
    assert sizes[plan.model_size]["affordable_tokens"] == int(usable * SPEEDS[plan.model["d_model"]])
    assert plan.tokens_per_param >= budget.TOKENS_PER_PARAM and plan.batch_size == 16
    assert plan.max_steps == int(usable * SPEEDS[plan.model["d_model"]]) // (16 * 64)
    assert plan.model["vocab_size"] == 512 and plan.model["block_size"] == 64 and plan.model["arch"] == "gpt"
    bigger, _ = fake_measure(SPEEDS)
    assert budget.make_plan(60, BASE, 16, bigger).parameters > plan.parameters  # more time, bigger model


def test_no_size_fits_trains_the_smallest_and_says_so_and_small_budgets_shrink_the_batch():
    measure, calls = fake_measure({k: v / 400 for k, v in SPEEDS.items()})
    plan = budget.make_plan(1, BASE, 16, measure)
    assert plan.model_size == budget.LADDER[0][0] and "under 20" in plan.note
    assert plan.batch_size < 16 and plan.batch_size >= budget.MIN_BATCH
    assert plan.tokens == plan.max_steps * plan.batch_size * 64
    with pytest.raises(ValueError, match="positive number of minutes"):
        budget.make_plan(0, BASE, 16, measure)


def test_measure_throughput_times_real_steps():
    assert budget.measure_throughput(model_config("tiny", vocab_size=128, block_size=16), 4, steps=1) > 0


def test_apply_writes_the_plan_and_a_resumed_run_reuses_it(tmp_path, monkeypatch):
    from training import distributed
    from training.config import JobConfig, TrainConfig

    cfg = JobConfig(model=BASE, train=TrainConfig(time_budget_min=10), checkpoint_dir=str(tmp_path / "ck"))
    measure, calls = fake_measure(SPEEDS)
    monkeypatch.setattr(budget, "measure_throughput", lambda m, b, objective="clm": measure(m, b))
    dist = distributed.init(num_threads=1)
    planned = budget.apply(cfg, dist)
    saved = json.loads((tmp_path / "ck" / budget.PLAN_FILE).read_text())
    assert planned.model.d_model == saved["model"]["d_model"] and planned.model_size == saved["model_size"]
    assert (planned.train.max_steps, planned.train.batch_size) == (saved["max_steps"], saved["batch_size"])
    n = len(calls)
    assert budget.apply(cfg, dist) == planned and len(calls) == n  # reused, not measured again
