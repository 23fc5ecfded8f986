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

import json
import os
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import netns_hosts
from ops.launchers import horovodrun_command, job_env
from ops.settings import get_settings

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


def _two_host_command(hosts: netns_hosts.Hosts, args: list[str]) -> list[str]:
    """The launcher's own horovodrun command, pointed at the two hosts and their shared NIC name."""
    cmd = horovodrun_command("training.pretrain", args, np=2)
    cmd[cmd.index("-H") + 1] = ",".join(f"{a}:1" for a in hosts.addresses)
    cmd[cmd.index("--network-interfaces") + 1] = netns_hosts.IFACE
    at = cmd.index("--gloo") + 1
    cmd[at:at] = ["--ssh-identity-file", str(hosts.identity)]
    return hosts.netns_exec(0) + cmd


def _env(mlflow_uri: str, hosts: netns_hosts.Hosts | None = None) -> dict[str, str]:
    env = {**job_env(), "MLFLOW_TRACKING_URI": mlflow_uri, "OMP_NUM_THREADS": "1",
           "HOROVOD_START_TIMEOUT": "120", **SECRETS}
    if hosts is not None:
        env["PATH"] = f"{hosts.ssh_bin}{os.pathsep}{env['PATH']}"
    return env


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


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, (f"horovodrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-3000:]}")
    return proc.stdout


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
    """One-host -np 2, two hosts uninterrupted (command lines sampled), two hosts killed and resumed."""
    tmp = tmp_path_factory.mktemp("multihost")
    t0 = time.monotonic()
    one_host = horovodrun_command("training.pretrain", _args(shards_uri, tmp, "onehost"), np=2)
    _run(one_host, _env(mlflow_uri), tmp)
    sampler = Sampler(hosts)
    sampler.start()
    try:
        out = _run(_two_host_command(hosts, _args(shards_uri, tmp, "twohost")), _env(mlflow_uri, hosts), tmp)
    finally:
        seen = sampler.stop()
    crash = _crash_after_checkpoint(hosts, _args(shards_uri, tmp, "crashed"), mlflow_uri, tmp)
    _run(_two_host_command(hosts, _args(shards_uri, tmp, "crashed")), _env(mlflow_uri, hosts), tmp)
    print(f"multi-host runs took {time.monotonic() - t0:.0f} s")
    result = {name: json.loads((tmp / f"{name}.json").read_text())
              for name in ("onehost", "twohost", "crashed")}
    return result, seen, out, crash


def _crash_after_checkpoint(hosts, args: list[str], mlflow_uri: str, tmp: Path) -> dict:
    """Start the two-host run; once its step-HALF checkpoint exists, SIGKILL every process in both
    namespaces except the sshds (the launcher, ssh, both ranks); return what was left on disk."""
    ckpt = Path(args[args.index("--checkpoint-dir") + 1])
    job = subprocess.Popen(_two_host_command(hosts, args), env=_env(mlflow_uri, hosts), cwd=tmp,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (ckpt / f"step-{HALF:08d}.pt").exists():
        assert job.poll() is None, f"the job ended before its checkpoint:\n{job.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    ranks_seen = {}
    for i, name in enumerate(hosts.namespaces):
        pids = [p for p in netns_hosts.namespace_pids(name) if p not in hosts.sshd_pids]
        python = str(get_settings().jobs_python)  # a rank's own process, not the shells and ssh around it
        ranks_seen[i] = sum(c.split(" ", 1)[0] == python and "-m training.pretrain" in c
                            for c in netns_hosts.cmdlines(pids))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    job.wait(timeout=60)
    job.stdout.close()
    return {"ranks_seen": ranks_seen, "saved": sorted(p.name for p in ckpt.glob("step-*.pt")),
            "result_written": (tmp / "crashed.json").exists()}


def test_two_hosts_follow_the_one_host_losses(runs):
    result, _, out, _ = runs
    one, two = result["onehost"], result["twohost"]
    assert (two["backend"], two["world_size"], two["steps"]) == ("horovod", 2, N)
    assert two["ranks_agree"] and two["tokens_seen"] == one["tokens_seen"]
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4)


def test_a_killed_two_host_run_resumes_across_both_hosts(runs):
    result, _, _, crash = runs
    assert crash["ranks_seen"] == {0: 1, 1: 1}  # one rank on each host when it was killed
    assert crash["saved"] == [f"step-{HALF:08d}.pt"] and not crash["result_written"]
    resumed, reference = result["crashed"], result["twohost"]
    assert resumed["steps"] == N and resumed["ranks_agree"]
    assert resumed["params_sha256"] == reference["params_sha256"]
    assert resumed["train_loss"] == reference["train_loss"] and resumed["val_loss"] == reference["val_loss"]


def test_the_remote_rank_ran_in_the_other_namespace(runs, hosts):
    _, seen, _, _ = runs
    remote = [c for c in seen if "training.pretrain" in c and "ssh" in c.split(" ", 1)[0]]
    assert any(hosts.addresses[1] in c for c in remote), sorted(seen)[:20]


@pytest.mark.xfail(reason="secrets issue: horovodrun puts the launcher's environment on the remote ssh "
                          "command line (`env KEY=VALUE ...`); h16b changes how horovodrun receives secrets",
                   strict=False)
def test_no_secret_reaches_a_command_line_on_either_host(runs):
    _, seen, _, _ = runs
    leaked = {name for name, value in SECRETS.items() for c in seen if value in c}
    assert not leaked, f"{sorted(leaked)} appeared in a command line on one of the hosts"
