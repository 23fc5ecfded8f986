"""Training on one multi-GPU pod (all ranks local, ``horovodrun -H localhost:N``) as a deferrable
KubernetesPodOperator. For one node; more nodes take an MPIJob (:mod:`ops.launch.kubernetes.mpijob`).
The pod gets what an MPIJob's workers get (:mod:`ops.launch.kubernetes.pods`)."""
from __future__ import annotations

from dataclasses import replace

from ops.launch.kubernetes.cluster import ClusterConfig
from ops.launch.kubernetes.pods import (SECRET_DIR, SECRET_FILE_MODE, SECRET_VOLUME, env_list, pod_security,
                                        rank_entry, secret_volume, worker_resources)


def single_pod_horovodrun_command(module: str, args: list[str], cfg: ClusterConfig, np: int) -> list[str]:
    """All ranks in one pod: exactly ``horovodrun_command``'s shape with the trainer venv."""
    return [f"{cfg.trainer_venv}/bin/horovodrun", "-np", str(np), "-H", f"localhost:{np}", "--gloo",
            "--network-interfaces", "lo", f"{cfg.trainer_venv}/bin/python", *rank_entry(module, cfg),
            *[str(a) for a in args]]


def training_pod_operator(module: str, args: list[str], cfg: ClusterConfig, np: int, task_id: str = "train",
                          name: str = "c2m-train", env: dict[str, str] | None = None, **kwargs):
    """A deferrable KubernetesPodOperator training on one multi-GPU pod (all ranks local).

    For one node; more nodes take :func:`ops.launch.kubernetes.mpijob.mpijob_manifest`. Needs the
    cncf-kubernetes provider (the Airflow venv and images have it).
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    res = worker_resources(replace(cfg, gpu_per_worker=np if cfg.gpu_per_worker else 0))
    cmd = single_pod_horovodrun_command(module, args, cfg, np)
    env_vars = [k8s.V1EnvVar(name=e["name"], value=e["value"]) for e in env_list(cfg, env)]
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
    sec = pod_security(cfg)
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
