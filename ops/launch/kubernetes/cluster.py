"""Where and how jobs run on the cluster: :class:`ClusterConfig`, set from ``C2M_K8S_<FIELD>``
variables or from a mapping (the Airflow Variable ``c2m_cluster``)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

CONFIG_ENV_PREFIX = "C2M_K8S_"


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
