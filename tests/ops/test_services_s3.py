"""S3 mode of the local stack without starting a server: settings, ports, credentials, environments.

The real server (SeaweedFS) is exercised in test_storage_seaweed.py and the integration test.
"""
from __future__ import annotations

import socket
import stat
import sys

import pytest

from ops.launch import local, s3_client
from ops.launch.settings import get_settings
from ops.stack import components, layout, mode, processes, s3_server, services

# weed mini's defaults: none of them may appear on our command line.
WEED_DEFAULT_PORTS = {8333, 9333, 19333, 8888, 18888, 9340, 19340, 8181, 9101, 23646, 33646, 7333, 6060, 18333}
SLEEP = "import time; time.sleep(60)"  # a stand-in component that stays up


@pytest.fixture
def s3_stack(tmp_path, monkeypatch):
    monkeypatch.setenv("C2M_S3", "1")
    monkeypatch.setenv("C2M_STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.delenv("C2M_DATA_ROOT", raising=False)
    monkeypatch.delenv("C2M_S3_BUCKET", raising=False)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("C2M_S3_PORT", str(s3_server.free_base_port()))
    return get_settings()


def test_s3_mode_puts_the_data_root_in_the_bucket_unless_one_is_given(s3_stack, monkeypatch):
    assert s3_stack.s3_mode and s3_stack.s3_bucket == "c2m-lake"
    assert s3_stack.data_root == "s3://c2m-lake/data"
    monkeypatch.setenv("C2M_S3_BUCKET", "team-lake")
    assert get_settings().data_root == "s3://team-lake/data"
    monkeypatch.setenv("C2M_DATA_ROOT", "s3://real-bucket/corpora")
    assert get_settings().data_root == "s3://real-bucket/corpora"
    monkeypatch.setenv("C2M_S3", "0")
    monkeypatch.delenv("C2M_DATA_ROOT")
    assert not get_settings().s3_mode and not get_settings().data_root.startswith("s3://")


@pytest.mark.parametrize("var,value,message", [
    ("C2M_S3_BUCKET", "Bad_Bucket", "not a valid S3 bucket name"),
    ("C2M_S3_PORT", "60000", "too high"),
    ("C2M_S3_PORT", "http", "not a port number"),
])
def test_bad_s3_settings_say_what_to_set(s3_stack, monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=message):
        get_settings()


def test_every_weed_port_is_explicit_derived_and_on_loopback(s3_stack):
    argv = s3_server.command(s3_stack)
    flags = dict(a[1:].split("=", 1) for a in argv[2:])
    ports = s3_server.ports(s3_stack)
    assert {f: int(flags[f]) for f in ports} == ports
    assert len(set(ports.values())) == len(ports)
    assert ports["s3.port"] == s3_stack.s3_port
    assert not WEED_DEFAULT_PORTS & set(ports.values())
    assert flags["ip.bind"] == "127.0.0.1" and flags["ip"] == "127.0.0.1"
    assert flags["s3.port.iceberg"] == "0" and flags["s3.port.lance"] == "0"  # no extra listeners
    assert flags["master.telemetry"] == "false" and flags["webdav"] == "false"


def test_a_second_stack_gets_a_disjoint_block_of_ports(s3_stack, monkeypatch):
    first = set(s3_server.ports(s3_stack).values())
    monkeypatch.setenv("C2M_S3_PORT", str(s3_stack.s3_port + 20))
    second = set(s3_server.ports(get_settings()).values())
    assert not first & second


def test_credentials_are_generated_once_per_stack_dir_and_private(s3_stack, tmp_path, monkeypatch):
    key_id, secret = s3_client.credentials(s3_stack)
    path = s3_client.credentials_file(s3_stack)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert s3_client.credentials(s3_stack) == (key_id, secret)
    assert len(secret) >= 30
    monkeypatch.setenv("C2M_STACK_DIR", str(tmp_path / "other"))
    assert s3_client.credentials(get_settings())[1] != secret
    assert secret not in " ".join(s3_server.command(s3_stack))  # never on a command line


def test_a_damaged_credentials_file_says_what_to_do(s3_stack):
    path = s3_client.credentials_file(s3_stack)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(s3_client.S3ServerError, match="delete"):
        s3_client.credentials(s3_stack)


def test_components_jobs_and_mlflow_get_the_endpoint_and_credentials(s3_stack, monkeypatch):
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-token-for-some-other-account")
    key_id, secret = s3_client.credentials(s3_stack)
    expected = {"AWS_ENDPOINT_URL": s3_stack.s3_endpoint, "AWS_ACCESS_KEY_ID": key_id,
                "AWS_SECRET_ACCESS_KEY": secret, "C2M_S3": "1", "C2M_DATA_ROOT": "s3://c2m-lake/data"}
    comps = components.components(s3_stack)
    for env in (components.airflow_env(s3_stack), comps["mlflow"].env, local.job_env(s3_stack)):
        assert {k: env.get(k) for k in expected} == expected
        assert "AWS_SESSION_TOKEN" not in env
    assert comps["mlflow"].env["MLFLOW_S3_ENDPOINT_URL"] == s3_stack.s3_endpoint
    argv = comps["mlflow"].argv
    assert argv[argv.index("--artifacts-destination") + 1] == "s3://c2m-lake/mlflow-artifacts"
    assert comps[layout.S3].env["AWS_SECRET_ACCESS_KEY"] == secret
    assert layout.S3 in mode.stack_components(s3_stack)


def test_local_mode_adds_no_s3_server_and_no_stack_credentials(s3_stack, monkeypatch):
    monkeypatch.delenv("C2M_S3")
    s = get_settings()
    assert layout.S3 not in mode.stack_components(s)
    assert "AWS_SECRET_ACCESS_KEY" not in components.airflow_env(s)
    argv = components.components(s)["mlflow"].argv
    assert not argv[argv.index("--artifacts-destination") + 1].startswith("s3://")
    assert not s3_client.credentials_file(s).exists()


def test_up_refuses_a_taken_s3_port_before_starting_anything(s3_stack, monkeypatch):
    monkeypatch.setattr(services, "_require_binaries", lambda s, names: None)
    with socket.socket() as taken:  # the filer's port, inside the block
        taken.bind(("127.0.0.1", s3_server.ports(s3_stack)["filer.port"]))
        taken.listen()
        with pytest.raises(layout.StackError, match="C2M_S3_PORT") as err:
            services.up(s3_stack, timeout=5, echo=lambda m: None)
    assert "filer.port" in str(err.value)
    assert not list(s3_stack.stack_dir.glob("pids/*.pid"))


def test_a_stack_is_never_half_in_one_mode(s3_stack, monkeypatch):
    """A local-mode stack that runs refuses `up --s3` (and says how to switch)."""
    monkeypatch.setenv("C2M_S3", "0")
    local = get_settings()
    mode.record_mode(local)
    processes.spawn(local, components.Component("site", [sys.executable, "-c", SLEEP], {}))
    try:
        assert mode.running_mode(local) is False
        with pytest.raises(layout.StackError, match="running in local mode.*crawl2model down"):
            services.up(s3_stack, timeout=5, echo=lambda m: None)
    finally:
        services.down(local, grace=5, echo=lambda m: None)
    assert mode.running_mode(local) is None


def test_commands_in_another_shell_adopt_the_running_stacks_s3_settings(s3_stack, monkeypatch):
    """`crawl2model status|demo` without --s3 against a stack up in S3 mode use its bucket and root."""
    import os

    from ops import cli

    monkeypatch.setenv("C2M_S3_BUCKET", "team-lake")
    started = get_settings()
    mode.record_mode(started)
    processes.spawn(started, components.Component("site", [sys.executable, "-c", SLEEP], {}))
    try:
        for name in ("C2M_S3", "C2M_S3_BUCKET", "C2M_S3_PORT", "C2M_DATA_ROOT"):
            monkeypatch.setenv(name, "placeholder")  # so that monkeypatch restores them afterwards
            monkeypatch.delenv(name)
        cli._select_mode(False)
        s = get_settings()
        assert (s.s3_mode, s.s3_bucket, s.s3_port, s.data_root) == (True, "team-lake", started.s3_port,
                                                                    "s3://team-lake/data")
        assert os.environ["C2M_S3"] == "1"
    finally:
        services.down(started, grace=5, echo=lambda m: None)
