"""Resume: a crawl killed with SIGKILL continues from its last round, fetches nothing it
already holds, and publishes what an uninterrupted crawl publishes; a published crawl
rerun fetches nothing. Crawls run in-process (``run_inline``) to stay fast; the Spark
level runner is exercised by test_crawl_site.py."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from crawl_server import Site, links_page, page
from spark_test_data import english, html_page
from ops.lake.datasets import DatasetVersion
from spark_jobs.crawl.bfs import CrawlConfig, run_inline
from spark_jobs.crawl.fetcher import FetchConfig
from spark_jobs.crawl.output import run_crawl
from spark_jobs.crawl.retry import RetryPolicy
from spark_jobs.crawl.state import CrawlState, StateMismatch

V = "r"
WIDTH = 8  # pages per level below the home page


def site_routes(slow: float = 0.0) -> dict:
    """/ -> /p0../p7 -> /p0/q../p7/q: 17 pages over three levels."""
    def slow_page(body):
        def route(h, n):
            time.sleep(slow)
            page(body)(h, n)
        return route

    routes = {"/robots.txt": page(b"User-agent: *\nDisallow: /private\n", ctype="text/plain"),
              "/": slow_page(links_page("Home", [f"/p{i}" for i in range(WIDTH)] + ["/private/x"]))}
    for i in range(WIDTH):
        routes[f"/p{i}"] = slow_page(links_page(f"P{i}", [f"/p{i}/q", "/"], english(i)))
        routes[f"/p{i}/q"] = slow_page(html_page(f"Q{i}", english(100 + i)))
    return routes


def crawl_config(url: str, **kw) -> CrawlConfig:
    fetch = FetchConfig(allow_private=True, timeout=2.0, retry=RetryPolicy(max_retries=0, budget=5.0))
    return CrawlConfig(seeds=[url + "/"], max_depth=2, delay=kw.pop("delay", 0.0),
                       checkpoint_every=kw.pop("checkpoint_every", 3), fetch=fetch, **kw)


def crawl_into(root: str, url: str, **kw) -> dict:
    return run_crawl(None, crawl_config(url, **kw), DatasetVersion(root, "raw", V),
                     CrawlState.for_version(root, V), config={}, level_runner=run_inline)


def _log(root: str) -> list[tuple]:
    table = pq.read_table(DatasetVersion(root, "raw", V).data_path("fetch_log", "part-00000.parquet"))
    return [(r["url"].split("/", 3)[-1], r["reason"], r["depth"], r["status"]) for r in table.to_pylist()]


def _warc_urls(root: str, manifest: dict) -> list[str]:
    from warcio.archiveiterator import ArchiveIterator

    urls = []
    for name in manifest["warc_files"]:
        data = open(DatasetVersion(root, "raw", V).data_path(name), "rb").read()
        urls += [r.rec_headers.get_header("WARC-Target-URI").split("/", 3)[-1]
                 for r in ArchiveIterator(io.BytesIO(data)) if r.rec_type == "response"]
    return urls


def _files(root: str, manifest: dict) -> dict[str, bytes]:
    return {n: open(DatasetVersion(root, "raw", V).data_path(n), "rb").read() for n in manifest["warc_files"]}


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_crawl_resume import crawl_into
crawl_into({root!r}, {url!r})
"""


def test_killed_crawl_resumes_without_refetching(tmp_path):
    killed_root, clean_root = str(tmp_path / "killed"), str(tmp_path / "clean")
    with Site(site_routes(slow=0.05)) as site:
        code = _CHILD.format(tests=os.path.dirname(__file__), root=killed_root, url=site.url)
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while sum(site.page_hits().values()) < 8 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)  # mid-crawl, no chance to clean up
        child.wait()
        assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]

        state = CrawlState.for_version(killed_root, V)
        held = [row["url"] for r in state.rounds() for row in r["rows"]
                if row["reason"] != "robots_disallowed"]
        assert 0 < len(held) < 2 * WIDTH + 1  # killed half-way, with some rounds committed
        assert not DatasetVersion(killed_root, "raw", V).is_complete()
        hits_before = sum(site.page_hits().values())

        resumed = crawl_into(killed_root, site.url)
        for url in held:  # what the killed run held was not fetched again
            assert site.hits[url[len(site.url):]] == 1, url
        refetched = sum(site.page_hits().values()) - (2 * WIDTH + 1)
        assert 0 <= refetched <= 3  # at most the killed round (checkpoint_every=3)
        assert hits_before >= len(held)

        clean = crawl_into(clean_root, site.url)

    assert _log(killed_root) == _log(clean_root)  # same rows, same order
    assert resumed["rows_in"] == clean["rows_in"] == 2 * WIDTH + 2  # + the robots-disallowed link
    assert resumed["dropped"] == clean["dropped"] == {"robots_disallowed": 1}
    urls = _warc_urls(killed_root, resumed)
    assert len(urls) == len(set(urls)) == resumed["pages_stored"] == 2 * WIDTH + 1  # no duplicates, no loss
    assert sorted(urls) == sorted(_warc_urls(clean_root, clean))


def test_published_crawl_rerun_fetches_nothing_and_keeps_its_output(tmp_path):
    root = str(tmp_path)
    with Site(site_routes()) as site:
        first = crawl_into(root, site.url)
        hits = dict(site.hits)
        files = _files(root, first)
        second = crawl_into(root, site.url)
        assert dict(site.hits) == hits
    assert second == first
    assert _files(root, first) == files
    assert not os.path.exists(os.path.join(root, "raw", f"_crawl-v={V}", "rounds"))  # rounds dropped


def test_a_deleted_version_is_crawled_again(tmp_path):
    import shutil

    root = str(tmp_path)
    with Site(site_routes()) as site:
        first = crawl_into(root, site.url)
        shutil.rmtree(DatasetVersion(root, "raw", V).uri)
        again = crawl_into(root, site.url)
        assert site.hits["/p0"] == 2
    assert again["rows_in"] == first["rows_in"] and again["pages_stored"] == first["pages_stored"]


def test_other_settings_refuse_to_resume(tmp_path):
    root = str(tmp_path)
    with Site(site_routes()) as site:
        crawl_into(root, site.url, max_pages=4)
        with pytest.raises(StateMismatch, match="--restart"):
            crawl_into(root, site.url, max_pages=5)
        CrawlState.for_version(root, V).discard()  # what --restart does
        manifest = crawl_into(root, site.url, max_pages=5)
    assert manifest["rows_in"] - manifest["dropped"].get("robots_disallowed", 0) == 5


def test_rounds_keep_the_host_delay(tmp_path):
    with Site(site_routes()) as site:
        crawl_into(str(tmp_path), site.url, delay=0.15, checkpoint_every=2, max_pages=6)
        times = sorted(t for _, t in site.requests)
    gaps = [b - a for a, b in zip(times, times[1:])]
    # robots.txt, rounds and levels all spaced (50 ms for when the server's thread sees each request)
    assert len(times) == 7 and min(gaps) >= 0.15 - 0.05 and sorted(gaps)[len(gaps) // 2] >= 0.15


def test_state_and_version_on_an_s3_root(monkeypatch):
    """The same resume on s3:// (moto): rounds and checkpoint are objects, the version is uploaded."""
    moto = pytest.importorskip("moto")
    from ops.lake import storage

    for key, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws(), Site(site_routes()) as site:
        import boto3

        boto3.client("s3").create_bucket(Bucket="c2m")
        root = "s3://c2m/data"
        state = CrawlState.for_version(root, V)
        cfg = crawl_config(site.url, max_pages=5)
        from spark_jobs.crawl.bfs import crawl

        crawl(None, cfg, state, level_runner=run_inline)  # crawled, not yet published
        assert storage.list_files(state.uri + "/rounds", suffix=".warc.gz")
        hits = sum(site.page_hits().values())
        manifest = crawl_into(root, site.url, max_pages=5)  # resumes: only publishes
        assert sum(site.page_hits().values()) == hits == 5
        assert manifest["pages_stored"] == 5 and DatasetVersion(root, "raw", V).is_complete()
        assert not storage.list_files(state.uri + "/rounds")
