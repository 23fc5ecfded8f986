"""Training as a Kubeflow MPIJob (kubeflow.org/v2beta1, the shape of the Helm chart's
``templates/training`` template): a CPU launcher pod runs ``horovodrun --hostfile`` over N
worker pods of the trainer image. :func:`mpijob_manifest` builds the object; :func:`mpijob_state`
and :func:`mpijob_reason` read its status. The launcher pod gets no Secret: it only runs
horovodrun over ssh; the workers run the ranks and mount them (:mod:`ops.launch.kubernetes.pods`).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from ops.launch.kubernetes.cluster import ClusterConfig
from ops.launch.kubernetes.pods import (CONTAINER_SECURITY, SECRET_DIR, SECRET_VOLUME, env_list, pod_security,
                                        rank_entry, secret_volume, worker_resources)
from ops.launch.local import LaunchError

MPI_GROUP, MPI_VERSION, MPI_PLURAL = "kubeflow.org", "v2beta1", "mpijobs"
HOSTFILE = "/etc/mpi/hostfile"  # written by the MPI operator into the launcher pod
SSH_PORT = 2222  # the trainer image's sshd port (docker/trainer/Dockerfile ARG SSH_PORT)
SSH_DIR = "/home/c2m/.ssh"
SSHD_CONFIG = "/home/c2m/.sshd_config"


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
    return cmd + [f"{cfg.trainer_venv}/bin/python", *rank_entry(module, cfg), *[str(a) for a in args]]


def _container(cfg: ClusterConfig, name: str, command: list[str], resources: dict,
               env: dict[str, str] | None) -> dict:
    c: dict[str, Any] = {"name": name, "image": cfg.trainer_image, "imagePullPolicy": "IfNotPresent",
                         "command": command, "env": env_list(cfg, env)}
    if cfg.platform_configmap:
        c["envFrom"] = [{"configMapRef": {"name": cfg.platform_configmap}}]
    c["securityContext"] = json.loads(json.dumps(CONTAINER_SECURITY))
    c["resources"] = resources
    return c


def _pod_spec(cfg: ClusterConfig, container: dict, gpu_node: bool) -> dict:
    spec: dict[str, Any] = {"automountServiceAccountToken": False}
    if cfg.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in cfg.image_pull_secrets]
    spec["securityContext"] = pod_security(cfg)
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
