"""Page bodies stay on the executors: the fetch tasks write each round's WARC files and the driver
collects only metadata, so driver memory does not grow with pages per round.

The driver's Python allocations are measured with tracemalloc (the Python workers that fetch are
other processes, so they are not counted): a crawl of 60 pages of 2-4 MiB, 20 per round, must
stay far below one round's worth of pages, and every byte must still reach the WARC files."""
from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from crawl_server import Site, links_page, page
from spark_test_data import english, html_page
from ops.lake.datasets import DatasetVersion
from spark_jobs.crawl.bfs import CrawlConfig, crawl, run_level
from spark_jobs.crawl.fetcher import FetchConfig
from spark_jobs.crawl.output import run_crawl
from spark_jobs.crawl.retry import RetryPolicy
from spark_jobs.crawl.state import CrawlState
from spark_jobs.crawl.store import BODY_FIELDS

pytestmark = pytest.mark.spark

MB = 1 << 20
PAGES = 60
SUFFIX = b"</p></body></html>"


def _config(url: str, **kw) -> CrawlConfig:
    fetch = FetchConfig(allow_private=True, timeout=5.0, retry=RetryPolicy(max_retries=0, budget=30.0))
    return CrawlConfig(seeds=[url + "/"], max_depth=1, delay=0.0, checkpoint_every=20, fetch=fetch, **kw)


def _warc_bodies(paths: list[str]) -> dict[str, tuple[int, str]]:
    """url -> (length, sha256) of every response record, read as a stream."""
    from warcio.archiveiterator import ArchiveIterator

    found = {}
    for path in paths:
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type != "response":
                    continue
                digest, length, stream = hashlib.sha256(), 0, record.content_stream()
                while chunk := stream.read(MB):
                    digest.update(chunk)
                    length += len(chunk)
                found[record.rec_headers.get_header("WARC-Target-URI")] = (length, digest.hexdigest())
    return found


class LargePages:
    """PAGES pages of 2-4 MiB, each a distinct head and tail around a slice of one shared 4 MiB
    text, written from a memoryview: the server holds 4 MiB, not the 180 MiB it serves."""

    def __init__(self):
        text = " ".join(english(i) for i in range(40)).encode()
        self.base = (text * (4 * MB // len(text) + 1))[: 4 * MB]
        self.expected: dict[str, tuple[int, str]] = {}

    def parts(self, i: int) -> tuple[bytes, memoryview, bytes]:
        head = f"<html><head><title>Page {i}</title></head><body><p>page {i} ".encode()
        size = 2 * MB + (i * 104_729) % (2 * MB)
        return head, memoryview(self.base)[: size - len(head) - len(SUFFIX)], SUFFIX

    def route(self, i: int):
        def serve(h, n):
            parts = self.parts(i)
            h.send_response(200)
            h.send_header("Content-Type", "text/html; charset=utf-8")
            h.send_header("Content-Length", str(sum(len(p) for p in parts)))
            h.end_headers()
            for part in parts:
                h.wfile.write(part)
        return serve

    def routes(self, url: str) -> dict:
        routes = {"/": page(links_page("Home", [f"/p{i}" for i in range(PAGES)]))}
        for i in range(PAGES):
            routes[f"/p{i}"] = self.route(i)
            digest, length = hashlib.sha256(), 0
            for part in self.parts(i):
                digest.update(part)
                length += len(part)
            self.expected[f"{url}/p{i}"] = (length, digest.hexdigest())
        return routes


def test_the_driver_collects_metadata_not_bodies(spark, tmp_path):
    """Unit level: every row a round returns to the driver lacks body and headers and is small,
    while the round's WARC files on storage hold the pages."""
    pages = {f"/p{i}": page(html_page(f"P{i}", english(i) * 40)) for i in range(6)}
    collected = []

    def recording(spark, jobs):
        rows = run_level(spark, jobs)
        collected.extend(rows)
        return rows

    with Site({"/": page(links_page("Home", list(pages))), **pages}) as site:
        state = CrawlState(str(tmp_path / "state"))
        result = crawl(spark, _config(site.url), state, level_runner=recording)
    assert result.counts["ok"] == 7 and len(collected) == 7
    assert all(not set(BODY_FIELDS) & set(row) for row in collected)
    assert max(len(pickle.dumps(row)) for row in collected) < 4096  # pages are ~20 KB each
    stored = _warc_bodies([uri for uri, _ in result.warcs])
    assert sum(records for _, records in result.warcs) == len(stored) == 7
    for path in pages:
        assert stored[site.url + path][0] > 10_000


def test_driver_memory_stays_flat_over_many_large_pages(spark, tmp_path):
    large = LargePages()
    site = Site({})
    site.routes.update(large.routes(site.url))
    out = DatasetVersion(str(tmp_path), "raw", "big")
    with site:
        tracemalloc.start()
        try:
            manifest = run_crawl(spark, _config(site.url), out, CrawlState.for_version(str(tmp_path), "big"),
                                 config={}, level_runner=run_level)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert manifest["rows_out"] == PAGES + 1 and manifest["dropped"] == {}
    # one round brings 20 pages of 2-4 MiB (about 60 MiB); the driver holds a few MiB at most
    assert peak < 16 * MB, f"driver peak {peak / MB:.1f} MiB"
    stored = _warc_bodies([out.data_path(name) for name in manifest["warc_files"]])
    assert {url: stored[url] for url in large.expected} == large.expected  # every byte of every page


def _vm_hwm(pid: int) -> int:
    """Peak resident memory of a live process, in bytes (Linux: VmHWM in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _python_driver(proc) -> int | None:
    """The Python driver that spark-submit's JVM starts for the entry file (not the JVM, not a worker)."""
    import psutil

    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if cmd and "python" in os.path.basename(cmd[0]) and any(a.endswith("spark_jobs/__main__.py") for a in cmd):
            return child.pid
    return None


@pytest.mark.integration
def test_spark_submit_crawl_with_a_512m_driver(tmp_path):
    """The real crawl job under spark-submit with ``--driver-memory 512m`` over 60 pages of 2-4 MiB
    in one round: it finishes (collecting the round's 180 MiB of pages ran that driver's JVM out of
    memory, exit code 52), every page is in the WARC files, and the Python driver's peak resident
    memory stays near its own size (about 150 MiB with pyspark and pyarrow loaded)."""
    repo = Path(__file__).resolve().parents[2]
    large = LargePages()
    site = Site({})
    site.routes.update(large.routes(site.url))
    env = dict(os.environ, PYTHONPATH=str(repo), PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]",
           "--driver-memory", "512m", "--conf", "spark.ui.enabled=false",
           "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
           str(repo / "spark_jobs" / "__main__.py"), "crawl",
           "--root", str(tmp_path), "--version", "big", "--seeds", site.url + "/", "--allow-private",
           "--delay", "0", "--max-depth", "1", "--max-retries", "0", "--timeout", "5",
           "--checkpoint-every", str(PAGES)]  # one round: all 60 pages
    peak, driver = 0, None
    with site, open(tmp_path / "job.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 500
            while proc.poll() is None and time.monotonic() < deadline:
                driver = driver or _python_driver(proc)
                if driver:
                    try:
                        peak = max(peak, _vm_hwm(driver))
                    except OSError:
                        pass  # it has just exited
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    output = (tmp_path / "job.log").read_text(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    assert driver is not None and peak > 0
    out = DatasetVersion(str(tmp_path), "raw", "big")
    manifest = out.read_manifest()
    assert manifest["rows_out"] == PAGES + 1
    stored = _warc_bodies([out.data_path(name) for name in manifest["warc_files"]])
    assert {url: stored[url] for url in large.expected} == large.expected
    assert peak < 250 * MB, f"Python driver peak RSS {peak / MB:.0f} MiB"
