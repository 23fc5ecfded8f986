"""Weekly data refresh: crawl → extract → clean → dedup → tokenize, then publish ``corpus``.

Each task runs one Spark stage through the configured launcher (local ``spark-submit`` by
default, Spark on Kubernetes with ``C2M_LAUNCHER=kubernetes`` or the Variable
``c2m_launcher``), the same entry point as ``crawl2model <stage>``, and passes on only the
dataset URI and its counts. Every stage of a run writes the same dataset version (the
logical date, or the run id for manual runs), so a retry or a rerun replaces its own
outputs.

Stages are grouped as **ingest** (crawl, extract), **refine** (clean, dedup) and
**package** (tokenize, publish). ``publish`` emits the Asset ``corpus`` with the shards URI
in the event's extra; the ``pretrain`` DAG is scheduled on it. With the Param
``publish=false`` (used by ``end_to_end``) it is skipped and no pretrain run starts.

Failures retry with exponential backoff; the task log ends with a summary naming the DAG,
task and try, and the job's last output lines.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset, Param, dag, get_current_context, task, task_group

from ops.dag_params import data_refresh_params
from ops.dag_support import EXTRA_PRETRAIN, EXTRA_SHARDS_URI, OWNER_DATA, derive_version, task_defaults
from ops.settings import get_settings

CORPUS = Asset("corpus")

# Environment only: no DB or network at parse time.
PARAMS = {name: Param(**spec) for name, spec in data_refresh_params(get_settings()).items()}


def _run_stage(stage: str, plan: dict) -> dict:
    """Run one Spark stage for this run's version and return its manifest summary."""
    import os

    from ops.dag_support import manifest_summary, stage_args, task_launcher, task_tracking_env

    ctx = get_current_context()
    s = get_settings()
    os.environ.update(task_tracking_env(ctx, s))  # the job's MLflow run (tokenize's data card) links back
    task_launcher(s).spark(stage, stage_args(stage, ctx["params"], plan["root"], plan["version"]))
    return manifest_summary(plan["root"], stage, plan["version"])


@dag(
    schedule="@weekly",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(OWNER_DATA, retries=2, timeout=timedelta(hours=12)),
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

    @task_group
    def ingest(p: dict) -> dict:
        """Fetch pages and turn them into text records."""

        @task
        def crawl(plan: dict) -> dict:
            """Politely fetch pages into WARC files (raw/)."""
            return _run_stage("crawl", plan)

        @task
        def extract(plan: dict, upstream: dict) -> dict:
            """HTML to text plus language ID (extracted/)."""
            return _run_stage("extract", plan)

        return extract(p, crawl(p))

    @task_group
    def refine(p: dict, upstream: dict) -> dict:
        """Filter by quality and language, then remove duplicates."""

        @task
        def clean(plan: dict, upstream: dict) -> dict:
            """Quality filters with named drop reasons (clean/)."""
            return _run_stage("clean", plan)

        @task
        def dedup(plan: dict, upstream: dict) -> dict:
            """Remove duplicates (corpus/)."""
            return _run_stage("dedup", plan)

        return dedup(p, clean(p, upstream))

    @task_group
    def package(p: dict, upstream: dict) -> dict:
        """Tokenize into training shards and announce them."""

        @task
        def tokenize(plan: dict, upstream: dict) -> dict:
            """Train the tokenizer, encode and pack (shards/); skipped when dedup left nothing new."""
            if upstream.get("rows_out") == 0:
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(
                    f"corpus {upstream.get('uri')} is empty: every document of this refresh was dropped "
                    f"({upstream.get('dropped')}), e.g. as a duplicate of an earlier version. Nothing to "
                    "tokenize or publish; set dedup_against=none to rebuild a full corpus.")
            return _run_stage("tokenize", plan)

        @task(outlets=[CORPUS])
        def publish(summary: dict) -> dict:
            """Emit ``corpus`` with the shards URI (starts pretrain); skipped when ``publish`` is off."""
            from airflow.sdk.exceptions import AirflowSkipException

            ctx = get_current_context()
            if not ctx["params"].get("publish", True):
                raise AirflowSkipException("publish=false: the corpus Asset is not updated")
            extra = {
                EXTRA_SHARDS_URI: summary["uri"],
                "version": summary["version"],
                "tokens": summary.get("tokens", {}),
                EXTRA_PRETRAIN: dict(ctx["params"].get("pretrain") or {}),
            }
            ctx["outlet_events"][CORPUS].extra = extra
            return extra

        summary = tokenize(p, upstream)
        publish(summary)
        return summary

    p = plan()
    package(p, refine(p, ingest(p)))


data_refresh()
