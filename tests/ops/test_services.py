"""Local stack plumbing: port checks, PID-based stop, the demo site. No Airflow needed."""
from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.request

import pytest

from ops.lake.procs import start_time
from ops.launch.settings import get_settings
from ops.stack import components, demo_site, layout, monitor, processes, services


@pytest.fixture
def stack(tmp_path, monkeypatch):
    """Settings for a throwaway stack on ports nobody uses."""
    monkeypatch.setenv("C2M_STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("C2M_DATA_ROOT", str(tmp_path / "data"))
    for var in ("C2M_AIRFLOW_PORT", "C2M_MLFLOW_PORT", "C2M_SITE_PORT", "C2M_REVIEWS_PORT"):
        monkeypatch.setenv(var, str(_free_port()))
    return get_settings()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def tiny_site(tmp_path):
    root = tmp_path / "site"
    (root / "whatsnew").mkdir(parents=True)
    (root / "index.html").write_text("<html><body><a href='a.html'>a</a></body></html>")
    (root / "a.html").write_text("<html><body><p>Page A</p></body></html>")
    (root / "whatsnew" / "3.11.html").write_text("<html><body>new</body></html>")
    return root


def test_port_in_use_names_the_port_and_the_variable(stack):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        comp = components.Component("mlflow", ["true"], {}, port, "C2M_MLFLOW_PORT")
        with pytest.raises(layout.StackError) as err:
            services.check_port_free(stack, comp)
    assert str(port) in str(err.value) and "C2M_MLFLOW_PORT" in str(err.value)


def test_up_refuses_a_taken_port_before_starting_anything(stack, tiny_site, monkeypatch):
    monkeypatch.setenv("C2M_SITE_ROOT", str(tiny_site))
    monkeypatch.setattr(services, "_require_binaries", lambda s, names: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("C2M_SITE_PORT", str(taken.getsockname()[1]))
        with pytest.raises(layout.StackError, match="C2M_SITE_PORT"):
            services.up(get_settings(), timeout=5, echo=lambda m: None)
    assert not list(stack.stack_dir.glob("pids/*.pid"))


def test_down_is_idempotent_when_nothing_runs(stack):
    assert services.down(stack, echo=lambda m: None) == []
    assert services.down(stack, echo=lambda m: None) == []


def test_down_stops_a_started_component_by_pid(stack):
    comp = components.Component("site", [sys.executable, "-c", "import time; time.sleep(120)"], {})
    pid = processes.spawn(stack, comp)
    assert processes.read_pid(stack, "site") == pid
    assert services.down(stack, grace=5, echo=lambda m: None) == ["site"]
    assert processes.read_pid(stack, "site") is None
    assert not layout.pid_file(stack, "site").exists()
    assert services.down(stack, echo=lambda m: None) == []


def test_down_kills_a_component_that_ignores_sigterm(stack):
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(120)")
    comp = components.Component("site", [sys.executable, "-c", code], {})
    processes.spawn(stack, comp)
    deadline = time.time() + 10
    while "ready" not in processes.log_tail(layout.log_file(stack, "site")) and time.time() < deadline:
        time.sleep(0.1)
    assert services.down(stack, grace=1, echo=lambda m: None) == ["site"]
    assert processes.read_pid(stack, "site") is None


def test_stale_pid_file_is_ignored(stack):
    path = layout.pid_file(stack, "mlflow")
    path.parent.mkdir(parents=True)
    path.write_text("999999 12345\n")
    assert processes.read_pid(stack, "mlflow") is None
    assert not path.exists()


def test_airflow_env_carries_the_settings(stack):
    env = components.airflow_env(stack)
    assert env["AIRFLOW__API__BASE_URL"] == f"http://127.0.0.1:{stack.airflow_port}"
    assert env["AIRFLOW__API__PORT"] == str(stack.airflow_port)
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["C2M_DATA_ROOT"] == stack.data_root
    assert env["MLFLOW_TRACKING_URI"] == stack.mlflow_uri
    assert env["AIRFLOW_HOME"] == str(stack.stack_dir / "airflow")


def test_demo_site_serves_pages_and_robots(tiny_site):
    server = demo_site.make_server("127.0.0.1", 0, tiny_site, crawl_delay=2)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        robots = urllib.request.urlopen(f"http://127.0.0.1:{port}/robots.txt", timeout=5).read().decode()
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/a.html", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "Disallow: /whatsnew/" in robots and "Crawl-delay: 2" in robots
    assert "Page A" in page
    from urllib.robotparser import RobotFileParser

    rp = RobotFileParser()
    rp.parse(robots.splitlines())
    assert rp.crawl_delay("crawl2model") == 2
    assert not rp.can_fetch("crawl2model", f"http://127.0.0.1:{port}/whatsnew/3.11.html")


def test_demo_site_says_how_to_install_missing_docs(monkeypatch):
    monkeypatch.setattr(demo_site, "DOC_ROOTS", ("/nonexistent/python-docs",))
    with pytest.raises(demo_site.SiteMissing, match="apt-get install -y python3-doc"):
        demo_site.resolve_root(None)


def test_demo_site_rejects_an_empty_root(tmp_path):
    with pytest.raises(demo_site.SiteMissing, match="C2M_SITE_ROOT"):
        demo_site.resolve_root(tmp_path)


def test_a_component_that_dies_during_start_up_shows_its_log(stack, monkeypatch):
    monkeypatch.setattr(monitor, "health", lambda s: {"site": False})
    code = "import sys; print('boom: address already in use', flush=True); sys.exit(3)"
    processes.spawn(stack, components.Component("site", [sys.executable, "-c", code], {}))
    with pytest.raises(layout.StackError) as err:
        monitor.wait_healthy(stack, ["site"], time.monotonic(), timeout=30, echo=lambda m: None)
    assert "site exited during start-up" in str(err.value)
    assert "boom: address already in use" in str(err.value)


def test_a_crashed_component_is_found_and_what_it_left_behind_is_stopped_by_down(stack):
    """kill -9 of the scheduler leaves its executor workers (running tasks) in its group:
    up() must see the crash and leave them to finish; down() must stop them."""
    import os
    import signal

    code = ("import subprocess, sys, time; "
            "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print('worker', w.pid, flush=True); time.sleep(120)")
    scheduler = components.Component("airflow-scheduler", [sys.executable, "-c", code], {})
    leader = processes.spawn(stack, scheduler)
    log = layout.log_file(stack, "airflow-scheduler")
    deadline = time.time() + 20
    while "worker " not in processes.log_tail(log) and time.time() < deadline:
        time.sleep(0.1)
    worker = int(processes.log_tail(log).split("worker ")[-1].split()[0])
    quiet = lambda m: None  # noqa: E731
    assert processes.note_crashed(stack, layout.COMPONENTS, quiet) == []  # alive: left alone

    os.kill(leader, signal.SIGKILL)
    while start_time(leader):  # SIGKILL lands asynchronously
        time.sleep(0.05)
    said = []
    assert processes.note_crashed(stack, layout.COMPONENTS, said.append) == ["airflow-scheduler"]
    assert not layout.pid_file(stack, "airflow-scheduler").exists() and "died" in said[0]
    assert start_time(worker), "a running task must be left to finish"
    assert processes.note_crashed(stack, layout.COMPONENTS, quiet) == []  # noted once
    assert services.down(stack, grace=5, echo=said.append) == []
    assert start_time(worker) is None, "down() must stop what the crash left behind"
    assert any(str(worker) in line for line in said)
    assert not layout.leftovers_file(stack).exists()


@pytest.mark.parametrize("host, login, refused", [
    ("0.0.0.0", False, True), ("192.168.1.20", False, True), ("my-laptop.example", False, True),
    ("::", False, True), ("0.0.0.0", True, False), ("127.0.0.1", False, False), ("127.0.0.2", False, False),
    ("localhost", False, False), ("::1", False, False),
])
def test_a_non_loopback_host_needs_the_airflow_login(stack, monkeypatch, host, login, refused):
    monkeypatch.setenv("C2M_HOST", host)
    monkeypatch.setenv("C2M_AIRFLOW_LOGIN", "1" if login else "0")
    s = get_settings()
    if not refused:
        layout.check_exposure(s)
        return
    with pytest.raises(layout.StackError, match="C2M_AIRFLOW_LOGIN=1") as err:
        services.up(s, echo=lambda line: None)  # refused before anything is created or started
    assert f"C2M_HOST={host}" in str(err.value) and "127.0.0.1" in str(err.value)
    assert not s.stack_dir.exists()


def test_the_login_setting_reaches_airflow(stack, monkeypatch):
    monkeypatch.setenv("C2M_AIRFLOW_LOGIN", "1")
    assert components.airflow_env(get_settings())["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    monkeypatch.setenv("C2M_AIRFLOW_LOGIN", "0")
    assert components.airflow_env(get_settings())["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "True"


def test_the_stack_folder_is_private(stack):
    import stat

    assert stat.S_IMODE(layout.ensure_stack_dir(stack).stat().st_mode) == 0o700
    stack.stack_dir.chmod(0o755)  # a folder made by an earlier version, or by hand
    layout.ensure_stack_dir(stack)
    assert stat.S_IMODE(stack.stack_dir.stat().st_mode) == 0o700


def test_up_creates_the_stack_folder_private(stack, tiny_site, monkeypatch):
    import stat

    monkeypatch.setenv("C2M_SITE_ROOT", str(tiny_site))
    monkeypatch.setattr(services, "_require_binaries", lambda s, names: None)
    with socket.socket() as taken:  # stop up() at its port check, after the folder is made
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("C2M_SITE_PORT", str(taken.getsockname()[1]))
        with pytest.raises(layout.StackError, match="C2M_SITE_PORT"):
            services.up(get_settings(), echo=lambda line: None)
    assert stat.S_IMODE(get_settings().stack_dir.stat().st_mode) == 0o700


def test_the_dag_reparse_setting_reaches_airflow(stack, monkeypatch):
    key = "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"
    monkeypatch.delenv("C2M_DAG_REPARSE_S", raising=False)
    assert services.airflow_env(get_settings())[key] == "10"  # an edited DAG shows up within seconds
    monkeypatch.setenv("C2M_DAG_REPARSE_S", "600")
    assert services.airflow_env(get_settings())[key] == "600"
