"""Pick the launcher by configuration (``C2M_LAUNCHER=local|kubernetes|podman``), so the same task
code runs on a laptop and on a cluster.

``local`` (:mod:`ops.launch.local`) runs spark-submit and horovodrun through the jobs venv on this
machine; ``kubernetes`` (:mod:`ops.launch.kubernetes`) runs Spark on Kubernetes and Horovod as an
MPIJob; ``podman`` (:mod:`ops.launch.podman`) runs the jobs as containers from the images
`make images` builds, on this machine. This module sits above all three, which import only
:mod:`ops.launch.local`, so no launcher imports the chooser.
"""
from __future__ import annotations

import os

from ops.launch.kubernetes.launcher import KubernetesLauncher
from ops.launch.local import Launcher, LaunchError, LocalLauncher
from ops.launch.podman import PodmanLauncher
from ops.launch.settings import Settings

LAUNCHER_ENV = "C2M_LAUNCHER"
LAUNCHER_KINDS = ("local", "kubernetes", "podman")


def launcher_kind(value: str | None = None) -> str:
    """The launcher to use: ``value`` (e.g. an Airflow Variable), else $C2M_LAUNCHER, else local."""
    kind = (value or os.environ.get(LAUNCHER_ENV) or "local").strip().lower()
    if kind not in LAUNCHER_KINDS:
        raise LaunchError(f"unknown launcher {kind!r} (from {'the argument' if value else LAUNCHER_ENV}); "
                          f"choose one of {', '.join(LAUNCHER_KINDS)}")
    return kind


def get_launcher(kind: str | None = None, settings: Settings | None = None, **cluster) -> Launcher:
    """The launcher for ``kind`` (see :func:`launcher_kind`); cluster options go to the cluster one."""
    chosen = launcher_kind(kind)
    if chosen == "local":
        return LocalLauncher(settings)
    if chosen == "podman":
        return PodmanLauncher(settings)
    return KubernetesLauncher(settings=settings, **cluster)
