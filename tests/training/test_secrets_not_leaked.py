"""Secrets never reach argv, logs, results or MLflow params: a Spark job in S3 mode and an HPO
run on horovodrun, with secrets generated here, while a sampler reads every process's
command line (``/proc/*/cmdline``) over and over. The Spark job is the suite's one real
``spark-submit`` of ``tokenize`` (the job whose file name shadows a stdlib module): its
manifest and its output on the caller's stdout are checked too.

The S3 server is moto's on 127.0.0.1 (it accepts any keys, so the keys are fresh random ones);
the Optuna storage is SQLite, whose URL cannot carry a password, so the generated secret rides
in the URL's query (``password=…``, which SQLite ignores) exactly where a Postgres URL's
password would be a secret: the job must still open its study through it.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from s3_test_server import moto_s3
from test_finetune_tasks import ensure_experiments, register_base, write_classification_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.spark]


class CmdlineSampler(threading.Thread):
    """Reads every process's argv until stopped; records any that holds a secret. The jobs'
    processes (argv with a marker) also have their environment read: the Airflow task's own
    secrets (``forbidden``) must not be in it at all."""

    def __init__(self, secrets: list[str], markers: tuple[str, ...], forbidden: list[str]):
        super().__init__(daemon=True)
        self.secrets, self.markers, self.forbidden = secrets, markers, forbidden
        self.found: list[tuple[str, str]] = []
        self.in_env: list[tuple[str, str]] = []
        self.seen: set[str] = set()  # markers seen in some command line: proof the sampler saw the jobs
        self.scans = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for path in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    job = [m for m in self.markers if m in text]
                    env = (path.parent / "environ").read_bytes().decode(errors="replace") if job else ""
                except OSError:  # the process ended meanwhile
                    continue
                self.found += [(path.parent.name, text[:400]) for s in self.secrets if s in text]
                self.in_env += [(path.parent.name, text[:200]) for s in self.forbidden if s in env]
                self.seen.update(job)
            self.scans += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def _texts(n: int) -> list[str]:
    words = ("the quick brown fox jumps over a lazy dog while seven small birds sing in tall green "
             "trees").split()
    return [" ".join(words[(i + k) % len(words)] for k in range(40)) for i in range(n)]


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


@pytest.fixture
def secrets(monkeypatch):
    """Fresh AWS keys and DB password, the keys in this process's environment (moto takes any)."""
    values = {"key_id": "AKIA" + uuid.uuid4().hex[:16].upper(), "secret_key": uuid.uuid4().hex * 2,
              "db_password": "pw-" + uuid.uuid4().hex, "mlflow_password": "mlpw-" + uuid.uuid4().hex,
              "fernet_key": "fernet-" + uuid.uuid4().hex}
    with moto_s3():
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", values["key_id"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", values["secret_key"])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", values["mlflow_password"])  # unused by file MLflow
        # What a cluster's Airflow task has and a job must never get.
        monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", values["fernet_key"])
        yield values


def test_a_spark_job_in_s3_mode_leaks_no_secret(secrets, tmp_path, monkeypatch, capsys):
    from ops.lake import storage
    from ops.lake.datasets import DatasetVersion
    from ops.launch.local import spark_submit

    bucket = f"c2m-{uuid.uuid4().hex[:12]}"
    storage.ensure_bucket(bucket)
    root = f"s3://{bucket}/data"
    monkeypatch.setenv("C2M_DATA_ROOT", root)
    monkeypatch.setenv("C2M_SPARK_MASTER", "local[2]")
    corpus = tmp_path / "corpus.jsonl"
    rows = [json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(_texts(30))]
    corpus.write_text("\n".join(rows) + "\n")
    watched = [secrets["key_id"], secrets["secret_key"], secrets["db_password"]]
    sampler = CmdlineSampler(watched, ("spark_jobs/__main__.py",), [secrets["fernet_key"]])
    sampler.start()
    try:
        spark_submit("tokenize", ["--version", "sec", "--input-jsonl", str(corpus), "--vocab-size", "512",
                                  "--seq-len", "32"])
    finally:
        sampler.stop()
    out = capsys.readouterr()
    manifest = DatasetVersion(root, "shards", "sec").read_manifest()
    assert manifest["rows_in"] == 30 and manifest["rows_out"] == 30  # it used the keys
    assert manifest["splits"]["train"]["sequences"] > 0
    # The real spark-submit ran tokenize.py, the job whose file name shadows a stdlib module, and
    # the job's output reached the caller's stdout.
    assert "launching spark job tokenize" in out.out
    assert sampler.scans > 10 and sampler.seen == {"spark_jobs/__main__.py"}, (sampler.scans, sampler.seen)
    assert sampler.found == [] and sampler.in_env == []
    assert _leaks(out.out + out.err, watched) == []


def test_an_hpo_run_on_horovodrun_leaks_no_secret(secrets, mlflow_uri, shards_uri, tmp_path, monkeypatch,
                                                  capsys):
    import optuna
    from mlflow import MlflowClient

    from ops.lake import secret_env
    from ops.launch.local import horovodrun

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    ensure_experiments(mlflow_uri, tmp_path, "hpo-secrets-test")
    base = register_base(mlflow_uri, shards_uri, "c2m-base-secrets", tmp_path)
    data = write_classification_jsonl(tmp_path / "cls", n=64)
    db = tmp_path / "optuna.db"
    url = f"sqlite:///file:{db}?mode=rwc&uri=true&password={secrets['db_password']}"
    watched = list(secrets.values()) + [url]
    result_file = tmp_path / "hpo.json"
    args = ["--base-model", base, "--task", "classification", "--data", str(data), "--epochs", "1",
            "--experiment", "hpo-secrets-test", "--study-name", "sec", "--trials", "1", "--no-finalize",
            "--startup-trials", "1", "--result-file", str(result_file)]
    env_files: list[Path] = []

    def recorded(values):
        env_files.append(write_env_file(values))
        return env_files[-1]

    write_env_file = secret_env.write_env_file
    monkeypatch.setattr(secret_env, "write_env_file", recorded)
    sampler = CmdlineSampler(watched, ("horovodrun", "training.hpo"), [secrets["fernet_key"]])
    sampler.start()
    try:
        horovodrun("training.hpo", args, np=1, extra_env={"C2M_OPTUNA_STORAGE": url})
    finally:
        sampler.stop()
    out = capsys.readouterr()

    study = optuna.load_study(study_name="sec", storage=url)  # the job opened the study through the URL
    assert len(study.trials) == 1
    assert sampler.scans > 10 and sampler.seen == {"horovodrun", "training.hpo"}, (sampler.scans,
                                                                                  sampler.seen)
    assert sampler.found == [] and sampler.in_env == []
    assert _leaks(out.out + out.err, watched) == []
    result = result_file.read_text()
    assert _leaks(result, watched) == [] and "password=***" in json.loads(result)["storage"]
    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(json.loads(result)["run_id"])
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert children, "the trial's nested run"
    for r in [run, *children]:
        logged = json.dumps([r.data.params, r.data.tags])
        assert _leaks(logged, watched) == [], r.info.run_name
    assert run.data.params["storage"].endswith("password=***")
    assert len(env_files) == 1 and not env_files[0].exists()  # the ranks' 0600 file is gone afterwards
