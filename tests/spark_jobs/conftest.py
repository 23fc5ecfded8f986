"""Shared fixtures: one SparkSession per test session, English-like text, a tiny local site."""
from __future__ import annotations

import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
# Python workers must import test modules whose classes (toy steps) they unpickle.
_HERE = os.path.dirname(os.path.abspath(__file__))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_HERE, os.environ.get("PYTHONPATH")) if p)

from spark_test_data import english, html_page  # noqa: E402,F401  (re-exported for fixtures)


@pytest.fixture(scope="session")
def spark():
    from spark_jobs.runner import get_spark

    session = get_spark("crawl2model-tests", master="local[2]",
                        conf={"spark.sql.shuffle.partitions": "4", "spark.driver.host": "127.0.0.1",
                              "spark.driver.bindAddress": "127.0.0.1"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _site_pages() -> dict[str, tuple[int, str, bytes]]:
    """path -> (status, content type, body). Links cover every crawl outcome."""
    root_links = ["/a.html", "/b.html#section", "/private/secret.html", "/missing.html", "/error.html",
                  "/image.png", "/slow.html", "/moved", "http://example.invalid/elsewhere.html",
                  "mailto:someone@example.invalid", "/./a.html#top"]
    return {
        "/robots.txt": (200, "text/plain", b"User-agent: *\nDisallow: /private/\n"),
        "/": (200, "text/html; charset=utf-8", html_page("Home", english(1), root_links)),
        "/a.html": (200, "text/html", html_page("Page A", english(2), ["/", "/c.html"])),
        # same text as /a.html: an exact duplicate for dedup
        "/b.html": (200, "text/html", html_page("Page A", english(2), ["/a.html"])),
        "/c.html": (200, "text/html", html_page("Page C", english(3), ["/d.html"])),
        "/d.html": (200, "text/html", html_page("Page D", english(4))),
        "/private/secret.html": (200, "text/html", html_page("Secret", english(5))),
        "/error.html": (500, "text/html", b"<html><body>boom</body></html>"),
        "/image.png": (200, "image/png", b"\x89PNG\r\n\x1a\n" + bytes(100)),
    }


class _Handler(BaseHTTPRequestHandler):
    pages: dict = {}
    slow_seconds = 2.0

    def do_GET(self):  # noqa: N802 - http.server API
        path = self.path.split("?", 1)[0]
        if path == "/slow.html":
            time.sleep(self.slow_seconds)
        if path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/a.html?b=2&a=1")
            self.end_headers()
            return
        status, ctype, body = self.pages.get(path, (404, "text/html", b"<html>not found</html>"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def site():
    """A tiny site on 127.0.0.1: robots.txt, pages, a 404, a 500, a PNG, a slow page, a redirect."""
    _Handler.pages = _site_pages()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory):
    """A Spark standalone master and two one-core workers on 127.0.0.1 (ops.stack.spark_standalone).

    Each worker runs in its own mount namespace with a private /tmp: of the driver's temp
    folder, only ``shared`` (the data roots, the staging dir, the input files: what a real
    cluster keeps on a shared volume or S3) and what the workers run from (this checkout, whose
    code the executors import, and the jobs venv) stay the same folders for the driver and the
    executors. The workers' environment carries
    the test S3 server's endpoint and keys, as a cluster's executors get theirs. Stopped by
    PID once the module that uses it is done (its JVMs hold memory the next tests need); the
    teardown checks that no JVM of theirs is left.
    """
    import shutil
    import subprocess
    from pathlib import Path

    from ops.launch.settings import get_settings
    from ops.stack import spark_standalone

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("the cluster fixture isolates workers with `unshare -m`: needs root and util-linux")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("mount namespaces are not available here "
                    f"(`unshare --mount true`: {probe.stderr.strip()})")
    from s3_cluster_env import cluster_s3

    shared = tmp_path_factory.mktemp("cluster-shared")
    s = get_settings()
    with cluster_s3() as s3_env:
        base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        cluster = spark_standalone.start(s.jobs_venv / "bin", str(s.jobs_python),
                                         tmp_path_factory.mktemp("cluster"), workers=2, cores=1,
                                         memory="1g", env={**base, **s3_env}, isolate=True,
                                         shared=[str(shared)], code=s.repo_root)
        try:
            yield ClusterHandle(cluster, Path(shared), s3_env)
        finally:
            spark_standalone.stop(cluster)
            left = spark_standalone.group_pids(cluster.pids)
            assert not left, f"JVMs of the cluster still running after stop: {left}"


class ClusterHandle:
    """What the cluster tests need: the running cluster, the shared folder, the S3 server's env."""

    def __init__(self, cluster, shared, s3_env):
        self.cluster, self.shared, self.s3_env = cluster, shared, s3_env
        self.master_url, self.ui_url = cluster.master_url, cluster.ui_url
