"""moto's S3 server on 127.0.0.1 for the standalone-cluster tests, with its bucket made.

Yields the AWS_* environment that reaches it without setting it in this process: the cluster's
workers get it at start, and each test sets it for its own driver (monkeypatch).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import pytest

BUCKET = "c2m-cluster"
# Variables that would point boto3 or the s3a connector somewhere other than the test server.
UNSET = ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "C2M_SPARK_S3_IO",
         "C2M_SPARK_S3A_COMPAT")


@contextlib.contextmanager
def cluster_s3() -> Iterator[dict[str, str]]:
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        host, port = server.get_host_and_port()
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "cluster-key",
               "AWS_SECRET_ACCESS_KEY": "cluster-secret", "AWS_DEFAULT_REGION": "us-east-1"}
        with pytest.MonkeyPatch.context() as mp:
            for name in UNSET:
                mp.delenv(name, raising=False)
            for name, value in env.items():
                mp.setenv(name, value)
            from ops.lake import storage

            storage.ensure_bucket(BUCKET)
        yield env
    finally:
        server.stop()
