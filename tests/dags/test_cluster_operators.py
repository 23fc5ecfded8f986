"""The cluster launch specs through Airflow's own operators, rendered to the final command/pod.

(b) SparkSubmitOperator with the kwargs ops.launch.kubernetes builds and a ``k8s://`` Spark
connection: the provider's hook renders the spark-submit command. (c) the deferrable
KubernetesPodOperator for training: the provider builds the pod it would create. No cluster.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("airflow.providers.apache.spark", reason="DAG tests run under .venv-airflow")
pytest.importorskip("airflow.providers.cncf.kubernetes", reason="DAG tests run under .venv-airflow")

from ops.launch.kubernetes.cluster import ClusterConfig  # noqa: E402
from ops.launch.kubernetes.single_pod import training_pod_operator  # noqa: E402
from ops.launch.kubernetes.spark import (spark_connection, spark_submit_k8s_command,  # noqa: E402
                                         spark_submit_operator_kwargs)
from ops.launch.settings import Settings  # noqa: E402

CFG = ClusterConfig(namespace="ml", spark_image="reg/c2m-spark:1", trainer_image="reg/c2m-trainer:1",
                    s3_secret="c2m-s3", gpu_per_worker=8, node_selector={"nvidia.com/gpu.present": "true"},
                    tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
                    platform_configmap="c2m-platform", image_pull_secrets=("regcred",),
                    secret_env={"MLFLOW_TRACKING_USERNAME": "c2m-mlflow-auth:username",
                                "MLFLOW_TRACKING_PASSWORD": "c2m-mlflow-auth:password"})
SETTINGS = Settings(jobs_venv=Path("/home/airflow/venv-jobs"), repo_root=Path("/src"), host="10.0.0.7")


def test_spark_submit_operator_renders_the_same_command_as_the_launcher(monkeypatch):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    conn = spark_connection(CFG)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CFG.spark_conn_id.upper()}", json.dumps(conn))
    args = ["--root", "s3://bucket/data", "--version", "v1"]
    op = SparkSubmitOperator(**spark_submit_operator_kwargs("tokenize", args, CFG, SETTINGS))
    hook = op._get_hook()
    cmd = hook._build_spark_submit_command(op.application)
    assert cmd[0] == "/home/airflow/venv-jobs/bin/spark-submit"
    assert cmd[cmd.index("--master") + 1] == CFG.spark_master
    assert cmd[cmd.index("--deploy-mode") + 1] == "client"
    assert cmd[-6:] == ["/src/spark_jobs/__main__.py", "tokenize", "--root", "s3a://bucket/data", "--version",
                        "v1"]
    confs = {cmd[i + 1] for i, a in enumerate(cmd) if a == "--conf"}
    ours = spark_submit_k8s_command("tokenize", args, CFG, SETTINGS)
    assert {ours[i + 1] for i, a in enumerate(ours) if a == "--conf"} <= confs
    assert "spark.kubernetes.container.image=reg/c2m-spark:1" in confs


def test_training_pod_operator_builds_a_gpu_pod_running_horovodrun():
    op = training_pod_operator("training.pretrain", ["--shards", "s3://b/shards/v=1"], CFG, np=8,
                               name="c2m-pretrain", env={"MLFLOW_RUN_CONTEXT": "{}"})
    assert op.deferrable is True
    pod = op.build_pod_request_obj(dry_run=True).to_dict()
    spec = pod["spec"]
    c = spec["containers"][0]
    assert c["image"] == "reg/c2m-trainer:1"
    assert c["command"] + c["args"] == [
        "/opt/venv/bin/horovodrun", "-np", "8", "-H", "localhost:8", "--gloo", "--network-interfaces", "lo",
        "/opt/venv/bin/python", "-m", "ops.lake.secret_env", "training.pretrain", "--shards", "s3://b/shards/v=1"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert spec["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert spec["security_context"]["run_as_non_root"] is True
    assert c["security_context"]["allow_privilege_escalation"] is False
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_RUN_CONTEXT"]["value"] == "{}"
    # horovodrun puts its environment on the ranks' command lines: secrets come as mounted files,
    # which each rank loads (ops.lake.secret_env, from the folder named by the plain C2M_RANK_ENV_DIR).
    assert not [e for e in c["env"] if e["value_from"]]
    assert {"AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME"}.isdisjoint(env)
    assert env["C2M_RANK_ENV_DIR"]["value"] == "/var/run/secrets/crawl2model"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert set(volumes) == {"dshm", "job-secrets"}
    projected = volumes["job-secrets"]["projected"]
    assert projected["default_mode"] == 0o440
    items = {i["path"]: (s["secret"]["name"], i["key"]) for s in projected["sources"] for i in s["secret"]["items"]}
    assert items == {"AWS_ACCESS_KEY_ID": ("c2m-s3", "AWS_ACCESS_KEY_ID"),
                     "AWS_SECRET_ACCESS_KEY": ("c2m-s3", "AWS_SECRET_ACCESS_KEY"),
                     "MLFLOW_TRACKING_USERNAME": ("c2m-mlflow-auth", "username"),
                     "MLFLOW_TRACKING_PASSWORD": ("c2m-mlflow-auth", "password")}
    mounts = {m["name"]: m for m in c["volume_mounts"]}
    assert mounts["job-secrets"]["mount_path"] == "/var/run/secrets/crawl2model" and mounts["job-secrets"]["read_only"]
    assert spec["automount_service_account_token"] is False  # training needs no Kubernetes API access
    assert c["env_from"][0]["config_map_ref"]["name"] == "c2m-platform"
    assert pod["metadata"]["namespace"] == "ml" and spec["image_pull_secrets"][0]["name"] == "regcred"
