"""The evaluation report a person looks at: pictures and one HTML page from a run's numbers.

    files = write_report(folder, ReportData(title=..., metric="accuracy", test={...}, ...))

Pure functions from metric dicts to files, so they are tested without MLflow; finetune and
evaluate log the folder as the run's ``report/`` artefacts. What is drawn:

- ``learning_curves.png`` (runs that trained): the training loss per step and the validation
  scores per epoch;
- ``confusion_matrix.png`` (classification, rows true, columns predicted) or
  ``per_tag_f1.png`` (tagging: token-level precision/recall/F1 per tag, sorted by support);
- ``baseline_vs_model.png``: the model's test scores beside the cheap baseline's
  (training/baselines.py) on the same split, one pair of bars per shared metric;
- ``index.html``: one self-contained page (the pictures inlined as data URIs) with every
  number the pictures show, as tables, so the page also reads without them.

Rendering is headless (matplotlib's Agg backend). Each picture has a fixed size in pixels
(``FIGURE_PX``, :func:`confusion_size`, :func:`per_tag_size`), whatever its content.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

DPI = 100
FIGURE_PX = {"learning_curves": (1000, 400), "baseline_vs_model": (640, 400)}
LEARNING_CURVES = "learning_curves.png"
CONFUSION = "confusion_matrix.png"
PER_TAG = "per_tag_f1.png"
BARS = "baseline_vs_model.png"
PAGE = "index.html"
DATA = "report.json"


@dataclass
class ReportData:
    """A run's numbers. ``test``/``baseline``: metric -> value on the same split; ``history``:
    one dict per validation (``epoch``, ``step``, metric -> value); ``train_curve``: (step, loss)."""

    title: str
    metric: str
    test: dict[str, float]
    baseline_name: str = ""
    baseline: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    confusion: list[list[int]] | None = None
    per_tag: dict[str, dict[str, float]] | None = None
    split: str = "test"
    notes: list[str] = field(default_factory=list)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError("the evaluation report needs matplotlib (the train extra: "
                           "`pip install 'crawl2model[train]'`)") from exc
    return plt


def _figure(plt, px: tuple[int, int], ncols: int = 1):
    return plt.subplots(1, ncols, figsize=(px[0] / DPI, px[1] / DPI), dpi=DPI)


def _save(plt, fig, path: Path) -> Path:
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": the size in pixels stays as declared
    finally:
        plt.close(fig)
    return path


def scalar_metrics(values: dict) -> dict[str, float]:
    """The numeric entries of a dict (bools and nested values left out)."""
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def learning_curves_png(data: ReportData, path: Path) -> Path:
    """Left: training loss per step (and per-epoch validation loss); right: validation scores per epoch."""
    plt = _pyplot()
    fig, (left, right) = _figure(plt, FIGURE_PX["learning_curves"], ncols=2)
    if data.train_curve:
        steps, losses = zip(*data.train_curve)
        left.plot(steps, losses, lw=0.8, alpha=0.5, label="train loss (per step)")
        window = max(1, len(losses) // 20)
        if window > 1:
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            left.plot(steps[window - 1:], smooth, lw=1.6, label=f"train loss (mean of {window})")
    val_steps = [h["step"] for h in data.history if "step" in h and "loss" in h]
    if val_steps:
        left.plot(val_steps, [h["loss"] for h in data.history if "step" in h and "loss" in h],
                  "o-", label="val loss (per epoch)")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.set_title("loss")
    if left.has_data():
        left.legend(fontsize=8)
    scores = [k for k in (data.history[0] if data.history else {}) if k not in ("epoch", "step", "loss")]
    for key in scores:
        epochs = [h["epoch"] for h in data.history if key in h]
        right.plot(epochs, [h[key] for h in data.history if key in h], "o-", label=f"val {key}")
    if data.baseline.get(data.metric) is not None:
        right.axhline(data.baseline[data.metric], ls="--", color="grey",
                      label=f"{data.baseline_name} {data.metric} ({data.split})")
    right.set_xlabel("epoch")
    right.xaxis.get_major_locator().set_params(integer=True)
    right.set_title("validation")
    if right.has_data():
        right.legend(fontsize=8)
    return _save(plt, fig, path)


def confusion_size(n_labels: int) -> tuple[int, int]:
    """Pixels (width, height) of the confusion matrix picture for ``n_labels`` labels."""
    return 200 + 60 * n_labels, 160 + 50 * n_labels


def confusion_png(confusion: Sequence[Sequence[int]], labels: Sequence[str], path: Path,
                  title: str = "") -> Path:
    """Counts as a heat map, rows true, columns predicted, each cell labelled with its count."""
    plt = _pyplot()
    counts = np.asarray(confusion, dtype=np.int64)
    n = len(labels)
    fig, ax = _figure(plt, confusion_size(n))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(n), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = counts.max() if counts.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                    color="white" if counts[i, j] > peak / 2 else "black")
    return _save(plt, fig, path)


def per_tag_scores(true: Sequence[Sequence[str]],
                   pred: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    """Token-level precision, recall, F1 and support of every tag that occurs in ``true`` or ``pred``."""
    hits, n_true, n_pred = Counter(), Counter(), Counter()
    for t_seq, p_seq in zip(true, pred):
        if len(t_seq) != len(p_seq):
            raise ValueError(f"a sentence has {len(t_seq)} true tags but {len(p_seq)} predicted")
        for t, p in zip(t_seq, p_seq):
            n_true[t] += 1
            n_pred[p] += 1
            hits[t] += t == p
    out = {}
    for tag in sorted(set(n_true) | set(n_pred)):
        precision = hits[tag] / n_pred[tag] if n_pred[tag] else 0.0
        recall = hits[tag] / n_true[tag] if n_true[tag] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[tag] = {"precision": precision, "recall": recall, "f1": f1, "support": n_true[tag]}
    return out


def per_tag_size(n_tags: int) -> tuple[int, int]:
    return 640, 120 + 22 * n_tags


def per_tag_png(per_tag: dict[str, dict[str, float]], path: Path, title: str = "") -> Path:
    """Horizontal F1 bars per tag, most frequent tag on top, the support beside each bar."""
    plt = _pyplot()
    tags = sorted(per_tag, key=lambda t: (-per_tag[t]["support"], t))
    fig, ax = _figure(plt, per_tag_size(len(tags)))
    y = np.arange(len(tags))
    ax.barh(y, [per_tag[t]["f1"] for t in tags], color="tab:blue")
    ax.set_yticks(y, labels=tags)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("F1 (token level)")
    ax.set_title(title)
    for i, t in enumerate(tags):
        ax.text(per_tag[t]["f1"] + 0.01, i, f"{per_tag[t]['f1']:.2f} (n={int(per_tag[t]['support'])})",
                va="center", fontsize=7)
    return _save(plt, fig, path)


def shared_metrics(data: ReportData) -> list[str]:
    """Metrics scored for both the model and the baseline, the primary one first."""
    keys = [k for k in data.test if k in data.baseline]
    return sorted(keys, key=lambda k: (k != data.metric, k))


def baseline_bars_png(data: ReportData, path: Path) -> Path:
    """One pair of bars (model, baseline) per metric both were scored on, values written on top."""
    plt = _pyplot()
    keys = shared_metrics(data)
    fig, ax = _figure(plt, FIGURE_PX["baseline_vs_model"])
    x = np.arange(len(keys))
    pairs = (("model", data.test, "tab:blue"),
             (data.baseline_name or "baseline", data.baseline, "tab:grey"))
    for offset, (name, values, color) in zip((-0.2, 0.2), pairs):
        bars = ax.bar(x + offset, [values[k] for k in keys], width=0.4, label=name, color=color)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(x, labels=keys)
    ax.set_title(f"model vs {data.baseline_name or 'baseline'} ({data.split} split)")
    ax.legend(fontsize=8)
    ax.margins(y=0.15)
    return _save(plt, fig, path)


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path, alt: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">'


def html_page(data: ReportData, pictures: dict[str, Path]) -> str:
    """One self-contained page: the run's numbers as tables and the pictures inlined."""
    scores = [(k, v, data.baseline.get(k, ""), v - data.baseline[k] if k in data.baseline else "")
              for k, v in sorted(data.test.items(), key=lambda kv: (kv[0] != data.metric, kv[0]))]
    parts = [
        f"<h1>{html.escape(data.title)}</h1>",
        *(f"<p>{html.escape(n)}</p>" for n in data.notes),
        f"<h2>{html.escape(data.split)} split: the model beside its baseline "
        f"({html.escape(data.baseline_name or 'none')})</h2>",
        _table(("metric", "model", data.baseline_name or "baseline", "lift"), scores),
    ]
    if BARS in pictures:
        parts.append(_img(pictures[BARS], "model vs baseline"))
    if data.history:
        keys = [k for k in data.history[0] if k != "epoch"]
        parts += ["<h2>Validation per epoch</h2>",
                  _table(("epoch", *keys),
                         [(h["epoch"], *(h.get(k, "") for k in keys)) for h in data.history])]
    if LEARNING_CURVES in pictures:
        parts.append(_img(pictures[LEARNING_CURVES], "learning curves"))
    if data.confusion is not None:
        parts += [f"<h2>Confusion matrix ({html.escape(data.split)}; rows true, columns predicted)</h2>",
                  _table(("true \\ predicted", *data.labels),
                         [(label, *row) for label, row in zip(data.labels, data.confusion)]),
                  _img(pictures[CONFUSION], "confusion matrix")]
    if data.per_tag:
        rows = [(t, s["precision"], s["recall"], s["f1"], int(s["support"])) for t, s in
                sorted(data.per_tag.items(), key=lambda ts: (-ts[1]["support"], ts[0]))]
        parts += [f"<h2>Per-tag scores ({html.escape(data.split)}, token level)</h2>",
                  _table(("tag", "precision", "recall", "f1", "support"), rows),
                  _img(pictures[PER_TAG], "per-tag F1")]
    style = ("body{font-family:sans-serif;max-width:1040px;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}")
    head = f'<meta charset="utf-8"><title>{html.escape(data.title)}</title><style>{style}</style>'
    return f"<!DOCTYPE html>\n<html><head>{head}</head><body>\n" + "\n".join(parts) + "\n</body></html>\n"


def write_report(folder: str | Path, data: ReportData) -> list[Path]:
    """Draw the pictures and write ``index.html`` and ``report.json`` into ``folder``; return the files."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    pictures = {}
    if data.train_curve or data.history:  # an evaluation of a finished model has no curves
        pictures[LEARNING_CURVES] = learning_curves_png(data, out / LEARNING_CURVES)
    if shared_metrics(data):
        pictures[BARS] = baseline_bars_png(data, out / BARS)
    title = f"{data.split} split"
    if data.confusion is not None:
        pictures[CONFUSION] = confusion_png(data.confusion, data.labels, out / CONFUSION, title)
    if data.per_tag:
        pictures[PER_TAG] = per_tag_png(data.per_tag, out / PER_TAG, title)
    (out / PAGE).write_text(html_page(data, pictures), encoding="utf-8")
    (out / DATA).write_text(json.dumps(data.__dict__, indent=2, sort_keys=True, default=list),
                            encoding="utf-8")
    return [*pictures.values(), out / PAGE, out / DATA]
