"""The images, checked offline: hadolint, the house rules (pinned versions, strict bash, lean apt
and pip layers, a non-root user, a self-check), pinned versions that agree with setup.cfg, the
helper scripts, and docker/compose.yaml. No Docker engine is needed (or available here): images
are linted and parsed, not built.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("*/Dockerfile"))
IMAGES = [p.parent.name for p in DOCKERFILES]
INSTALL_HINT = "run `bash ops/install/k8s_tools.sh .venv-jobs` (make test does this)"


def hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail(f"hadolint not found next to {sys.executable} or on PATH: {INSTALL_HINT}")
    return found


def instructions(path: Path) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    out, buf, start = [], "", 0
    for no, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = no
        buf += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((start, word.upper(), rest.strip()))
            buf = ""
    return out


def stages(path: Path) -> list[list[tuple[int, str, str]]]:
    result: list[list] = []
    for ins in instructions(path):
        if ins[1] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_there_are_four_images():
    assert IMAGES == ["airflow", "mlflow", "spark", "trainer"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_hadolint_reports_nothing(dockerfile):
    proc = subprocess.run([hadolint(), "--format", "json", "--failure-threshold", "style", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"{f['file']}:{f['line']} {f['code']} {f['message']}" for f in findings)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_every_hadolint_ignore_says_why(dockerfile):
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[i - 1].strip() if i else ""
            assert above.startswith("#") and "hadolint" not in above and len(above) > 20, (
                f"{dockerfile.name}:{i + 1}: `{line.strip()}` needs a comment line above it giving the reason")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IMAGES)
def test_house_rules(dockerfile):
    ins = instructions(dockerfile)
    first_from = next(i for i, (_, word, _) in enumerate(ins) if word == "FROM")
    # Pinned versions as ARGs at the top, before the first FROM, all with values.
    top_args = [rest for _, word, rest in ins[:first_from] if word == "ARG"]
    assert top_args and all(word == "ARG" for _, word, _ in ins[:first_from])
    assert any(re.search(r"VERSION=\S+|IMAGE=\S+:\S+", a) for a in top_args)
    pinned = dict(a.split("=", 1) for a in top_args)
    names: set[str] = set()
    for stage in stages(dockerfile):
        base, *alias = stage[0][2].split()
        # Every base is a tagged image, a pinned ARG holding one, or an earlier stage.
        ref = pinned.get(base[2:-1], "") if base.startswith("${") else base
        assert ":" in ref or base in names, f"{dockerfile.name}: FROM {base} is not pinned"
        if alias:
            names.add(alias[-1])
        words = [w for _, w, _ in stage]
        if "RUN" in words:
            shell = next((r for _, w, r in stage if w == "SHELL"), "")
            inherited = stage[0][2].split()[0] in {s[0][2].split()[-1] for s in stages(dockerfile)}
            assert inherited or json.loads(shell) == ["/bin/bash", "-euo", "pipefail", "-c"], dockerfile
    for no, word, rest in ins:
        if word == "RUN" and "apt-get install" in rest:
            assert "--no-install-recommends" in rest and "rm -rf /var/lib/apt/lists/*" in rest, no
        if word == "RUN" and re.search(r"pip\"? install", rest):
            for part in re.split(r"&&", rest):
                if re.search(r"pip\"? install", part):
                    assert "--no-cache-dir" in part, f"{dockerfile.name}:{no}: {part.strip()}"
    # The last USER is a non-root numeric id, and a self-check RUN comes after it.
    users = [(i, rest) for i, (_, w, rest) in enumerate(ins) if w == "USER"]
    assert users, "no USER"
    last_user_idx, user = users[-1]
    uid = user.split(":")[0]
    assert uid.startswith("${") or (uid.isdigit() and int(uid) > 0), user
    after = " ".join(rest for _, w, rest in ins[last_user_idx:] if w == "RUN")
    assert re.search(r"selfcheck|--check-build|--version", after), "no build-time self-check after USER"


@pytest.mark.parametrize("name", ["airflow", "spark", "trainer"])
def test_dependency_layers_come_before_the_source(name):
    ins = instructions(DOCKER / name / "Dockerfile")
    first_deps = next(i for i, (_, w, r) in enumerate(ins) if w == "RUN" and "requirements.txt" in r)
    first_source = next(i for i, (_, w, r) in enumerate(ins) if w == "COPY" and re.search(r"\bops\b", r)
                        and "ops/install" not in r)
    assert first_deps < first_source


def setup_cfg_pin(package: str) -> str:
    m = re.search(rf"(?m)^\s*{re.escape(package)}==(\S+)", (REPO / "setup.cfg").read_text())
    assert m, f"setup.cfg pins no {package}"
    return m.group(1)


def arg(name: str, var: str) -> str:
    m = re.search(rf"(?m)^ARG {var}=(\S*)$", (DOCKER / name / "Dockerfile").read_text())
    assert m, f"docker/{name}/Dockerfile has no ARG {var}="
    return m.group(1)


def test_pinned_versions_agree_with_setup_cfg():
    assert arg("airflow", "AIRFLOW_VERSION") == setup_cfg_pin("apache-airflow")
    assert arg("spark", "PYSPARK_VERSION") == setup_cfg_pin("pyspark")
    assert arg("trainer", "TORCH_VERSION") == setup_cfg_pin("torch")
    assert arg("airflow", "TORCH_VERSION") == setup_cfg_pin("torch")
    mlflow_series = setup_cfg_pin("mlflow").rstrip("*").rstrip(".")
    assert arg("mlflow", "MLFLOW_VERSION").startswith(mlflow_series + ".")


def test_spark_image_hadoop_matches_the_hadoop_inside_pyspark():
    """hadoop-aws must match the Hadoop pyspark bundles; read it from the installed pyspark."""
    pyspark = pytest.importorskip("pyspark", reason="runs under .venv-jobs, which has pyspark")
    assert pyspark.__version__ == arg("spark", "PYSPARK_VERSION")
    jars = os.listdir(Path(pyspark.__file__).parent / "jars")
    assert f"hadoop-client-api-{arg('spark', 'HADOOP_VERSION')}.jar" in jars


def test_trainer_builds_horovod_with_nccl_through_the_project_script():
    text = (DOCKER / "trainer" / "Dockerfile").read_text()
    assert re.search(r"ARG BASE_IMAGE=nvidia/cuda:12\.\d+(\.\d+)?-\S*devel\S*", text)
    assert "/whl/cu12" in arg("trainer", "TORCH_INDEX_URL")
    assert "bash /tmp/hvd/build_horovod.sh" in text and "C2M_HOROVOD_GPU_OPERATIONS=NCCL" in text
    assert "COPY ops/install/build_horovod.sh ops/install/horovod-0.28.1.patch" in text
    assert (REPO / "ops/install/horovod-0.28.1.patch").exists()
    selfcheck = (DOCKER / "trainer" / "selfcheck.py").read_text()
    assert "--check-build" in selfcheck and '"NCCL"' in selfcheck


def test_extras_helper_prints_the_setup_cfg_extras():
    out = subprocess.run([sys.executable, str(DOCKER / "extras.py"), str(REPO / "setup.cfg"), "spark", "train"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert f"pyspark=={setup_cfg_pin('pyspark')}" in out and f"torch=={setup_cfg_pin('torch')}" in out
    assert len(out) == len(set(out)) and not any(line.startswith("#") for line in out)
    bad = subprocess.run([sys.executable, str(DOCKER / "extras.py"), str(REPO / "setup.cfg"), "nope"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "no extra" in bad.stderr


def test_spark_entrypoint_starts_executors_the_way_spark_on_kubernetes_expects(tmp_path):
    script = (DOCKER / "spark" / "entrypoint.sh").read_text()
    assert 'exec /usr/bin/tini -s -- "${CMD[@]}"' in script
    dry = tmp_path / "entrypoint.sh"
    dry.write_text(script.replace('exec /usr/bin/tini -s -- "${CMD[@]}"', 'printf "%s\\n" "${CMD[@]}"'))
    env = {"PATH": os.environ["PATH"], "SPARK_HOME": "/sh", "JAVA_HOME": "/jh", "SPARK_EXECUTOR_MEMORY": "2g",
           "SPARK_JAVA_OPT_1": "-Db=2", "SPARK_JAVA_OPT_0": "-Da=1", "SPARK_JAVA_OPT_10": "-Dc=3",
           "SPARK_DRIVER_URL": "spark://d:7078", "SPARK_EXECUTOR_ID": "3", "SPARK_EXECUTOR_CORES": "2",
           "SPARK_APPLICATION_ID": "app", "SPARK_EXECUTOR_POD_IP": "10.0.0.9",
           "SPARK_RESOURCE_PROFILE_ID": "0", "SPARK_EXECUTOR_POD_NAME": "exec-3"}
    out = subprocess.run(["bash", str(dry), "executor"], env=env, capture_output=True, text=True, check=True)
    argv = out.stdout.splitlines()
    assert argv[:6] == ["/jh/bin/java", "-Da=1", "-Db=2", "-Dc=3", "-Xms2g", "-Xmx2g"]
    assert "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend" in argv
    assert argv[argv.index("--hostname") + 1] == "10.0.0.9" and argv[argv.index("-cp") + 1] == "/sh/conf:/sh/jars/*"
    other = subprocess.run(["bash", str(dry), "crawl2model", "extract"], env=env, capture_output=True, text=True)
    assert other.stdout.split() == ["crawl2model", "extract"]


def _fake_central(root: Path, hadoop: str, sdk: str) -> None:
    def put(rel: str, data: bytes) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        (p.parent / (p.name + ".sha1")).write_text(hashlib.sha1(data).hexdigest() + "\n")

    put(f"org/apache/hadoop/hadoop-project/{hadoop}/hadoop-project-{hadoop}.pom",
        f"<project><properties>\n  <aws-java-sdk-v2.version>{sdk}</aws-java-sdk-v2.version>\n"
        "</properties></project>\n".encode())
    put(f"org/apache/hadoop/hadoop-aws/{hadoop}/hadoop-aws-{hadoop}.jar", b"aws jar")
    put(f"software/amazon/awssdk/bundle/{sdk}/bundle-{sdk}.jar", b"bundle jar")


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (file:// URLs stand in for Maven Central)")
def test_s3a_jar_fetcher_takes_the_sdk_version_hadoop_declares(tmp_path):
    central = tmp_path / "central"
    _fake_central(central, "9.9.9", "2.99.1")
    script = DOCKER / "spark" / "fetch_s3a_jars.sh"
    base = {"PATH": os.environ["PATH"], "HADOOP_VERSION": "9.9.9", "MAVEN_CENTRAL": f"file://{central}"}
    ok = subprocess.run(["bash", str(script), str(tmp_path / "out")], env=base, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["bundle-2.99.1.jar", "hadoop-aws-9.9.9.jar"]
    assert "sha256=" in ok.stdout
    wrong = subprocess.run(["bash", str(script), str(tmp_path / "o2")],
                           env={**base, "AWS_SDK_BUNDLE_VERSION": "2.1.0"}, capture_output=True, text=True)
    assert wrong.returncode != 0 and "declares 2.99.1" in wrong.stderr
    pinned = subprocess.run(["bash", str(script), str(tmp_path / "o3")],
                            env={**base, "HADOOP_AWS_SHA256": "0" * 64}, capture_output=True, text=True)
    assert pinned.returncode != 0 and "HADOOP_AWS_SHA256" in pinned.stderr
    (central / "software/amazon/awssdk/bundle/2.99.1/bundle-2.99.1.jar").write_bytes(b"tampered")
    bad = subprocess.run(["bash", str(script), str(tmp_path / "o4")], env=base, capture_output=True, text=True)
    assert bad.returncode != 0 and "sha1 mismatch" in bad.stderr


@pytest.mark.parametrize("script", ["docker/spark/entrypoint.sh", "docker/spark/fetch_s3a_jars.sh",
                                    "ops/install/k8s_tools.sh"])
def test_shell_scripts_parse_and_are_strict(script):
    path = REPO / script
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    assert "set -euo pipefail" in path.read_text()
    assert os.access(path, os.X_OK), f"{script} is not executable (chmod +x)"


# --- docker/compose.yaml ----------------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_runs_the_whole_stack():
    services = compose()["services"]
    assert {"postgres", "seaweedfs", "mlflow", "airflow-init", "airflow-api-server", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        build = svc.get("build")
        if build:
            assert (REPO / build["dockerfile"]).exists(), build
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["C2M_DATA_ROOT"].startswith("s3://") and env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    mlflow_args = " ".join(services["mlflow"]["command"])
    assert "--artifacts-destination=s3://" in mlflow_args and "--app-name=basic-auth" in mlflow_args
    assert services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://")


def test_compose_keeps_credentials_out_of_command_lines():
    """Every process's argv is readable by any user of the host (`ps`): credentials go in environment."""
    services = compose()["services"]
    for name, svc in services.items():
        for key in ("command", "entrypoint"):
            value = svc.get(key) or []
            for arg in [value] if isinstance(value, str) else value:
                assert not re.search(r"\$\{C2M_[A-Z_]*(PASSWORD|SECRET|KEY)", arg), (name, key, arg)
                assert not re.search(r"://[^/\s:@]*:[^@\s]+@", arg), (name, key, arg)


def test_compose_mlflow_requires_a_login_that_the_tasks_have(monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    services = compose()["services"]
    env = services["mlflow"]["environment"]
    config = env["MLFLOW_AUTH_CONFIG_PATH"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["mlflow"]["volumes"]}
    ini = (DOCKER / mounts[config]).resolve()
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "u")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "p")
    auth = read_auth_config()  # what the basic-auth app reads at start
    db_file = auth.database_uri.removeprefix("sqlite:///")
    assert any(db_file.startswith(target + "/") for target in mounts if not target.endswith(".ini")), db_file
    airflow = services["airflow-scheduler"]["environment"]
    assert airflow["MLFLOW_TRACKING_USERNAME"] == env["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert airflow["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" in env


def test_compose_takes_every_credential_from_the_environment():
    text = (DOCKER / "compose.yaml").read_text()
    for m in re.finditer(r"(?im)^\s*[A-Z_]*(password|secret|fernet|access_key)[A-Z_]*:\s*(\S+)", text):
        value = m.group(2)
        assert value.startswith("${") and ":?" in value, f"literal credential in compose.yaml: {m.group(0)}"
    example = (DOCKER / "compose.env.example").read_text()
    for var in set(re.findall(r"\$\{(C2M_[A-Z_]+):\?", text)):
        assert re.search(rf"(?m)^{var}=$", example), f"{var} missing (or filled in) in compose.env.example"
