"""``crawl2model demo``: the whole flow on this machine, driven through Airflow's REST API.

Start the stack, wait for the three DAGs, unpause them, trigger ``data_refresh`` with a
demo-sized conf, follow the ``pretrain`` run that the ``corpus`` Asset starts, trigger
``finetune``, and print a summary read from the real outputs (manifests via task XComs,
training result JSONs, MLflow). Nothing runs in-process: a user clicking in the UI gets the
same runs.

Why the demo may set a logical date: ``data_refresh`` is weekly with ``catchup=False``, so
unpausing it for the first time makes Airflow start the most recent missed weekly run at
once, with default Params, next to the demo's run. When that weekly slot is due, the demo's
run takes it (its logical date is the slot), and Airflow skips the duplicate.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ops.clients.airflow_api import AirflowAPIError, AirflowClient, Heartbeat
from ops.clients.mlflow_helpers import (MlflowLookupError, artifact_url, data_card_run, list_artifacts, run_link,
                                        run_url)
from ops.launch.settings import Settings, get_settings
from ops.stack import layout, services

DAGS = ("data_refresh", "pretrain", "finetune")
ALL_DAGS = DAGS + ("hpo", "compress", "end_to_end")
# Stage -> its task id in data_refresh (stages sit in task groups).
DATA_TASKS = {"crawl": "ingest.crawl", "extract": "ingest.extract", "clean": "refine.clean",
              "dedup": "refine.dedup", "tokenize": "package.tokenize"}


@dataclass(frozen=True)
class Profile:
    """Sizes for one demo run: conf for data_refresh (with pretrain overrides) and finetune.

    ``sites`` name the Settings URLs the crawl starts from, one seed each (empty: the
    data_refresh default, the docs site); each site is its own host, so with
    ``crawl_shards`` set to their number they are crawled side by side."""

    data: dict[str, Any]
    finetune: dict[str, Any]
    timeout_s: float = 3600.0
    sites: tuple[str, ...] = ()

    def refresh_conf(self, s: Settings) -> dict[str, Any]:
        seeds = [f"{getattr(s, site)}/" for site in self.sites]
        return {**self.data, "seeds": seeds} if seeds else dict(self.data)


PROFILES = {
    # Two sites crawled side by side (one shard each, 150 pages each at most): ~150 of the ~530
    # Python doc pages and the movie-review site (ops/stack/reviews_site.py, ~120 pages), text of
    # the sentiment task's domain. robots.txt's Crawl-delay (1 s) sets the pace. The sites are on
    # 127.0.0.1, so the crawl must allow private addresses (off by default in data_refresh).
    "demo": Profile(
        # dedup_against=none: each demo run is a self-contained corpus, so a second `make demo`
        # on the same data root is not emptied by cross-refresh dedup against the first.
        # objective mlm: a BERT, registered as c2m-bert (README "Recipes, measured").
        data={"max_pages": 300, "crawl_shards": 2, "max_depth": 3, "delay": 1.0, "vocab_size": 4096,
              "seq_len": 128, "dedup_against": "none", "allow_private": True,
              "pretrain": {"objective": "mlm", "max_steps": 750}},
        # No epochs: the job picks epochs, lr and warmup from the training-set size and stops
        # early on validation (training/tasks/recipe.py; README "Recipes, measured").
        finetune={"base_model": "models:/c2m-bert@champion"},
        sites=("site_url", "reviews_url"),
    ),
    # For the integration test: a handful of pages, a few steps.
    "tiny": Profile(
        data={"max_pages": 20, "max_depth": 2, "delay": 0.0, "vocab_size": 512, "seq_len": 32,
              "val_fraction": 0.2, "dedup_against": "none", "allow_private": True,
              "pretrain": {"max_steps": 10, "batch_size": 4}},
        finetune={"epochs": 1, "extra_args": ["--max-examples", "256"]},
        timeout_s=1800.0,
    ),
}


@dataclass
class DemoResult:
    ok: bool = False
    runs: dict[str, dict] = field(default_factory=dict)  # dag_id -> final run
    outputs: dict[str, Any] = field(default_factory=dict)  # task XComs and results
    failure: str | None = None
    printed: list[tuple[float, str]] = field(default_factory=list)  # (time.monotonic(), line) as echoed


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _due_slot(dag: dict) -> str | None:
    """The pending weekly slot of a paused, never-run DAG, if it is already due."""
    slot = dag.get("next_dagrun_logical_date")
    if not dag.get("is_paused") or not slot:
        return None
    when = datetime.fromisoformat(slot.replace("Z", "+00:00"))
    return slot if when <= datetime.now(timezone.utc) else None


def trigger_refresh(client: AirflowClient, conf: dict, echo: Callable[[str], None]) -> dict:
    """Trigger data_refresh (taking the due weekly slot if there is one), then unpause it."""
    slot = _due_slot(client.get_dag("data_refresh"))
    try:
        run = client.trigger("data_refresh", conf, logical_date=slot, note="crawl2model demo")
    except AirflowAPIError as exc:
        if exc.status != 409 or slot is None:
            raise
        run = client.trigger("data_refresh", conf, note="crawl2model demo")  # slot already taken
    client.set_paused("data_refresh", False)
    echo(f"triggered data_refresh run {run['dag_run_id']}")
    return run


def task_log_path(s: Settings, dag_id: str, run_id: str, task_id: str, try_number: int) -> Path:
    return (layout.airflow_home(s) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
            / f"task_id={task_id}" / f"attempt={max(try_number, 1)}.log")


_ERROR_LINE = re.compile(r"\b\w*(Error|Exception)\b: \S")


def _log_events(path: Path, lines: int = 10) -> str:
    """The error lines and the last events of an Airflow 3 task log (JSON lines), as plain text.

    A launched job's own exception (e.g. ``ShardError: ...``) sits above the launcher's
    traceback, so the lines naming an exception come first, then the tail.
    """
    try:
        raw = path.read_text(errors="replace").splitlines()
    except OSError:
        return "  (log not found)"
    events = []
    for line in raw:
        try:
            events.append(str(json.loads(line).get("event", "")))
        except ValueError:
            events.append(line)
    errors = list(dict.fromkeys(e.strip() for e in events if _ERROR_LINE.search(e)))[-5:]
    parts = ["  errors:"] + [f"    {e[:400]}" for e in errors] if errors else []
    parts += ["  last lines:"] + [f"    {e[:400]}" for e in events[-lines:]]
    return "\n".join(parts)


def explain_failure(client: AirflowClient, s: Settings, dag_id: str, run_id: str) -> str:
    parts = [f"{dag_id} run {run_id} failed. {s.airflow_url}/dags/{dag_id}/runs/{run_id}"]
    for ti in client.failed_tasks(dag_id, run_id):
        if ti.get("state") != "failed":
            continue
        log = task_log_path(s, dag_id, run_id, ti["task_id"], ti.get("try_number") or 1)
        parts.append(f"task {ti['task_id']} failed (try {ti.get('try_number')}):\n"
                     f"  UI:  {s.airflow_url}/dags/{dag_id}/runs/{run_id}/tasks/{ti['task_id']}\n"
                     f"  log: {log}\n{_log_events(log)}")
    return "\n".join(parts)


def _wait(client: AirflowClient, dag_id: str, run_id: str, result: DemoResult, s: Settings,
          timeout: float, echo: Callable[[str], None]) -> bool:
    echo(f"waiting for {dag_id} ({s.airflow_url}/dags/{dag_id}/runs/{run_id}) ...")
    run = client.wait_for_run(dag_id, run_id, timeout=timeout, progress=echo)
    result.runs[dag_id] = run
    if run["state"] != "success":
        result.failure = explain_failure(client, s, dag_id, run_id)
        echo(result.failure)
        return False
    return True


MAX_CRAWL_SHARDS = 64  # the crawl_shards Param's maximum


def crawl_output(client: AirflowClient, run_id: str) -> dict | None:
    """The crawl's summary: the mapped ``ingest.crawl`` tasks' XComs, in shard order, merged."""
    parts = []
    for index in range(MAX_CRAWL_SHARDS):
        part = client.xcom("data_refresh", run_id, DATA_TASKS["crawl"], map_index=index)
        if part is None:
            break
        parts.append(part)
    return merge_crawl_summaries(parts)


def merge_crawl_summaries(parts: list[dict]) -> dict | None:
    """One summary for a sharded crawl: counts and drop reasons added up, every raw version
    kept (``uris``); a single shard's summary is returned as it is."""
    if len(parts) <= 1:
        return parts[0] if parts else None
    dropped: dict[str, int] = {}
    for part in parts:
        for reason, n in (part.get("dropped") or {}).items():
            dropped[reason] = dropped.get(reason, 0) + (n or 0)
    return {"stage": "crawl", "uri": parts[0].get("uri"), "uris": [p.get("uri") for p in parts],
            "version": parts[0].get("version"), "versions": [p.get("version") for p in parts],
            "rows_in": sum(p.get("rows_in") or 0 for p in parts),
            "rows_out": sum(p.get("rows_out") or 0 for p in parts), "dropped": dropped}


def run_demo(profile: str = "demo", s: Settings | None = None,
             echo: Callable[[str], None] = print) -> DemoResult:
    """Run the flow through Airflow; returns what ran and what it produced (``ok`` False on failure).

    Every line goes through one :class:`~ops.clients.airflow_api.Heartbeat`: when nothing was printed for
    12 s it says what the demo is waiting for, whatever step (or slow REST call) it is in."""
    s = s or get_settings()
    result = DemoResult()
    with Heartbeat(_recording(echo, result.printed)) as say:
        say.status = "starting the stack"
        _run_flow(PROFILES[profile], s, result, say)
    return result


def _run_flow(prof: Profile, s: Settings, result: DemoResult, echo: Heartbeat) -> None:
    services.up(s, echo=echo)
    client = AirflowClient(s.airflow_url, layout.airflow_home(s))
    echo("waiting for the DAGs to be parsed ...")
    client.wait_for_dags(list(ALL_DAGS), progress=echo)
    echo.status = "talking to Airflow's API"
    for dag_id in ("pretrain", "finetune"):
        client.set_paused(dag_id, False)

    refresh = trigger_refresh(client, prof.refresh_conf(s), echo)
    if not _wait(client, "data_refresh", refresh["dag_run_id"], result, s, prof.timeout_s, echo):
        return
    for stage, task_id in DATA_TASKS.items():
        if stage == "crawl":  # mapped: one XCom per crawl shard
            result.outputs[stage] = crawl_output(client, refresh["dag_run_id"])
        else:
            result.outputs[stage] = client.xcom("data_refresh", refresh["dag_run_id"], task_id)

    started = result.runs["data_refresh"].get("start_date") or refresh.get("queued_at") or _now_iso()
    echo("waiting for the pretrain run started by the corpus Asset ...")
    pre = client.wait_for_new_run("pretrain", after=started, run_type="asset_triggered", progress=echo)
    if not _wait(client, "pretrain", pre["dag_run_id"], result, s, prof.timeout_s, echo):
        return
    result.outputs["pretrain"] = client.xcom("pretrain", pre["dag_run_id"], "train")

    fin = client.trigger("finetune", prof.finetune, note="crawl2model demo")
    echo(f"triggered finetune run {fin['dag_run_id']}")
    if not _wait(client, "finetune", fin["dag_run_id"], result, s, prof.timeout_s, echo):
        return
    result.outputs["finetune"] = client.xcom("finetune", fin["dag_run_id"], "train")
    result.ok = True
    echo.status = "reading the outputs for the summary"
    echo(summary(result, s))


def _recording(echo: Callable[[str], None], printed: list[tuple[float, str]]) -> Callable[[str], None]:
    """``echo`` that also keeps each line with its time (the demo's longest silence is checked)."""
    def say(text: str) -> None:
        printed.append((time.monotonic(), text))
        echo(text)

    return say


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _baseline_line(fin: dict) -> str:
    """The fine-tuned model's primary metric beside its cheap baseline's on the same test split."""
    metric = fin.get("metric") or "accuracy"
    return (f"                  {fin.get('baseline', 'baseline')} baseline {metric} "
            f"{_fmt(fin.get(f'baseline_{metric}'))}  lift {_fmt(fin.get(f'lift_{metric}'))}  "
            f"({'champion' if fin.get('promoted') else 'not promoted'}: {fin.get('gate')})")


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
