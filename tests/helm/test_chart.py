"""The Helm chart, checked offline: helm lint, helm template, strict Kubernetes schemas, render assertions.

Runs under .venv-jobs (kubernetes-validate lives there) with helm from the cache that
ops/install/k8s_tools.sh fills. No cluster is needed. Rendering is cached per value set, so
the whole file takes a few seconds.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "crawl2model"
GPU_VALUES = REPO / "helm" / "values-gpu-cluster.yaml"
MPIJOB_SCHEMA = Path(__file__).parent / "schemas" / "mpijob-v2beta1.json"
K8S_VERSION = "1.30.0"  # oldest minor the chart is validated against; Chart.yaml allows >= 1.27
RELEASE = "c2m"
INSTALL_HINT = "run `bash ops/install/k8s_tools.sh .venv-jobs` (make test does this)"


def helm_path() -> Path:
    cache = Path(os.environ.get("C2M_CACHE") or Path.home() / ".cache" / "crawl2model")
    return cache / "k8s-tools" / "helm"


@pytest.fixture(scope="module", autouse=True)
def _tools():
    if not helm_path().is_file():
        pytest.fail(f"helm not found at {helm_path()}: {INSTALL_HINT}")
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        pytest.fail(f"kubernetes-validate is not installed in this venv: {INSTALL_HINT}")


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm_path()), *args], capture_output=True, text=True, timeout=120)


@lru_cache(maxsize=None)
def render(*opts: str) -> tuple[dict, ...]:
    """helm template with the given options (-f FILE / --set k=v); returns the documents."""
    proc = helm("template", RELEASE, str(CHART), "--namespace", "ml", *opts)
    assert proc.returncode == 0, f"helm template {' '.join(opts)} failed:\n{proc.stderr}"
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def fail_render(*opts: str) -> str:
    proc = helm("template", RELEASE, str(CHART), *opts)
    assert proc.returncode != 0, f"helm template {' '.join(opts)} should have failed"
    return proc.stderr


def find(docs, kind: str, name_suffix: str = "") -> list[dict]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]


def one(docs, kind: str, name_suffix: str) -> dict:
    found = find(docs, kind, name_suffix)
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_specs(docs) -> list[tuple[str, dict]]:
    """(where, pod spec) for every pod the chart describes, embedded templates included."""
    out = []
    for d in docs:
        kind, name = d["kind"], d["metadata"].get("name", "template")
        if kind in ("Deployment", "StatefulSet", "Job"):
            out.append((f"{kind}/{name}", d["spec"]["template"]["spec"]))
        elif kind == "MPIJob":
            for role, rs in d["spec"]["mpiReplicaSpecs"].items():
                out.append((f"MPIJob/{name}/{role}", rs["template"]["spec"]))
        elif kind == "ConfigMap":
            for key, inner in embedded(d):
                out.extend((f"ConfigMap/{name}/{key}/{w}", s) for w, s in pod_specs([inner]))
                if inner["kind"] == "Pod":
                    out.append((f"ConfigMap/{name}/{key}", inner["spec"]))
    return out


def embedded(configmap: dict) -> list[tuple[str, dict]]:
    """Kubernetes objects stored as YAML inside a ConfigMap (pod templates, the MPIJob)."""
    found = []
    for key, text in (configmap.get("data") or {}).items():
        if key.endswith(".yaml"):
            obj = yaml.safe_load(text)
            if isinstance(obj, dict) and "kind" in obj:
                found.append((key, obj))
    return found


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


VALUE_SETS = {
    "defaults": (),
    "gpu-cluster": ("-f", str(GPU_VALUES), "--set", "training.runOnInstall=true"),
    "celery-ingress": ("--set", "airflow.executor=CeleryExecutor",
                       "--set", "airflow.apiServer.ingress.enabled=true",
                       "--set", "airflow.apiServer.ingress.host=airflow.example.com",
                       "--set", "mlflow.ingress.enabled=true", "--set", "mlflow.ingress.host=mlflow.example.com",
                       "--set", "training.enabled=true", "--set", "training.gpu.enabled=false"),
}


# --- lint and schema validation ---------------------------------------------------------------

@pytest.mark.parametrize("values", [[], ["-f", str(GPU_VALUES)]], ids=["defaults", "gpu-cluster"])
def test_helm_lint_is_clean(values):
    proc = helm("lint", "--strict", str(CHART), *values)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_document_passes_strict_kubernetes_validation(name):
    import jsonschema
    import kubernetes_validate

    mpijob_schema = json.loads(MPIJOB_SCHEMA.read_text())
    docs = render(*VALUE_SETS[name])
    todo = [(f"{d['kind']}/{d['metadata']['name']}", d) for d in docs]
    for d in docs:
        if d["kind"] == "ConfigMap":
            todo += [(f"ConfigMap/{d['metadata']['name']}/{k}", o) for k, o in embedded(d)]
    checked = 0
    for where, obj in todo:
        if obj["kind"] == "MPIJob":
            # A CRD: kubernetes-validate has no schema for it. Check its shape with our schema
            # and each pod template strictly, as the core v1 PodTemplate it is.
            jsonschema.validate(obj, mpijob_schema)
            for role, rs in obj["spec"]["mpiReplicaSpecs"].items():
                wrapper = {"apiVersion": "v1", "kind": "PodTemplate",
                           "metadata": {"name": f"mpijob-{role.lower()}"}, "template": rs["template"]}
                kubernetes_validate.validate(wrapper, K8S_VERSION, strict=True)
        else:
            if obj["kind"] == "Pod" and "name" not in obj.get("metadata", {}):
                obj = {**obj, "metadata": {**obj.get("metadata", {}), "name": "template"}}
            try:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {where} fails strict validation at {list(exc.path)}: {exc.message}")
        checked += 1
    assert checked >= 15


def test_strict_validation_rejects_unknown_fields():
    """Guard against the validator silently going lenient (the point of --strict)."""
    import kubernetes_validate

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [{"name": "a", "image": "b", "imagePolicy": "typo"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


# --- render assertions -----------------------------------------------------------------------

def test_images_come_from_values_per_component():
    docs = render(*VALUE_SETS["gpu-cluster"])
    reg = "registry.example.com/ml/crawl2model-"
    expect = {"airflow-api-server": "airflow", "airflow-scheduler": "airflow", "airflow-dag-processor": "airflow",
              "airflow-triggerer": "airflow", "airflow-worker": "airflow-worker", "mlflow": "mlflow"}
    for suffix, image in expect.items():
        dep = one(docs, "Deployment", suffix)
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == f"{reg}{image}:0.1.0", suffix
    mpijob = one(docs, "MPIJob", "-train")
    for rs in mpijob["spec"]["mpiReplicaSpecs"].values():
        assert rs["template"]["spec"]["containers"][0]["image"] == f"{reg}trainer:0.1.0"
    conf = one(docs, "ConfigMap", "-spark-conf")["data"]["spark-defaults.conf"]
    assert f"spark.kubernetes.container.image {reg}spark:0.1.0" in conf
    assert all(d["spec"]["template"]["spec"].get("imagePullSecrets") == [{"name": "registry-example-com"}]
               for d in find(docs, "Deployment"))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_container_has_resources_and_a_locked_down_security_context(name):
    for where, spec in pod_specs(render(*VALUE_SETS[name])):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] > 0, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], where
            if "spark-conf" not in where:  # Spark sets executor resources itself
                assert c["resources"]["requests"] and c["resources"]["limits"], f"{where}/{c['name']}"


SECRET_NAMES = re.compile(r"PASSWORD|SECRET|FERNET|SQL_ALCHEMY_CONN|BACKEND_STORE_URI|BROKER_URL|ACCESS_KEY")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_credentials_only_come_from_secrets_by_name(name):
    docs = render(*VALUE_SETS[name])
    assert not find(docs, "Secret"), "the chart must not create Secrets (no secrets in values)"
    for where, spec in pod_specs(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            for var, entry in env_of(c).items():
                if not SECRET_NAMES.search(var):
                    continue
                if "valueFrom" in entry:
                    assert "secretKeyRef" in entry["valueFrom"], (where, var)
                else:  # URLs assembled from a secret-sourced password, never a literal one
                    assert re.search(r"\$\(C2M_(DB|REDIS)_PASSWORD\)", entry["value"]), (where, var, entry["value"])


def test_values_file_holds_no_credentials():
    text = (CHART / "values.yaml").read_text() + GPU_VALUES.read_text()
    for line in text.splitlines():
        m = re.match(r"\s*([A-Za-z_]*(password|secret|token|accessKey)[A-Za-z_]*):\s*(\S+)", line, re.I)
        if m and m.group(3) not in ('""', "[]", "{}"):
            assert m.group(1).endswith(("Name", "Key", "secretName")), f"looks like a credential: {line.strip()}"


def test_external_db_comes_from_the_named_secret_and_no_bundled_postgres():
    docs = render(*VALUE_SETS["gpu-cluster"])
    assert not find(docs, "StatefulSet")
    sched = one(docs, "Deployment", "-airflow-scheduler")["spec"]["template"]["spec"]["containers"][0]
    conn = env_of(sched)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]["valueFrom"]["secretKeyRef"]
    assert conn == {"name": "crawl2model-db", "key": "airflow-sql-alchemy-conn"}
    mlflow = one(docs, "Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"][0]
    store = env_of(mlflow)["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]
    assert store == {"name": "crawl2model-db", "key": "mlflow-backend-store-uri"}
    assert not any("backend-store-uri" in a for a in mlflow["args"])  # mlflow reads the env var itself
    assert "--artifacts-destination=s3://acme-crawl2model/prod/mlflow" in mlflow["args"]
    s3 = env_of(mlflow)["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]
    assert s3 == {"name": "crawl2model-s3", "key": "AWS_SECRET_ACCESS_KEY"}


def test_bundled_postgres_by_default_with_password_from_secret():
    docs = render()
    pg = one(docs, "StatefulSet", "-postgresql")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(pg)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "crawl2model-postgres"


def test_kubernetes_executor_by_default():
    docs = render()
    sched = one(docs, "Deployment", "-airflow-scheduler")["spec"]["template"]["spec"]
    env = env_of(sched["containers"][0])
    assert env["AIRFLOW__CORE__EXECUTOR"]["value"] == "KubernetesExecutor"
    assert env["AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE"]["value"] == "ml"
    template_path = env["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"]["value"]
    mounts = {m["mountPath"] for m in sched["containers"][0]["volumeMounts"]}
    assert os.path.dirname(template_path) in mounts
    (key, pod), = embedded(one(docs, "ConfigMap", "-pod-template"))
    assert key == os.path.basename(template_path)
    base = pod["spec"]["containers"][0]
    assert base["name"] == "base" and "crawl2model-airflow-worker" in base["image"]
    assert env_of(base)["C2M_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert not find(docs, "Deployment", "-airflow-worker") and not find(docs, "Deployment", "-redis")


def test_celery_executor_runs_workers_from_the_worker_image_with_a_broker():
    docs = render(*VALUE_SETS["celery-ingress"])
    worker = one(docs, "Deployment", "-airflow-worker")["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"] == ["celery", "worker"] and "crawl2model-airflow-worker" in worker["image"]
    env = env_of(worker)
    assert env["AIRFLOW__CORE__EXECUTOR"]["value"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"]["value"] == f"redis://:$(C2M_REDIS_PASSWORD)@{RELEASE}-crawl2model-redis:6379/0"
    assert one(docs, "Service", "-redis") and not find(docs, "ConfigMap", "-pod-template")
    gpu = render(*VALUE_SETS["gpu-cluster"])
    w = one(gpu, "Deployment", "-airflow-worker")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(w)["AIRFLOW__CELERY__BROKER_URL"]["valueFrom"]["secretKeyRef"]["name"] == "crawl2model-celery-broker"
    assert not find(gpu, "Deployment", "-redis")


def test_ingress_is_off_by_default_and_on_when_asked():
    assert not find(render(), "Ingress")
    hosts = {d["spec"]["rules"][0]["host"] for d in find(render(*VALUE_SETS["celery-ingress"]), "Ingress")}
    assert hosts == {"airflow.example.com", "mlflow.example.com"}


def test_gpu_training_job_requests_gpus_on_gpu_nodes():
    docs = render(*VALUE_SETS["gpu-cluster"])
    job = one(docs, "MPIJob", "-train")
    assert job["spec"]["slotsPerWorker"] == 8
    worker = job["spec"]["mpiReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 4
    spec = worker["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert spec["volumes"][0]["emptyDir"]["medium"] == "Memory"  # /dev/shm for NCCL
    launcher = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in launcher["resources"]["limits"]
    assert launcher["command"][launcher["command"].index("-np") + 1] == "32"
    # The published template equals the job created on install.
    (_, published), = embedded(one(docs, "ConfigMap", "-training-job"))
    assert published == job
    # Default values publish no training job (it needs the MPI operator's CRD).
    assert not find(render(), "MPIJob") and not find(render(), "ConfigMap", "-training-job")


def test_cpu_training_has_no_gpu_limits():
    job_cm = one(render(*VALUE_SETS["celery-ingress"]), "ConfigMap", "-training-job")
    (_, job), = embedded(job_cm)
    limits = job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits and job["spec"]["slotsPerWorker"] == 1


def test_platform_configmap_carries_the_settings_ops_reads():
    from ops.launch.settings import Settings  # noqa: F401  (the keys below are what it reads)

    data = one(render(*VALUE_SETS["gpu-cluster"]), "ConfigMap", "-platform")["data"]
    assert data["C2M_DATA_ROOT"] == "s3://acme-crawl2model/prod/data"
    assert data["C2M_SPARK_MASTER"].startswith("k8s://")
    assert data["MLFLOW_TRACKING_URI"] == f"http://{RELEASE}-crawl2model-mlflow:5000"
    readers = "".join(p.read_text() for folder in ("launch", "lake") for p in (REPO / "ops" / folder).glob("*.py"))
    for key in data:
        if key.startswith("C2M_") and not key.startswith("C2M_K8S_"):  # C2M_K8S_*: the test below
            assert key in readers, f"{key}: no module of ops/launch or ops/lake reads it"


def test_platform_configmap_configures_the_cluster_launcher_as_the_chart_deploys():
    """Tasks read ClusterConfig from C2M_K8S_*; it must match the images and MPIJob the chart renders."""
    from ops.launch.choose import launcher_kind
    from ops.launch.kubernetes.cluster import ClusterConfig

    docs = render(*VALUE_SETS["gpu-cluster"])
    data = one(docs, "ConfigMap", "-platform")["data"]
    assert launcher_kind(data["C2M_LAUNCHER"]) == "kubernetes"
    cfg = ClusterConfig.from_env(data)  # every C2M_K8S_* key is a known field with a valid value
    assert sorted(k for k in data if k.startswith("C2M_K8S_")) == sorted(
        f"C2M_K8S_{k.upper()}" for k in [
            "namespace", "service_account", "platform_configmap", "image_pull_secrets", "spark_master",
            "spark_image", "spark_venv", "executor_instances", "executor_cores", "executor_memory",
            "s3_endpoint", "s3_region", "s3_path_style", "s3_secret", "secret_env", "trainer_image",
            "trainer_venv",
            "workers", "gpu_per_worker", "cpu_slots_per_worker", "gpu_resource", "network_interfaces",
            "node_selector", "tolerations", "worker_resources", "launcher_resources", "env", "shm_size",
            "ttl_seconds_after_finished"])
    mpijob = yaml.safe_load(one(docs, "ConfigMap", "-training-job")["data"]["mpijob.yaml"])
    worker = mpijob["spec"]["mpiReplicaSpecs"]["Worker"]
    wpod = worker["template"]["spec"]
    assert cfg.trainer_image == wpod["containers"][0]["image"]
    assert cfg.workers == worker["replicas"] and cfg.slots_per_worker == mpijob["spec"]["slotsPerWorker"]
    assert cfg.node_selector == wpod.get("nodeSelector", {}) and list(cfg.tolerations) == wpod.get("tolerations", [])
    assert cfg.platform_configmap == one(docs, "ConfigMap", "-platform")["metadata"]["name"]
    assert cfg.spark_master == data["C2M_SPARK_MASTER"] and cfg.gpu_per_worker >= 1
    env = one(docs, "Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})}
    # training pods log in with the admin the MLflow server is created with
    login = {var: "{name}:{key}".format(**refs[f"MLFLOW_AUTH_ADMIN_{var.rsplit('_', 1)[1]}"])
             for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    assert list(cfg.secret_env.items()) == list(login.items())  # the chart's MPIJob order too
    cpu = ClusterConfig.from_env(one(render("--set", "training.gpu.enabled=false"), "ConfigMap", "-platform")["data"])
    assert cpu.gpu_per_worker == 0
    no_login = one(render("--set", "mlflow.auth.enabled=false"), "ConfigMap", "-platform")["data"]
    assert ClusterConfig.from_env(no_login).secret_env == {}  # no Secret to read the login from


# --- bad values fail with a message naming the keys --------------------------------------------

BAD_VALUES = [
    (["--set", "postgresql.enabled=false", "--set", "database.external.enabled=true"],
     ["database.external.secretName"]),
    (["--set", "database.external.enabled=true", "--set", "database.external.secretName=db"],
     ["postgresql.enabled", "database.external.enabled"]),
    (["--set", "postgresql.enabled=false"], ["postgresql.enabled", "database.external.enabled"]),
    (["--set", "training.enabled=true", "--set", "training.gpu.perWorker=0"],
     ["training.gpu.enabled", "training.gpu.perWorker"]),
    (["--set", "airflow.executor=CeleryExecutor", "--set", "redis.enabled=false"],
     ["redis.enabled", "airflow.celery.brokerSecretName"]),
    (["--set", "airflow.secretName="], ["airflow.secretName"]),
    (["--set", "airflow.executor=CeleryExecutor", "--set", "redis.auth.secretName="], ["redis.auth.secretName"]),
    (["--set", "mlflow.enabled=false"], ["platform.mlflowTrackingUri"]),
    (["--set", "mlflow.ingress.enabled=true"], ["mlflow.ingress.host"]),
    (["--set", "training.runOnInstall=true"], ["training.runOnInstall", "training.enabled"]),
    (["--set", "airflow.executor=LocalExecutor"], ["airflow.executor"]),  # values.schema.json
    (["--set", "training.workers=0", "--set", "training.enabled=true"], ["training.workers"]),
]


@pytest.mark.parametrize("opts,keys", BAD_VALUES, ids=[" ".join(o[1::2]) for o, _ in BAD_VALUES])
def test_contradicting_values_fail_and_name_the_keys(opts, keys):
    err = fail_render(*opts)
    for key in keys:
        assert key in err, f"error does not name {key}:\n{err}"


def test_every_leaf_value_is_commented():
    """values.yaml documents every setting: each leaf key has a comment right above it, except
    inside free-form maps (resources, security contexts, env/config maps) documented as a whole."""
    freeform = {"resources", "workerResources", "launcherResources", "pod", "container", "config", "env",
                "annotations", "extraEnv", "conf", "args", "nodeSelector", "dns", "ingressControllers"}
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    missing = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_][\w.-]*):(.*)$", line)
        if not m or line.lstrip().startswith("#"):
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = [k for _, k in stack]
        stack.append((indent, key))
        is_leaf = rest != "" and not rest.startswith("#")
        if not is_leaf or freeform & set(parents):
            continue
        if not lines[i - 1].strip().startswith("#"):
            missing.append(".".join(parents + [key]))
    assert not missing, f"values without a comment above them: {missing}"


# --- launch commands match what ops/ generates -------------------------------------------------

def dockerfile_env(name: str, var: str) -> str:
    text = (REPO / "docker" / name / "Dockerfile").read_text()
    m = re.search(rf"(?m)^\s*(?:ENV\s+)?{var}=(\S+)", text)
    assert m, f"docker/{name}/Dockerfile sets no {var}"
    return m.group(1).rstrip("\\").strip()


def fake_image_tree(tmp_path: Path, venv: str) -> Path:
    """A stand-in of an image's file system, so ops.launch.local' existence checks pass."""
    root = tmp_path / "img"
    for tool in ("spark-submit", "horovodrun", "python"):
        p = root / venv.lstrip("/") / "bin" / tool
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
    package = root / "site-packages" / "spark_jobs"
    package.mkdir(parents=True)
    (package / "__main__.py").touch()
    return root


def test_mpijob_launch_command_has_the_shape_ops_launchers_generates(tmp_path):
    """The MPIJob runs what ops.launch.local.horovodrun_command builds, adapted to pods.

    Allowed differences, and only these: the MPI operator's hostfile instead of
    `-H localhost:N`, ssh on the trainer image's port, and no loopback-only
    `--network-interfaces lo` (an explicit NIC may be set from values).
    """
    from ops.launch.local import horovodrun_command
    from ops.launch.settings import Settings

    docs = render(*VALUE_SETS["gpu-cluster"])
    job = one(docs, "MPIJob", "-train")
    chart_cmd = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
    venv = dockerfile_env("trainer", "C2M_JOBS_VENV")
    assert chart_cmd[0] == f"{venv}/bin/horovodrun", "chart and trainer image disagree on the venv"

    root = fake_image_tree(tmp_path, venv)
    settings = Settings(jobs_venv=root / venv.lstrip("/"), repo_root=root / "site-packages")
    values = yaml.safe_load(GPU_VALUES.read_text())["training"]
    np = values["workers"] * values["gpu"]["perWorker"]
    # The gpu-cluster values name Secrets (S3 keys, MLflow login): ranks start through ops.lake.secret_env.
    ops_cmd = [a.replace(str(root), "") for a in horovodrun_command(values["module"], values["args"], np, settings,
                                                                     secrets_file=True)]

    def normalise(cmd: list[str]) -> list[str]:
        out, skip = [], {"-H": 1, "--hostfile": 1, "--ssh-port": 1, "--network-interfaces": 1}
        it = iter(cmd)
        for a in it:
            if a in skip:
                next(it)
            else:
                out.append(a)
        return out

    assert normalise(chart_cmd) == normalise(ops_cmd)
    assert ops_cmd[ops_cmd.index("-H") + 1] == f"localhost:{np}"  # the one thing the hostfile replaces
    assert chart_cmd[chart_cmd.index("--hostfile") + 1] == "/etc/mpi/hostfile"
    assert chart_cmd[chart_cmd.index("--ssh-port") + 1] == dockerfile_env("trainer", "ARG SSH_PORT")


def test_spark_launch_in_task_pods_matches_ops_launchers(tmp_path, monkeypatch):
    """Task pods run ops.launch.local.spark_submit_command itself; check what it builds there."""
    from ops.launch.local import spark_submit_command
    from ops.launch.settings import Settings

    docs = render()
    (_, pod), = embedded(one(docs, "ConfigMap", "-pod-template"))
    base = pod["spec"]["containers"][0]
    pod_env = {k: e["value"] for k, e in env_of(base).items() if "value" in e}
    platform = one(docs, "ConfigMap", "-platform")["data"]
    venv = pod_env["C2M_JOBS_VENV"]
    assert venv == dockerfile_env("airflow", "ENV C2M_JOBS_VENV"), "chart and worker image disagree on the venv"

    root = fake_image_tree(tmp_path, venv)
    for key, value in {**platform, **pod_env, "C2M_HOST": "10.1.2.3",
                       "C2M_JOBS_VENV": str(root / venv.lstrip("/"))}.items():
        monkeypatch.setenv(key, value)
    cmd = spark_submit_command("extract", ["--version", "v1"], Settings(repo_root=root / "site-packages"))
    cmd = [a.replace(str(root), "") for a in cmd]
    assert cmd[0] == f"{venv}/bin/spark-submit"
    assert cmd[cmd.index("--master") + 1] == platform["C2M_SPARK_MASTER"] == "k8s://https://kubernetes.default.svc:443"
    assert "spark.driver.host=10.1.2.3" in cmd  # executors call back to the task pod's IP
    assert cmd[-4:] == ["/site-packages/spark_jobs/__main__.py", "extract", "--version", "v1"]
    # Executors run the Spark image's python, the driver the worker image's.
    conf = one(docs, "ConfigMap", "-spark-conf")["data"]["spark-defaults.conf"]
    assert f"spark.pyspark.python {dockerfile_env('spark', 'C2M_JOBS_VENV')}/bin/python" in conf
    assert f"spark.pyspark.driver.python {venv}/bin/python" in conf
    assert base["volumeMounts"][0]["mountPath"] == pod_env["SPARK_CONF_DIR"]
