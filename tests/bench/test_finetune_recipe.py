"""The recipe bench's table line and record, for a single fine-tuning and a --compare-init one."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.finetune_recipe import result_row  # noqa: E402
from training.tasks.transfer import summarize  # noqa: E402


def test_a_single_run_keeps_its_score_baseline_lift_and_epoch():
    res = {"metric": "accuracy", "accuracy": 0.75, "baseline_accuracy": 0.72, "lift_accuracy": 0.03,
           "val_accuracy": 0.74, "best_epoch": 3, "steps": 600}
    fields, line = result_row("v", res)
    assert fields["accuracy"] == 0.75 and fields["lift_accuracy"] == 0.03 and fields["best_epoch"] == 3
    assert line == "| v | accuracy 0.7500 | 0.7200 | +0.0300 | epoch 3, 600 steps |"


def test_a_compare_init_run_gives_both_starts_the_lift_and_its_spread():
    rows = [{"seed": 1, "pretrained": 0.83, "random": 0.73}, {"seed": 2, "pretrained": 0.81, "random": 0.75}]
    summary = summarize(rows, "token_accuracy", ("pretrained", "random"))  # what compare() returns
    res = {"task": "pos", "compare": summary, "rows": rows, "baseline": "most-frequent-tag",
           "baseline_token_accuracy": 0.72}
    fields, line = result_row("pos200", res)
    assert fields["compare_lift_mean"] == summary["lift_mean"] and fields["seeds"] == 2
    assert fields["baseline_token_accuracy"] == 0.72 and fields["rows"] == rows
    assert "pretrained 0.8200 ± 0.0141, random 0.7400 ± 0.0141" in line
    assert "lift +0.0800 ± 0.0283 over 2 seeds | baseline 0.7200 |" in line
    del res["baseline_token_accuracy"]
    assert result_row("pos200", res)[1].endswith("| baseline - |")


def test_a_compare_init_run_with_the_n_gram_bag_also_gives_the_transformer_alone():
    rows = [{"seed": 1, "pretrained": 0.75, "random": 0.74}, {"seed": 2, "pretrained": 0.75, "random": 0.73}]
    parts = summarize([{"seed": r["seed"], "pretrained": 0.70, "random": 0.71} for r in rows],
                      "transformer_only_accuracy", ("pretrained", "random"))
    res = {"compare": summarize(rows, "accuracy", ("pretrained", "random")), "rows": rows,
           "baseline_accuracy": 0.72, "compare_transformer_only": parts}
    fields, line = result_row("sent", res)
    assert fields["compare_transformer_only"] is parts
    assert line.endswith("| baseline 0.7200 | transformer alone: lift -0.0100 ± 0.0000 |")
