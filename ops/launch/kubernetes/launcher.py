"""The Kubernetes launcher: Spark stages through spark-submit to k8s (:mod:`ops.launch.kubernetes.spark`),
training as an MPIJob (:mod:`ops.launch.kubernetes.mpijob`) created through the Kubernetes API and
waited on until it ends. A failed job's error carries the launcher pod's last lines."""
from __future__ import annotations

import time
from typing import Any, Callable

from ops.lake import secret_env
from ops.launch.kubernetes.cluster import ClusterConfig
from ops.launch.kubernetes.mpijob import (MPI_GROUP, MPI_PLURAL, MPI_VERSION, cluster_horovodrun_command,
                                          job_name, mpijob_manifest, mpijob_reason, mpijob_state)
from ops.launch.kubernetes.spark import spark_submit_k8s_command
from ops.launch.local import TAIL_LINES, LaunchError, job_env, run
from ops.launch.settings import Settings, get_settings


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

        This holds the caller for as long as the job trains. The DAGs' training tasks do not call
        it: on Kubernetes the DAG helpers' training operator calls :meth:`submit`, defers to the
        MPIJob trigger (:class:`ops.launch.mpijob_wait.MPIJobTrigger`), so no Airflow worker slot
        is held while the job runs, and reads the job's result file when it resumes."""
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
