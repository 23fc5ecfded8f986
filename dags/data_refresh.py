"""Weekly data refresh: crawl → extract → clean → dedup → tokenize, then publish ``corpus``.

Each task runs one Spark stage through ``ops.launchers.spark_submit`` (the same entry point as
``crawl2model <stage>``) and passes on only the dataset URI and its counts. Every stage of a run
writes the same dataset version, so a retry or a rerun replaces its own outputs. The last task
emits the Asset ``corpus`` with the shards URI in the event's extra; the ``pretrain`` DAG is
scheduled on it.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset, Param, dag, get_current_context, task

from ops.dag_support import EXTRA_PRETRAIN, EXTRA_SHARDS_URI, derive_version, manifest_summary, stage_args
from ops.settings import get_settings

CORPUS = Asset("corpus")
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

_site = get_settings().site_url  # environment only: no DB or network at parse time

PARAMS = {
    "seeds": Param([f"{_site}/"], type="array", minItems=1, items={"type": "string", "pattern": "^https?://"},
                   description="Start URLs. The default is the local demo site (Python's docs)."),
    "allow_domains": Param([], type="array", items={"type": "string", "minLength": 1},
                           description="host[:port] the crawler may visit; empty = the seeds' hosts."),
    "allow_private": Param(True, type="boolean",
                           description="Allow loopback/private addresses (the demo site is on 127.0.0.1)."),
    "max_pages": Param(150, type="integer", minimum=1, maximum=1_000_000),
    "max_depth": Param(3, type="integer", minimum=0, maximum=50),
    "delay": Param(1.0, type="number", minimum=0, maximum=600,
                   description="Seconds between requests to one host; a larger Crawl-delay wins."),
    "version": Param(None, type=["null", "string"], pattern=VERSION_PATTERN,
                     description="Dataset version to write; default: logical date, else run_id."),
    "vocab_size": Param(4096, type="integer", minimum=512, maximum=1_048_576),
    "seq_len": Param(128, type="integer", minimum=8, maximum=65_536),
    "val_fraction": Param(0.05, type="number", minimum=0.0, maximum=0.5,
                          description="Share of documents (by id hash) held out for validation."),
    "pretrain": Param({}, type="object", additionalProperties=False, properties={
        "model": {"type": "string"},
        "max_steps": {"type": "integer", "minimum": 1},
        "batch_size": {"type": "integer", "minimum": 1},
        "np": {"type": "integer", "minimum": 1, "maximum": 256},
    }, description="Overrides for the pretrain run this refresh triggers (carried in the corpus event)."),
}


def _run_stage(stage: str, plan: dict) -> dict:
    """Run one Spark stage for this run's version and return its manifest summary."""
    from ops.launchers import spark_submit

    params = get_current_context()["params"]
    spark_submit(stage, stage_args(stage, params, plan["root"], plan["version"]))
    return manifest_summary(plan["root"], stage, plan["version"])


@dag(
    schedule="@weekly",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1),
                  "execution_timeout": timedelta(hours=12)},
    params=PARAMS,
    tags=["crawl2model", "data"],
)
def data_refresh():
    """Crawl, extract, clean, dedup and tokenize one dataset version; emit the ``corpus`` Asset."""

    @task
    def plan() -> dict:
        """Fix the data root and the dataset version that every stage of this run writes."""
        ctx = get_current_context()
        version = ctx["params"].get("version") or derive_version(ctx["dag_run"].logical_date, ctx["run_id"])
        return {"root": get_settings().data_root, "version": version}

    @task
    def crawl(plan: dict) -> dict:
        """Politely fetch pages into WARC files (raw/)."""
        return _run_stage("crawl", plan)

    @task
    def extract(plan: dict, upstream: dict) -> dict:
        """HTML to text plus language ID (extracted/)."""
        return _run_stage("extract", plan)

    @task
    def clean(plan: dict, upstream: dict) -> dict:
        """Quality filters with named drop reasons (clean/)."""
        return _run_stage("clean", plan)

    @task
    def dedup(plan: dict, upstream: dict) -> dict:
        """Remove duplicates (corpus/)."""
        return _run_stage("dedup", plan)

    @task(outlets=[CORPUS])
    def tokenize(plan: dict, upstream: dict) -> dict:
        """Train the tokenizer, encode and pack (shards/); announce the shards on ``corpus``."""
        summary = _run_stage("tokenize", plan)
        ctx = get_current_context()
        ctx["outlet_events"][CORPUS].extra = {
            EXTRA_SHARDS_URI: summary["uri"],
            "version": summary["version"],
            "tokens": summary.get("tokens", {}),
            EXTRA_PRETRAIN: dict(ctx["params"].get("pretrain") or {}),
        }
        return summary

    p = plan()
    tokenize(p, dedup(p, clean(p, extract(p, crawl(p)))))


data_refresh()
