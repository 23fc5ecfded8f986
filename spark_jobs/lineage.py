"""The data card: one MLflow run per tokenized corpus version, with its whole lineage.

The tokenize stage ends a data refresh, so it is the one that records, in the MLflow
experiment ``data_refresh``, what the refresh produced:

- every stage of the chain (raw → extract → clean → dedup → shards), walked back through
  the manifests' ``parents``, with rows in/out and drops by reason as metrics;
- the shards and the corpus they came from as run inputs (``mlflow.log_input``), the
  shards under the *same* name and digest that every training run logs, so the MLflow UI
  links a model to the corpus version and tokenizer it came from;
- ``tokenizer.json``, a Markdown data card and its pictures (:mod:`spark_jobs.card_plots`: the
  funnel of rows per stage with drops by reason, document lengths, language share, tokens per
  shard) as artefacts under ``data_card/``, the tokenizer hash as a tag;
- a one-paragraph run description (``mlflow.note.content``): which version, from which corpus,
  and how many rows and tokens came through.

It runs only when ``MLFLOW_TRACKING_URI`` is set (the stack sets it); a data stage never
fails because tracking is down: the error is printed and the version stays published.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ops.lake import storage
from ops.lake.datasets import MANIFEST, DatasetVersion

EXPERIMENT = "data_refresh"
MAX_CHAIN = 16  # a guard against a cycle in hand-edited manifests
CARD_DIR = "data_card"  # the run's artefact folder: data_card.md, lineage.json, tokenizer.json, *.png
# MLflow shows this tag as the run's description (training sets it with training.tracking.describe_run;
# this data stage sets it directly, so it never imports torch through training.tracking).
NOTE_TAG = "mlflow.note.content"


def shards_dataset_name(uri: str) -> str:
    """The dataset name every run uses for a shards version (``shards-v=3``)."""
    return f"shards-{str(uri).rstrip('/').rsplit('/', 1)[-1]}"


def manifest_digest(manifest: dict[str, Any]) -> str:
    """The digest of a manifest as training logs it (sha256 of its sorted JSON)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def lineage(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifests from this version back to the first stage, newest first.

    Only the first parent is followed (a stage has one input version; dedup's extra
    parents, the earlier versions deduplicated against, are listed, not walked).
    """
    chain = [manifest]
    while len(chain) < MAX_CHAIN:
        parents = chain[-1].get("parents") or []
        uri = storage.join(str(parents[0]), MANIFEST) if parents else None
        if uri is None or not storage.exists(uri):
            break  # the first stage, or a JSONL file / WARC folder given by hand
        chain.append(json.loads(storage.read_text(uri)))
    return chain


def card_metrics(chain: list[dict[str, Any]]) -> dict[str, float]:
    """``<stage>/rows_in``, ``<stage>/rows_out`` and ``<stage>/dropped/<reason>`` for each stage."""
    out: dict[str, float] = {}
    for m in chain:
        stage = m.get("stage", "unknown")
        out[f"{stage}/rows_in"] = float(m.get("rows_in", 0))
        out[f"{stage}/rows_out"] = float(m.get("rows_out", 0))
        for reason, n in (m.get("dropped") or {}).items():
            out[f"{stage}/dropped/{_metric_safe(reason)}"] = float(n)
    head = chain[0]
    for split, facts in (head.get("splits") or {}).items():
        out[f"tokens/{split}"] = float(facts.get("tokens", 0))
        out[f"sequences/{split}"] = float(facts.get("sequences", 0))
    return out


def card_markdown(chain: list[dict[str, Any]], figures: dict[str, str] | None = None) -> str:
    """A human-readable card: one table row per stage, oldest first, the tokenizer, and links to
    the pictures (``figures``: file name -> title, next to the card)."""
    head = chain[0]
    lines = [f"# Data card: {head.get('uri')}", "",
             f"Code: `{head.get('code_sha')}`, created {head.get('created_at')}.", "",
             "| stage | version | rows in | rows out | dropped (by reason) |",
             "| --- | --- | ---: | ---: | --- |"]
    for m in reversed(chain):
        drops = ", ".join(f"{k}: {v}" for k, v in sorted((m.get("dropped") or {}).items())) or "none"
        lines.append(f"| {m.get('stage')} | {m.get('version')} | {m.get('rows_in')} | {m.get('rows_out')} "
                     f"| {drops} |")
    if head.get("tokenizer_sha256"):
        lines += ["", f"Tokenizer: {head.get('tokenizer_type', '')} "
                      f"vocab {head.get('vocab_size')}, sha256 `{head['tokenizer_sha256']}`, "
                      f"seq_len {head.get('seq_len')}, dtype {head.get('dtype')}."]
        for split, facts in sorted((head.get("splits") or {}).items()):
            lines.append(f"- {split}: {facts.get('tokens')} tokens, {facts.get('sequences')} sequences, "
                         f"{facts.get('docs')} documents")
    if figures:
        lines += ["", "## Pictures", ""]
        lines += [f"![{title}]({name})" for name, title in figures.items()]
    return "\n".join(lines) + "\n"


def card_description(chain: list[dict[str, Any]]) -> str:
    """The data-card run's description: what ran, on which versions, with which result."""
    head = chain[0]
    source = f" from the {chain[1].get('stage')} version {chain[1].get('uri')}" if len(chain) > 1 else ""
    flow = " → ".join(f"{m.get('stage')} {m.get('rows_out')}" for m in reversed(chain))
    tokens = ", ".join(f"{facts.get('tokens')} {split} tokens"
                       for split, facts in sorted((head.get("splits") or {}).items()))
    return (f"Data card of {head.get('stage')} version {head.get('version')} ({head.get('uri')}){source}, "
            f"written by the tokenize stage at the end of a data refresh. Data: the chain of "
            f"{len(chain)} manifests back to the first stage. Result: rows kept per stage {flow}"
            + (f"; {tokens}" if tokens else "")
            + f"; drops by reason in the metrics and {CARD_DIR}/funnel.png.")


def draw_figures(chain: list[dict[str, Any]], folder: str) -> dict[str, str]:
    """The card's PNGs in ``folder`` (file name -> title); none, with a line saying why, when they
    cannot be drawn (e.g. matplotlib missing from a cluster image): the card is logged without them."""
    try:
        from spark_jobs import card_plots

        return card_plots.draw_all(chain, folder)
    except Exception as exc:  # pictures are a view of the data, not a reason to lose the card
        print(f"[lineage] data card pictures not drawn: {type(exc).__name__}: {exc}", flush=True)
        return {}


def log_data_card(manifest: dict[str, Any], tokenizer_json: str | None = None) -> str | None:
    """Record the version in MLflow; return the run id, or None when tracking is off or fails."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        print("[lineage] MLFLOW_TRACKING_URI is not set: no data card logged", flush=True)
        return None
    uri = os.environ["MLFLOW_TRACKING_URI"]
    if uri.startswith(("http://", "https://")) and not _reachable(uri):
        # MLflow's client would retry a dead server for minutes; a data stage must not wait on it.
        print(f"[lineage] no MLflow server answers at {uri}: no data card logged", flush=True)
        return None
    try:
        return _log(manifest, tokenizer_json)
    except Exception as exc:  # tracking is a record of the data, not a reason to lose it
        print(f"[lineage] could not log the data card to MLflow: {type(exc).__name__}: {exc}", flush=True)
        return None


def _log(manifest: dict[str, Any], tokenizer_json: str | None) -> str:
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource, S3ArtifactDatasetSource

    def dataset(uri: str, name: str, digest: str):
        source = S3ArtifactDatasetSource(uri) if storage.is_s3(uri) else LocalArtifactDatasetSource(uri)
        return MetaDataset(source=source, name=name, digest=digest[:36])

    chain = lineage(manifest)
    dv = DatasetVersion.from_uri(manifest["uri"])
    mlflow.set_experiment(os.environ.get("C2M_DATA_EXPERIMENT", EXPERIMENT))
    tags = {"c2m.job": "data_card", "c2m.version": dv.version, "c2m.shards": manifest["uri"],
            "c2m.tokenizer_sha256": str(manifest.get("tokenizer_sha256", ""))}
    with mlflow.start_run(run_name=_run_name(dv.version), tags=tags) as run:
        mlflow.log_params({f"tokenize.{k}": v for k, v in sorted((manifest.get("config") or {}).items())
                           if isinstance(v, (str, int, float, bool)) or v is None})
        mlflow.log_metrics(card_metrics(chain))
        mlflow.log_input(dataset(manifest["uri"], shards_dataset_name(manifest["uri"]),
                                 manifest_digest(manifest)), context="output",
                         tags={"tokenizer_sha256": str(manifest.get("tokenizer_sha256", ""))})
        if len(chain) > 1:
            corpus = chain[1]
            mlflow.log_input(dataset(corpus["uri"], f"{corpus.get('stage')}-v={corpus.get('version')}",
                                     manifest_digest(corpus)), context="source")
        with tempfile.TemporaryDirectory(prefix="c2m-card-") as tmp:
            figures = draw_figures(chain, tmp)
            Path(tmp, "data_card.md").write_text(card_markdown(chain, figures), encoding="utf-8")
            Path(tmp, "lineage.json").write_text(json.dumps(chain, indent=2, sort_keys=True),
                                                 encoding="utf-8")
            if tokenizer_json is not None:
                Path(tmp, "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
            mlflow.log_artifacts(tmp, artifact_path=CARD_DIR)
        mlflow.set_tag(NOTE_TAG, card_description(chain))
        print(f"[lineage] data card for {manifest['uri']} in MLflow run {run.info.run_id}", flush=True)
        return run.info.run_id


def _reachable(uri: str, timeout: float = 5.0) -> bool:
    """One quick GET of the tracking server's /health."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _run_name(version: str) -> str:
    """``dag.task@run`` under Airflow (as training runs are named), else ``data_card@v=N``."""
    dag, task, run = (os.environ.get(f"C2M_AIRFLOW_{k}") for k in ("DAG_ID", "TASK_ID", "RUN_ID"))
    return f"{dag}.{task}@{run}" if dag and task and run else f"data_card@v={version}"


def _metric_safe(name: str) -> str:
    """MLflow metric names allow letters, digits, ``_ - . / space``."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in str(name))
