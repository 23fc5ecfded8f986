"""Spark's side of the progress lines: active stages and their tasks, from the driver.

:func:`watch` starts the process's :mod:`ops.lake.progress` ticker with a live part read from
``SparkContext.statusTracker()`` each time a line is printed (no listener, no Spark job):

    [progress] clean: documents in 2,297; stage 4 (parquet at ...): 3/8 tasks, 2 running, ETA 40 s; 35 s

``get_spark`` calls it, so every stage gets it; a job adds its own numbers with
``ops.lake.progress.update`` (the crawl: pages fetched of the page budget). When the driver is busy
outside Spark (tokenizer training, publishing) the line says so. The ticker stops by itself when
the SparkContext stops.
"""
from __future__ import annotations

import time

from ops.lake import progress

MAX_STAGES = 3  # stages named per line; more run at once only in wide shuffles


class StageWatch:
    """Reads the status tracker; remembers when each stage was first seen, for its ETA."""

    def __init__(self, spark):
        self.sc = spark.sparkContext
        self.first_seen: dict[int, float] = {}

    def __call__(self) -> str:
        if getattr(self.sc, "_jsc", None) is None:  # the session was stopped
            raise progress.StopProgress()
        tracker = self.sc.statusTracker()
        stages = [tracker.getStageInfo(i) for i in sorted(tracker.getActiveStageIds())]
        stages = [s for s in stages if s is not None]
        if not stages:
            return "driver working, no Spark stage running"
        return "; ".join(self.describe(s) for s in stages[:MAX_STAGES])

    def describe(self, stage) -> str:
        now = time.monotonic()
        since = self.first_seen.setdefault(stage.stageId, now)
        done, total = stage.numCompletedTasks, stage.numTasks
        text = (f"stage {stage.stageId} ({short_name(stage.name)}): {done}/{total} tasks, "
                f"{stage.numActiveTasks} running")
        if stage.numFailedTasks:
            text += f", {stage.numFailedTasks} failed"
        if 0 < done < total and now > since:
            text += f", ETA {progress.duration((now - since) / done * (total - done))}"
        return text


def short_name(name: str) -> str:
    """``parquet at NativeMethodAccessorImpl.java:0`` -> ``parquet``; call sites add nothing a user reads."""
    return (name or "?").split(" at ", 1)[0][:40]


def job_name(app_name: str) -> str:
    """``crawl2model-extract`` -> ``extract``."""
    return app_name.removeprefix("crawl2model-") or app_name


def watch(spark, app_name: str) -> progress.Progress:
    """Start the process's progress ticker with Spark's stages as its live part."""
    return progress.start(job_name(app_name), extra=StageWatch(spark))
