"""From a training or evaluation run to its report (training/report.py), logged under ``report/``.

:class:`Recorder` sits between the fine-tuning loop and the MLflow metric buffer and keeps
what the learning curves need (the training loss per step, the validation scores per
epoch with the step they were taken at). :func:`task_extras` scores the model once more on
the split for the picture of its errors: a confusion matrix for a classifier, per-tag
scores for a tagger. :func:`log_report` writes the files and logs them to the active run.
"""

from __future__ import annotations

import tempfile
from typing import Callable

from training import report

ARTIFACT_DIR = "report"
PAGE_PATH = f"{ARTIFACT_DIR}/{report.PAGE}"


class Recorder:
    """Forwards ``add(step, **metrics)`` to ``sink`` (if any) and keeps the curves for the report."""

    def __init__(self, sink: Callable[..., None] | None = None):
        self.sink = sink
        self.train_curve: list[tuple[int, float]] = []
        self.history: list[dict] = []

    def add(self, step: int, **metrics: float) -> None:
        if self.sink:
            self.sink(step, **metrics)
        if "train/loss" in metrics:
            self.train_curve.append((int(step), float(metrics["train/loss"])))
        if "epoch" in metrics:
            val = {k.removeprefix("val/"): float(v) for k, v in metrics.items() if k.startswith("val/")}
            self.history.append({"epoch": int(metrics["epoch"]), "step": int(step), **val})


def task_extras(task, model, split: str = "test") -> dict:
    """The confusion matrix (classification) or per-tag scores (tagging) on ``split``; {} otherwise."""
    if task.kind == "classification":
        return {"labels": list(task.labels), "confusion": task.confusion(model, split).tolist()}
    if task.kind == "tagging":
        true = [list(s.tags) for s in task.data.splits[split]]
        per_tag = report.per_tag_scores(true, task.predict(model, split))
        return {"labels": list(task.labels), "per_tag": per_tag}
    return {}


def report_data(title: str, result: dict, recorder: Recorder | None = None, extras: dict | None = None,
                split: str = "test", notes: list[str] | None = None) -> report.ReportData:
    """A result dict (model scores beside ``baseline_<metric>``) as the report's input."""
    scores = report.scalar_metrics(result)
    baseline = {k.removeprefix("baseline_"): v for k, v in scores.items() if k.startswith("baseline_")}
    test_keys = set(baseline) | {result.get("metric", "")}
    return report.ReportData(
        title=title,
        metric=result.get("metric", ""),
        test={k: scores[k] for k in sorted(test_keys) if k in scores},
        baseline_name=str(result.get("baseline", "")),
        baseline={k: v for k, v in baseline.items() if k in scores},
        history=recorder.history if recorder else [],
        train_curve=recorder.train_curve if recorder else [],
        split=split,
        notes=notes or [],
        **(extras or {}),
    )


def log_report(data: report.ReportData) -> str:
    """Write the report and log it as the active run's ``report/`` artefacts; returns the page's path."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="c2m-report-") as tmp:
        report.write_report(tmp, data)
        mlflow.log_artifacts(tmp, artifact_path=ARTIFACT_DIR)
    return PAGE_PATH
