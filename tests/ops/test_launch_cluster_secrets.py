"""Secrets of an MPIJob stay off every command line: horovodrun on the launcher exports its whole
environment onto each remote rank's ``ssh … env NAME=value … python …`` line, which ``ps``
shows on both pods. So the launcher gets no secret, the workers mount the Secrets as files, and
each rank loads them through ``python -m ops.lake.secret_env``.

Checked on the MPIJob ops.launch.kubernetes builds and on the chart's (which
test_launch_cluster.py holds equal to it): the Secret mount, the launcher's env, and the
command Horovod's own launcher code builds for a remote rank from that env, which is then run
(ssh aside) against a folder laid out like a mounted Secret.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from ops.lake import secret_env
from ops.launch.kubernetes.cluster import ClusterConfig
from ops.launch.kubernetes.mpijob import HOSTFILE, mpijob_manifest
from ops.launch.kubernetes.pods import SECRET_DIR, SECRET_FILE_MODE, secret_files
from test_launch_cluster import GPU_VALUES, config_from_values, merged_values, needs_helm, render

REPO = Path(__file__).resolve().parents[2]
# What the cluster's Secrets hold (generated: a value found anywhere else leaked from them).
SECRETS = {
    "c2m-s3": {"AWS_ACCESS_KEY_ID": "AKIA" + uuid.uuid4().hex[:16].upper(),
               "AWS_SECRET_ACCESS_KEY": "s3-" + uuid.uuid4().hex},
    "crawl2model-mlflow-auth": {"username": "admin-" + uuid.uuid4().hex[:8],
                                "password": "mlflow-" + uuid.uuid4().hex},
    "c2m-optuna": {"url": f"postgresql://optuna:pg-{uuid.uuid4().hex}@db:5432/optuna"},
}
SECRET_VALUES = [v for keys in SECRETS.values() for v in keys.values()]
CFG = ClusterConfig(namespace="ml", s3_secret="c2m-s3", s3_endpoint="http://seaweed:8333", workers=2,
                    gpu_per_worker=0, cpu_slots_per_worker=2, env={"OMP_NUM_THREADS": "1"},
                    secret_env={"MLFLOW_TRACKING_USERNAME": "crawl2model-mlflow-auth:username",
                                "MLFLOW_TRACKING_PASSWORD": "crawl2model-mlflow-auth:password",
                                "C2M_OPTUNA_STORAGE": "c2m-optuna:url"})
PROBE = "c2m_rank_probe"  # stands in for the training module: prints what the rank's environment holds


def ops_job(cfg: ClusterConfig = CFG, module: str = "training.pretrain") -> dict:
    return mpijob_manifest(module, ["--max-steps", "1"], cfg, name="pretrain-x",
                           env={"MLFLOW_RUN_CONTEXT": "{}"})


def chart_job(files: tuple[Path, ...], *opts: str) -> tuple[dict, ClusterConfig]:
    values = merged_values(*files)
    (job,) = [yaml.safe_load(d["data"]["mpijob.yaml"]) for d in render(*opts)
              if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-training-job")]
    return job, config_from_values(values)


def roles(job: dict) -> tuple[dict, dict]:
    """(launcher pod spec, worker pod spec)."""
    specs = job["spec"]["mpiReplicaSpecs"]
    return specs["Launcher"]["template"]["spec"], specs["Worker"]["template"]["spec"]


def resolve_env(container: dict) -> dict[str, str]:
    """The container's environment as the kubelet gives it, Secrets resolved from SECRETS."""
    env = {}
    for e in container.get("env", []):
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        env[e["name"]] = SECRETS[ref["name"]][ref["key"]] if ref else e["value"]
    return env


def mount_secret(volume: dict, root: Path) -> Path:
    """Lay out a projected Secret volume the way the kubelet does (files behind ``..data``)."""
    data = root / "..2026_01_01_00_00_00.000000001"
    data.mkdir(parents=True)
    for source in volume["projected"]["sources"]:
        secret = source["secret"]
        for item in secret["items"]:
            path = data / item["path"]
            path.write_text(SECRETS[secret["name"]][item["key"]])
            path.chmod(item.get("mode", volume["projected"]["defaultMode"]))
    (root / "..data").symlink_to(data.name)
    for f in data.iterdir():
        (root / f.name).symlink_to(Path("..data") / f.name)
    return root


def remote_rank_commands(launcher: dict, env: dict[str, str], hostfile: Path, cwd: Path) -> list[str]:
    """What horovodrun, run as the launcher's command in ``env``, executes for each rank on a
    remote host: built with Horovod's own launcher code (argument parser, hostfile reader,
    Gloo command builder, ssh wrapper)."""
    launch = pytest.importorskip("horovod.runner.launch", reason="horovod is built into the jobs venv")
    from shlex import quote

    from horovod.runner.common.util import config_parser, hosts
    from horovod.runner.gloo_run import _slot_info_to_command_fn, get_run_command
    from horovod.runner.util.remote import get_remote_command

    command = launcher["containers"][0]["command"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["horovodrun", *command[1:]])
        args = launch.parse_args()
    assert args.hostfile == HOSTFILE
    env = dict(env)
    config_parser.set_env_from_args(env, args)
    plan = hosts.get_host_assignments(hosts.parse_hosts(hosts.parse_host_files(str(hostfile))), args.num_proc)
    run_command = get_run_command(args.command, "10.244.1.7", {"eth0"}, 34567)
    to_command = _slot_info_to_command_fn(run_command, env)
    return [get_remote_command(quote(f"cd {cwd} > /dev/null 2>&1 ; {to_command(slot)}"), host=slot.hostname,
                               port=args.ssh_port, identity_file=args.ssh_identity_file)
            for slot in plan]


def operator_hostfile(job: dict, path: Path) -> Path:
    """The hostfile the MPI operator writes into the launcher: one line per worker pod."""
    name, workers = job["metadata"]["name"], job["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"]
    path.write_text("".join(f"{name}-worker-{i}.{name}-worker.ml.svc slots={job['spec']['slotsPerWorker']}\n"
                            for i in range(workers)))
    return path


JOBS = {
    "ops": lambda: (ops_job(), CFG),
    "chart-gpu-cluster": lambda: chart_job((GPU_VALUES,), "-f", str(GPU_VALUES)),
    "chart-cpu": lambda: chart_job((), "--set", "training.enabled=true", "--set", "training.gpu.enabled=false"),
}
SOURCES = [pytest.param(name, marks=[needs_helm] if name.startswith("chart") else []) for name in JOBS]


@pytest.mark.parametrize("source", SOURCES)
def test_workers_mount_the_secrets_and_the_launcher_gets_none(source):
    job, cfg = JOBS[source]()
    launcher, worker = roles(job)
    expected = {var: (name, key) for var, name, key in secret_files(cfg)}
    assert {"AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD"} <= set(expected)

    volumes = {v["name"]: v for v in worker["volumes"]}
    (mount,) = [m for m in worker["containers"][0]["volumeMounts"] if m["mountPath"] == SECRET_DIR]
    assert mount["readOnly"] is True
    projected = volumes[mount["name"]]["projected"]
    assert projected["defaultMode"] in (0o400, 0o440) and projected["defaultMode"] == SECRET_FILE_MODE
    mounted = {item["path"]: (src["secret"]["name"], item["key"])
               for src in projected["sources"] for item in src["secret"]["items"]}
    assert mounted == expected and not any("mode" in i for s in projected["sources"] for i in s["secret"]["items"])

    assert "volumes" not in launcher and "volumeMounts" not in launcher["containers"][0]
    for spec in (launcher, worker):
        for c in spec["containers"]:
            env = {e["name"]: e for e in c["env"]}
            assert not [e for e in env.values() if "valueFrom" in e], (source, c["name"])
            assert not set(expected) & set(env), (source, c["name"])
            assert not [n for n, e in env.items() if secret_env.is_secret(n, e["value"])], (source, c["name"])
            assert env[secret_env.ENV_DIR_VAR]["value"] == SECRET_DIR  # plain, exported to every rank
            assert not secret_env.is_secret_name(secret_env.ENV_DIR_VAR)
    command = launcher["containers"][0]["command"]
    assert command[command.index("-m"):command.index("-m") + 2] == ["-m", "ops.lake.secret_env"]


def test_a_job_without_secrets_mounts_nothing_and_starts_the_module_directly():
    job = ops_job(ClusterConfig(namespace="ml"))
    launcher, worker = roles(job)
    assert [v["name"] for v in worker["volumes"]] == ["dshm"]
    assert secret_env.ENV_DIR_VAR not in {e["name"] for e in launcher["containers"][0]["env"]}
    command = launcher["containers"][0]["command"]
    assert command[command.index("-m") + 1] == "training.pretrain"


@pytest.mark.parametrize("source", SOURCES)
def test_a_remote_ranks_command_line_holds_no_secret(source, tmp_path):
    job, _ = JOBS[source]()
    launcher, _ = roles(job)
    env = {**resolve_env(launcher["containers"][0]), "PATH": "/opt/venv/bin:/usr/bin:/bin", "HOME": "/home/c2m"}
    hostfile = operator_hostfile(job, tmp_path / "hostfile")
    commands = remote_rank_commands(launcher, env, hostfile, tmp_path)
    n = job["spec"]["slotsPerWorker"] * job["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"]
    assert len(commands) == n and all(c.startswith("ssh ") and " -p 2222 " in c for c in commands)
    leaked = [v for v in SECRET_VALUES for c in commands if v in c]
    assert not leaked, f"a secret is on a rank's command line: {commands[0][:300]}"
    assert all(f"{secret_env.ENV_DIR_VAR}={SECRET_DIR}" in c and "ops.lake.secret_env" in c for c in commands)
    # The builder does put the launcher's environment on that line: a secret in it would show.
    canary = remote_rank_commands(launcher, {**env, "AWS_SECRET_ACCESS_KEY": SECRET_VALUES[1]}, hostfile, tmp_path)
    assert SECRET_VALUES[1] in canary[-1]


def test_a_remote_rank_loads_its_secrets_from_the_mounted_secret(tmp_path):
    """Run the remote rank's command as the worker's sshd would (ssh aside), against a folder laid
    out like the worker's Secret volume: the module sees every secret, its argv none."""
    probe_dir = tmp_path / "src"
    probe_dir.mkdir()
    (probe_dir / f"{PROBE}.py").write_text(
        "import json, os, sys\n"
        f"names = {sorted(v for v, _, _ in secret_files(CFG))!r}\n"
        "print(json.dumps({'env': {n: os.environ.get(n) for n in names}, 'argv': sys.argv[1:],\n"
        f"                  'dir_var': {secret_env.ENV_DIR_VAR!r} in os.environ}}))\n")
    cfg = replace(CFG, trainer_venv=sys.prefix)  # this venv's python
    job = ops_job(cfg, module=PROBE)
    launcher, worker = roles(job)
    (volume,) = [v for v in worker["volumes"] if "projected" in v]
    secrets_dir = mount_secret(volume, tmp_path / "secrets")
    env = {**resolve_env(launcher["containers"][0]), "PATH": os.environ["PATH"],
           "PYTHONPATH": f"{probe_dir}{os.pathsep}{REPO}"}
    (remote,) = remote_rank_commands(launcher, env, operator_hostfile(job, tmp_path / "hostfile"), tmp_path)[:1]
    local = shlex.split(remote)[-1].replace(SECRET_DIR, str(secrets_dir))  # what ssh runs on the worker
    out = subprocess.run(["/bin/sh", "-c", local], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin"})  # what sshd gives a session
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["env"] == {var: SECRETS[name][key] for var, name, key in secret_files(CFG)}
    assert seen["argv"] == ["--max-steps", "1"] and seen["dir_var"] is False
