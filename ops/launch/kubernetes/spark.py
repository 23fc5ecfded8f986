"""Spark stages on Kubernetes: spark-submit in client mode from the task pod (``--master
k8s://…``), executors from the Spark image, ``s3://`` data roots passed as ``s3a://``.

:func:`spark_submit_k8s_command` is the command a task pod runs; :func:`spark_submit_operator_kwargs`
the same job as a SparkSubmitOperator's arguments, with :func:`spark_connection` its connection.
"""
from __future__ import annotations

import os
import re
from typing import Any

from ops.launch.kubernetes.cluster import ClusterConfig
from ops.launch.local import check_stage, entry_file
from ops.launch.settings import Settings, get_settings


def s3a_args(args: list[str]) -> list[str]:
    """Job arguments with every s3:// URI as s3a:// (also after ``--flag=`` and in comma lists;
    never inside another URL)."""
    return [re.sub(r"(?:^|(?<=[=,]))s3://", "s3a://", str(a)) for a in args]


def spark_conf(cfg: ClusterConfig, settings: Settings | None = None) -> dict[str, str]:
    """spark-defaults for a stage: the same keys the chart writes to spark-defaults.conf."""
    s = settings or get_settings()
    conf = {
        "spark.kubernetes.container.image": cfg.spark_image,
        "spark.kubernetes.namespace": cfg.namespace,
        "spark.kubernetes.authenticate.driver.serviceAccountName": cfg.service_account,
        "spark.executor.instances": str(cfg.executor_instances),
        "spark.executor.cores": str(cfg.executor_cores),
        "spark.executor.memory": cfg.executor_memory,
        "spark.pyspark.python": f"{cfg.spark_venv}/bin/python",
        "spark.pyspark.driver.python": str(s.jobs_python),
        # Client mode: executors call back to the driver in this task pod.
        "spark.driver.host": s.host,
        "spark.driver.bindAddress": "0.0.0.0",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": str(max(8, 2 * cfg.executor_instances * cfg.executor_cores)),
        "spark.hadoop.fs.s3a.path.style.access": str(cfg.s3_path_style).lower(),
        "spark.hadoop.fs.s3a.endpoint.region": cfg.s3_region,
        "spark.executorEnv.AWS_DEFAULT_REGION": cfg.s3_region,
    }
    if cfg.s3a_roots:  # the stages read and write s3a:// themselves: no staging volume (spark_jobs/s3io.py)
        conf["spark.crawl2model.s3.io"] = "s3a"
    if cfg.s3_endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = cfg.s3_endpoint
        conf["spark.executorEnv.AWS_ENDPOINT_URL"] = cfg.s3_endpoint
    if cfg.s3_secret:
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider")
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            conf[f"spark.kubernetes.executor.secretKeyRef.{key}"] = f"{cfg.s3_secret}:{key}"
    return conf


def _job_script(job: str, s: Settings) -> str:
    check_stage(job)
    return str(entry_file(s.repo_root))


def _job_args(job: str, args: list[str], cfg: ClusterConfig) -> list[str]:
    """The entry file's arguments: the stage, then its flags."""
    return [job, *(s3a_args(args) if cfg.s3a_roots else [str(a) for a in args])]


def spark_submit_k8s_command(job: str, args: list[str], cfg: ClusterConfig,
                             settings: Settings | None = None) -> list[str]:
    """The spark-submit command a task pod runs for one stage on Kubernetes (client mode)."""
    s = settings or get_settings()
    cmd = [str(s.jobs_venv / "bin" / "spark-submit"), "--master", cfg.spark_master, "--deploy-mode", "client",
           "--name", f"crawl2model-{job}"]
    for key, value in sorted(spark_conf(cfg, s).items()):
        cmd += ["--conf", f"{key}={value}"]
    cmd += ["--driver-memory", os.environ.get("C2M_SPARK_DRIVER_MEMORY", "2g"), _job_script(job, s)]
    return cmd + _job_args(job, args, cfg)


def spark_connection(cfg: ClusterConfig) -> dict[str, Any]:
    """The Airflow connection ``cfg.spark_conn_id`` (e.g. as JSON in AIRFLOW_CONN_SPARK_K8S)."""
    return {"conn_type": "spark", "host": cfg.spark_master,
            "extra": {"deploy-mode": "client", "namespace": cfg.namespace}}


def spark_submit_operator_kwargs(job: str, args: list[str], cfg: ClusterConfig,
                                 settings: Settings | None = None) -> dict[str, Any]:
    """Keyword arguments of a SparkSubmitOperator running one stage on the cluster.

    The spark binary is the jobs venv's (the connection's ``spark-binary`` extra only
    accepts names on PATH); env vars are not used because the hook turns them into
    driverEnv confs, which do not apply in client mode.
    """
    s = settings or get_settings()
    return {
        "task_id": job,
        "conn_id": cfg.spark_conn_id,
        "application": _job_script(job, s),
        "application_args": _job_args(job, args, cfg),
        "name": f"crawl2model-{job}",
        "conf": spark_conf(cfg, s),
        "driver_memory": os.environ.get("C2M_SPARK_DRIVER_MEMORY", "2g"),
        "deploy_mode": "client",
        "spark_binary": str(s.jobs_venv / "bin" / "spark-submit"),
    }
