"""A rank that dies makes a horovodrun job fail fast instead of hanging (issue 5, bad input).

Two ranks pretrain under ``horovodrun -np 2`` (CPU, Gloo) through the launcher's own
command and environment; ``C2M_TEST_FAULT`` makes rank 1 die at step 3:

- ``exit``: the process vanishes (``os._exit``, like an OOM kill); its sockets close, rank
  0's next collective fails and horovodrun stops the job;
- ``freeze``: the process is stopped (SIGSTOP, like a lost host): its sockets stay open, so
  only the Gloo timeout set in training/distributed.py can end the job. The test shortens
  that timeout through the same environment variable an operator would use.

Either way the job must exit non-zero well before the bound; without the timeouts the
frozen case waits forever.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ops.launch.local import horovodrun_command, job_env
from ops.launch.settings import get_settings

BOUND_S = 90


def _horovodrun_or_skip() -> None:
    horovodrun = get_settings().jobs_venv / "bin" / "horovodrun"
    if not horovodrun.exists():
        message = f"{horovodrun} is missing: build Horovod with ops/install/build_horovod.sh"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _run_with_fault(shards_uri: str, mlflow_uri: str, tmp: Path, fault: str, **env) -> tuple[int, float, str]:
    """Run the 2-rank job with ``fault``: (exit code, seconds, output); past the bound, kill the group."""
    args = [
        "--shards", shards_uri, "--max-steps", "40", "--batch-size", "4", "--eval-every", "20",
        "--eval-batches", "1", "--log-every", "1", "--checkpoint-every", "0",
        "--checkpoint-dir", str(tmp / "ckpt"), "--experiment", "pretrain-multiproc-test",
        "--register-name", "c2m-base-failfast-test", "--promote", "never", "--run-name", f"failfast-{fault}",
    ]  # fmt: skip
    full_env = {
        **job_env(),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "OMP_NUM_THREADS": "1",
        "C2M_TEST_FAULT": f"1:3:{fault}",
        **env,
    }
    start = time.monotonic()
    proc = subprocess.Popen(
        horovodrun_command("training.pretrain", args, np=2),
        env=full_env,
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # one process group: launcher and ranks, so a hang can be cleaned up
    )
    try:
        out, _ = proc.communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the job was still running after {BOUND_S} s (a dead rank hung it):\n{out[-3000:]}")
    finally:
        try:  # a stopped rank left behind by a failed run must not outlive the test
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.returncode, time.monotonic() - start, out


@pytest.mark.parametrize("fault, env", [("exit", {}), ("freeze", {"HOROVOD_GLOO_TIMEOUT_SECONDS": "10"})])
def test_a_dead_rank_fails_the_job_fast(shards_uri, mlflow_uri, tmp_path, fault, env):
    _horovodrun_or_skip()
    code, seconds, out = _run_with_fault(shards_uri, mlflow_uri, tmp_path, fault, **env)
    assert f"[fault] rank 1 {fault} at step 3" in out, out[-3000:]
    assert code != 0, f"the job exited 0 although rank 1 died:\n{out[-3000:]}"
    assert "[pretrain] done" not in out  # no rank claims a finished training
    print(f"[failfast] {fault}: exit code {code} after {seconds:.1f} s (bound {BOUND_S} s)")
