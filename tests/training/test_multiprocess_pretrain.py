"""Two ranks under horovodrun (and torchrun, the cross-check) agree with each other and with one process.

Rank r takes chunk r of each global batch and gradients are averaged, so 2 ranks x
batch 4 must follow the same trajectory as 1 process x batch 8: equal losses up to float
summation order, and the two multi-process backends bit-identical to each other.
"""

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from ops.launch.local import horovodrun_command, job_env
from ops.launch.settings import get_settings

STEPS = 20


def _args(shards_uri, tmp: Path, name: str, batch: int):
    return [
        "--shards",
        shards_uri,
        "--max-steps",
        str(STEPS),
        "--batch-size",
        str(batch),
        "--eval-every",
        "10",
        "--eval-batches",
        "2",
        "--log-every",
        "5",
        "--checkpoint-dir",
        str(tmp / name),
        "--experiment",
        "pretrain-multiproc-test",
        "--register-name",
        "c2m-base-multiproc-test",
        "--run-name",
        name,
        "--result-file",
        str(tmp / f"{name}.json"),
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cmd, mlflow_uri, tmp: Path) -> None:
    env = {**job_env(), "MLFLOW_TRACKING_URI": mlflow_uri, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )


@pytest.fixture(scope="module")
def single(shards_uri, mlflow_uri, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multiproc")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        from training import pretrain

        return pretrain.main(_args(shards_uri, tmp, "single", batch=8)), tmp


@pytest.fixture(scope="module")
def horovod(single, shards_uri, mlflow_uri):
    horovodrun = get_settings().jobs_venv / "bin" / "horovodrun"
    if not horovodrun.exists():
        message = f"{horovodrun} is missing: build Horovod with ops/install/build_horovod.sh"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    _, tmp = single
    _run(
        horovodrun_command("training.pretrain", _args(shards_uri, tmp, "horovod", batch=4), np=2),
        mlflow_uri,
        tmp,
    )
    return json.loads((tmp / "horovod.json").read_text())


def test_horovod_two_ranks_agree_and_match_one_process(single, horovod):
    reference, _ = single
    assert (horovod["backend"], horovod["world_size"], horovod["steps"]) == ("horovod", 2, STEPS)
    assert horovod["ranks_agree"]  # final weights identical on both ranks
    assert horovod["tokens_seen"] == reference["tokens_seen"]
    assert horovod["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-4)
    assert horovod["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-4)
    assert horovod["model_version"] > reference["model_version"]


def test_torchrun_matches_horovod_bit_for_bit(single, horovod, shards_uri, mlflow_uri):
    _, tmp = single
    torchrun = get_settings().jobs_venv / "bin" / "torchrun"
    _run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            "-m",
            "training.pretrain",
            *_args(shards_uri, tmp, "torch", batch=4),
        ],
        mlflow_uri,
        tmp,
    )
    result = json.loads((tmp / "torch.json").read_text())
    assert result["backend"] == "torch" and result["ranks_agree"]
    assert result["params_sha256"] == horovod["params_sha256"]


AGREEMENT_PROBE = """
import json, sys, torch
from training import distributed
from training.pretrain import ranks_agree
d = distributed.init()
mine = torch.ones(3, dtype=torch.float64)
d.allreduce_mean(mine)
out = {"same": ranks_agree("ab" * 32, d), "differs": ranks_agree("00" * 31 + f"{d.rank:02x}", d),
       "caller_unchanged": mine.tolist() == [1.0, 1.0, 1.0]}
d.barrier()
d.shutdown()
if d.rank == 0:
    open(sys.argv[1], "w").write(json.dumps(out))
"""


def test_rank_agreement_check_detects_a_difference(tmp_path, mlflow_uri):
    probe = tmp_path / "probe.py"
    probe.write_text(AGREEMENT_PROBE)
    torchrun = get_settings().jobs_venv / "bin" / "torchrun"
    _run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            str(probe),
            str(tmp_path / "out.json"),
        ],
        mlflow_uri,
        tmp_path,
    )
    assert json.loads((tmp_path / "out.json").read_text()) == {
        "same": True,
        "differs": False,
        "caller_unchanged": True,
    }
