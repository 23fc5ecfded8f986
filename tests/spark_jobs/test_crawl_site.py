"""The crawler against a real HTTP server on 127.0.0.1 (robots, 404, 500, timeout, redirect)."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from ops.lake.datasets import DatasetVersion
from spark_jobs.crawl.bfs import CrawlConfig, crawl
from spark_jobs.crawl.fetcher import FetchConfig
from spark_jobs.crawl.retry import RetryPolicy
from spark_jobs.crawl.state import CrawlState

pytestmark = pytest.mark.spark


NO_RETRY = RetryPolicy(max_retries=0, budget=5.0)  # retries have their own tests (test_crawl_retry.py)


def _config(site, **kw):
    fetch = FetchConfig(timeout=0.5, allow_private=kw.pop("allow_private", True), retry=NO_RETRY)
    return CrawlConfig(seeds=[site + "/"], max_depth=kw.pop("max_depth", 2), delay=0.0, fetch=fetch, **kw)


def test_crawl_outcomes(spark, site, tmp_path):
    result = crawl(spark, _config(site), CrawlState(str(tmp_path / "state")))
    by_url = {row["url"].replace(site, ""): row for row in result.log}
    assert by_url["/"]["reason"] == "ok"
    assert by_url["/a.html"]["reason"] == "ok"
    assert by_url["/b.html"]["reason"] == "ok"  # the #section fragment was dropped
    assert by_url["/private/secret.html"]["reason"] == "robots_disallowed"
    assert by_url["/missing.html"]["reason"] == "http_error_4xx" and by_url["/missing.html"]["status"] == 404
    assert by_url["/error.html"]["reason"] == "http_error_5xx"
    assert by_url["/image.png"]["reason"] == "content_type"
    assert by_url["/slow.html"]["reason"] == "timeout"
    assert by_url["/moved"]["reason"] == "ok"
    assert by_url["/moved"]["final_url"] == site + "/a.html?a=1&b=2"
    assert by_url["/c.html"]["depth"] == 2
    assert "/d.html" not in by_url  # depth 3 > max_depth 2
    assert not any("example.invalid" in row["url"] for row in result.log)  # out of scope: never attempted
    assert len(result.log) == len({row["url"] for row in result.log})  # frontier dedup
    assert result.counts["ok"] == 5 and sum(result.counts.values()) == len(result.log)


def test_private_addresses_refused_without_flag(spark, site, tmp_path):
    result = crawl(spark, _config(site, allow_private=False), CrawlState(str(tmp_path / "state")))
    assert [row["reason"] for row in result.log] == ["private_address"]


def test_max_pages_caps_fetches(spark, site, tmp_path):
    result = crawl(spark, _config(site, max_pages=3), CrawlState(str(tmp_path / "state")))
    fetched = [row for row in result.log if row["reason"] != "robots_disallowed"]
    assert len(fetched) == 3


def test_crawl_job_writes_raw_version(spark, site, tmp_path):
    from spark_jobs.jobs import crawl as crawl_job

    argv = ["--root", str(tmp_path), "--version", "t", "--seeds", site + "/", "--allow-private",
            "--delay", "0", "--timeout", "0.5", "--max-depth", "1", "--max-retries", "0"]
    manifest = crawl_job.main(argv, spark=spark)
    raw = DatasetVersion(str(tmp_path), "raw", "t")
    assert raw.is_complete()
    assert manifest["rows_in"] == manifest["rows_out"] + sum(manifest["dropped"].values())
    assert manifest["dropped"]["robots_disallowed"] == 1
    assert manifest["warc_files"] == ["part-00000.warc.gz"]
    log = pq.read_table(raw.data_path("fetch_log", "part-00000.parquet")).to_pylist()
    assert len(log) == manifest["rows_in"]
    removed = pq.read_table(raw.data_path("removed", "http_error_4xx")).to_pylist()
    assert [r["status"] for r in removed] == [404]
    assert json.loads(open(raw.data_path("stats.json")).read())["rows_out"] == manifest["rows_out"]


def test_fetch_caps_bytes_and_redirects(site):
    from spark_jobs.crawl.fetcher import Pacer, fetch_url, new_session

    cfg = FetchConfig(max_bytes=100, allow_private=True, timeout=2, retry=NO_RETRY)
    session = new_session(cfg)
    assert fetch_url(session, site + "/a.html", cfg, Pacer(0))["reason"] == "too_large"
    no_redirects = FetchConfig(max_redirects=0, allow_private=True, timeout=2, retry=NO_RETRY)
    assert fetch_url(session, site + "/moved", no_redirects, Pacer(0))["reason"] == "too_many_redirects"
    plain = FetchConfig(allow_private=True, timeout=2, retry=NO_RETRY)
    ok = fetch_url(session, site + "/moved", plain, Pacer(0))
    assert ok["reason"] == "ok" and ok["body"].startswith(b"<!DOCTYPE html>")


def test_crawl_delay_from_robots_wins_when_larger(monkeypatch, tmp_path):
    from spark_jobs.crawl import bfs
    from spark_jobs.crawl.robots import RobotsRules

    rules = RobotsRules.from_fetch(200, b"User-agent: *\nCrawl-delay: 3\n")
    monkeypatch.setattr(bfs, "fetch_robots", lambda origin, cfg: rules)
    seen_jobs = []

    def record(spark, jobs):
        seen_jobs.extend(jobs)
        return []

    import time

    for delay, expected in ((0.5, 3.0), (5.0, 5.0)):
        seen_jobs.clear()
        cfg = CrawlConfig(seeds=["http://h.test/"], delay=delay)
        started = time.time()
        bfs.crawl(None, cfg, CrawlState(str(tmp_path / f"state-{delay}")), level_runner=record)
        assert [job.delay for job in seen_jobs] == [expected]
        assert seen_jobs[0].not_before >= started + expected  # the delay also follows the robots.txt fetch


def test_hosts_run_in_parallel_partitions_each_at_its_delay(spark, tmp_path):
    """Two hosts, one Spark partition each: they overlap in time, and each keeps its delay."""
    from crawl_server import Site, links_page, page

    def routes(name):
        pages = {f"/{name}{i}": page(links_page(f"{name}{i}", [])) for i in range(3)}
        return {"/": page(links_page(name, list(pages))), **pages}

    with Site(routes("a")) as a, Site(routes("b")) as b:
        fetch = FetchConfig(timeout=2, allow_private=True, retry=NO_RETRY)
        cfg = CrawlConfig(seeds=[a.url + "/", b.url + "/"], max_depth=1, delay=0.3, fetch=fetch)
        result = crawl(spark, cfg, CrawlState(str(tmp_path / "state")))
        assert result.counts["ok"] == 8
        for site in (a, b):
            times = sorted(t for _, t in site.requests)
            # robots.txt included; 50 ms for when the server's thread sees each request (CPU shared)
            assert min(y - x for x, y in zip(times, times[1:])) >= 0.3 - 0.05
        a_times, b_times = [t for _, t in a.requests], [t for _, t in b.requests]
        assert min(b_times) < max(a_times) and min(a_times) < max(b_times)  # concurrent, not in turn
