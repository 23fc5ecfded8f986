"""Transfer measured, not assumed: the same fine-tuning from two starts, over several seeds.

    python -m training.finetune --task sentiment --compare-init random --seeds 3

For each seed the job fine-tunes twice, once from the configured start (``--init``, by
default the pretrained base) and once from the other (``random``: same architecture,
untrained), on the same data, and scores both on the test split. The lift of the
pretrained start is the per-seed difference (pretrained - random) of the task's primary
metric; its mean and sample standard deviation say whether pretraining helps beyond seed
noise. The task's cheap baseline (training/baselines.py) is reported beside both.

Everything lands in one MLflow run (tag ``c2m.job=compare-init``) with one nested run per
fine-tuning; nothing is registered: this is a measurement, not a model.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace

from training.metrics import TRANSFORMER_ONLY


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(rows: list[dict], metric: str, inits: tuple[str, str]) -> dict:
    """Per-init mean/std of ``metric`` and the mean/std of the per-seed lift (pretrained - random)."""
    out: dict = {"metric": metric, "seeds": len(rows)}
    for init in inits:
        out[f"{init}_mean"], out[f"{init}_std"] = mean_std([r[init] for r in rows])
    lifts = [r["pretrained"] - r["random"] for r in rows]
    out["lift_mean"], out["lift_std"] = mean_std(lifts)
    out["lifts"] = lifts
    return out


def table(summary: dict, rows: list[dict], baseline: tuple[str, float] | None) -> str:
    """A Markdown table: one line per seed, then the mean ± std (what the README shows)."""
    m = summary["metric"]
    lines = [f"| seed | pretrained {m} | random {m} | lift |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['pretrained']:.4f} | {r['random']:.4f} | "
                     f"{r['pretrained'] - r['random']:+.4f} |")
    lines.append(
        f"| mean ± std | {summary['pretrained_mean']:.4f} ± {summary['pretrained_std']:.4f} | "
        f"{summary['random_mean']:.4f} ± {summary['random_std']:.4f} | "
        f"{summary['lift_mean']:+.4f} ± {summary['lift_std']:.4f} |"
    )
    if baseline:
        lines.append(f"\n{baseline[0]} baseline on the same test split: {m} {baseline[1]:.4f}")
    return "\n".join(lines)


def compare(cfg, dist, other: str, seeds: int, train, data=None) -> dict:
    """Fine-tune from ``cfg.init`` and from ``other`` for ``seeds`` seeds (``cfg.seed``, +1, ...).

    ``train`` is the fine-tuning function (:func:`training.finetune.train`), passed in by the
    job that measures, so this module does not import the job that calls it.
    """
    from training.tasks import load_data

    if other == cfg.init or {other, cfg.init} != {"pretrained", "random"}:
        raise ValueError(f"--compare-init {other!r} with --init {cfg.init!r}: compare pretrained with random")
    if seeds < 1:
        raise ValueError(f"--seeds {seeds}: need at least one seed")
    data = data or load_data(cfg.task, cfg.subset, cfg.data, cfg.max_examples, cfg.train_examples)
    parent = _start_parent(cfg, other, seeds) if dist.is_main else None
    rows, metric, baseline = [], "", None
    try:
        for i in range(seeds):
            seed, row = cfg.seed + i, {"seed": cfg.seed + i}
            for init in (cfg.init, other):
                run_cfg = replace(cfg, init=init, seed=seed, run_name=f"{cfg.run_name}-{init}-seed{seed}")
                result, _, _ = train(run_cfg, dist, register=False, nested=True, data=data)
                metric = result["metric"]
                row[init] = float(result[metric])
                if TRANSFORMER_ONLY in result:  # a classifier with an n-gram bag: its transformer alone too
                    row.setdefault("transformer_only", {})[init] = float(result[TRANSFORMER_ONLY])
                if "baseline" in result:
                    baseline = (result["baseline"], float(result[f"baseline_{metric}"]))
            rows.append(row)
            if parent:
                parent.add(i, **{f"compare/{k}_{metric}": row[k] for k in ("pretrained", "random")},
                           **{f"compare/lift_{metric}": row["pretrained"] - row["random"]})
        summary = summarize(rows, metric, ("pretrained", "random"))
        text = table(summary, rows, baseline)
        result = {"task": cfg.task, "compare": summary, "rows": rows, "table": text}
        part_rows = [{"seed": r["seed"], **r["transformer_only"]} for r in rows if "transformer_only" in r]
        if rows and len(part_rows) == len(rows):
            # the bag learns the same from either start, so the transformer alone shows the transfer
            parts = summarize(part_rows, TRANSFORMER_ONLY, ("pretrained", "random"))
            result["compare_transformer_only"] = parts
            text += "\n\nThe transformer part alone (the n-gram bag left out):\n"
            text += table(parts, part_rows, None)
            result["table"] = text
        if baseline:
            result.update({"baseline": baseline[0], f"baseline_{metric}": baseline[1]})
        if parent:
            _finish_parent(parent, summary, result, text)
            result["run_id"] = parent.run_id
        if dist.is_main:
            print(f"[finetune] pretrained vs random init, {seeds} seed(s):\n{text}", flush=True)
        return result
    except BaseException:
        if parent:
            from training import tracking

            tracking.end_run(status="FAILED")
        raise


def _start_parent(cfg, other: str, seeds: int):
    import mlflow

    from training import tracking

    mlflow.set_experiment(cfg.experiment)
    run = mlflow.start_run(
        run_name=f"{cfg.run_name}-compare-init",
        tags={"c2m.job": "compare-init", "c2m.task": cfg.task},
    )
    tracking.log_config({**cfg.to_dict(), "compare_init": other, "seeds": seeds})
    return tracking.MetricBuffer(run.info.run_id)


def _finish_parent(parent, summary: dict, result: dict, text: str) -> None:
    import mlflow

    from training import tracking

    m = summary["metric"]
    values = {f"compare/{k}_{m}_{stat}": summary[f"{k}_{stat}"]
              for k in ("pretrained", "random", "lift") for stat in ("mean", "std")}
    parent.add(summary["seeds"], **values)
    parent.flush()
    mlflow.log_text(text, "compare/table.md")
    mlflow.log_text(json.dumps(result, indent=2, sort_keys=True), "compare/result.json")
    tracking.end_run()
