"""Jobs as containers: spark-submit and horovodrun inside the images that `make images` builds.

``C2M_LAUNCHER=podman`` runs each Spark stage in a container from the Spark image and each training
run in one from the trainer image, on this machine, the way a Kubernetes deployment runs them in
pods: the host network (the stack's MLflow and S3 servers on 127.0.0.1 stay reachable), a local data
root mounted at the same path, and the caller's uid, so what a job writes stays the caller's.

The job environment (:func:`ops.launch.local.job_env`, allow-listed by :mod:`ops.lake.secret_env`) goes in by
name only (``--env NAME``): podman takes each value from its own environment, so no value, secret or
not, is on a command line. Training secrets still go through the 0600 file of
:mod:`ops.lake.secret_env` (mounted read-only), because horovodrun writes its environment into the ranks'
command lines inside the container.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ops.lake import secret_env
from ops.launch import local
from ops.launch.settings import Settings, get_settings

IMAGE_TAG = "0.1.0"
SPARK_IMAGE_ENV = "C2M_SPARK_IMAGE"
TRAINER_IMAGE_ENV = "C2M_TRAINER_IMAGE"
# This sandbox needs runc (crun fails on hybrid cgroups) and rlimits no higher than the host's.
PODMAN_RUN = ("podman", "--runtime", "runc", "run", "--rm", "--network=host",
              "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
# The images' own venv (docker/spark and docker/trainer): the package is installed there.
IMAGE_PYTHON = "/opt/venv/bin/python"
IMAGE_ENTRY = "/opt/venv/lib/python3.11/site-packages/spark_jobs/__main__.py"
# Host paths and identity that mean nothing inside an image, which sets its own.
HOST_ONLY = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "HOSTNAME", "TMPDIR", "JAVA_HOME",
                       "SPARK_HOME", "C2M_JOBS_VENV", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"})


def image(kind: str) -> str:
    """The image for ``kind`` (spark, trainer): $C2M_<KIND>_IMAGE, else the one `make images` tags."""
    var = {"spark": SPARK_IMAGE_ENV, "trainer": TRAINER_IMAGE_ENV}[kind]
    return os.environ.get(var) or f"localhost/crawl2model-{kind}:{IMAGE_TAG}"


def container_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in HOST_ONLY}


def data_mounts(s: Settings) -> list[str]:
    """A local data root is mounted at its own path; an s3:// one needs nothing mounted."""
    if "://" in s.data_root:
        return []
    Path(s.data_root).mkdir(parents=True, exist_ok=True)
    return ["-v", f"{s.data_root}:{s.data_root}:rw"]


# The Airflow task a job runs for (ops.dagkit.tracking.tracking_env), without its try number.
TASK_IDS = ("C2M_AIRFLOW_DAG_ID", "C2M_AIRFLOW_RUN_ID", "C2M_AIRFLOW_TASK_ID", "C2M_AIRFLOW_MAP_INDEX")


def container_name(env: dict[str, str], kind: str) -> str | None:
    """One name per Airflow task instance and kind, the same for every try; None outside Airflow.

    Run with ``--replace``, a retry removes the container a killed worker left running (its
    ``podman run`` client died with the worker, the container did not), so two tries of one
    task never run at once."""
    if not all(env.get(k) for k in TASK_IDS[:3]):
        return None
    key = "\0".join([kind, *(env.get(k, "") for k in TASK_IDS)])
    return f"c2m-{kind}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def podman_command(img: str, env_names, inner: list[str], mounts: list[str], name: str | None = None) -> list[str]:
    """``podman run`` of ``inner`` in ``img``; ``env_names`` pass by name, never as NAME=value."""
    names = [f for n in sorted(env_names) for f in ("--env", n)]
    named = ["--name", name, "--replace"] if name else []
    return [*PODMAN_RUN, *named, "--user", f"{os.getuid()}:{os.getgid()}", *mounts, *names, img, *inner]


def spark_inner(job: str, args: list[str], s: Settings) -> list[str]:
    """The image's spark-submit with the local launcher's options, on the stages' entry file in the image."""
    local.check_stage(job)
    java = local.LOCAL_JAVA_OPTIONS.get(job) if s.spark_master.startswith("local") else None
    java = os.environ.get("C2M_SPARK_DRIVER_JAVA_OPTIONS", java)
    return [
        "spark-submit", "--master", s.spark_master, "--name", f"crawl2model-{job}",
        "--conf", "spark.ui.enabled=false",
        "--conf", f"spark.driver.host={s.host}", "--conf", f"spark.driver.bindAddress={s.host}",
        "--conf", "spark.sql.shuffle.partitions=8",
        "--driver-memory", os.environ.get("C2M_SPARK_DRIVER_MEMORY", "2g"),
        *(["--driver-java-options", java] if java else []),
        IMAGE_ENTRY, job, *args,
    ]


def horovod_inner(module: str, args: list[str], n: int, secrets_file: bool) -> list[str]:
    entry = ["-m", "ops.lake.secret_env", module] if secrets_file else ["-m", module]
    return ["horovodrun", "-np", str(n), "-H", f"localhost:{n}", "--gloo", "--network-interfaces", "lo",
            IMAGE_PYTHON, *entry, *args]


class PodmanLauncher:
    """Spark stages and training runs as podman containers from the crawl2model images."""

    kind = "podman"

    def __init__(self, settings: Settings | None = None):
        self.settings = settings

    def spark_command(self, job: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
        s = self.settings or get_settings()
        env = container_env(local.job_env(s))
        env["SPARK_LOCAL_IP"] = s.host
        return podman_command(image("spark"), env, spark_inner(job, args, s), data_mounts(s),
                              container_name(env, "spark")), env

    def spark(self, job: str, args: list[str]) -> None:
        cmd, env = self.spark_command(job, args)
        local.run(cmd, env={**os.environ, **env}, what=f"spark job {job} (podman)", mask_env=env)

    def train_env(self, env: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
        """(the ranks' environment, its secrets): the secrets go to the 0600 file, not to podman."""
        s = self.settings or get_settings()
        job = container_env({**local.job_env(s), **(env or {})})
        job.setdefault("OMP_NUM_THREADS", "1")
        job.setdefault("HOROVOD_START_TIMEOUT", "120")
        return secret_env.split_secrets(job)

    def train_command(self, module: str, args: list[str], np: int | None, job: dict[str, str],
                      secrets_path: Path | None = None) -> list[str]:
        s = self.settings or get_settings()
        n = np if np is not None else s.train_np
        if n < 1:
            raise local.LaunchError(f"np={n}: need at least one training process")
        mounts = data_mounts(s)
        if secrets_path is not None:
            mounts += ["-v", f"{secrets_path}:{secrets_path}:ro"]
        inner = horovod_inner(module, args, n, secrets_file=secrets_path is not None)
        return podman_command(image("trainer"), job, inner, mounts, container_name(job, "trainer"))

    def train(self, module: str, args: list[str], np: int | None = None, *, name: str = "",
              env: dict[str, str] | None = None) -> None:
        job, secrets = self.train_env(env)
        path = secret_env.write_env_file(secrets) if secrets else None
        try:
            if path is not None:
                job[secret_env.ENV_FILE_VAR] = str(path)
            cmd = self.train_command(module, args, np, job, path)
            local.run(cmd, env={**os.environ, **job}, what=f"training {module} (podman)",
                          mask_env={**job, **secrets})
        finally:
            if path is not None:
                secret_env.remove_env_file(path)
