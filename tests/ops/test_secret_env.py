"""Secrets on their way to jobs: the allow-listed job environment, masking, the 0600 env file."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid

import pytest

from ops.lake import secret_env
from ops.launch import local
from ops.launch.kubernetes import cluster, pods
from ops.launch.settings import Settings

AIRFLOW_SECRETS = {
    "AIRFLOW__CORE__FERNET_KEY": "fernet-" + uuid.uuid4().hex,
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql://airflow:{uuid.uuid4().hex}@db/airflow",
    "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
    "AIRFLOW_CONN_C2M_S3": f"aws://key:{uuid.uuid4().hex}@",
}


def test_job_env_drops_the_airflow_task_settings_and_keeps_what_jobs_need(monkeypatch, tmp_path):
    for name, value in AIRFLOW_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SOME_UNRELATED_TOKEN", "x" * 12)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mlflow-pw")
    monkeypatch.setenv("C2M_SHARD_CACHE", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("PYTHONPATH", "/airflow/venv/site")
    env = local.job_env(Settings(jobs_venv=tmp_path / "venv"))
    assert not set(AIRFLOW_SECRETS) & set(env)
    assert not [k for k in env if k.startswith("AIRFLOW")]
    assert "SOME_UNRELATED_TOKEN" not in env
    assert env["PYTHONPATH"] == str(Settings().repo_root)  # this checkout only, not the caller's path
    assert env["AWS_SECRET_ACCESS_KEY"] == "aws-secret-value"  # jobs need these: by environment only
    assert env["MLFLOW_TRACKING_PASSWORD"] == "mlflow-pw"
    assert env["C2M_SHARD_CACHE"] == str(tmp_path) and env["OMP_NUM_THREADS"] == "3"
    assert env["PATH"].startswith(str(tmp_path / "venv" / "bin"))


@pytest.mark.parametrize("name, secret", [
    ("AWS_SECRET_ACCESS_KEY", True), ("AWS_ACCESS_KEY_ID", True), ("AWS_SESSION_TOKEN", True),
    ("AIRFLOW__CORE__FERNET_KEY", True), ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", True),
    ("MLFLOW_TRACKING_PASSWORD", True), ("MLFLOW_TRACKING_TOKEN", True), ("HF_TOKEN", True),
    ("C2M_OPTUNA_STORAGE", True), ("AIRFLOW_CONN_C2M_S3", True),
    ("TOKENIZERS_PARALLELISM", False), ("AWS_REGION", False), ("MLFLOW_TRACKING_URI", False),
    ("C2M_ALLOW_PRIVATE", False), ("PATH", False),
])
def test_secret_names(name, secret):
    assert secret_env.is_secret_name(name) is secret


def test_mask_hides_url_passwords_secret_assignments_and_known_values():
    pw, key = uuid.uuid4().hex, uuid.uuid4().hex
    text = (f"python -m training.hpo --storage postgresql://optuna:{pw}@db:5432/optuna "
            f"AWS_SECRET_ACCESS_KEY={key} OMP_NUM_THREADS=1 sqlite:///f.db?uri=true&password={pw}x")
    masked = secret_env.mask(text)
    assert pw not in masked and key not in masked
    assert "postgresql://optuna:***@db:5432/optuna" in masked and "OMP_NUM_THREADS=1" in masked
    assert "password=***" in masked
    # A value the job prints on its own is hidden when the environment names it a secret.
    assert secret_env.mask(f"error: bad key {key}", {"AWS_SECRET_ACCESS_KEY": key}) == "error: bad key ***"
    assert secret_env.mask(f"a {key}", {"AWS_REGION": key}) == f"a {key}"  # not a secret


def test_split_secrets_and_the_env_file_are_private(tmp_path):
    env = {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "k" * 20, "MLFLOW_TRACKING_URI": "http://u:pw12@h/",
           "C2M_OPTUNA_STORAGE": "sqlite:///x.db"}
    plain, secrets = secret_env.split_secrets(env)
    assert plain == {"PATH": "/bin"}
    assert set(secrets) == {"AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_URI", "C2M_OPTUNA_STORAGE"}
    path = secret_env.write_env_file(secrets)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        loaded: dict[str, str] = {}
        assert secret_env.load_env_file(path, loaded) == sorted(secrets)
        assert loaded == secrets
    finally:
        secret_env.remove_env_file(path)
    assert not path.parent.exists()


def test_the_rank_wrapper_loads_the_file_then_runs_the_module(tmp_path):
    secret = uuid.uuid4().hex
    path = secret_env.write_env_file({"MLFLOW_TRACKING_PASSWORD": secret})
    (tmp_path / "show_env.py").write_text(
        "import os, sys\nprint(os.environ['MLFLOW_TRACKING_PASSWORD'] == sys.argv[1], "
        "'C2M_RANK_ENV_FILE' in os.environ, sys.argv[2:])\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}",
           secret_env.ENV_FILE_VAR: str(path)}
    try:
        out = subprocess.run([sys.executable, "-m", "ops.lake.secret_env", "show_env", secret, "--x", "1"],
                             env=env, capture_output=True, text=True, check=True).stdout
    finally:
        secret_env.remove_env_file(path)
    assert out.strip() == "True False ['--x', '1']"


def test_run_masks_the_command_the_output_and_the_error(capsys):
    pw, key = uuid.uuid4().hex, uuid.uuid4().hex
    code = "import os, sys; print('key is', os.environ['AWS_SECRET_ACCESS_KEY']); sys.exit(3)"
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": key}
    with pytest.raises(local.LaunchError) as err:
        local.run([sys.executable, "-c", code, f"postgresql://u:{pw}@db/x"], env=env, what="leaky job")
    out = capsys.readouterr().out
    assert "key is ***" in out and "postgresql://u:***@db/x" in out
    for text in (out, str(err.value)):
        assert pw not in text and key not in text
    assert err.value.returncode == 3


def test_cluster_jobs_get_secrets_from_mounted_secrets_only():
    cfg = cluster.ClusterConfig(secret_env={"C2M_OPTUNA_STORAGE": "c2m-optuna",
                                                   "MLFLOW_TRACKING_PASSWORD": "c2m-mlflow-auth:password"})
    env = pods.env_list(cfg, {"C2M_OPTUNA_STORAGE": "postgresql://o:pw@db/o", "C2M_X": "1"})
    by_name = {e["name"]: e for e in env}
    assert "C2M_OPTUNA_STORAGE" not in by_name and "MLFLOW_TRACKING_PASSWORD" not in by_name
    assert not [e for e in env if "valueFrom" in e] and "pw@" not in json.dumps(env)
    assert by_name[secret_env.ENV_DIR_VAR] == {"name": secret_env.ENV_DIR_VAR, "value": pods.SECRET_DIR}
    assert by_name["C2M_X"] == {"name": "C2M_X", "value": "1"}
    assert pods.secret_volume(cfg)["projected"]["sources"] == [
        {"secret": {"name": "c2m-optuna", "items": [{"key": "C2M_OPTUNA_STORAGE", "path": "C2M_OPTUNA_STORAGE"}]}},
        {"secret": {"name": "c2m-mlflow-auth", "items": [{"key": "password", "path": "MLFLOW_TRACKING_PASSWORD"}]}}]
    with pytest.raises(local.LaunchError, match="secret_env"):
        pods.env_list(cluster.ClusterConfig(), {"C2M_OPTUNA_STORAGE": "pg://o:p@db/o"})


def _secret_volume(root, values: dict[str, str], mode: int = 0o440):
    """A folder laid out as the kubelet mounts a Secret: files behind ``..data``, read-only."""
    data = root / "..2026_01_01_00_00_00.1"
    data.mkdir(parents=True)
    for name, value in values.items():
        (data / name).write_text(value)
        (data / name).chmod(mode)
        (root / name).symlink_to(os.path.join("..data", name))
    (root / "..data").symlink_to(data.name)
    return root


def test_the_rank_wrapper_loads_a_mounted_secret_named_by_a_plain_variable(tmp_path):
    """$C2M_RANK_ENV_DIR names the folder; the name is not a secret's, so it travels as plain env
    (horovodrun exports it, the MPIJob may carry it in clear) while the values stay in the files."""
    for var in (secret_env.ENV_DIR_VAR, secret_env.ENV_FILE_VAR):
        assert not secret_env.is_secret_name(var), var
        assert secret_env.split_secrets({var: "/var/run/secrets/crawl2model"})[1] == {}
    values = {"MLFLOW_TRACKING_PASSWORD": uuid.uuid4().hex, "AWS_SECRET_ACCESS_KEY": uuid.uuid4().hex + "\n"}
    folder = _secret_volume(tmp_path / "secrets", values)
    (tmp_path / "show_env.py").write_text(
        "import json, os, sys\nprint(json.dumps([{n: os.environ.get(n) for n in %r},\n"
        "    'C2M_RANK_ENV_DIR' in os.environ, '..data' in os.environ, sys.argv[1:]]))\n" % sorted(values))
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}",
           secret_env.ENV_DIR_VAR: str(folder)}
    out = subprocess.run([sys.executable, "-m", "ops.lake.secret_env", "show_env", "--x", "1"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [values, False, False, ["--x", "1"]]  # exact bytes, as a secretKeyRef gives them
    env[secret_env.ENV_DIR_VAR] = str(tmp_path / "missing")
    failed = subprocess.run([sys.executable, "-m", "ops.lake.secret_env", "show_env"], env=env, capture_output=True,
                            text=True)
    assert failed.returncode != 0 and "mount the job's Secret" in failed.stderr


def test_ranks_start_through_the_wrapper_only_when_there_are_secrets():
    plain = local.horovodrun_command("training.pretrain", ["--x", "1"], np=2)
    wrapped = local.horovodrun_command("training.pretrain", ["--x", "1"], np=2, secrets_file=True)
    assert plain[-4:] == ["-m", "training.pretrain", "--x", "1"]
    assert wrapped[-5:] == ["-m", "ops.lake.secret_env", "training.pretrain", "--x", "1"]
    assert wrapped[:-5] == plain[:-4]
