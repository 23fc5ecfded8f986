"""Launching on a Kubernetes cluster: Spark stages on k8s, Horovod training across GPU pods.

The same stage and training code runs here as on a laptop; only the launch differs:

- **Spark** (`spark_submit_k8s_command`, `spark_submit_operator_kwargs`): spark-submit in
  client mode from the task pod with ``--master k8s://…``, executors from the Spark image,
  and data roots as ``s3a://`` (what Hadoop's S3A connector in the Spark image reads). With
  ``s3a_roots`` the conf also sets ``spark.crawl2model.s3.io=s3a``: stages then read and write
  the bucket through Spark directly instead of staging through the driver.
- **Training** as a Kubeflow MPIJob (`mpijob_manifest`, the shape of the Helm chart's
  ``templates/training`` template): a CPU launcher pod runs ``horovodrun --hostfile`` over
  N worker pods of the trainer image, with GPUs, node selector and tolerations from
  :class:`ClusterConfig`. `training_pod_operator` builds the single-pod variant (one
  multi-GPU pod, ``horovodrun -H localhost:N``) as a deferrable KubernetesPodOperator.
- **Secrets of training jobs** (S3 keys, :attr:`ClusterConfig.secret_env`) are never in a
  container's environment: horovodrun exports its whole environment onto every rank's
  command line (``ssh worker env NAME=value … python …``), which ``ps`` shows. The Secrets
  are mounted on the pods that run ranks (`secret_volume`, one 0440 file per variable), and
  each rank starts through ``python -m ops.lake.secret_env``, which loads that folder (named by
  the plain variable ``C2M_RANK_ENV_DIR``) into its own environment. The MPIJob's launcher
  gets no secret at all: it only runs horovodrun over ssh.

:class:`KubernetesLauncher` implements :class:`ops.launch.local.Launcher` with these. The
builders are pure functions of a config, so tests render them to the final command or
manifest without a cluster. Nothing here imports Airflow or the Kubernetes client at module
level.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

from ops.lake import secret_env
from ops.launch.local import TAIL_LINES, LaunchError, check_stage, entry_file, job_env, run
from ops.launch.settings import Settings, get_settings

MPI_GROUP, MPI_VERSION, MPI_PLURAL = "kubeflow.org", "v2beta1", "mpijobs"
HOSTFILE = "/etc/mpi/hostfile"  # written by the MPI operator into the launcher pod
SSH_PORT = 2222  # the trainer image's sshd port (docker/trainer/Dockerfile ARG SSH_PORT)
SSH_DIR = "/home/c2m/.ssh"
SSHD_CONFIG = "/home/c2m/.sshd_config"
CONFIG_ENV_PREFIX = "C2M_K8S_"
SECRET_DIR = "/var/run/secrets/crawl2model"  # the job's Secrets, on the pods that run ranks
SECRET_VOLUME = "job-secrets"
# Files owned by root and the pod's fsGroup (the image's user): readable by that user only.
SECRET_FILE_MODE = 0o440


def _default_resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how jobs run on the cluster. Defaults mirror the Helm chart's values.yaml.

    Each field can be set from the environment as ``C2M_K8S_<FIELD>`` (JSON for maps and
    lists), or from a mapping (an Airflow Variable holding JSON) with :meth:`from_mapping`.
    """

    namespace: str = "default"
    service_account: str = "crawl2model"
    image_pull_secrets: tuple[str, ...] = ()
    platform_configmap: str = ""  # envFrom for job containers (C2M_*, MLFLOW_TRACKING_URI)
    uid: int = 1000  # the images' non-root user
    # Spark
    spark_master: str = "k8s://https://kubernetes.default.svc:443"
    spark_conn_id: str = "spark_k8s"
    spark_image: str = "ghcr.io/example/crawl2model-spark:0.1.0"
    spark_venv: str = "/opt/venv"  # the Spark image's venv (executors' python)
    executor_instances: int = 2
    executor_cores: int = 2
    executor_memory: str = "4g"
    s3a_roots: bool = True  # pass s3:// data roots to Spark jobs as s3a://
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_path_style: bool = True
    s3_secret: str = ""  # Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    # Job variables that are secrets, each from a Secret: "secret" (the key is the variable's name)
    # or "secret:key", e.g. {"C2M_OPTUNA_STORAGE": "c2m-optuna", "MLFLOW_TRACKING_PASSWORD":
    # "c2m-mlflow-auth:password"}. The Airflow task's own value of such a variable is never used.
    secret_env: dict[str, str] = field(default_factory=dict)
    # Training
    trainer_image: str = "ghcr.io/example/crawl2model-trainer:0.1.0"
    trainer_venv: str = "/opt/venv"
    workers: int = 2
    gpu_per_worker: int = 1  # 0: CPU ranks over Gloo, cpu_slots_per_worker per pod
    cpu_slots_per_worker: int = 1
    gpu_resource: str = "nvidia.com/gpu"
    network_interfaces: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict, ...] = ()
    worker_resources: dict = field(default_factory=lambda: _default_resources("4", "32Gi", "8", "64Gi"))
    launcher_resources: dict = field(default_factory=lambda: _default_resources("250m", "512Mi", "1", "1Gi"))
    env: dict[str, str] = field(default_factory=lambda: {"OMP_NUM_THREADS": "1", "NCCL_DEBUG": "WARN"})
    shm_size: str = "8Gi"
    ttl_seconds_after_finished: int = 86400
    poll_seconds: float = 15.0

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"workers={self.workers}: need at least one worker pod")
        if self.gpu_per_worker < 0 or self.cpu_slots_per_worker < 1:
            raise ValueError("gpu_per_worker must be >= 0 and cpu_slots_per_worker >= 1")
        if not self.spark_master.startswith(("k8s://", "yarn")):
            raise ValueError(f"spark_master={self.spark_master!r}: give k8s://https://<api server> or yarn")

    @property
    def slots_per_worker(self) -> int:
        """Horovod ranks per worker pod: one per GPU, or the CPU slots."""
        return self.gpu_per_worker or self.cpu_slots_per_worker

    @classmethod
    def from_mapping(cls, data: dict[str, Any], base: "ClusterConfig | None" = None) -> "ClusterConfig":
        """``base`` (default: the defaults) with the keys of ``data``; unknown keys are an error."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown cluster setting(s) {unknown}; known: {', '.join(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return replace(base or cls(), **values)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "ClusterConfig":
        """The defaults overridden by ``C2M_K8S_<FIELD>`` variables."""
        environ = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(CONFIG_ENV_PREFIX + f.name.upper())
            if raw in (None, ""):
                continue
            default = getattr(cls(), f.name)
            try:
                if isinstance(default, bool):
                    data[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
                elif isinstance(default, (int, float)):
                    data[f.name] = type(default)(raw)
                elif isinstance(default, (dict, tuple)):
                    data[f.name] = json.loads(raw)
                else:
                    data[f.name] = raw
            except ValueError as exc:
                raise ValueError(f"{CONFIG_ENV_PREFIX}{f.name.upper()}={raw!r}: {exc}") from None
        return cls.from_mapping(data)


# ---------------------------------------------------------------- Spark on Kubernetes

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


# ---------------------------------------------------------------- Horovod on Kubernetes

def world_size(cfg: ClusterConfig, np: int | None = None) -> tuple[int, int]:
    """(ranks, worker pods): ``np`` ranks (default: every slot) on as few pods as hold them."""
    n = np if np is not None else cfg.workers * cfg.slots_per_worker
    if n < 1:
        raise LaunchError(f"np={n}: need at least one training process")
    return n, math.ceil(n / cfg.slots_per_worker)


def cluster_horovodrun_command(module: str, args: list[str], cfg: ClusterConfig,
                               np: int | None = None) -> list[str]:
    """The MPIJob launcher's command: ``ops.launch.local.horovodrun_command`` adapted to pods
    (the operator's hostfile for ``-H localhost:N``, ssh on the image's port, the NIC from
    config instead of loopback). Same order as the chart's ``crawl2model.training.command``."""
    n, _ = world_size(cfg, np)
    cmd = [f"{cfg.trainer_venv}/bin/horovodrun", "-np", str(n), "--hostfile", HOSTFILE, "--gloo",
           "--ssh-port", str(SSH_PORT)]
    if cfg.network_interfaces:
        cmd += ["--network-interfaces", cfg.network_interfaces]
    return cmd + [f"{cfg.trainer_venv}/bin/python", *_rank_entry(module, cfg), *[str(a) for a in args]]


def single_pod_horovodrun_command(module: str, args: list[str], cfg: ClusterConfig, np: int) -> list[str]:
    """All ranks in one pod: exactly ``horovodrun_command``'s shape with the trainer venv."""
    return [f"{cfg.trainer_venv}/bin/horovodrun", "-np", str(np), "-H", f"localhost:{np}", "--gloo",
            "--network-interfaces", "lo", f"{cfg.trainer_venv}/bin/python", *_rank_entry(module, cfg),
            *[str(a) for a in args]]


def _rank_entry(module: str, cfg: ClusterConfig) -> list[str]:
    """``-m MODULE``, through ``ops.lake.secret_env`` (which loads the mounted Secrets) when the job has any."""
    return ["-m", "ops.lake.secret_env", module] if secret_files(cfg) else ["-m", module]


def secret_files(cfg: ClusterConfig) -> list[tuple[str, str, str]]:
    """(variable, Secret, key) for each secret a training job gets: the S3 keys, then
    :attr:`ClusterConfig.secret_env` in its order."""
    out = []
    if cfg.s3_secret:
        out += [(key, cfg.s3_secret, key) for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    for var, ref in cfg.secret_env.items():
        name, _, key = ref.partition(":")
        out.append((var, name, key or var))
    return out


def secret_volume(cfg: ClusterConfig) -> dict | None:
    """The projected volume of :func:`secret_files`: one file per variable, named after it (what
    ``ops.lake.secret_env.load_env_dir`` reads), one source per Secret in order of first use; None
    when the job has no secrets. The chart's MPIJob mounts the same volume."""
    items: dict[str, list[dict]] = {}
    for var, name, key in secret_files(cfg):
        items.setdefault(name, []).append({"key": key, "path": var})
    if not items:
        return None
    return {"name": SECRET_VOLUME, "projected": {
        "defaultMode": SECRET_FILE_MODE,
        "sources": [{"secret": {"name": name, "items": its}} for name, its in items.items()]}}


def _pod_security(cfg: ClusterConfig) -> dict:
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
            "runAsUser": cfg.uid, "runAsGroup": cfg.uid, "fsGroup": cfg.uid}


CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _env_list(cfg: ClusterConfig, extra: dict[str, str] | None) -> list[dict]:
    """The training containers' env: plain values only (the chart's MPIJob lists the same), and
    where the job has secrets, the folder they are mounted in (:func:`secret_volume`) as
    ``C2M_RANK_ENV_DIR``. horovodrun exports all of it onto the ranks' command lines.

    A secret value (a secret name, or a URL with a password) with no Secret to come from is an
    error: written into the MPIJob it would be readable by anyone who may read the object. A
    variable that comes from a Secret ignores the value given here.
    """
    files = secret_files(cfg)
    from_secrets = {var for var, _, _ in files}
    plain = {k: str(v) for k, v in {**cfg.env, **(extra or {})}.items() if k not in from_secrets}
    leaked = sorted(k for k, v in plain.items() if secret_env.is_secret(k, v))
    if leaked:
        raise LaunchError(f"{', '.join(leaked)} would be written into the job's manifest in clear; "
                          "put the value in a Kubernetes Secret and name it in the cluster setting "
                          f"secret_env, e.g. {{\"{leaked[0]}\": \"<secret name>[:<key>]\"}}")
    env = [{"name": k, "value": v} for k, v in sorted(plain.items())]
    env.append({"name": "AWS_DEFAULT_REGION", "value": cfg.s3_region})
    if cfg.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": cfg.s3_endpoint})
    if files:
        env.append({"name": secret_env.ENV_DIR_VAR, "value": SECRET_DIR})
    return env


def worker_resources(cfg: ClusterConfig) -> dict:
    """The worker's resources with the GPU limit added (one GPU per rank)."""
    res = json.loads(json.dumps(cfg.worker_resources))
    if cfg.gpu_per_worker:
        res.setdefault("limits", {})[cfg.gpu_resource] = cfg.gpu_per_worker
    return res


def _container(cfg: ClusterConfig, name: str, command: list[str], resources: dict,
               env: dict[str, str] | None) -> dict:
    c: dict[str, Any] = {"name": name, "image": cfg.trainer_image, "imagePullPolicy": "IfNotPresent",
                         "command": command, "env": _env_list(cfg, env)}
    if cfg.platform_configmap:
        c["envFrom"] = [{"configMapRef": {"name": cfg.platform_configmap}}]
    c["securityContext"] = json.loads(json.dumps(CONTAINER_SECURITY))
    c["resources"] = resources
    return c


def _pod_spec(cfg: ClusterConfig, container: dict, gpu_node: bool) -> dict:
    spec: dict[str, Any] = {"automountServiceAccountToken": False}
    if cfg.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in cfg.image_pull_secrets]
    spec["securityContext"] = _pod_security(cfg)
    if gpu_node and cfg.node_selector:
        spec["nodeSelector"] = dict(cfg.node_selector)
    if gpu_node and cfg.tolerations:
        spec["tolerations"] = [dict(t) for t in cfg.tolerations]
    spec["containers"] = [container]
    return spec


def job_name(*parts: str, limit: int = 50) -> str:
    """A DNS-1123 name from free text (DAG id, run id, task id), unique enough and short."""
    import hashlib

    text = "-".join(parts)
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{slug[: limit - 9].rstrip('-')}-{digest}" if slug else f"c2m-{digest}"


def mpijob_manifest(module: str, args: list[str], cfg: ClusterConfig, name: str, np: int | None = None,
                    env: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> dict:
    """A kubeflow.org/v2beta1 MPIJob running ``module`` on ``np`` ranks (the chart's template)."""
    n, workers = world_size(cfg, np)
    labels = {"app.kubernetes.io/part-of": "crawl2model", "app.kubernetes.io/component": "training",
              **(labels or {})}
    launcher = _container(cfg, "launcher", cluster_horovodrun_command(module, args, cfg, n),
                          json.loads(json.dumps(cfg.launcher_resources)), env)
    sshd = ["/usr/sbin/sshd", "-De", "-f", SSHD_CONFIG]
    worker = _container(cfg, "worker", sshd, worker_resources(cfg), env)
    worker["ports"] = [{"name": "ssh", "containerPort": SSH_PORT}]
    worker["volumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    worker_spec = _pod_spec(cfg, worker, gpu_node=True)
    worker_spec["volumes"] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cfg.shm_size}}]
    secrets = secret_volume(cfg)
    if secrets:  # the workers run the ranks; the launcher only runs horovodrun and gets none
        worker["volumeMounts"].append({"name": SECRET_VOLUME, "mountPath": SECRET_DIR, "readOnly": True})
        worker_spec["volumes"].append(secrets)

    def role(component: str, spec: dict, replicas: int) -> dict:
        return {"replicas": replicas, "restartPolicy": "Never",
                "template": {"metadata": {"labels": {**labels, "app.kubernetes.io/component": component}},
                             "spec": spec}}

    return {
        "apiVersion": f"{MPI_GROUP}/{MPI_VERSION}",
        "kind": "MPIJob",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": labels},
        "spec": {
            "slotsPerWorker": cfg.slots_per_worker,
            "mpiImplementation": "OpenMPI",
            "sshAuthMountPath": SSH_DIR,
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 0,
                          "ttlSecondsAfterFinished": cfg.ttl_seconds_after_finished},
            "mpiReplicaSpecs": {
                "Launcher": role("training-launcher", _pod_spec(cfg, launcher, gpu_node=False), 1),
                "Worker": role("training-worker", worker_spec, workers),
            },
        },
    }


def training_pod_operator(module: str, args: list[str], cfg: ClusterConfig, np: int, task_id: str = "train",
                          name: str = "c2m-train", env: dict[str, str] | None = None, **kwargs):
    """A deferrable KubernetesPodOperator training on one multi-GPU pod (all ranks local).

    For one node; more nodes take :func:`mpijob_manifest`. Needs the cncf-kubernetes provider
    (the Airflow venv and images have it).
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    res = worker_resources(replace(cfg, gpu_per_worker=np if cfg.gpu_per_worker else 0))
    cmd = single_pod_horovodrun_command(module, args, cfg, np)
    env_vars = [k8s.V1EnvVar(name=e["name"], value=e["value"]) for e in _env_list(cfg, env)]
    volumes = [k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory",
                                                                              size_limit=cfg.shm_size))]
    mounts = [k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm")]
    secrets = secret_volume(cfg)
    if secrets:  # the ranks load them (ops.lake.secret_env); horovodrun's environment has none
        volumes.append(k8s.V1Volume(name=SECRET_VOLUME, projected=k8s.V1ProjectedVolumeSource(
            default_mode=SECRET_FILE_MODE, sources=[
                k8s.V1VolumeProjection(secret=k8s.V1SecretProjection(
                    name=src["secret"]["name"], items=[k8s.V1KeyToPath(**i) for i in src["secret"]["items"]]))
                for src in secrets["projected"]["sources"]])))
        mounts.append(k8s.V1VolumeMount(name=SECRET_VOLUME, mount_path=SECRET_DIR, read_only=True))
    sec = _pod_security(cfg)
    return KubernetesPodOperator(
        task_id=task_id, name=name, namespace=cfg.namespace, image=cfg.trainer_image,
        cmds=cmd[:1], arguments=cmd[1:], env_vars=env_vars,
        env_from=[k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=cfg.platform_configmap))]
        if cfg.platform_configmap else None,
        container_resources=k8s.V1ResourceRequirements(requests=res.get("requests"),
                                                       limits=res.get("limits")),
        node_selector=dict(cfg.node_selector) or None,
        tolerations=[k8s.V1Toleration(**t) for t in cfg.tolerations] or None,
        volumes=volumes, volume_mounts=mounts,
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=sec["runAsUser"], run_as_group=sec["runAsGroup"],
            fs_group=sec["fsGroup"], seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False, capabilities=k8s.V1Capabilities(drop=["ALL"])),
        service_account_name=cfg.service_account,
        automount_service_account_token=False,  # training needs no Kubernetes API access
        image_pull_secrets=[k8s.V1LocalObjectReference(name=n) for n in cfg.image_pull_secrets] or None,
        deferrable=True, get_logs=True, on_finish_action="delete_succeeded_pod",
        **kwargs,
    )


# ---------------------------------------------------------------- the launcher

class KubernetesLauncher:
    """Spark stages via spark-submit to k8s; training as an MPIJob, waited on until it ends."""

    kind = "kubernetes"

    def __init__(self, cfg: ClusterConfig | None = None, settings: Settings | None = None,
                 api: Any = None, sleep: Callable[[float], None] = time.sleep):
        self.cfg = cfg or ClusterConfig.from_env()
        self.settings = settings
        self._api = api  # (CustomObjectsApi, CoreV1Api); injected by tests
        self._sleep = sleep

    def spark(self, job: str, args: list[str]) -> None:
        s = self.settings or get_settings()
        run(spark_submit_k8s_command(job, args, self.cfg, s), env=job_env(s), what=f"spark job {job} (k8s)")

    def apis(self):
        if self._api is None:
            try:
                from kubernetes import client, config
            except ImportError as exc:
                raise LaunchError("the kubernetes launcher needs the `kubernetes` package "
                                  "(pip install apache-airflow-providers-cncf-kubernetes)") from exc
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self._api = (client.CustomObjectsApi(), client.CoreV1Api())
        return self._api

    def train(self, module: str, args: list[str], np: int | None = None, *, name: str = "",
              env: dict[str, str] | None = None) -> None:
        """Create the MPIJob (replacing a leftover of an earlier try) and wait here for it to end.

        Airflow tasks that should not hold a worker slot while it runs use
        :class:`ops.launch.mpijob_wait.MPIJobOperator` instead: the same :meth:`submit`, then a trigger."""
        name = self.submit(module, args, np, name=name, env=env)
        custom, core = self.apis()
        while True:
            job = self._get(custom, name)
            state = mpijob_state(job) if job is not None else "Gone"
            if state == "Succeeded":
                return
            if state in ("Failed", "Gone"):
                raise self.failure(name, module, job)
            self._sleep(self.cfg.poll_seconds)

    def submit(self, module: str, args: list[str], np: int | None = None, *, name: str = "",
               env: dict[str, str] | None = None) -> str:
        """Create the MPIJob, first deleting one of the same name left by an earlier try (training
        resumes from its checkpoint); return its name."""
        custom, _ = self.apis()
        name = name or job_name(module)
        body = mpijob_manifest(module, args, self.cfg, name, np, env)
        ns = self.cfg.namespace
        if self._get(custom, name) is not None:
            custom.delete_namespaced_custom_object(MPI_GROUP, MPI_VERSION, ns, MPI_PLURAL, name)
            print(f"[crawl2model] deleting MPIJob {ns}/{name} left by an earlier try", flush=True)
            while self._get(custom, name) is not None:
                self._sleep(self.cfg.poll_seconds)
        custom.create_namespaced_custom_object(MPI_GROUP, MPI_VERSION, ns, MPI_PLURAL, body)
        command = secret_env.mask(" ".join(cluster_horovodrun_command(module, args, self.cfg, np)))
        print(f"[crawl2model] created MPIJob {ns}/{name}: {command}", flush=True)
        return name

    def failure(self, name: str, module: str, job: dict | None) -> LaunchError:
        """The error for a job that failed (``job``: its last state) or disappeared (``None``)."""
        ns = self.cfg.namespace
        if job is None:
            return LaunchError(f"MPIJob {ns}/{name} disappeared while running; was it deleted by hand?")
        _, core = self.apis()
        return LaunchError(f"MPIJob {ns}/{name} ({module}) failed: {mpijob_reason(job)}. See "
                           f"`kubectl -n {ns} logs -l training.kubeflow.org/job-name={name}`.",
                           tail=self.launcher_tail(core, name))

    def _get(self, custom, name: str) -> dict | None:
        try:
            return custom.get_namespaced_custom_object(MPI_GROUP, MPI_VERSION, self.cfg.namespace,
                                                       MPI_PLURAL, name)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    def launcher_tail(self, core, name: str) -> list[str]:
        """The launcher pod's last lines (where horovodrun prints every rank's output)."""
        selector = f"training.kubeflow.org/job-name={name},training.kubeflow.org/job-role=launcher"
        try:
            pods = core.list_namespaced_pod(self.cfg.namespace, label_selector=selector).items
            if not pods:
                return []
            text = core.read_namespaced_pod_log(pods[-1].metadata.name, self.cfg.namespace,
                                                tail_lines=TAIL_LINES)
        except Exception as exc:  # the logs are a courtesy; the failure is reported anyway
            return [f"(could not read the launcher's log: {exc})"]
        return text.splitlines()[-TAIL_LINES:]


def mpijob_state(job: dict) -> str:
    """``Succeeded``, ``Failed`` or ``Running`` from an MPIJob's status conditions."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Succeeded", "Failed") and str(cond.get("status")) == "True":
            return cond["type"]
    return "Running"


def mpijob_reason(job: dict) -> str:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed":
            return f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")
    return "no reason given"
