"""The Spark standalone cluster ``crawl2model up --spark-workers N`` starts beside the stack
(:mod:`ops.stack.spark_standalone` does the starting and stopping): its folder, whether it
runs, and the settings that point Airflow's jobs at its master."""
from __future__ import annotations

from typing import Callable

from ops.launch.settings import Settings
from ops.stack.layout import AIRFLOW_COMPONENTS, StackError, spark_dir
from ops.stack.processes import read_pid


def running_spark_cluster(s: Settings):
    """The cluster ``up --spark-workers`` started, when its master still runs; else None."""
    from ops.stack import spark_standalone

    cluster = spark_standalone.Cluster.load(spark_dir(s))
    if cluster is None or not spark_standalone.group_pids(cluster.pids[:1]):
        return None
    return cluster


def start_spark_cluster(s: Settings, workers: int, timeout: float = 240.0,
                        echo: Callable[[str], None] = print) -> Settings:
    """Start a master and ``workers`` one-core workers on the stack's host (or keep the running
    ones); return the settings with ``spark_master`` pointing at it, for the Airflow processes.

    Executors inherit the workers' environment: the jobs' (S3 endpoint and keys in S3 mode).
    Airflow that already runs keeps the master it was started with, so that case is refused.
    """
    from dataclasses import replace

    from ops.launch import local
    from ops.stack import spark_standalone

    cluster = running_spark_cluster(s)
    if cluster is None:
        if any(read_pid(s, name) is not None for name in AIRFLOW_COMPONENTS):
            raise StackError("Airflow is running without the Spark cluster: run `crawl2model down`, "
                             f"then `crawl2model up --spark-workers {workers}`")
        echo(f"starting a Spark standalone master and {workers} one-core worker(s) ...")
        try:
            cluster = spark_standalone.start(s.jobs_venv / "bin", str(s.jobs_python), spark_dir(s),
                                             workers=workers, env=local.job_env(s), timeout=timeout,
                                             code=s.repo_root)
        except spark_standalone.ClusterError as exc:
            raise StackError(str(exc)) from None
    echo(f"  Spark master {cluster.master_url}, web UI {cluster.ui_url}")
    return replace(s, spark_master=cluster.master_url)


def stop_spark_cluster(s: Settings, echo: Callable[[str], None] = print) -> bool:
    """Stop ``up --spark-workers``'s cluster by its recorded PIDs; False when none was recorded."""
    from ops.stack import spark_standalone

    cluster = spark_standalone.Cluster.load(spark_dir(s))
    if cluster is None:
        return False
    spark_standalone.stop(cluster)
    echo(f"stopped the Spark cluster ({cluster.master_url})")
    return True
