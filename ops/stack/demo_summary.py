"""What a demo run produced (:class:`DemoResult`) and the summary printed at its end, read from the
runs' own outputs: manifests via task XComs, training result JSONs, and links into MLflow (the
data card's pictures, the fine-tuned model's report)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ops.clients.mlflow_helpers import (MlflowLookupError, artifact_url, data_card_run, list_artifacts,
                                        run_link, run_url)
from ops.launch.settings import Settings


@dataclass
class DemoResult:
    ok: bool = False
    runs: dict[str, dict] = field(default_factory=dict)  # dag_id -> final run
    outputs: dict[str, Any] = field(default_factory=dict)  # task XComs and results
    failure: str | None = None
    printed: list[tuple[float, str]] = field(default_factory=list)  # (time.monotonic(), line) as echoed



def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _baseline_line(fin: dict) -> str:
    """The fine-tuned model's primary metric beside its cheap baseline's on the same test split."""
    metric = fin.get("metric") or "accuracy"
    return (f"                  {fin.get('baseline', 'baseline')} baseline {metric} "
            f"{_fmt(fin.get(f'baseline_{metric}'))}  lift {_fmt(fin.get(f'lift_{metric}'))}  "
            f"({'champion' if fin.get('promoted') else 'not promoted'}: {fin.get('gate')})")


def _parts_lines(fin: dict) -> list[str]:
    """A classifier with an n-gram bag: each part's accuracy alone (which part carries the model)."""
    if fin.get("transformer_only_accuracy") is None:
        return []
    return [f"                  parts alone: transformer {_fmt(fin['transformer_only_accuracy'])}  "
            f"n-gram bag {_fmt(fin.get('ngrams_only_accuracy'))}  "
            f"(bag weight {_fmt(fin.get('ngram_mix'), 1)}, picked on val)"]


def _bpb_line(pre: dict) -> str:
    """A GPT's bits per byte beside xz's; a BERT (masked-LM loss, no bits per byte) its gate."""
    if pre.get("val_bpb") is None:
        return (f"                  masked-LM model: gated on val loss "
                f"({'champion' if pre.get('promoted') else 'not promoted'}: {pre.get('gate')})")
    return (f"                  val bits/byte {_fmt(pre.get('val_bpb'))}  "
            f"{pre.get('baseline', 'xz')} baseline {_fmt(pre.get('baseline_bpb'))}  "
            f"lift {_fmt(pre.get('lift_bpb'))} (lower is better)")


CARD_PICTURES = ("funnel.png", "doc_length.png", "languages.png", "shard_tokens.png")


def data_card_lines(s: Settings, shards_uri: str | None) -> list[str]:
    """The data card's MLflow run and direct links to its pictures (those it logged)."""
    if not shards_uri:
        return []
    try:
        run = data_card_run(s.mlflow_uri, shards_uri)
    except MlflowLookupError as exc:
        return [f"  data card       ({exc})"]
    if run is None:
        return ["  data card       none logged for this shards version (see the tokenize task's log)"]
    info = run["info"]
    lines = [f"  data card       {run_url(s.mlflow_uri, info['experiment_id'], info['run_id'])}"]
    try:
        logged = {f["path"] for f in list_artifacts(s.mlflow_uri, info["run_id"], "data_card")}
    except MlflowLookupError:
        logged = set()
    for name in CARD_PICTURES:
        if f"data_card/{name}" in logged:
            lines.append(f"    {name:17} {artifact_url(s.mlflow_uri, info['run_id'], f'data_card/{name}')}")
    return lines


def report_lines(s: Settings, fin: dict) -> list[str]:
    """Where the fine-tuned model's evaluation report (learning curves, confusion matrix, baseline
    bars: training/report.py) opens in the MLflow UI: the run page's artefact view of its page."""
    page, run_id = fin.get("report"), fin.get("run_id")
    if not (page and run_id):
        return []
    try:
        run_page = fin.get("mlflow_run_url") or run_link(s.mlflow_uri, run_id)
    except MlflowLookupError as exc:
        return [f"  report          artefact {page} of run {run_id} ({exc})"]
    return [f"  report          {run_page}/artifacts/{page}"]


def summary(result: DemoResult, s: Settings) -> str:
    """Human summary of a finished demo, from the runs' own outputs."""
    o = result.outputs
    crawl, tok = o.get("crawl") or {}, o.get("tokenize") or {}
    pre, fin = o.get("pretrain") or {}, o.get("finetune") or {}
    kept = " → ".join(f"{t} {(o.get(t) or {}).get('rows_out')}" for t in ("extract", "clean", "dedup"))
    tokens = tok.get("tokens") or {}
    lines = [
        "",
        "crawl2model demo: done",
        f"  data root       {s.data_root}" + (f"  (S3 server {s.s3_endpoint})" if s.s3_mode else ""),
        f"  pages crawled   {crawl.get('rows_out')} stored of {crawl.get('rows_in')} URLs tried "
        f"(dropped: {crawl.get('dropped')})",
        f"  documents kept  {kept}",
        f"  tokens          train {tokens.get('train')}  val {tokens.get('val')}  "
        f"(vocab {tok.get('vocab_size')}, seq_len {tok.get('seq_len')}, {tok.get('uri')})",
        f"  pretrain        train loss {_fmt(pre.get('train_loss'))}  val loss {_fmt(pre.get('val_loss'))}  "
        f"steps {pre.get('steps')}  model {pre.get('model_uri')}",
        _bpb_line(pre),
        f"  finetune        accuracy {_fmt(fin.get('accuracy'))}  F1 {_fmt(fin.get('f1'))}  "
        f"version {fin.get('model_version')}",
        _baseline_line(fin),
        *_parts_lines(fin),
        *report_lines(s, fin),
        "  Airflow runs:",
    ]
    for dag_id, run in result.runs.items():
        lines.append(f"    {dag_id:13} {s.airflow_url}/dags/{dag_id}/runs/{run['dag_run_id']}")
    lines += data_card_lines(s, tok.get("uri"))
    lines.append("  MLflow runs:")
    for name, res in (("pretrain", pre), ("finetune", fin)):
        if res.get("mlflow_run_url"):
            lines.append(f"    {name:13} {res['mlflow_run_url']}")
        elif res.get("run_id"):
            try:
                lines.append(f"    {name:13} {run_link(s.mlflow_uri, res['run_id'])}")
            except MlflowLookupError as exc:
                lines.append(f"    {name:13} run {res['run_id']} ({exc})")
    return "\n".join(lines)
