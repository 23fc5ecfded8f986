"""Weekly data refresh: crawl → extract → clean → dedup → tokenize, then publish ``corpus``.

Each task runs one Spark stage through the configured launcher (local ``spark-submit`` by
default, Spark on Kubernetes with ``C2M_LAUNCHER=kubernetes`` or the Variable
``c2m_launcher``), the same entry point as ``crawl2model <stage>``, and passes on only the
dataset URI and its counts. Every stage of a run writes the same dataset version (the
logical date, or the run id for manual runs), so a retry or a rerun replaces its own
outputs.

Stages are grouped as **ingest** (shards, crawl, extract), **refine** (clean, dedup) and
**package** (tokenize, publish). ``publish`` emits the Asset ``corpus`` with the shards URI
in the event's extra; the ``pretrain`` DAG is scheduled on it. With the Param
``publish=false`` (used by ``end_to_end``) it is skipped and no pretrain run starts.

The Param ``source`` picks where pages come from: ``crawl`` (the default), ``warc`` (existing
WARC/WET/ARC files named by the Param ``warc_glob``, e.g. a Common Crawl dump, copied into
raw/ by ``ingest.warc``) or ``both``. ``ingest.source`` is a branch: the path not chosen is
skipped, and ``extract`` reads the raw versions of whichever ran.

The crawl fans out with dynamic task mapping: ``ingest.shards`` groups the seeds by host
into at most ``crawl_shards`` shards, one mapped ``ingest.crawl`` task each, every shard
writing a raw version of its own (``{version}-c{k}``; a single shard writes ``{version}``);
``extract`` reads them all into the run's one extracted version.

Failures retry with exponential backoff; the task log ends with a summary naming the DAG,
task and try, and the job's last output lines.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag, get_current_context, task, task_group

from ops.dagkit.assets import CORPUS
from ops.dagkit.callbacks import OWNER_DATA, task_defaults
from ops.dagkit.dag_params import data_refresh_params
from ops.dagkit.run_params import EXTRA_PRETRAIN, EXTRA_SHARDS_URI
from ops.dagkit.versions import derive_version
from ops.launch.settings import get_settings

# Environment only: no DB or network at parse time.
PARAMS = {name: Param(**spec) for name, spec in data_refresh_params(get_settings()).items()}


def _run_stage(stage: str, plan: dict, args: list[str] | None = None, version: str | None = None) -> dict:
    """Run one Spark stage and return its manifest summary.

    By default the stage writes this run's version with the flags of :func:`stage_args`; a
    crawl shard passes its own flags and raw version.
    """
    import os

    from ops.dagkit.flags import stage_args
    from ops.dagkit.launcher_choice import task_launcher
    from ops.dagkit.results import manifest_summary
    from ops.dagkit.tracking import task_tracking_env

    ctx = get_current_context()
    s = get_settings()
    os.environ.update(task_tracking_env(ctx, s))  # the job's MLflow run (tokenize's data card) links back
    version = version or plan["version"]
    task_launcher(s).spark(stage, args or stage_args(stage, ctx["params"], plan["root"], version))
    return manifest_summary(plan["root"], stage, version)


@task
def plan() -> dict:
    """Fix the data root and the dataset version that every stage of this run writes."""
    ctx = get_current_context()
    version = ctx["params"].get("version") or derive_version(ctx["dag_run"].logical_date, ctx["run_id"])
    return {"root": get_settings().data_root, "version": version}


@task_group
def ingest(p: dict) -> dict:
    """Fetch pages in parallel crawl shards and/or ingest WARC files, and turn them into text records."""

    @task.branch
    def source(plan: dict) -> list[str]:
        """Choose the crawl, the WARC ingest or both (Param ``source``); the other path is skipped."""
        from ops.dagkit.flags import ingest_args

        params = get_current_context()["params"]
        chosen = params.get("source") or "crawl"
        if chosen != "crawl":
            ingest_args(params, plan["root"], plan["version"])  # fails here, naming the Param, if unset
        return [tid for name, tid in (("crawl", "ingest.shards"), ("warc", "ingest.warc"))
                if chosen in (name, "both")]

    @task
    def shards(plan: dict) -> list[dict]:
        """Split the seeds into crawl shards by host (Param ``crawl_shards``; one by default)."""
        from ops.dagkit.fanout import crawl_shards

        return crawl_shards(get_current_context()["params"], plan["version"])

    crawl_doc = ("Politely fetch one shard's pages into WARC files (raw/v={version}, or "
                 "raw/v={version}-c{k} when the crawl is sharded); resumes its own raw version.")

    @task(doc_md=crawl_doc)  # mapped tasks do not pick up the docstring by themselves
    def crawl(plan: dict, shard: dict) -> dict:
        from ops.dagkit.flags import shard_crawl_args

        args = shard_crawl_args(get_current_context()["params"], plan["root"], shard)
        return _run_stage("crawl", plan, args, shard["version"])

    @task
    def warc(plan: dict) -> dict:
        """Copy the readable records of the files ``warc_glob`` names into raw/ (raw/v={version},
        or raw/v={version}-w beside a crawl); damaged records are counted as corrupt_record."""
        from ops.dagkit.flags import ingest_args
        from ops.dagkit.versions import ingest_version

        params = get_current_context()["params"]
        version = ingest_version(plan["version"], params.get("source") or "crawl")
        return _run_stage("ingest", plan, ingest_args(params, plan["root"], version), version)

    @task(trigger_rule="none_failed_min_one_success")
    def extract(plan: dict, crawled: list | None, ingested: dict | None) -> dict:
        """HTML to text plus language ID from the raw versions of every crawl shard and of the
        WARC ingest, whichever ran (extracted/)."""
        from ops.dagkit.flags import stage_args

        inputs = [c["version"] for c in (crawled or []) if c]  # in map-index order: shard 0 first
        inputs += [ingested["version"]] if ingested else []
        params = get_current_context()["params"]
        return _run_stage("extract", plan,
                          stage_args("extract", params, plan["root"], plan["version"], inputs=inputs))

    chosen = source(p)
    planned = shards(p)
    ingested = warc(p)
    chosen >> [planned, ingested]
    return extract(p, crawl.partial(plan=p).expand(shard=planned), ingested)


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
    p = plan()
    package(p, refine(p, ingest(p)))


data_refresh()
