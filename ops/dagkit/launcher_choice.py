"""Which launcher runs a task's job, chosen at run time from the Airflow Variables c2m_launcher
and c2m_cluster (else $C2M_LAUNCHER), and the lake's S3 settings from the connection c2m_s3."""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable

from ops.dagkit.airflow_context import airflow_connection, airflow_variable
from ops.lake import storage
from ops.launch.settings import Settings

LAUNCHER_VARIABLE = "c2m_launcher"  # Airflow Variable: local | kubernetes
# Airflow Variable: JSON of ops.launch.kubernetes.cluster.ClusterConfig fields
CLUSTER_VARIABLE = "c2m_cluster"
S3_CONNECTION = "c2m_s3"  # Airflow connection (aws): keys, extra endpoint_url / region_name
log = logging.getLogger("crawl2model")


def apply_s3_connection(connection: Callable[[str], Any] = airflow_connection) -> bool:
    """Export the Airflow connection ``c2m_s3`` (type aws) as AWS_* variables of this task.

    Storage calls in the task and every job it launches then use it; values that are already
    set in the environment (e.g. by ``crawl2model up --s3``) are left alone. The values are
    never logged: only the variable names are.
    """
    conn = connection(S3_CONNECTION)
    if conn is None:
        return False
    added = {k: v for k, v in storage.env_from_airflow_connection(conn).items() if not os.environ.get(k)}
    os.environ.update(added)
    if added:
        log.info("S3 settings from Airflow connection %s: %s", S3_CONNECTION, ", ".join(sorted(added)))
    return True


def task_launcher(s: Settings, variable: Callable[[str], str | None] = airflow_variable):
    """The launcher for this task, chosen at run time: Variable c2m_launcher, else $C2M_LAUNCHER.

    Also exports the ``c2m_s3`` connection (if any) so the launched job can reach the lake.
    """
    from ops.launch.choose import get_launcher, launcher_kind

    apply_s3_connection()

    kind = launcher_kind(variable(LAUNCHER_VARIABLE))
    if kind == "local":
        return get_launcher(kind, s)
    from ops.launch.kubernetes.cluster import ClusterConfig

    cfg = ClusterConfig.from_env()
    raw = variable(CLUSTER_VARIABLE)
    if raw:
        cfg = ClusterConfig.from_mapping(json.loads(raw), cfg)
    return get_launcher(kind, s, cfg=cfg)
