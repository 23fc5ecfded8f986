"""Horovod across two hosts: ``horovodrun -H host1:1,host2:1 --gloo`` between two network
namespaces with an sshd each (tests/training/netns_hosts.py), as an MPIJob's launcher reaches
its workers over ssh and the NIC named by ``--network-interfaces``.

The same pretraining flags run under ``-np 2`` on one host, across the two hosts, and across
the two hosts killed (every process in both namespaces but the sshds, as a lost node) after
its mid-run checkpoint and started again. Two hosts must follow the one-host losses; the
resumed run must end with the uninterrupted two-host run's weights. While a run goes, every
command line in both namespaces is sampled: the generated AWS secret and MLflow password in
the launcher's environment must not appear in any of them.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import threading
import time
from pathlib import Path

import pytest

import netns_hosts
from ops.launch import local
from ops.launch.local import job_env
from ops.launch.settings import get_settings

pytestmark = pytest.mark.distributed  # in make test; alone: make test-cluster
N, HALF = 20, 10
SECRETS = {"AWS_SECRET_ACCESS_KEY": "fake-aws-" + secrets.token_hex(12),
           "MLFLOW_TRACKING_PASSWORD": "fake-mlflow-" + secrets.token_hex(12)}


def _args(shards_uri: str, tmp: Path, name: str) -> list[str]:
    return ["--shards", shards_uri, "--max-steps", str(N), "--batch-size", "4", "--lr", "3e-3",
            "--warmup-steps", "5", "--eval-every", "10", "--eval-batches", "2", "--log-every", "5",
            "--checkpoint-every", str(HALF), "--keep-last", "3",
            "--checkpoint-dir", str(tmp / f"ckpt-{name}"),
            "--experiment", "pretrain-multiproc-test", "--register-name", "c2m-base-multihost-test",
            "--promote", "never", "--run-name", name, "--result-file", str(tmp / f"{name}.json")]


def _extra_env(hosts: netns_hosts.Hosts | None = None) -> dict[str, str]:
    """What the training task hands the launcher: the secrets, and PATH with the ssh wrapper."""
    env = {"OMP_NUM_THREADS": "1", **SECRETS}
    if hosts is not None:
        env["PATH"] = f"{hosts.ssh_bin}{os.pathsep}{job_env()['PATH']}"
    return env


@contextlib.contextmanager
def _on_two_hosts(hosts: netns_hosts.Hosts):
    """``ops.launch.local.horovodrun`` as it is, with its command pointed at the two hosts and their
    shared NIC name and started in the first namespace (the launcher host)."""
    original = local.horovodrun_command

    def two_host_command(*args, **kwargs) -> list[str]:
        cmd = original(*args, **kwargs)
        cmd[cmd.index("-H") + 1] = ",".join(f"{a}:1" for a in hosts.addresses)
        cmd[cmd.index("--network-interfaces") + 1] = netns_hosts.IFACE
        at = cmd.index("--gloo") + 1
        cmd[at:at] = ["--ssh-identity-file", str(hosts.identity)]
        return hosts.netns_exec(0) + cmd

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(local, "horovodrun_command", two_host_command)
        yield


class Sampler(threading.Thread):
    """Every command line seen in the two namespaces while a run goes (polled)."""

    def __init__(self, hosts: netns_hosts.Hosts):
        super().__init__(daemon=True)
        self.hosts, self.seen, self.done = hosts, set(), threading.Event()

    def run(self):
        while not self.done.is_set():
            for name in self.hosts.namespaces:
                self.seen.update(netns_hosts.cmdlines(netns_hosts.namespace_pids(name)))
            time.sleep(0.05)

    def stop(self) -> set[str]:
        self.done.set()
        self.join()
        return self.seen


def _train(args: list[str], hosts: netns_hosts.Hosts | None = None) -> None:
    local.horovodrun("training.pretrain", args, np=2, extra_env=_extra_env(hosts))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    if not (get_settings().jobs_venv / "bin" / "horovodrun").exists():
        pytest.skip("horovodrun is missing: build Horovod with ops/install/build_horovod.sh")
    try:
        with netns_hosts.two_hosts(tmp_path_factory.mktemp("hosts")) as h:
            yield h
    except netns_hosts.Unavailable as exc:
        pytest.skip(f"two-host Horovod needs network namespaces and sshd here: {exc}")


@pytest.fixture(scope="module")
def runs(hosts, shards_uri, mlflow_uri, tmp_path_factory):
    """One-host -np 2, two hosts uninterrupted (command lines sampled), two hosts killed and resumed,
    each through ops.launch.local.horovodrun."""
    tmp = tmp_path_factory.mktemp("multihost")
    t0 = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        mp.chdir(tmp)
        _train(_args(shards_uri, tmp, "onehost"))
        with _on_two_hosts(hosts):
            sampler = Sampler(hosts)
            sampler.start()
            try:
                _train(_args(shards_uri, tmp, "twohost"), hosts)
            finally:
                seen = sampler.stop()
            crash = _crash_after_checkpoint(hosts, _args(shards_uri, tmp, "crashed"), tmp)
            _train(_args(shards_uri, tmp, "crashed"), hosts)
    print(f"multi-host runs took {time.monotonic() - t0:.0f} s")
    result = {name: json.loads((tmp / f"{name}.json").read_text())
              for name in ("onehost", "twohost", "crashed")}
    return result, seen, crash


def _crash_after_checkpoint(hosts, args: list[str], tmp: Path) -> dict:
    """Start the two-host run; once its step-HALF checkpoint exists, SIGKILL every process in both
    namespaces except the sshds (the launcher, ssh, both ranks); return what was left on disk."""
    ckpt = Path(args[args.index("--checkpoint-dir") + 1])
    failure: list[BaseException] = []

    def launch():
        try:
            _train(args, hosts)
        except BaseException as exc:  # the launcher's error once its ranks are killed
            failure.append(exc)

    job = threading.Thread(target=launch, daemon=True)
    job.start()
    deadline = time.monotonic() + 300
    while not (ckpt / f"step-{HALF:08d}.pt").exists():
        assert job.is_alive(), f"the job ended before its checkpoint: {failure}"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    ranks_seen = {}
    for i, name in enumerate(hosts.namespaces):
        pids = [p for p in netns_hosts.namespace_pids(name) if p not in hosts.sshd_pids]
        ranks_seen[i] = netns_hosts.horovod_ranks(pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    job.join(timeout=120)
    return {"ranks_seen": ranks_seen, "saved": sorted(p.name for p in ckpt.glob("step-*.pt")),
            "result_written": (tmp / "crashed.json").exists(),
            "launcher_failed": [type(e).__name__ for e in failure]}


def test_two_hosts_follow_the_one_host_losses(runs):
    result, _, _ = runs
    one, two = result["onehost"], result["twohost"]
    assert (two["backend"], two["world_size"], two["steps"]) == ("horovod", 2, N)
    assert two["ranks_agree"] and two["tokens_seen"] == one["tokens_seen"]
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4)


def test_a_killed_two_host_run_resumes_across_both_hosts(runs):
    result, _, crash = runs
    assert crash["ranks_seen"] == {0: [0], 1: [1]}  # rank 0 on the first host, rank 1 on the second
    assert crash["launcher_failed"] == ["LaunchError"]
    assert crash["saved"] == [f"step-{HALF:08d}.pt"] and not crash["result_written"]
    resumed, reference = result["crashed"], result["twohost"]
    assert resumed["steps"] == N and resumed["ranks_agree"]
    assert resumed["params_sha256"] == reference["params_sha256"]
    assert resumed["train_loss"] == reference["train_loss"] and resumed["val_loss"] == reference["val_loss"]


def test_the_remote_rank_ran_in_the_other_namespace(runs, hosts):
    _, seen, _ = runs
    remote = [c for c in seen if "training.pretrain" in c and "ssh" in c.split(" ", 1)[0]]
    assert any(hosts.addresses[1] in c for c in remote), sorted(seen)[:20]


def test_no_secret_reaches_a_command_line_on_either_host(runs):
    _, seen, _ = runs
    leaked = {name for name, value in SECRETS.items() for c in seen if value in c}
    assert not leaked, f"{sorted(leaked)} appeared in a command line on one of the hosts"
