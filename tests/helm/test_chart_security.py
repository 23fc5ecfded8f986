"""The chart on a shared cluster: NetworkPolicies, MLflow login, Redis password, RBAC, secrets out of argv.

Render checks like test_chart.py (helm template, no cluster). The NetworkPolicies are checked by
evaluating them the way Kubernetes does (a pod is isolated in a direction once any policy selects
it; traffic passes when one rule of one selecting policy matches) over the pods the chart and
ops.launch.kubernetes create, so each assertion is a connection that is allowed or refused.
"""
from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from test_chart import (RELEASE, VALUE_SETS, _tools, embedded, env_of, fail_render, find, one,  # noqa: F401
                        pod_specs, render)

CELERY = ("--set", "airflow.executor=CeleryExecutor")
NS = "ml"


# --- a NetworkPolicy evaluator ------------------------------------------------------------------

@dataclass(frozen=True)
class Pod:
    name: str
    labels: dict = field(hash=False)
    namespace: str = NS
    ns_labels: dict = field(default_factory=lambda: {"kubernetes.io/metadata.name": NS}, hash=False)
    ip: str = "10.244.0.10"


@dataclass(frozen=True)
class Address:
    ip: str


def selects(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        present, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and value in expr["values"]) \
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def peer_matches(peer: dict, other, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except") or [])
    if isinstance(other, Address):
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], other.ns_labels):
            return False
    elif other.namespace != policy_ns:
        return False
    return selects(peer.get("podSelector") or {}, other.labels)


def port_matches(ports: list | None, port: int, protocol: str) -> bool:
    return not ports or any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port)
                            for p in ports)


def allowed_one_way(policies, pod: Pod, other, port: int, protocol: str, direction: str) -> bool:
    """Does `pod` let this flow out (Egress, to `other`) or in (Ingress, from `other`)?"""
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [p for p in policies if p["metadata"].get("namespace", NS) == pod.namespace
                 and selects(p["spec"]["podSelector"], pod.labels)
                 and direction in p["spec"].get("policyTypes", ["Ingress"])]
    if not selecting:
        return True
    for p in selecting:
        for rule in p["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if (not peers or any(peer_matches(x, other, NS) for x in peers)) and \
                    port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def can_connect(docs, src: Pod, dst, port: int, protocol: str = "TCP") -> bool:
    policies = find(docs, "NetworkPolicy")
    if not allowed_one_way(policies, src, dst, port, protocol, "Egress"):
        return False
    return isinstance(dst, Address) or allowed_one_way(policies, dst, src, port, protocol, "Ingress")


def add(pods: dict, labels: dict) -> None:
    component = labels["app.kubernetes.io/component"]
    pods[component] = Pod(component, labels)


def chart_pods(docs) -> dict[str, Pod]:
    """Every pod the release runs or launches, by component, with the labels it will carry."""
    pods = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            add(pods, d["spec"]["template"]["metadata"]["labels"])
        elif d["kind"] == "ConfigMap":
            for _, obj in embedded(d):
                if obj["kind"] == "Pod":
                    add(pods, obj["metadata"]["labels"])
    # MPIJob pods as ops.launch.kubernetes creates them (the KubernetesLauncher's jobs).
    from ops.launch.kubernetes.cluster import ClusterConfig
    from ops.launch.kubernetes.mpijob import mpijob_manifest

    job = mpijob_manifest("training.pretrain", ["--shards", "s3://b/v=1"], ClusterConfig(namespace=NS), "t")
    for role in job["spec"]["mpiReplicaSpecs"].values():
        add(pods, role["template"]["metadata"]["labels"])
    # Single-pod training: the label the KubernetesPodOperator puts on its pods.
    pods["training-pod"] = Pod("training-pod", {"kubernetes_pod_operator": "True", "dag_id": "pretrain"})
    return pods


KUBE_DNS = Pod("kube-dns", {"k8s-app": "kube-dns"}, namespace="kube-system",
               ns_labels={"kubernetes.io/metadata.name": "kube-system"})
INGRESS_NGINX = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, namespace="ingress-nginx",
                    ns_labels={"kubernetes.io/metadata.name": "ingress-nginx"})
OTHER_APP = Pod("other", {"app": "someone-else"}, namespace="other",
                ns_labels={"kubernetes.io/metadata.name": "other"})
INTERNET = Address("93.184.216.34")
METADATA = Address("169.254.169.254")
PRIVATE = [Address("10.0.0.5"), Address("172.20.1.1"), Address("192.168.1.1"), METADATA]


# --- NetworkPolicies ------------------------------------------------------------------------

def test_default_deny_isolates_every_pod_the_platform_runs():
    docs = render()
    deny = one(docs, "NetworkPolicy", "-default-deny")["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and not deny.get("ingress") and not deny.get("egress")
    pods = chart_pods(docs)
    assert {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
            "airflow-task", "airflow-migrate", "mlflow", "postgresql", "spark-executor", "training-launcher",
            "training-worker"} <= set(pods)
    for name, pod in pods.items():
        if name != "training-pod":
            assert selects(deny["podSelector"], pod.labels), name
        # Nobody outside the release gets in, whatever the port.
        assert not can_connect(docs, OTHER_APP, pod, 8080), name
        assert not can_connect(docs, pod, OTHER_APP, 8080), name
    assert not find(render("--set", "networkPolicies.enabled=false"), "NetworkPolicy")


def test_postgres_accepts_only_airflow_and_mlflow_and_sends_nothing():
    docs = render(*CELERY)
    pods = chart_pods(docs)
    pg = pods["postgresql"]
    allowed = {"airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
               "airflow-migrate", "airflow-worker", "mlflow"}
    for name, pod in pods.items():
        if name != "postgresql":
            assert can_connect(docs, pod, pg, 5432) == (name in allowed), name
    assert not can_connect(docs, pg, KUBE_DNS, 53, "UDP") and not can_connect(docs, pg, INTERNET, 443)


def test_redis_accepts_only_the_scheduler_and_workers():
    docs = render(*CELERY)
    pods = chart_pods(docs)
    for name, pod in pods.items():
        if name != "redis":
            expect = name in {"airflow-scheduler", "airflow-worker"}
            assert can_connect(docs, pod, pods["redis"], 6379) == expect, name


def test_mlflow_accepts_its_clients_and_the_ingress_only_when_published():
    docs = render()
    pods = chart_pods(docs)
    clients = {"airflow-task", "training-launcher", "training-worker", "training-pod"}
    for name, pod in pods.items():
        if name != "mlflow":
            assert can_connect(docs, pod, pods["mlflow"], 5000) == (name in clients), name
    assert not can_connect(docs, INGRESS_NGINX, pods["mlflow"], 5000)
    published = render(*VALUE_SETS["celery-ingress"])
    mlflow = chart_pods(published)["mlflow"]
    assert can_connect(published, INGRESS_NGINX, mlflow, 5000)
    assert can_connect(published, chart_pods(published)["airflow-worker"], mlflow, 5000)


def test_api_server_serves_airflow_pods_and_the_ingress():
    docs = render(*VALUE_SETS["celery-ingress"])
    pods = chart_pods(docs)
    api = pods["airflow-api-server"]
    for name in ("airflow-worker", "airflow-scheduler", "airflow-triggerer", "airflow-dag-processor"):
        assert can_connect(docs, pods[name], api, 8080), name
    assert can_connect(docs, INGRESS_NGINX, api, 8080)
    assert can_connect(docs, api, pods["airflow-worker"], 8793)  # task logs of a running Celery task
    for name in ("spark-executor", "training-worker", "mlflow", "postgresql", "redis"):
        assert not can_connect(docs, pods[name], api, 8080), name
    assert not can_connect(render(), INGRESS_NGINX, chart_pods(render())["airflow-api-server"], 8080)


def test_every_pod_with_egress_resolves_names():
    docs = render(*CELERY)
    for name, pod in chart_pods(docs).items():
        expect = name not in ("postgresql", "redis")
        assert can_connect(docs, pod, KUBE_DNS, 53, "UDP") == expect, name
        assert can_connect(docs, pod, KUBE_DNS, 53, "TCP") == expect, name


def test_crawler_reaches_the_internet_but_no_private_or_metadata_address():
    docs = render()
    pods = chart_pods(docs)
    executor = pods["spark-executor"]
    for port in (80, 443, 8080):
        assert can_connect(docs, executor, INTERNET, port), port
    for addr in PRIVATE:
        for port in (80, 443, 5432, 8333):
            assert not can_connect(docs, executor, addr, port), (addr, port)
    for name in ("postgresql", "mlflow", "airflow-api-server", "training-worker"):
        assert not can_connect(docs, executor, pods[name], 5432 if name == "postgresql" else 5000), name
    crawler = one(docs, "NetworkPolicy", "-crawler-egress")["spec"]["egress"][0]["to"][0]["ipBlock"]
    assert crawler["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(crawler["except"])
    # With the local launcher the crawl runs in the task pod: the same limits apply there.
    local = render("--set", "platform.launcher=local")
    task = chart_pods(local)["airflow-task"]
    assert can_connect(local, task, INTERNET, 80) and not can_connect(local, task, METADATA, 80)
    off = render("--set", "networkPolicies.crawler.enabled=false")
    assert not can_connect(off, chart_pods(off)["spark-executor"], INTERNET, 80)


def test_spark_driver_and_executors_talk_both_ways_on_any_port():
    docs = render(*CELERY)
    pods = chart_pods(docs)
    for driver in ("airflow-worker",):
        for port in (7078, 7079, 40123):
            assert can_connect(docs, pods[driver], pods["spark-executor"], port)
            assert can_connect(docs, pods["spark-executor"], pods[driver], port)
    assert can_connect(docs, pods["spark-executor"], pods["spark-executor"], 7337)
    assert not can_connect(docs, pods["spark-executor"], pods["airflow-scheduler"], 8793)


def test_mpijob_launcher_and_workers_reach_each_other_and_nothing_internal_else():
    docs = render()
    pods = chart_pods(docs)
    launcher, worker = pods["training-launcher"], pods["training-worker"]
    for port in (22, 2222, 29500, 45000):  # ssh, Horovod rendezvous, Gloo/NCCL
        assert can_connect(docs, launcher, worker, port) and can_connect(docs, worker, launcher, port)
        assert can_connect(docs, worker, worker, port)
    assert can_connect(docs, worker, pods["mlflow"], 5000)
    assert not can_connect(docs, worker, pods["postgresql"], 5432)
    assert not can_connect(docs, pods["airflow-task"], worker, 2222)
    assert not can_connect(docs, worker, Address("10.96.0.1"), 443)  # no Kubernetes API


def test_kubernetes_api_for_launchers_and_scheduler_only():
    api = Address("10.96.0.1")
    docs = render()
    pods = chart_pods(docs)
    for name in ("airflow-task", "airflow-scheduler", "airflow-api-server", "airflow-triggerer"):
        assert can_connect(docs, pods[name], api, 443), name
    for name in ("spark-executor", "training-worker", "mlflow", "postgresql"):
        assert not can_connect(docs, pods[name], api, 443), name
    narrowed = render("--set", "networkPolicies.kubernetesApi.cidrs={172.18.0.2/32}")
    task = chart_pods(narrowed)["airflow-task"]
    assert can_connect(narrowed, task, Address("172.18.0.2"), 6443)
    assert not can_connect(narrowed, task, Address("172.18.0.3"), 6443)


def test_s3_egress_follows_the_endpoint_and_extra_egress_is_added():
    in_cluster = render("--set", "s3.endpoint=http://seaweedfs.storage:8333")
    executor = chart_pods(in_cluster)["spark-executor"]
    assert can_connect(in_cluster, executor, Address("10.0.3.4"), 8333)
    assert not can_connect(in_cluster, executor, Address("10.0.3.4"), 5432)
    aws = render()
    assert not can_connect(aws, chart_pods(aws)["mlflow"], Address("10.0.3.4"), 443)
    assert can_connect(aws, chart_pods(aws)["mlflow"], INTERNET, 443)
    extra = render("--set", "networkPolicies.extraEgress.tasks[0].to[0].ipBlock.cidr=10.9.0.0/16",
                   "--set", "networkPolicies.extraEgress.tasks[0].ports[0].port=8443")
    task = chart_pods(extra)["airflow-task"]
    assert can_connect(extra, task, Address("10.9.1.1"), 8443)
    assert not can_connect(extra, chart_pods(extra)["spark-executor"], Address("10.9.1.1"), 8443)


# --- MLflow behind a login --------------------------------------------------------------------

def mlflow_pod(docs) -> dict:
    return one(docs, "Deployment", "-mlflow")["spec"]["template"]["spec"]


def test_mlflow_runs_the_basic_auth_app_with_admin_credentials_from_the_secret():
    spec = mlflow_pod(render())
    server = spec["containers"][0]
    assert "--app-name=basic-auth" in server["args"]
    env = env_of(server)
    for var, key in (("MLFLOW_AUTH_ADMIN_USERNAME", "username"), ("MLFLOW_AUTH_ADMIN_PASSWORD", "password"),
                     ("MLFLOW_FLASK_SERVER_SECRET_KEY", "flask-secret-key")):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "crawl2model-mlflow-auth", "key": key}, var
    config = env["MLFLOW_AUTH_CONFIG_PATH"]["value"]
    writer = spec["initContainers"][0]
    assert env_of(writer)["MLFLOW_AUTH_CONFIG_PATH"]["value"] == config
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    assert os.path.dirname(config) == mounts["auth-config"] == writer["volumeMounts"][0]["mountPath"]
    volume = {v["name"]: v for v in spec["volumes"]}["auth-config"]
    assert volume["emptyDir"]["medium"] == "Memory"


def test_mlflow_clients_log_in_with_the_secret():
    for name, opts in (("defaults", ()), ("celery", VALUE_SETS["celery-ingress"]),
                       ("gpu", VALUE_SETS["gpu-cluster"])):
        docs = render(*opts)
        clients = [(w, c) for w, s in pod_specs(docs) for c in s["containers"]
                   if c["name"] in ("base", "worker") and "MPIJob/" not in w]
        assert clients, name
        for where, c in clients:
            env = env_of(c)
            for var, key in (("MLFLOW_TRACKING_USERNAME", "username"),
                             ("MLFLOW_TRACKING_PASSWORD", "password")):
                ref = env[var]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "crawl2model-mlflow-auth", "key": key}, where
        # MPIJob ranks read the login from the Secret mounted on the workers (ops.lake.secret_env); the
        # launcher, whose env horovodrun puts on the ranks' command lines, has none.
        training = [(w, s) for w, s in pod_specs(docs) if "MPIJob/" in w]
        assert len(training) == {"defaults": 0, "celery": 2, "gpu": 4}[name], name  # gpu: template and job
        for where, spec in training:
            assert "MLFLOW_TRACKING_PASSWORD" not in env_of(spec["containers"][0]), where
            if where.endswith("/Worker"):
                (projected,) = [v["projected"] for v in spec["volumes"] if "projected" in v]
                items = {i["path"]: (s["secret"]["name"], i["key"])
                         for s in projected["sources"] for i in s["secret"]["items"]}
                assert items["MLFLOW_TRACKING_USERNAME"] == ("crawl2model-mlflow-auth", "username"), where
                assert items["MLFLOW_TRACKING_PASSWORD"] == ("crawl2model-mlflow-auth", "password"), where
    # The control plane and the Spark executors get no MLflow credentials.
    docs = render()
    sched = one(docs, "Deployment", "-airflow-scheduler")["spec"]["template"]["spec"]["containers"][0]
    assert "MLFLOW_TRACKING_PASSWORD" not in env_of(sched)
    assert "MLFLOW_TRACKING" not in one(docs, "ConfigMap", "-spark-conf")["data"]["spark-defaults.conf"]


def test_mlflow_ingress_refuses_to_render_without_auth():
    err = fail_render("--set", "mlflow.auth.enabled=false", "--set", "mlflow.ingress.enabled=true",
                      "--set", "mlflow.ingress.host=mlflow.example.com")
    assert "mlflow.auth.enabled" in err and "mlflow.ingress.enabled" in err
    err = fail_render("--set", "mlflow.auth.secretName=")
    assert "mlflow.auth.secretName" in err
    plain = mlflow_pod(render("--set", "mlflow.auth.enabled=false"))
    assert "--app-name=basic-auth" not in plain["containers"][0]["args"] and "initContainers" not in plain


def run_auth_writer(tmp_path, backend_uri: str, external_auth_uri: str | None = None):
    """Run the MLflow pod's init container script as the pod would, then read the config as MLflow does."""
    writer = mlflow_pod(render())["initContainers"][0]
    assert writer["command"][:2] == ["python", "-c"]
    path = tmp_path / "basic_auth.ini"
    env = {"PATH": os.environ["PATH"], "MLFLOW_BACKEND_STORE_URI": backend_uri,
           "C2M_AUTH_DEFAULT_PERMISSION": env_of(writer)["C2M_AUTH_DEFAULT_PERMISSION"]["value"],
           "MLFLOW_AUTH_CONFIG_PATH": str(path)}
    if external_auth_uri:
        env["MLFLOW_AUTH_DATABASE_URI"] = external_auth_uri
    subprocess.run([sys.executable, "-c", writer["command"][2]], env=env, check=True, timeout=60)
    return path


def test_auth_config_writer_produces_what_mlflow_reads(tmp_path, monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    uri = "postgresql+psycopg://c2m:p%40ss%25word@db:5432/mlflow"  # '%' must survive configparser
    path = run_auth_writer(tmp_path, uri)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "ops-admin")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "s3cr3t-from-secret")
    cfg = read_auth_config()
    assert cfg.database_uri == uri and cfg.default_permission == "READ"
    assert (cfg.admin_username, cfg.admin_password) == ("ops-admin", "s3cr3t-from-secret")
    assert "s3cr3t" not in path.read_text()  # the admin password stays in the environment
    other = run_auth_writer(tmp_path, uri, external_auth_uri="postgresql+psycopg://u:x@db2:5432/users")
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(other))
    assert read_auth_config().database_uri == "postgresql+psycopg://u:x@db2:5432/users"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cmdlines() -> list[str]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            out.append(raw.replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass
    return out


def test_rendered_mlflow_command_serves_only_logged_in_clients(tmp_path, monkeypatch):
    """Run the MLflow container's command and environment from the chart (store, artefacts and
    address made local): no login, no API; the client's MLFLOW_TRACKING_USERNAME/PASSWORD let it in;
    neither the admin password nor the store URL is in any process's argv."""
    import mlflow
    import requests
    from mlflow.exceptions import MlflowException

    server = mlflow_pod(render())["containers"][0]
    port = free_port()
    args = []
    for arg in server["args"]:
        if arg.startswith("--host="):
            arg = "--host=127.0.0.1"
        elif arg.startswith("--port="):
            arg = f"--port={port}"
        elif arg.startswith("--workers="):
            arg = "--workers=1"
        elif arg.startswith("--artifacts-destination="):
            arg = f"--artifacts-destination={(tmp_path / 'artifacts').as_uri()}"
        args.append(arg)
    marker = "storemarker7c1d"
    store = f"sqlite:///{tmp_path}/{marker}.db"
    config = run_auth_writer(tmp_path, store)
    password = "adminpw-5e2b9f"
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": store, "MLFLOW_AUTH_CONFIG_PATH": str(config),
           "MLFLOW_AUTH_ADMIN_USERNAME": "ops-admin", "MLFLOW_AUTH_ADMIN_PASSWORD": password,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-key-for-test", "MLFLOW_DISABLE_TELEMETRY": "true"}
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([str(mlflow_bin), "server", *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if requests.get(f"{base}/health", timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or busy starting
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        assert requests.get(search, timeout=30).status_code == 401
        assert requests.get(search, auth=("ops-admin", "wrong"), timeout=30).status_code == 401
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ops-admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        client = mlflow.MlflowClient(tracking_uri=base)
        exp = client.create_experiment("auth-check")
        assert client.get_experiment(exp).name == "auth-check"
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        with pytest.raises(MlflowException):
            mlflow.MlflowClient(tracking_uri=base).get_experiment(exp)
        running = [c for c in cmdlines() if str(port) in c or "mlflow" in c]
        assert running and not [c for c in running if password in c or marker in c]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_mlflow_user_database_may_come_from_its_own_secret_key():
    spec = mlflow_pod(render(*VALUE_SETS["gpu-cluster"]))
    ref = env_of(spec["initContainers"][0])["MLFLOW_AUTH_DATABASE_URI"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "crawl2model-db", "key": "mlflow-auth-database-uri", "optional": True}


# --- Redis ------------------------------------------------------------------------------------

def test_redis_requires_a_password_from_the_secret_and_the_broker_url_carries_it():
    docs = render(*CELERY)
    redis = one(docs, "Deployment", "-redis")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {"name": "crawl2model-redis",
                                                                           "key": "password"}
    script = redis["command"][-1]
    assert redis["command"][:2] == ["/bin/sh", "-c"] and "requirepass" in script
    assert re.search(r"exec redis-server (\S+\.conf)", script).group(1) in script.split(">")[1]
    for where, spec in pod_specs(docs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            env = c.get("env", [])
            names = [e["name"] for e in env]
            if "AIRFLOW__CELERY__BROKER_URL" not in names:
                continue
            url = env_of(c)["AIRFLOW__CELERY__BROKER_URL"]["value"]
            assert url.startswith("redis://:$(C2M_REDIS_PASSWORD)@"), where
            # Kubernetes expands $(VAR) only from variables defined earlier in the list.
            assert names.index("C2M_REDIS_PASSWORD") < names.index("AIRFLOW__CELERY__BROKER_URL"), where
            assert env_of(c)["C2M_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "crawl2model-redis"


def test_redis_start_script_keeps_the_password_out_of_argv(tmp_path):
    """Run the container's shell script with the image's layout; record redis-server's argv and config."""
    docs = render(*CELERY)
    redis = one(docs, "Deployment", "-redis")["spec"]["template"]["spec"]["containers"][0]
    conf_dir = redis["volumeMounts"][0]["mountPath"]
    script = redis["command"][-1].replace(conf_dir, str(tmp_path))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder = bin_dir / "redis-server"  # stands in for the binary: prints the argv it was given
    recorder.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    recorder.chmod(0o755)
    secret = "Pw-for-redis-7f3a"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REDISCLI_AUTH": secret}
    proc = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=30,
                          check=True)
    argv = proc.stdout.splitlines()
    assert secret not in proc.stdout and argv[0] == f"{tmp_path}/redis.conf"
    conf = (tmp_path / "redis.conf")
    assert conf.read_text() == f"requirepass {secret}\n" and stat.S_IMODE(conf.stat().st_mode) == 0o600


# --- RBAC -------------------------------------------------------------------------------------

def rules_of(docs, role_suffix: str) -> list[dict]:
    return one(docs, "Role", role_suffix)["rules"]


def grants(rules, resource: str, verb: str, group: str = "") -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_role_grants_exec_secrets_or_wildcards(name):
    docs = render(*VALUE_SETS[name])
    assert find(docs, "Role") and not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    for role in find(docs, "Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (role["metadata"]["name"], rule)
            dangerous = {"pods/exec", "pods/attach", "secrets", "serviceaccounts/token"}
            assert not dangerous & set(rule["resources"]), rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_task_pods_use_the_launcher_account_with_what_spark_and_mpijob_need():
    docs = render()
    (_, pod), = embedded(one(docs, "ConfigMap", "-pod-template"))
    account = pod["spec"]["serviceAccountName"]
    binding = one(docs, "RoleBinding", "-launcher")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "ml"}]
    bound = [b for b in find(docs, "RoleBinding") if any(s["name"] == account for s in b["subjects"])]
    assert bound == [binding]  # task pods hold the launcher Role and nothing else
    rules = rules_of(docs, "-launcher")
    for resource in ("pods", "services", "configmaps"):  # the Spark driver's executors
        for verb in ("create", "get", "list", "watch", "delete"):
            assert grants(rules, resource, verb), (resource, verb)
    for verb in ("create", "get", "list", "watch", "delete"):
        assert grants(rules, "mpijobs", verb, "kubeflow.org"), verb
    assert grants(rules, "pods/log", "get")
    assert not grants(rules, "persistentvolumeclaims", "create")  # only through rbac.extraLauncherRules
    platform = one(docs, "ConfigMap", "-platform")["data"]
    assert platform["C2M_K8S_SERVICE_ACCOUNT"] == account
    conf = one(docs, "ConfigMap", "-spark-conf")["data"]["spark-defaults.conf"]
    assert f"spark.kubernetes.authenticate.driver.serviceAccountName {account}" in conf


def test_airflow_control_plane_uses_its_own_account_and_creates_pods_only_with_kubernetes_executor():
    for opts, creates in (((), True), (CELERY, False)):
        docs = render(*opts)
        launcher_sa = one(docs, "RoleBinding", "-launcher")["subjects"][0]["name"]
        airflow_sa = one(docs, "RoleBinding", "-airflow")["subjects"][0]["name"]
        assert airflow_sa != launcher_sa
        for suffix in ("-scheduler", "-api-server", "-triggerer", "-dag-processor"):
            spec = one(docs, "Deployment", f"-airflow{suffix}")["spec"]["template"]["spec"]
            assert spec["serviceAccountName"] == airflow_sa, suffix
        if opts:
            worker = one(docs, "Deployment", "-airflow-worker")["spec"]["template"]["spec"]
            assert worker["serviceAccountName"] == launcher_sa
        assert grants(rules_of(docs, "-airflow"), "pods", "create") == creates
        dag_processor = one(docs, "Deployment", "-airflow-dag-processor")["spec"]["template"]["spec"]
        assert dag_processor["automountServiceAccountToken"] is False
        migrate = one(docs, "Job", "-airflow-migrate")["spec"]["template"]["spec"]
        assert migrate["automountServiceAccountToken"] is False
    assert {d["metadata"]["name"] for d in find(render(), "ServiceAccount")} == {
        f"{RELEASE}-crawl2model", f"{RELEASE}-crawl2model-airflow"}


def test_extra_launcher_rules_are_added_but_wildcards_and_exec_refused():
    docs = render("--set", "rbac.extraLauncherRules[0].apiGroups={}",
                  "--set", "rbac.extraLauncherRules[0].resources={persistentvolumeclaims}",
                  "--set", "rbac.extraLauncherRules[0].verbs={create,get,list,delete}")
    assert grants(rules_of(docs, "-launcher"), "persistentvolumeclaims", "create")
    for resources, verbs in (("{pods}", "{*}"), ("{pods/exec}", "{create}"), ("{secrets}", "{get}")):
        err = fail_render("--set", "rbac.extraLauncherRules[0].apiGroups={}",
                          "--set", f"rbac.extraLauncherRules[0].resources={resources}",
                          "--set", f"rbac.extraLauncherRules[0].verbs={verbs}")
        assert "rbac.extraLauncherRules" in err, (resources, verbs)


# --- no secret in any argv --------------------------------------------------------------------

URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]*:[^@\s]+@")


def secret_vars(container: dict) -> set[str]:
    """Env vars that hold a secret: from a Secret, or built from one with $(VAR)."""
    out: set[str] = set()
    for e in container.get("env", []):
        value = e.get("value", "")
        if "secretKeyRef" in e.get("valueFrom", {}) or URL_WITH_PASSWORD.search(value) or any(
                f"$({v})" in value for v in out):
            out.add(e["name"])
    return out


@pytest.mark.parametrize("name", sorted(VALUE_SETS) + ["celery-bundled-redis"])
def test_no_container_puts_a_secret_in_its_command_line(name):
    opts = VALUE_SETS.get(name, CELERY)
    checked = 0
    for where, spec in pod_specs(render(*opts)):
        for c in spec.get("initContainers", []) + spec["containers"]:
            secrets = secret_vars(c)
            for arg in (c.get("command") or []) + (c.get("args") or []):
                assert not URL_WITH_PASSWORD.search(arg), (where, c["name"], arg)
                for var in secrets:
                    # $(VAR) is expanded by Kubernetes into argv; a shell's $VAR only in a builtin's line.
                    assert f"$({var})" not in arg, (where, c["name"], arg)
                    for line in arg.splitlines():
                        if re.search(rf"\$\{{?{var}\b", line):
                            assert line.strip().startswith("printf "), (where, c["name"], line)
            checked += 1
    assert checked >= 5
