"""A real S3 API for training tests: moto's server on 127.0.0.1, on a free port.

Imported by the test modules that need it (``from s3_test_server import s3_env, s3_bucket``),
not by conftest: only those modules pay for the server. Buckets are per test, so tests
sharing one server never see each other's objects.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from ops.lake import storage

# Variables that would point boto3 somewhere other than the test server.
_UNSET = ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION")


@contextlib.contextmanager
def moto_s3() -> Iterator[dict[str, str]]:
    """Run a moto S3 server while the block runs; yield the AWS_* environment that reaches it."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    requests_log = logging.getLogger("werkzeug")  # one line per request otherwise, in every failure report
    level = requests_log.level
    requests_log.setLevel(logging.WARNING)
    try:
        host, port = server.get_host_and_port()
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
               "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
        with pytest.MonkeyPatch.context() as mp:
            for name in _UNSET:
                mp.delenv(name, raising=False)
            for name, value in env.items():
                mp.setenv(name, value)
            yield env
    finally:
        requests_log.setLevel(level)
        server.stop()


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """One S3 server per test module; its AWS_* variables are set while the module runs."""
    with moto_s3() as env:
        yield env


@pytest.fixture
def s3_bucket(s3_env) -> str:
    """A fresh private bucket, as ``s3://name``."""
    name = f"c2m-{uuid.uuid4().hex[:12]}"
    storage.ensure_bucket(name)
    return f"s3://{name}"


def upload_tree(local_dir: str | Path, uri: str) -> str:
    """Copy every file under ``local_dir`` to ``uri`` (same relative keys); return ``uri``."""
    storage.upload_tree(local_dir, uri)
    return uri


class DownloadSpy:
    """Counts calls to storage.download_file (and still makes them), by URI."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.uris: list[str] = []
        real = storage.download_file

        def spy(uri, dest):
            self.uris.append(str(uri))
            return real(uri, dest)

        monkeypatch.setattr(storage, "download_file", spy)

    def __len__(self) -> int:
        return len(self.uris)
