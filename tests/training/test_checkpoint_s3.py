"""Checkpoints under s3:// (a real S3 API, moto's server): save, prune, fall back, resume a killed run.

A checkpoint object only appears once whole (one PUT, or a completed multipart upload), and
carries a digest file, so an object truncated or changed on the server is skipped for the
previous one. The last test kills a real pretrain job whose shards and checkpoints are on
S3 and resumes it to the same weights and losses as an unbroken run on local files.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ops.lake import storage
from s3_test_server import DownloadSpy, s3_bucket, s3_env, upload_tree  # noqa: F401  (fixtures)
from training import checkpoint
from training.data import shard_cache


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Resumed S3 checkpoints land in the shard cache: one per test, not the user's."""
    monkeypatch.setenv("C2M_SHARD_CACHE", str(tmp_path / "cache"))
    shard_cache.forget_verified()


def _state(value: int, numel: int = 4) -> dict:
    return {"x": torch.full((numel,), value, dtype=torch.float32), "data": {"epoch": 0, "consumed": value}}


def _names(uris) -> list[str]:
    return [str(u).rsplit("/", 1)[-1] for u in uris]


def test_save_prune_and_resume_on_s3(s3_bucket):
    directory = storage.join(s3_bucket, "checkpoints", "run")
    for step in (10, 20, 30, 40):
        saved = checkpoint.save(directory, step, _state(step), keep_last=2)
    assert saved == storage.join(directory, "step-00000040.pt")
    assert _names(checkpoint.list_checkpoints(directory)) == ["step-00000030.pt", "step-00000040.pt"]
    assert _names(storage.list_files(directory)) == [  # pruned checkpoints take their digests along
        "step-00000030.pt", "step-00000030.pt.sha256", "step-00000040.pt", "step-00000040.pt.sha256"]
    loaded = checkpoint.load_latest(directory)
    assert loaded["step"] == 40 and loaded["path"] == saved
    assert torch.equal(loaded["x"], _state(40)["x"]) and loaded["data"] == {"epoch": 0, "consumed": 40}


def test_truncated_or_changed_newest_object_falls_back_to_previous(s3_bucket, caplog):
    directory = storage.join(s3_bucket, "ckpt")
    checkpoint.save(directory, 10, _state(1), keep_last=3)
    newest = checkpoint.save(directory, 20, _state(2), keep_last=3)
    whole = storage.read_bytes(newest)

    storage.write_bytes(newest, whole[: len(whole) // 2])  # truncated
    assert checkpoint.load_latest(directory)["step"] == 10
    assert "truncated" in caplog.text and newest in caplog.text

    changed = bytearray(whole)
    changed[len(changed) // 2] ^= 0xFF  # same size, different bytes
    storage.write_bytes(newest, bytes(changed))
    caplog.clear()
    loaded = checkpoint.load_latest(directory)
    assert loaded["step"] == 10 and loaded["x"][0].item() == 1
    assert "sha256 differs" in caplog.text


def test_digest_without_its_checkpoint_and_checkpoint_without_its_digest_are_skipped(s3_bucket, tmp_path):
    """A crash between writing the digest and uploading the checkpoint leaves only the digest;
    a checkpoint put there by hand has no digest, so nothing vouches that it is whole."""
    directory = storage.join(s3_bucket, "ckpt")
    checkpoint.save(directory, 10, _state(1))
    storage.write_text(storage.join(directory, "step-00000020.pt.sha256"), "0" * 64 + " 123\n")
    checkpoint.save(str(tmp_path), 25, _state(2))
    storage.upload_file(tmp_path / "step-00000025.pt", storage.join(directory, "step-00000025.pt"))
    assert checkpoint.load_latest(directory)["step"] == 10
    storage.remove(storage.join(directory, "step-00000025.pt"))
    checkpoint.save(directory, 30, _state(3))
    assert _names(storage.list_files(directory)) == [
        "step-00000010.pt", "step-00000010.pt.sha256", "step-00000030.pt", "step-00000030.pt.sha256"]


def test_ranks_on_one_host_download_a_resumed_checkpoint_once(s3_bucket, monkeypatch):
    """Four loaders at once (threads here; ranks are processes, and the digest's flock serves both):
    one download, then every one loads the same state, and a later load does not download again."""
    from concurrent.futures import ThreadPoolExecutor

    directory = storage.join(s3_bucket, "ckpt")
    newest = checkpoint.save(directory, 20, _state(2, numel=200_000))
    spy = DownloadSpy(monkeypatch)
    with ThreadPoolExecutor(4) as pool:
        states = list(pool.map(lambda _: checkpoint.load_latest(directory), range(4)))
    assert [s["step"] for s in states] == [20] * 4
    assert all(torch.equal(s["x"], states[0]["x"]) for s in states)
    assert spy.uris == [newest]
    shard_cache.forget_verified()  # a new process: it re-hashes the cached copy, downloads nothing
    assert checkpoint.load_latest(directory)["step"] == 20 and spy.uris == [newest]


def test_big_checkpoint_goes_multipart(s3_bucket, monkeypatch):
    monkeypatch.setenv("C2M_S3_MULTIPART_MB", "5")  # S3's smallest part size
    directory = storage.join(s3_bucket, "ckpt")
    big = _state(7, numel=2 * 1024 * 1024)  # 8 MiB of float32: two parts
    uri = checkpoint.save(directory, 1, big)
    bucket, key = storage.split_s3(uri)
    etag = storage.s3_client().head_object(Bucket=bucket, Key=key)["ETag"]
    assert etag.strip('"').endswith("-2")  # a multipart object's ETag counts its parts
    assert torch.equal(checkpoint.load_latest(directory)["x"], big["x"])


def test_empty_prefix_means_fresh_start(s3_bucket):
    assert checkpoint.load_latest(storage.join(s3_bucket, "nothing-here")) is None


# ---- a real pretrain job on S3, killed half-way and resumed ---------------------------------

N = 100  # ~1 s of steps between the half-way checkpoint and the last: time to see one and kill
HALF = N // 2


def _pretrain_args(shards: str, ckpt: str, result: Path, name: str) -> list[str]:
    return ["--shards", shards, "--max-steps", str(N), "--batch-size", "4", "--lr", "3e-3",
            "--warmup-steps", "5", "--eval-every", "25", "--eval-batches", "2", "--log-every", "5",
            "--checkpoint-every", str(HALF), "--keep-last", "3", "--checkpoint-dir", ckpt,
            "--experiment", "pretrain-kill-test", "--register-name", "c2m-base-s3-test", "--promote", "never",
            "--run-name", name, "--result-file", str(result)]


def _pretrain_in_process(args: list[str], mlflow_uri: str) -> dict:
    from training import pretrain

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        return pretrain.main(args)


def test_pretrain_on_s3_killed_half_way_resumes_like_an_unbroken_local_run(
        shards_uri, s3_bucket, mlflow_uri, tmp_path, monkeypatch):
    reference = _pretrain_in_process(
        _pretrain_args(shards_uri, str(tmp_path / "ckpt-local"), tmp_path / "reference.json", "s3-reference"),
        mlflow_uri)

    shards = upload_tree(shards_uri, storage.join(s3_bucket, "shards", "v=t1"))
    ckpt = storage.join(s3_bucket, "checkpoints", "crashed")
    args = _pretrain_args(shards, ckpt, tmp_path / "crashed.json", "s3-crashed")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    job = subprocess.Popen([sys.executable, "-m", "training.pretrain", *args], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    half = storage.join(ckpt, f"step-{HALF:08d}.pt")
    deadline = time.monotonic() + 120
    try:
        while half not in checkpoint.list_checkpoints(ckpt):  # the object itself, not just its digest
            assert job.poll() is None, f"the job ended before its step-{HALF} checkpoint:\n" \
                                       f"{job.stdout.read().decode(errors='replace')[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint on S3 within 120 s"
            time.sleep(0.02)
    finally:
        job.kill()  # SIGKILL: no cleanup, as when a node dies
        output = job.stdout.read().decode(errors="replace")
        job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL
    assert _names(checkpoint.list_checkpoints(ckpt)) == [f"step-{HALF:08d}.pt"], output[-2000:]
    assert not (tmp_path / "crashed.json").exists()
    spy = DownloadSpy(monkeypatch)
    crashed_run = checkpoint.load_latest(ckpt)["train_state"]["mlflow_run_id"]
    assert spy.uris == [half]  # fetched from S3 into the host's cache ...

    shard_cache.forget_verified()  # the resumed job is a new process: it re-hashes the cache
    resumed = _pretrain_in_process(args, mlflow_uri)  # the same command again
    assert spy.uris.count(half) == 1  # ... where the resumed job finds it: one download per host
    assert [u for u in spy.uris if u.endswith(".bin")] == []  # ... on shards the killed job had cached
    assert resumed["steps"] == N and resumed["checkpoint_dir"] == ckpt
    assert resumed["params_sha256"] == reference["params_sha256"]  # bit-identical weights
    assert (resumed["train_loss"], resumed["val_loss"]) == (reference["train_loss"], reference["val_loss"])
    assert json.loads((tmp_path / "crashed.json").read_text())["params_sha256"] == reference["params_sha256"]
    assert resumed["run_id"] == crashed_run  # the crashed MLflow run continued
    assert _names(checkpoint.list_checkpoints(ckpt)) == [f"step-{HALF:08d}.pt", f"step-{N:08d}.pt"]
