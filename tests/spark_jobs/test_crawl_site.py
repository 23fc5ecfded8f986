"""The crawler against a real HTTP server on 127.0.0.1 (robots, 404, 500, timeout, redirect)."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from ops.datasets import DatasetVersion
from spark_jobs.crawl.bfs import CrawlConfig, crawl
from spark_jobs.crawl.fetcher import FetchConfig
from spark_jobs.crawl.warc import WarcSink

pytestmark = pytest.mark.spark


def _config(site, **kw):
    fetch = FetchConfig(timeout=0.5, allow_private=kw.pop("allow_private", True))
    return CrawlConfig(seeds=[site + "/"], max_depth=kw.pop("max_depth", 2), delay=0.0, fetch=fetch, **kw)


def test_crawl_outcomes(spark, site, tmp_path):
    result = crawl(spark, _config(site), WarcSink(str(tmp_path)))
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
    result = crawl(spark, _config(site, allow_private=False), WarcSink(str(tmp_path)))
    assert [row["reason"] for row in result.log] == ["private_address"]


def test_max_pages_caps_fetches(spark, site, tmp_path):
    result = crawl(spark, _config(site, max_pages=3), WarcSink(str(tmp_path)))
    fetched = [row for row in result.log if row["reason"] != "robots_disallowed"]
    assert len(fetched) == 3


def test_crawl_job_writes_raw_version(spark, site, tmp_path):
    from spark_jobs.jobs import crawl as crawl_job

    argv = ["--root", str(tmp_path), "--version", "t", "--seeds", site + "/", "--allow-private",
            "--delay", "0", "--timeout", "0.5", "--max-depth", "1"]
    manifest = crawl_job.main(argv, spark=spark)
    raw = DatasetVersion(str(tmp_path), "raw", "t")
    assert raw.is_complete()
    assert manifest["rows_in"] == manifest["rows_out"] + sum(manifest["dropped"].values())
    assert manifest["dropped"]["robots_disallowed"] == 1
    assert manifest["warc_files"] == ["part-00000.warc.gz"]
    log = pq.read_table(raw.path("fetch_log", "part-00000.parquet")).to_pylist()
    assert len(log) == manifest["rows_in"]
    removed = pq.read_table(raw.path("removed", "http_error_4xx")).to_pylist()
    assert [r["status"] for r in removed] == [404]
    assert json.loads(open(raw.path("stats.json")).read())["rows_out"] == manifest["rows_out"]


def test_fetch_caps_bytes_and_redirects(site):
    from spark_jobs.crawl.fetcher import Pacer, fetch_url, new_session

    cfg = FetchConfig(max_bytes=100, allow_private=True, timeout=2)
    session = new_session(cfg)
    assert fetch_url(session, site + "/a.html", cfg, Pacer(0))["reason"] == "too_large"
    no_redirects = FetchConfig(max_redirects=0, allow_private=True, timeout=2)
    assert fetch_url(session, site + "/moved", no_redirects, Pacer(0))["reason"] == "too_many_redirects"
    ok = fetch_url(session, site + "/moved", FetchConfig(allow_private=True, timeout=2), Pacer(0))
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
        bfs.crawl(None, cfg, WarcSink(str(tmp_path)), level_runner=record)
        assert [job.delay for job in seen_jobs] == [expected]
        assert seen_jobs[0].not_before >= started + expected  # the delay also follows the robots.txt fetch
