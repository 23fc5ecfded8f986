"""The podman launcher's commands: host network, the data root mounted, the job environment passed
by name only (never NAME=value on the command line), training secrets through the 0600 file."""
from __future__ import annotations

import dataclasses
import json
import os

import pytest

from ops.lake import secret_env
from ops.launch import podman
from ops.launch.choose import get_launcher
from ops.launch.local import LaunchError
from ops.launch.podman import PODMAN_RUN, PodmanLauncher
from ops.launch.settings import get_settings

SECRET = "s3cr3t-value-for-the-test"


@pytest.fixture
def launcher(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("C2M_SPARK_IMAGE", "localhost/c2m-spark-under-test:1")
    monkeypatch.delenv("C2M_SPARK_DRIVER_JAVA_OPTIONS", raising=False)
    settings = dataclasses.replace(get_settings(), data_root=str(tmp_path / "data"))
    return PodmanLauncher(settings), settings


def env_names(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, part in enumerate(cmd) if part == "--env"]


def test_c2m_launcher_podman_selects_it(monkeypatch):
    monkeypatch.setenv("C2M_LAUNCHER", "podman")
    assert isinstance(get_launcher(), PodmanLauncher)


def test_spark_runs_in_the_spark_image_with_the_environment_by_name(launcher, tmp_path):
    pl, settings = launcher
    cmd, env = pl.spark_command("clean", ["--version", "v1"])
    assert cmd[:len(PODMAN_RUN)] == list(PODMAN_RUN) and "--network=host" in cmd
    assert cmd[cmd.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"
    root = str(tmp_path / "data")
    assert f"{root}:{root}:rw" in cmd and (tmp_path / "data").is_dir()
    img = cmd.index("localhost/c2m-spark-under-test:1")
    inner = cmd[img + 1:]
    assert inner[0] == "spark-submit" and inner[-4:] == [podman.IMAGE_ENTRY, "clean", "--version", "v1"]
    assert ["--driver-java-options", "-XX:TieredStopAtLevel=1"] == inner[-6:-4]
    # Every variable of the job goes in by name; its value stays in podman's environment.
    assert "AWS_SECRET_ACCESS_KEY" in env_names(cmd[:img]) and env["AWS_SECRET_ACCESS_KEY"] == SECRET
    assert set(env_names(cmd[:img])) == set(env)
    assert not any(SECRET in part or part.startswith("AWS_SECRET_ACCESS_KEY=") for part in cmd)
    # The host's venv paths mean nothing in the image.
    assert not {"PATH", "PYSPARK_PYTHON", "HOME", "C2M_JOBS_VENV"} & set(env)
    assert env["C2M_DATA_ROOT"] == root and env["SPARK_LOCAL_IP"] == settings.host


def test_an_unknown_spark_job_is_refused(launcher):
    with pytest.raises(LaunchError, match="no Spark stage 'nope'"):
        launcher[0].spark_command("nope", [])


def test_training_secrets_travel_in_the_mounted_0600_file_not_by_name(launcher, monkeypatch):
    pl, _ = launcher
    monkeypatch.setenv("C2M_TRAINER_IMAGE", "localhost/c2m-trainer-under-test:1")
    job, secrets = pl.train_env({"MLFLOW_RUN_NAME": "r1"})
    assert secrets == {"AWS_SECRET_ACCESS_KEY": SECRET} and job["MLFLOW_RUN_NAME"] == "r1"
    path = secret_env.write_env_file(secrets)
    try:
        job[secret_env.ENV_FILE_VAR] = str(path)
        cmd = pl.train_command("training.pretrain", ["--steps", "3"], 2, job, path)
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert json.loads(path.read_text()) == secrets
    finally:
        secret_env.remove_env_file(path)
    img = cmd.index("localhost/c2m-trainer-under-test:1")
    assert f"{path}:{path}:ro" in cmd[:img]
    names = env_names(cmd[:img])
    assert secret_env.ENV_FILE_VAR in names and "AWS_SECRET_ACCESS_KEY" not in names
    assert not any(SECRET in part for part in cmd)
    assert cmd[img + 1:] == ["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo",
                             "--network-interfaces", "lo", podman.IMAGE_PYTHON,
                             "-m", "ops.lake.secret_env", "training.pretrain", "--steps", "3"]


def test_an_s3_data_root_mounts_nothing(launcher):
    _, settings = launcher
    assert podman.data_mounts(dataclasses.replace(settings, data_root="s3://bucket/data")) == []


def _task_env(try_number: int, task: str = "refine.clean", map_index: int = -1) -> dict[str, str]:
    return {"C2M_AIRFLOW_DAG_ID": "data_refresh", "C2M_AIRFLOW_RUN_ID": "manual__1", "C2M_AIRFLOW_TASK_ID": task,
            "C2M_AIRFLOW_MAP_INDEX": str(map_index), "C2M_AIRFLOW_TRY_NUMBER": str(try_number)}


def test_every_try_of_a_task_names_its_container_alike_and_replaces_a_leftover(launcher, monkeypatch):
    pl, _ = launcher
    names = set()
    for try_number in (1, 2):
        for name, value in _task_env(try_number).items():
            monkeypatch.setenv(name, value)
        cmd, _ = pl.spark_command("clean", ["--version", "v1"])
        at = cmd.index("--name")
        assert cmd[at + 2] == "--replace" and at < cmd.index("localhost/c2m-spark-under-test:1")
        names.add(cmd[at + 1])
    assert len(names) == 1
    others = {podman.container_name(_task_env(1, task="refine.dedup"), "spark"),
              podman.container_name(_task_env(1, map_index=0), "spark"),
              podman.container_name(_task_env(1), "trainer")}
    assert len(others | names) == 4
    assert podman.container_name({"C2M_AIRFLOW_DAG_ID": "d"}, "spark") is None  # outside Airflow: no name


def test_outside_airflow_containers_are_not_named(launcher, monkeypatch):
    pl, _ = launcher
    for name in podman.TASK_IDS:
        monkeypatch.delenv(name, raising=False)
    cmd, _ = pl.spark_command("clean", ["--version", "v1"])
    podman_part = cmd[:cmd.index("localhost/c2m-spark-under-test:1")]  # spark-submit has a --name too
    assert "--name" not in podman_part and "--replace" not in podman_part
