"""The cluster launchers rendered to their final command or manifest, and checked (no cluster).

Spark: the spark-submit for ``k8s://`` with the Spark image and ``s3a://`` roots, its conf
equal to the chart's spark-defaults. Training: the MPIJob equal to the one the Helm chart
renders for the same values, its pod templates valid Kubernetes, and the launcher that
submits it and waits, driven against a fake API.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from ops.lake.storage import to_s3a
from ops.launch.kubernetes.cluster import ClusterConfig
from ops.launch.kubernetes.launcher import KubernetesLauncher
from ops.launch.kubernetes.mpijob import (cluster_horovodrun_command, job_name, mpijob_manifest, mpijob_state,
                                          world_size)
from ops.launch.kubernetes.single_pod import single_pod_horovodrun_command
from ops.launch.kubernetes.spark import (s3a_args, spark_conf, spark_connection, spark_submit_k8s_command,
                                         spark_submit_operator_kwargs)
from ops.launch.local import LaunchError, horovodrun_command
from ops.launch.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "crawl2model"
GPU_VALUES = REPO / "helm" / "values-gpu-cluster.yaml"
MPIJOB_SCHEMA = REPO / "tests" / "helm" / "schemas" / "mpijob-v2beta1.json"
RELEASE, NAMESPACE = "c2m", "ml"


def helm_path() -> Path:
    cache = Path(os.environ.get("C2M_CACHE") or Path.home() / ".cache" / "crawl2model")
    return cache / "k8s-tools" / "helm"


needs_helm = pytest.mark.skipif(not helm_path().is_file(),
                                reason="helm not installed: run `bash ops/install/k8s_tools.sh .venv-jobs`")


@lru_cache(maxsize=None)
def render(*opts: str) -> tuple[dict, ...]:
    cmd = [str(helm_path()), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *opts]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def merged_values(*files: Path) -> dict:
    def merge(a: dict, b: dict) -> dict:
        out = copy.deepcopy(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in files:
        values = merge(values, yaml.safe_load(f.read_text()))
    return values


def config_from_values(values: dict) -> ClusterConfig:
    """What a deployment would put in C2M_K8S_* for the chart's values (the mapping under test)."""
    full = f"{RELEASE}-crawl2model"
    img = values["images"]
    t, s3, spark = values["training"], values["s3"], values["spark"]
    return ClusterConfig(
        namespace=NAMESPACE, service_account=full,
        image_pull_secrets=tuple(p["name"] for p in values.get("imagePullSecrets") or []),
        platform_configmap=f"{full}-platform",
        spark_master=spark["master"], spark_image=f"{img['spark']['repository']}:{img['spark']['tag']}",
        spark_venv=img["spark"]["jobsVenv"], executor_instances=spark["executorInstances"],
        executor_cores=spark["executorCores"], executor_memory=spark["executorMemory"],
        s3_endpoint=s3["endpoint"], s3_region=s3["region"], s3_path_style=s3["pathStyleAccess"],
        s3_secret=s3["secretName"],
        trainer_image=f"{img['trainer']['repository']}:{img['trainer']['tag']}",
        trainer_venv=img["trainer"]["jobsVenv"], workers=t["workers"],
        gpu_per_worker=t["gpu"]["perWorker"] if t["gpu"]["enabled"] else 0,
        cpu_slots_per_worker=t["cpuSlotsPerWorker"], gpu_resource=t["gpu"]["resourceName"],
        network_interfaces=t["networkInterfaces"], node_selector=t["nodeSelector"],
        tolerations=tuple(t["tolerations"]), worker_resources=t["workerResources"],
        launcher_resources=t["launcherResources"], env=t["env"], shm_size=t["shmSize"],
        ttl_seconds_after_finished=t["ttlSecondsAfterFinished"], secret_env=_mlflow_auth_env(values),
    )


def _mlflow_auth_env(values: dict) -> dict[str, str]:
    """The MLflow client credentials the chart gives training pods, as secret_env entries."""
    auth = (values.get("mlflow") or {}).get("auth") or {}
    if not auth.get("enabled"):
        return {}
    return {"MLFLOW_TRACKING_USERNAME": f"{auth['secretName']}:{auth['usernameKey']}",
            "MLFLOW_TRACKING_PASSWORD": f"{auth['secretName']}:{auth['passwordKey']}"}


def strip_labels(job: dict) -> dict:
    job = copy.deepcopy(job)
    job.pop("metadata")
    for rs in job["spec"]["mpiReplicaSpecs"].values():
        rs["template"].pop("metadata", None)
    return job


# --- Spark -------------------------------------------------------------------------------------

def test_s3_uris_become_s3a_everywhere_in_the_args():
    assert to_s3a("s3://b/data") == "s3a://b/data" and to_s3a("/local") == "/local"
    args = ["--root", "s3://b/p/data", "--input-jsonl=s3://b/in.jsonl", "--seeds", "http://x/s3://y",
            "--files", "s3://a/1,s3://a/2", "--max-pages", "5"]
    assert s3a_args(args) == ["--root", "s3a://b/p/data", "--input-jsonl=s3a://b/in.jsonl",
                              "--seeds", "http://x/s3://y", "--files", "s3a://a/1,s3a://a/2",
                              "--max-pages", "5"]


def _cfg(**kw) -> ClusterConfig:
    return ClusterConfig(namespace="ml", spark_image="reg/spark:1", s3_endpoint="http://seaweed:8333",
                         s3_secret="c2m-s3", **kw)


def test_spark_submit_for_kubernetes_renders_the_final_command(tmp_path):
    s = Settings(jobs_venv=Path("/home/airflow/venv-jobs"), repo_root=Path("/site-packages"), host="10.1.2.3")
    cmd = spark_submit_k8s_command("clean", ["--root", "s3://b/data", "--version", "v1"], _cfg(), s)
    assert cmd[:7] == ["/home/airflow/venv-jobs/bin/spark-submit", "--master",
                       "k8s://https://kubernetes.default.svc:443", "--deploy-mode", "client",
                       "--name", "crawl2model-clean"]
    confs = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--conf")
    assert confs["spark.kubernetes.container.image"] == "reg/spark:1"
    assert confs["spark.kubernetes.namespace"] == "ml"
    assert confs["spark.pyspark.python"] == "/opt/venv/bin/python"  # the executors' (Spark image) python
    assert confs["spark.pyspark.driver.python"] == "/home/airflow/venv-jobs/bin/python"
    assert confs["spark.driver.host"] == "10.1.2.3"  # executors call back to the task pod
    assert confs["spark.hadoop.fs.s3a.endpoint"] == "http://seaweed:8333"
    secret = confs["spark.kubernetes.executor.secretKeyRef.AWS_SECRET_ACCESS_KEY"]
    assert secret == "c2m-s3:AWS_SECRET_ACCESS_KEY"
    assert cmd[-6:] == ["/site-packages/spark_jobs/__main__.py", "clean", "--root", "s3a://b/data",
                        "--version", "v1"]
    plain = spark_submit_k8s_command("clean", ["--root", "s3://b/data"], _cfg(s3a_roots=False), s)
    assert plain[-1] == "s3://b/data"


def test_spark_submit_operator_kwargs_and_connection():
    s = Settings(jobs_venv=Path("/venv"), repo_root=Path("/src"))
    kw = spark_submit_operator_kwargs("dedup", ["--root", "s3://b/d"], _cfg(), s)
    assert kw["application"] == "/src/spark_jobs/__main__.py"
    assert kw["application_args"] == ["dedup", "--root", "s3a://b/d"]
    assert kw["conf"] == spark_conf(_cfg(), s) and kw["deploy_mode"] == "client"
    assert kw["spark_binary"] == "/venv/bin/spark-submit" and kw["conn_id"] == "spark_k8s"
    conn = spark_connection(_cfg())
    assert conn["host"].startswith("k8s://") and conn["extra"]["namespace"] == "ml"


@needs_helm
def test_spark_conf_agrees_with_the_charts_spark_defaults():
    values = merged_values(GPU_VALUES)
    cfg = config_from_values(values)
    s = Settings(jobs_venv=Path(values["images"]["airflowWorker"]["jobsVenv"]))
    conf_map = next(d for d in render("-f", str(GPU_VALUES)) if d["kind"] == "ConfigMap"
                    and d["metadata"]["name"].endswith("-spark-conf"))
    chart = dict(line.strip().split(" ", 1) for line in conf_map["data"]["spark-defaults.conf"].splitlines()
                 if line.strip())
    ours = spark_conf(cfg, s)
    shared = set(chart) & set(ours)
    assert {"spark.kubernetes.container.image", "spark.kubernetes.namespace", "spark.executor.instances",
            "spark.pyspark.python", "spark.pyspark.driver.python",
            "spark.kubernetes.authenticate.driver.serviceAccountName",
            "spark.kubernetes.executor.secretKeyRef.AWS_ACCESS_KEY_ID"} <= shared
    assert {k: ours[k] for k in shared} == {k: chart[k] for k in shared}


# --- training ----------------------------------------------------------------------------------

@needs_helm
@pytest.mark.parametrize("opts,files", [
    (("-f", str(GPU_VALUES)), (GPU_VALUES,)),
    (("--set", "training.enabled=true", "--set", "training.gpu.enabled=false"), ()),
], ids=["gpu-cluster", "cpu"])
def test_mpijob_equals_the_one_the_chart_renders(opts, files):
    values = merged_values(*files)
    if not files:
        values["training"]["gpu"]["enabled"] = False
    cfg = config_from_values(values)
    docs = render(*opts)
    (published,) = [yaml.safe_load(d["data"]["mpijob.yaml"]) for d in docs
                    if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-training-job")]
    t = values["training"]
    ours = mpijob_manifest(t["module"], t["args"], cfg, name=published["metadata"]["name"])
    assert strip_labels(ours) == strip_labels(published)
    assert ours["metadata"]["namespace"] == NAMESPACE


def test_mpijob_requests_gpus_on_gpu_nodes_and_is_valid_kubernetes():
    import jsonschema
    import kubernetes_validate

    cfg = ClusterConfig(workers=4, gpu_per_worker=8, node_selector={"nvidia.com/gpu.present": "true"},
                        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists",
                                      "effect": "NoSchedule"},),
                        network_interfaces="eth0", platform_configmap="c2m-platform")
    job = mpijob_manifest("training.pretrain", ["--shards", "s3://b/shards/v=1"], cfg, name="pretrain-x",
                          env={"MLFLOW_RUN_CONTEXT": "{}"})
    jsonschema.validate(job, json.loads(MPIJOB_SCHEMA.read_text()))
    for role, rs in job["spec"]["mpiReplicaSpecs"].items():
        wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": role.lower()},
                   "template": rs["template"]}
        kubernetes_validate.validate(wrapper, "1.30.0", strict=True)
    worker = job["spec"]["mpiReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 4 and job["spec"]["slotsPerWorker"] == 8
    spec = worker["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    launcher = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]
    assert "nodeSelector" not in launcher
    assert "nvidia.com/gpu" not in launcher["containers"][0]["resources"]["limits"]
    cmd = launcher["containers"][0]["command"]
    assert cmd[cmd.index("-np") + 1] == "32" and cmd[cmd.index("--network-interfaces") + 1] == "eth0"
    env = {e["name"]: e.get("value") for e in launcher["containers"][0]["env"]}
    assert env["MLFLOW_RUN_CONTEXT"] == "{}"  # horovodrun forwards the launcher's env to the ranks


def test_fewer_ranks_use_fewer_pods():
    cfg = ClusterConfig(workers=4, gpu_per_worker=8)
    assert world_size(cfg) == (32, 4) and world_size(cfg, 12) == (12, 2) and world_size(cfg, 1) == (1, 1)
    assert mpijob_manifest("m", [], cfg, "n", np=12)["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 2
    with pytest.raises(LaunchError, match="at least one"):
        world_size(cfg, 0)


def test_cluster_commands_have_the_local_launchers_shape(tmp_path):
    venv = tmp_path / "opt" / "venv"
    for tool in ("horovodrun", "python"):
        (venv / "bin").mkdir(parents=True, exist_ok=True)
        (venv / "bin" / tool).touch()
    local = horovodrun_command("training.finetune", ["--epochs", "1"], 4, Settings(jobs_venv=venv))
    local = [a.replace(str(tmp_path), "") for a in local]
    cfg = ClusterConfig(trainer_venv="/opt/venv", workers=1, gpu_per_worker=4)
    assert single_pod_horovodrun_command("training.finetune", ["--epochs", "1"], cfg, 4) == local
    mpi = cluster_horovodrun_command("training.finetune", ["--epochs", "1"], cfg)
    drop = {"-H": 1, "--hostfile": 1, "--ssh-port": 1, "--network-interfaces": 1}

    def norm(cmd):
        out, it = [], iter(cmd)
        for a in it:
            if a in drop:
                next(it)
            else:
                out.append(a)
        return out

    assert norm(mpi) == norm(local)


def test_config_from_env_and_mapping():
    env = {"C2M_K8S_NAMESPACE": "ml", "C2M_K8S_WORKERS": "3", "C2M_K8S_GPU_PER_WORKER": "0",
           "C2M_K8S_NODE_SELECTOR": '{"pool": "gpu"}', "C2M_K8S_S3A_ROOTS": "false",
           "C2M_K8S_TOLERATIONS": '[{"key": "gpu", "operator": "Exists"}]'}
    cfg = ClusterConfig.from_env(env)
    assert (cfg.namespace, cfg.workers, cfg.gpu_per_worker, cfg.s3a_roots) == ("ml", 3, 0, False)
    assert cfg.node_selector == {"pool": "gpu"} and cfg.tolerations == ({"key": "gpu", "operator": "Exists"},)
    assert cfg.slots_per_worker == 1
    assert ClusterConfig.from_mapping({"workers": 5}, cfg).namespace == "ml"
    with pytest.raises(ValueError, match="unknown cluster setting"):
        ClusterConfig.from_mapping({"gpus": 1})
    with pytest.raises(ValueError, match="C2M_K8S_WORKERS"):
        ClusterConfig.from_env({"C2M_K8S_WORKERS": "many"})
    with pytest.raises(ValueError, match="spark_master"):
        ClusterConfig(spark_master="local[*]")


def test_job_names_are_dns_labels():
    name = job_name("pretrain", "train", "manual__2026-01-01T00:00:00+00:00")
    assert len(name) <= 50 and name == name.lower() and name[0].isalnum() and name[-1].isalnum()
    assert all(c.isalnum() or c == "-" for c in name)
    assert name != job_name("pretrain", "train", "manual__2026-01-01T00:00:01+00:00")


# --- the launcher against a fake API -----------------------------------------------------------

class _NotFound(Exception):
    status = 404


class FakeK8s:
    """CustomObjectsApi + CoreV1Api, enough for KubernetesLauncher: jobs end in ``outcome``."""

    def __init__(self, outcome: str, existing: bool = False, polls: int = 2):
        self.outcome, self.polls, self.calls = outcome, polls, []
        self.jobs: dict[str, dict] = {"n": {"status": {}}} if existing else {}

    def get_namespaced_custom_object(self, group, version, ns, plural, name):
        self.calls.append(("get", name))
        if name not in self.jobs:
            raise _NotFound()
        job = self.jobs[name]
        if job.get("created"):
            job["polls"] = job.get("polls", 0) + 1
            if job["polls"] >= self.polls:
                job["status"] = {"conditions": [{"type": self.outcome, "status": "True", "reason": "Boom",
                                                 "message": "launcher exited 1"}]}
        return job

    def delete_namespaced_custom_object(self, group, version, ns, plural, name):
        self.calls.append(("delete", name))
        self.jobs.pop(name)

    def create_namespaced_custom_object(self, group, version, ns, plural, body):
        self.calls.append(("create", body["metadata"]["name"]))
        self.jobs[body["metadata"]["name"]] = {**body, "created": True}

    def list_namespaced_pod(self, ns, label_selector):
        assert "job-role=launcher" in label_selector
        pod = type("Pod", (), {"metadata": type("Meta", (), {"name": "n-launcher"})()})()
        return type("PodList", (), {"items": [pod]})()

    def read_namespaced_pod_log(self, name, ns, tail_lines):
        return "\n".join(f"rank0 line {i}" for i in range(100)) + "\nRuntimeError: NCCL timeout"


def _launcher(api: FakeK8s) -> KubernetesLauncher:
    cfg = ClusterConfig(namespace="ml", poll_seconds=0)
    return KubernetesLauncher(cfg, api=(api, api), sleep=lambda s: None)


def test_training_job_is_created_and_waited_for():
    api = FakeK8s("Succeeded")
    _launcher(api).train("training.pretrain", ["--max-steps", "1"], 2, name="n", env={"A": "1"})
    assert api.calls[0] == ("get", "n") and ("create", "n") in api.calls
    assert mpijob_state(api.jobs["n"]) == "Succeeded"
    cmd = api.jobs["n"]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("-np") + 1] == "2"


def test_a_failed_training_job_raises_with_the_launchers_last_lines():
    api = FakeK8s("Failed", existing=True)
    with pytest.raises(LaunchError) as err:
        _launcher(api).train("training.pretrain", [], 2, name="n")
    assert api.calls[:2] == [("get", "n"), ("delete", "n")]  # a leftover of an earlier try is replaced
    assert err.value.tail[-1] == "RuntimeError: NCCL timeout" and len(err.value.tail) == 40
    assert "Boom: launcher exited 1" in str(err.value) and "kubectl -n ml logs" in str(err.value)
