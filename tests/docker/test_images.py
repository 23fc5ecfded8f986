"""Self-checks run inside the images that `make images` builds (ops/install/build_images.sh).

Each test starts a real container with podman. Where podman cannot run, or an image is not built,
the test is skipped with the reason and the command that fixes it (`make images`), never silently.
Containers need this sandbox's flags: `--runtime runc` and lowered rlimits.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

TAG = os.environ.get("C2M_IMAGE_TAG", "0.1.0")
PODMAN = ["podman", "--runtime", "runc"]
RUN = [*PODMAN, "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
# The host's pip find-links, local indexes and constraints: none of these may exist in an image.
HOST_PIP_TRACES = ("/opt/wheels", "/opt/pypi", "/opt/pypi-more", "/etc/xdg/pip/constraints.txt")
# Where the build mounts them, the pip.conf and CA bundle copy, the Horovod cache and the s3a jars:
# buildah leaves the empty mount points behind, but no file in them may have content.
BUILD_MOUNTS = ("/run/c2m-host", "/run/c2m-hvd", "/run/c2m-s3a-jars")


def podman_problem() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (make images installs it as root: apt-get install podman runc)"
    proc = subprocess.run([*PODMAN, "info"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return f"podman cannot run here: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    return None


PROBLEM = podman_problem()


def needs_podman(test):
    """A test that runs a container: marker ``images`` (make test-images, deselected by make test),
    skipped with the reason where podman cannot run."""
    return pytest.mark.images(pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))(test))


REPO = Path(__file__).resolve().parents[2]


def image(name: str) -> str:
    ref = f"localhost/crawl2model-{name}:{TAG}"
    if subprocess.run([*PODMAN, "image", "exists", ref]).returncode != 0:
        pytest.skip(f"{ref} is not built; run: make images")
    return ref


def run(ref: str, *cmd: str, opts: tuple[str, ...] = (), timeout: int = 600) -> str:
    proc = subprocess.run([*RUN, *opts, ref, *cmd], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} in {ref} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@needs_podman
def test_airflow_dags_parse_with_no_database_or_network():
    # --network=none: a DAG that reaches out at import time fails here.
    out = run(image("airflow"), "python", "/opt/c2m/selfcheck.py", "--jobs", opts=("--network=none",))
    line = next(line for line in out.splitlines() if line.startswith("[selfcheck] DAGs"))
    assert line.endswith("import cleanly") and all(f"'{d}'" in line for d in ("data_refresh", "pretrain",
                                                                             "finetune")), out
    assert "horovodrun (PyTorch, Gloo): OK" in out


SPARK_JOB = """
import sys
from pyspark.sql import SparkSession, functions as F

spark = SparkSession.builder.appName("c2m-image-test").getOrCreate()
lines = spark.read.text("/data/in")
words = lines.select(F.explode(F.split(F.lower("value"), r"\\s+")).alias("word")).where("word != ''")
words.groupBy("word").count().coalesce(1).write.mode("overwrite").json("/data/out")
spark.stop()
"""


@needs_podman
def test_spark_submit_runs_a_stage_on_mounted_local_files(tmp_path):
    ref = image("spark")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("the crawl\nThe model\n")
    (tmp_path / "in" / "b.txt").write_text("crawl the web\n")
    (tmp_path / "job.py").write_text(SPARK_JOB)
    tmp_path.chmod(0o777)  # the image runs as its own non-root user
    run(ref, "spark-submit", "--master", "local[2]", "--conf", "spark.ui.enabled=false", "/data/job.py",
        opts=("--network=none", "-e", "SPARK_LOCAL_IP=127.0.0.1", "-v", f"{tmp_path}:/data"))
    counts = {}
    for part in (tmp_path / "out").glob("part-*.json"):
        for line in part.read_text().splitlines():
            row = json.loads(line)
            counts[row["word"]] = row["count"]
    assert counts == {"the": 3, "crawl": 2, "model": 1, "web": 1}


@needs_podman
def test_trainer_horovod_is_built_with_pytorch_and_gloo():
    out = run(image("trainer"), "horovodrun", "--check-build")
    assert "[X] PyTorch" in out and "[X] Gloo" in out, out


TRAIN = """
import horovod.torch as hvd
import torch

hvd.init()
torch.manual_seed(hvd.rank())  # different data per rank; the broadcast makes the weights equal
model = torch.nn.Linear(8, 1)
opt = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                               named_parameters=model.named_parameters())
hvd.broadcast_parameters(model.state_dict(), root_rank=0)
w_true = torch.arange(8.0) / 8
losses = []
for step in range(20):
    x = torch.randn(32, 8)
    loss = ((model(x).squeeze(1) - x @ w_true) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(hvd.allreduce(loss.detach(), name="loss").item())
digest = hvd.allgather(model.weight.detach().sum().reshape(1), name="w")
print(f"RANK {hvd.rank()}/{hvd.size()} first={losses[0]:.4f} last={losses[-1]:.4f} "
      f"weights_agree={bool(torch.allclose(digest[0], digest[1]))}", flush=True)
"""


@needs_podman
def test_trainer_two_ranks_train_a_tiny_model(tmp_path):
    ref = image("trainer")
    (tmp_path / "train.py").write_text(textwrap.dedent(TRAIN))
    tmp_path.chmod(0o755)
    out = run(ref, "horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", "python", "/work/train.py",
              opts=("--network=host", "-v", f"{tmp_path}:/work:ro"), timeout=900)
    ranks = [line[line.index("RANK"):] for line in out.splitlines() if "RANK" in line]
    assert sorted(r.split()[1] for r in ranks) == ["0/2", "1/2"], out
    for r in ranks:
        fields = dict(f.split("=") for f in r.split()[2:])
        assert float(fields["last"]) < float(fields["first"]) / 2, r
        assert fields["weights_agree"] == "True", r


@needs_podman
@pytest.mark.parametrize("name", ["airflow", "spark", "trainer"])
def test_images_hold_nothing_from_the_host_build_mounts(name):
    """The host's pip settings, CA bundle copy and local indexes are build-time mounts only."""
    ref = image(name)
    script = ("import json, os, subprocess, sys; print(json.dumps({"
              "'pip_config': subprocess.run([sys.executable, '-m', 'pip', 'config', 'list'], "
              "capture_output=True, text=True).stdout, "
              f"'present': [p for p in {list(HOST_PIP_TRACES)!r} if os.path.exists(p)], "
              f"'content': [os.path.join(d, f) for m in {list(BUILD_MOUNTS)!r} for d, _, fs in os.walk(m) "
              "for f in fs if os.path.getsize(os.path.join(d, f))], "
              "'pip_env': sorted(k for k in os.environ if k.startswith('PIP_'))}))")
    found = json.loads(run(ref, "python", "-c", script, opts=("--network=none",)).strip().splitlines()[-1])
    assert found["present"] == [] and found["content"] == [], found
    assert not any(t in found["pip_config"] for t in HOST_PIP_TRACES), found
    assert not {"PIP_CONFIG_FILE", "PIP_FIND_LINKS", "PIP_CERT"} & set(found["pip_env"]), found
    inspect = subprocess.run([*PODMAN, "image", "inspect", ref], capture_output=True, text=True, check=True)
    env = json.loads(inspect.stdout)[0]["Config"].get("Env", [])
    assert not [e for e in env if e.startswith("PIP_CONFIG_FILE") or "/run/c2m-host" in e], env


def test_make_images_says_skip_where_podman_cannot_run(tmp_path):
    """A podman that cannot start (no cgroups, no user namespaces...) ends the build with SKIP, exit 0."""
    fake = tmp_path / "podman"
    fake.write_text("#!/bin/sh\necho 'Error: cannot set up namespaces: operation not permitted' >&2\nexit 125\n")
    fake.chmod(0o755)
    for tool in ("runc", "mmdebstrap", "newuidmap"):  # present, so the script installs nothing
        (tmp_path / tool).symlink_to("/bin/true")
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "C2M_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(["bash", str(REPO / "ops/install/build_images.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "SKIP: podman cannot run here: Error: cannot set up namespaces" in proc.stderr
    assert not (tmp_path / "cache" / "images").exists()


def test_make_images_says_skip_where_it_cannot_install_podman(tmp_path):
    """No podman, not root and no password-less sudo: SKIP naming the missing tools and the command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    hidden = {"podman", "runc", "mmdebstrap", "newuidmap", "id", "sudo"}
    for folder in reversed(os.environ["PATH"].split(os.pathsep)):  # earlier PATH entries win
        if os.path.isdir(folder):
            for entry in os.scandir(folder):
                if entry.name not in hidden:
                    target = bin_dir / entry.name
                    target.unlink(missing_ok=True)
                    target.symlink_to(entry.path)
    for name, body in (("id", "echo 1000"), ("sudo", "echo 'sudo: a password is required' >&2; exit 1"),
                       ("apt-get", "echo apt-get must not run >&2; exit 3")):
        (bin_dir / name).unlink(missing_ok=True)
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": str(bin_dir), "C2M_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([str(bin_dir / "bash"), str(REPO / "ops/install/build_images.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "SKIP: podman runc mmdebstrap newuidmap missing and not root; run: sudo apt-get install -y " \
           "podman runc mmdebstrap uidmap" in proc.stderr, proc.stderr
    assert "apt-get must not run" not in proc.stderr


@needs_podman
def test_a_retry_replaces_the_container_a_killed_worker_left_running(tmp_path):
    """The launcher's podman command for a task: a SIGKILLed client leaves its container running;
    the next try's command (same name, ``--replace``) removes it before it starts."""
    import signal
    import time

    from ops.launch.podman import container_name, podman_command

    ref = image("spark")
    env = {"C2M_AIRFLOW_DAG_ID": "images-test", "C2M_AIRFLOW_RUN_ID": f"r{os.getpid()}",
           "C2M_AIRFLOW_TASK_ID": "t", "C2M_AIRFLOW_MAP_INDEX": "-1"}
    name = container_name(env, "spark")
    first = subprocess.Popen(podman_command(ref, [], ["sleep", "600"], [], name),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _running(name) is False:
            assert time.monotonic() < deadline and first.poll() is None, "the first container never started"
            time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert _running(name), "a killed podman client should leave its container (the orphan)"
        out = subprocess.run(podman_command(ref, [], ["echo", "second try"], [], name),
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and "second try" in out.stdout, out.stderr
        assert not _running(name)  # the orphan is gone, and the second try's container (--rm) too
    finally:
        subprocess.run([*PODMAN, "rm", "-f", "--ignore", name], capture_output=True, timeout=120)


def _running(name: str) -> bool:
    out = subprocess.run([*PODMAN, "ps", "--filter", f"name=^{name}$", "--format", "{{.Names}}"],
                         capture_output=True, text=True, timeout=60)
    return name in out.stdout.split()
