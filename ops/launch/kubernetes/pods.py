"""What every pod that runs training ranks gets, in an MPIJob's workers or in the single training
pod: the rank's entry (through ``ops.lake.secret_env`` when the job has Secrets), the Secrets
mounted as files, the plain environment, the security contexts and the GPU resources.

Secrets are never in a container's environment: horovodrun exports its whole environment onto
every rank's command line, which ``ps`` shows. They are mounted (:func:`secret_volume`, one
0440 file per variable) and each rank loads them into its own environment.
"""
from __future__ import annotations

import json

from ops.lake import secret_env
from ops.launch.kubernetes.cluster import ClusterConfig
from ops.launch.local import LaunchError

SECRET_DIR = "/var/run/secrets/crawl2model"  # the job's Secrets, on the pods that run ranks
SECRET_VOLUME = "job-secrets"
# Files owned by root and the pod's fsGroup (the image's user): readable by that user only.
SECRET_FILE_MODE = 0o440
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def rank_entry(module: str, cfg: ClusterConfig) -> list[str]:
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


def pod_security(cfg: ClusterConfig) -> dict:
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
            "runAsUser": cfg.uid, "runAsGroup": cfg.uid, "fsGroup": cfg.uid}


def env_list(cfg: ClusterConfig, extra: dict[str, str] | None) -> list[dict]:
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
