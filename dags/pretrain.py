"""Pretrain a base language model on the newest token shards, with Horovod.

Scheduled on the ``corpus`` Asset, so each finished data refresh trains a model on its shards
(the URI comes from the triggering event's extra). It can also be triggered by hand with the
Params form; without ``shards_uri`` it uses the latest complete shards version. The job runs
through ``ops.launchers.horovodrun`` (the same entry point as ``crawl2model pretrain``), logs to
MLflow and registers ``c2m-base``; the task returns the job's small result JSON.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset, Param, dag, get_current_context, task

from ops.settings import get_settings

CORPUS = Asset("corpus")

PARAMS = {
    "shards_uri": Param(None, type=["null", "string"], minLength=1,
                        description="shards/v=V folder; default: the corpus event's, else the latest."),
    "model": Param("tiny", type="string", minLength=1,
                   description="Named model config in training/config.py."),
    "max_steps": Param(300, type="integer", minimum=1, maximum=10_000_000),
    "batch_size": Param(None, type=["null", "integer"], minimum=1, description="Default: the job's own."),
    "np": Param(get_settings().train_np, type="integer", minimum=1, maximum=256,
                description="Number of Horovod processes."),
    "extra_args": Param([], type="array", items={"type": "string"},
                        description="More flags passed verbatim to training.pretrain."),
}


@dag(
    schedule=[CORPUS],
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1),
                  "execution_timeout": timedelta(hours=24)},
    params=PARAMS,
    tags=["crawl2model", "training"],
)
def pretrain():
    """Train ``c2m-base`` on token shards whenever the ``corpus`` Asset updates (or by hand)."""

    @task
    def train() -> dict:
        """Resolve the shards, run horovodrun training.pretrain, return its result JSON."""
        from ops.dag_support import pretrain_args, read_result, resolve_pretrain, result_path, safe_name
        from ops.launchers import horovodrun

        ctx = get_current_context()
        s = get_settings()
        run_type = getattr(ctx["dag_run"].run_type, "value", ctx["dag_run"].run_type)
        extra = None
        if run_type == "asset_triggered":
            events = ctx["triggering_asset_events"][CORPUS]
            extra = dict(events[-1].extra or {}) if events else {}
        params, shards = resolve_pretrain(dict(ctx["params"]), run_type, extra, s.data_root)
        result_file = result_path(s, ctx["dag"].dag_id, ctx["run_id"], "train")
        result_file.parent.mkdir(parents=True, exist_ok=True)
        result_file.unlink(missing_ok=True)
        args = pretrain_args(params, shards, s.data_root, safe_name(ctx["run_id"]), result_file)
        horovodrun("training.pretrain", args, params["np"])
        return {**read_result(result_file), "shards_uri": shards}

    train()


pretrain()
