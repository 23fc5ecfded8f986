"""Exact resume after a real crash: kill -9 every rank of a horovodrun job, rerun, match an unbroken run.

The reference trains N steps under ``horovodrun -np 2`` without interruption. A second job
with the same flags is killed with SIGKILL (launcher and both ranks at once) as soon as its
step-N/2 checkpoint is on disk, then started again with the same command. It must resume
from that checkpoint and end with bit-identical weights and the same losses, and keep
logging to the same MLflow run.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ops.launch.local import horovodrun_command, job_env
from ops.launch.settings import get_settings

N = 40
HALF = N // 2


def _args(shards_uri, tmp: Path, name: str):
    return [
        "--shards",
        shards_uri,
        "--max-steps",
        str(N),
        "--batch-size",
        "4",
        "--lr",
        "3e-3",
        "--warmup-steps",
        "5",
        "--eval-every",
        "10",
        "--eval-batches",
        "2",
        "--log-every",
        "5",
        "--checkpoint-every",
        str(HALF),
        "--keep-last",
        "3",
        "--checkpoint-dir",
        str(tmp / f"ckpt-{name}"),
        "--experiment",
        "pretrain-kill-test",
        "--register-name",
        "c2m-base-kill-test",
        "--promote",
        "never",
        "--run-name",
        name,
        "--result-file",
        str(tmp / f"{name}.json"),
    ]


def _horovodrun():
    path = get_settings().jobs_venv / "bin" / "horovodrun"
    if not path.exists():
        message = f"{path} is missing: build Horovod with ops/install/build_horovod.sh"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _env(mlflow_uri):
    return {**job_env(), "MLFLOW_TRACKING_URI": mlflow_uri, "OMP_NUM_THREADS": "1"}


def _run(args, mlflow_uri, tmp):
    proc = subprocess.run(
        horovodrun_command("training.pretrain", args, np=2),
        env=_env(mlflow_uri),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"horovodrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )


def _kill_tree(job: subprocess.Popen) -> list[int]:
    """SIGKILL the launcher and every descendant (the ranks) at once; return the pids killed."""
    import psutil

    ranks = psutil.Process(job.pid).children(recursive=True)
    for p in [*ranks, psutil.Process(job.pid)]:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    job.wait(timeout=30)  # reaped by Popen itself, so it sees the signal
    psutil.wait_procs(ranks, timeout=30)
    return [job.pid] + [p.pid for p in ranks]


def test_kill_minus_nine_all_ranks_then_resume_matches_an_uninterrupted_run(shards_uri, mlflow_uri, tmp_path):
    _horovodrun()
    _run(_args(shards_uri, tmp_path, "reference"), mlflow_uri, tmp_path)
    reference = json.loads((tmp_path / "reference.json").read_text())

    args = _args(shards_uri, tmp_path, "crashed")
    ckpt = tmp_path / "ckpt-crashed"
    job = subprocess.Popen(
        horovodrun_command("training.pretrain", args, np=2),
        env=_env(mlflow_uri),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not (ckpt / f"step-{HALF:08d}.pt").exists():
        assert job.poll() is None, (
            f"the job ended before its step-{HALF} checkpoint:\n{job.stdout.read()[-3000:]}"
        )
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.01)
    killed = _kill_tree(job)
    output = job.stdout.read().decode(errors="replace")
    assert len(killed) >= 3, killed  # horovodrun and (at least) the two ranks
    assert job.returncode == -signal.SIGKILL
    saved = sorted(p.name for p in ckpt.glob("step-*.pt"))
    assert saved == [f"step-{HALF:08d}.pt"], (saved, output[-2000:])  # killed mid-run, before the end
    assert not (tmp_path / "crashed.json").exists()

    _run(args, mlflow_uri, tmp_path)  # the same command again
    resumed = json.loads((tmp_path / "crashed.json").read_text())
    assert resumed["steps"] == N and resumed["ranks_agree"]
    assert resumed["params_sha256"] == reference["params_sha256"]  # bit-identical weights
    assert resumed["train_loss"] == reference["train_loss"] and resumed["val_loss"] == reference["val_loss"]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    import torch

    first_run = torch.load(ckpt / f"step-{HALF:08d}.pt", weights_only=True)["train_state"]["mlflow_run_id"]
    assert resumed["run_id"] == first_run  # the crashed run continues
    losses = client.get_metric_history(resumed["run_id"], "train/loss")
    assert sorted({m.step for m in losses}) == list(range(1, N + 1))
