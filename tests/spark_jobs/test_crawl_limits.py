"""Crawler limits against real local servers: a robots.txt Crawl-delay beyond the cap, absurd
numbers in robots.txt and HTTP headers, robots.txt redirects (RFC 9309 §2.3.1.2), and
compressed bodies that inflate far past ``--max-bytes``. Crawls run in-process (``run_inline``);
the page bodies staying off the driver has its own file (test_crawl_driver_memory.py)."""
from __future__ import annotations

import math
import time
import tracemalloc
import zlib

import pyarrow.parquet as pq
import pytest

from crawl_server import Site, links_page, page, redirect, refused_port, send
from spark_test_data import english, html_page
from ops.lake.datasets import DatasetVersion
from spark_jobs.crawl import retry, safety
from spark_jobs.crawl.bfs import CrawlConfig, fetch_robots, run_inline
from spark_jobs.crawl.fetcher import FetchConfig, Pacer, fetch_url, new_session
from spark_jobs.crawl.output import run_crawl
from spark_jobs.crawl.retry import RetryPolicy
from spark_jobs.crawl.robots import ALLOW_ALL, DISALLOW_ALL, PARSED, RobotsRules
from spark_jobs.crawl.state import CrawlState

MB = 1 << 20
UA = "crawl2model/0.1"
NO_RETRY = RetryPolicy(max_retries=0, budget=5.0)
RULES = b"User-agent: *\nDisallow: /private\n"


def _robots(delay: str) -> dict:
    return {"/robots.txt": page(f"User-agent: *\nCrawl-delay: {delay}\n".encode(), ctype="text/plain")}


def _crawl(root, seeds: list[str], version: str = "lim", **kw) -> tuple[dict, list[dict]]:
    max_bytes = kw.pop("max_bytes", 5 * MB)
    fetch = FetchConfig(allow_private=True, timeout=2.0, max_bytes=max_bytes, retry=NO_RETRY)
    cfg = CrawlConfig(seeds=seeds, max_depth=1, delay=0.0, fetch=fetch, **kw)
    out = DatasetVersion(str(root), "raw", version)
    manifest = run_crawl(None, cfg, out, CrawlState.for_version(str(root), version), config={},
                         level_runner=run_inline)
    return manifest, pq.read_table(out.data_path("fetch_log", "part-00000.parquet")).to_pylist()


# ---------------------------------------------------------------- Crawl-delay

@pytest.mark.parametrize("delay", ["99999999999999", "86400", "1e309", "9" * 5000])
def test_a_host_asking_for_a_crawl_delay_over_the_cap_is_skipped_and_accounted_for(tmp_path, delay):
    slow_routes = {**_robots(delay), "/": page(links_page("Slow", ["/a"])),
                   "/a": page(html_page("A", english(1)))}
    fine_routes = {**_robots("0.3"), "/": page(links_page("Fine", ["/b"])),
                   "/b": page(html_page("B", english(2)))}
    with Site(slow_routes) as slow, Site(fine_routes) as fine:
        started = time.monotonic()
        manifest, log = _crawl(tmp_path, [slow.url + "/", fine.url + "/"])
        elapsed = time.monotonic() - started
    reasons = {r["url"]: r["reason"] for r in log}
    assert reasons == {slow.url + "/": "crawl_delay_too_long", fine.url + "/": "ok", fine.url + "/b": "ok"}
    assert slow.page_hits() == {}  # only its robots.txt was read
    assert elapsed < 10, elapsed
    assert manifest["dropped"] == {"crawl_delay_too_long": 1} and manifest["rows_out"] == 2
    assert manifest["rows_in"] == manifest["rows_out"] + sum(manifest["dropped"].values())
    raw = DatasetVersion(str(tmp_path), "raw", "lim")
    removed = pq.read_table(raw.data_path("removed", "crawl_delay_too_long"))
    assert removed.column("url").to_pylist() == [slow.url + "/"]
    # below the cap the host's own delay holds, fractions included
    times = sorted(fine.times("/") + fine.times("/b") + fine.times("/robots.txt"))
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.3 - 0.05


def test_max_crawl_delay_is_the_boundary(tmp_path):
    routes = {**_robots("1"), "/": page(html_page("Home", english(3)))}
    with Site(routes) as site:
        _, skipped = _crawl(tmp_path, [site.url + "/"], version="under", max_crawl_delay=0.5)
        _, crawled = _crawl(tmp_path, [site.url + "/"], version="at", max_crawl_delay=1.0)
    assert [r["reason"] for r in skipped] == ["crawl_delay_too_long"]
    assert [r["reason"] for r in crawled] == ["ok"]


@pytest.mark.spark
def test_the_crawl_job_skips_a_day_long_crawl_delay_in_seconds(spark, tmp_path):
    """The issue's case through the CLI entry point: Crawl-delay 86400 ends at once, not at the
    task timeout."""
    from spark_jobs.jobs import crawl as crawl_job

    routes = {**_robots("86400"), "/": page(links_page("Home", [f"/p{i}" for i in range(9)]))}
    with Site(routes) as site:
        started = time.monotonic()
        manifest = crawl_job.main(["--root", str(tmp_path), "--version", "day", "--seeds", site.url + "/",
                                   "--allow-private", "--delay", "0", "--max-crawl-delay", "60"], spark=spark)
        assert time.monotonic() - started < 60
    assert manifest["rows_in"] == 1 and manifest["dropped"] == {"crawl_delay_too_long": 1}
    assert site.page_hits() == {}


@pytest.mark.parametrize("value, seconds", [
    ("2", 2.0), ("1.5", 1.5), ("%32", 2.0), ("86400", 86400.0),
    ("²", 0.0), ("nan", 0.0), ("-3", 0.0), ("abc", 0.0), ("", 0.0),  # unusable: ignored
    ("inf", math.inf), ("1e309", math.inf), ("99999999999999", math.inf), ("9" * 5000, math.inf),
])
def test_crawl_delay_values_never_raise(value, seconds):
    text = f"User-agent: *\nCrawl-delay: {value}\nRequest-rate: ²/¹\nDisallow: /p\n".encode()
    rules = RobotsRules.from_fetch(200, text)
    assert rules.crawl_delay(UA) == seconds
    assert not rules.can_fetch(UA, "http://h.test/p") and rules.can_fetch(UA, "http://h.test/q")


def test_a_rule_path_urllib_cannot_parse_is_dropped_and_the_group_kept():
    rules = RobotsRules.from_fetch(200, b"User-agent: *\nDisallow: //[x\nDisallow: /private\n")
    assert not rules.can_fetch(UA, "http://h.test/private/a") and rules.can_fetch(UA, "http://h.test/a")


@pytest.mark.parametrize("value", [
    "²", "9" * 5000, "1e309", "-1", "nan", "Mon, 01 Jan 99999 00:00:00 GMT",
    "Mon, 01 Jan 2026 00:00:00 +99999999999999999999", "Mon, 01 Jan 2026 99999999999999999999:00:00 GMT",
    "Mon, 01 Jan 99999999999999999999 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT",
])
def test_retry_after_values_never_raise(value):
    now = time.time()
    asked = retry.parse_retry_after(value, now)
    assert asked is None or asked >= 0
    assert retry.next_wait(0, value, RetryPolicy(), retry.rng_for("u"), now) >= 0


def test_backoff_of_a_very_late_attempt_is_the_maximum():
    policy = RetryPolicy(max_retries=5000, base_delay=1.0, max_delay=30.0)
    assert 15.0 <= retry.backoff_delay(4999, policy, retry.rng_for("u")) <= 30.0


@pytest.mark.parametrize("bad", [dict(delay=math.nan), dict(delay=math.inf), dict(max_crawl_delay=math.nan),
                                 dict(max_crawl_delay=-1.0)])
def test_crawl_settings_must_be_finite(bad):
    with pytest.raises(ValueError, match="finite"):
        CrawlConfig(seeds=["http://h.test/"], **bad)


def _raw_response(content_length: str):
    def route(h, n):
        h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                      + content_length.encode() + b"\r\nConnection: close\r\n\r\n<p>hi</p>")
        h.close_connection = True
    return route


def test_absurd_retry_after_and_content_length_headers_end_with_a_reason():
    policy = RetryPolicy(max_retries=2, base_delay=0.05, max_delay=0.1, budget=3.0)
    routes = {"/forever": lambda h, n: send(h, 503, b"busy", headers={"Retry-After": "9" * 5000}),
              "/superscript": lambda h, n: send(h, 503, b"busy", headers={"Retry-After": "²"}),
              "/len-superscript": _raw_response("²"), "/len-huge": _raw_response("9" * 5000)}
    cfg = FetchConfig(allow_private=True, timeout=1.0, max_bytes=MB, retry=policy)
    with Site(routes) as site:
        session = new_session(cfg)
        got = {path: fetch_url(session, site.url + path, cfg, Pacer(0.0)) for path in routes}
        session.close()
    assert got["/forever"]["reason"] == "budget_exhausted" and got["/forever"]["attempts"] == 1
    assert got["/superscript"]["reason"] == "http_error_5xx" and got["/superscript"]["attempts"] == 3
    assert got["/len-huge"]["reason"] == "too_large"
    assert got["/len-superscript"]["reason"] in ("ok", "invalid_response")  # whatever urllib3 makes of it


# ---------------------------------------------------------------- robots.txt redirects (RFC 9309)

def _fetch_rules(origin: str) -> RobotsRules:
    fetch = FetchConfig(allow_private=True, timeout=1.0, retry=NO_RETRY)
    return fetch_robots(origin, CrawlConfig(seeds=[origin + "/"], fetch=fetch))


def _redirect_then(a: Site, b: Site, hops: int, final) -> Site:
    """a/robots.txt -> b/r1 -> a/r2 -> ...: ``hops`` redirects alternating hosts, then ``final``
    serves /final.txt; returns the host that serves it."""
    host, path = a, "/robots.txt"
    for i in range(1, hops + 1):
        nxt_host, nxt_path = (a, b)[i % 2], (f"/r{i}" if i < hops else "/final.txt")
        host.routes[path] = redirect(nxt_host.url + nxt_path)
        host, path = nxt_host, nxt_path
    host.routes[path] = final
    return host


@pytest.mark.parametrize("hops", [1, 5])
def test_robots_reached_within_five_redirects_across_hosts_applies_to_the_first_host(hops):
    with Site({}) as a, Site({}) as b:
        last = _redirect_then(a, b, hops, page(RULES, ctype="text/plain"))
        rules = _fetch_rules(a.url)
        served = last.hits["/final.txt"]
    assert rules.mode == PARSED and served == 1
    assert not rules.can_fetch(UA, a.url + "/private/x") and rules.can_fetch(UA, a.url + "/public")


def test_more_than_five_redirects_mean_unavailable_allow_all():
    with Site({}) as a, Site({}) as b:
        last = _redirect_then(a, b, 6, page(b"User-agent: *\nDisallow: /\n", ctype="text/plain"))
        rules = _fetch_rules(a.url)
        assert rules.mode == ALLOW_ALL
        assert last.hits["/final.txt"] == 0 and b.hits["/r5"] == 1  # the sixth redirect was not followed


def test_a_robots_redirect_loop_means_unavailable_allow_all():
    with Site({}) as a, Site({}) as b:
        a.routes["/robots.txt"] = redirect(b.url + "/loop.txt")
        b.routes["/loop.txt"] = redirect(a.url + "/robots.txt")
        rules = _fetch_rules(a.url)
        assert rules.mode == ALLOW_ALL and a.hits["/robots.txt"] == 1 and b.hits["/loop.txt"] == 1


@pytest.mark.parametrize("final, mode", [
    (page(b"gone", status=404), ALLOW_ALL),  # unavailable (4xx): crawl everything
    (page(b"gone", status=410), ALLOW_ALL),
    (page(b"boom", status=500), DISALLOW_ALL),  # unreachable (5xx): assume complete disallow
    (page(b"slow down", status=429), DISALLOW_ALL),
])
def test_a_redirected_robots_ending_in_4xx_or_5xx(final, mode):
    with Site({}) as a, Site({}) as b:
        _redirect_then(a, b, 2, final)
        assert _fetch_rules(a.url).mode == mode


def test_a_robots_redirect_to_a_dead_server_means_unreachable_disallow_all():
    dead = f"http://127.0.0.1:{refused_port()}"
    with Site({"/robots.txt": redirect(dead + "/robots.txt")}) as a:
        assert _fetch_rules(a.url).mode == DISALLOW_ALL


def test_a_robots_redirect_the_address_guard_refuses_is_not_fetched(monkeypatch):
    """The guard applies to every redirect hop. Loopback stands in for a public host here, and
    the guard (injected) refuses the second server's port as it would refuse 169.254.169.254."""
    with Site({}) as a, Site({"/robots.txt": page(b"User-agent: *\nAllow: /\n", ctype="text/plain")}) as b:
        a.routes["/robots.txt"] = redirect(b.url + "/robots.txt")
        refused_port_number = int(b.url.rsplit(":", 1)[1])
        real = safety.check_host
        monkeypatch.setattr(safety, "check_host", lambda host, port, allow_private=False: (
            safety.PRIVATE_ADDRESS if port == refused_port_number else real(host, port, allow_private)))
        rules = _fetch_rules(a.url)
        assert rules.mode == DISALLOW_ALL and b.hits["/robots.txt"] == 0


def test_a_crawl_follows_an_off_host_robots_redirect(tmp_path):
    """The issue's case: robots.txt moved to another host still disallows, for the first host's URLs."""
    with Site({}) as a, Site({"/robots.txt": page(RULES, ctype="text/plain")}) as b:
        a.routes.update({"/robots.txt": redirect(b.url + "/robots.txt"),
                         "/": page(links_page("Home", ["/private/x", "/open"])),
                         "/private/x": page(html_page("Secret", english(4))),
                         "/open": page(html_page("Open", english(5)))})
        _, log = _crawl(tmp_path, [a.url + "/"])
    assert {r["url"][len(a.url):]: r["reason"] for r in log} == {
        "/": "ok", "/private/x": "robots_disallowed", "/open": "ok"}
    assert a.hits["/private/x"] == 0


# ---------------------------------------------------------------- decompression bombs

INFLATED = 256 * MB  # what each bomb would take in memory, decompressed


def _gzip_members(total: int) -> bytes:
    """``total`` zero bytes as concatenated 1 MiB gzip members (a valid gzip stream, ~1 KiB per MiB)."""
    member = zlib.compressobj(9, zlib.DEFLATED, 31)
    one = member.compress(bytes(MB)) + member.flush()
    return one * (total // MB)


@pytest.fixture(scope="module")
def bombs() -> dict[str, tuple[str, bytes]]:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15)  # zlib-wrapped deflate, as servers send it
    deflated = b"".join(deflate.compress(bytes(MB)) for _ in range(64)) + deflate.flush()
    gz = _gzip_members(INFLATED)
    twice = zlib.compressobj(9, zlib.DEFLATED, 31)
    return {"/gzip.html": ("gzip", gz), "/deflate.html": ("deflate", deflated),
            "/gzip-gzip.html": ("gzip, gzip", twice.compress(gz) + twice.flush())}


def _bomb_route(encoding: str, body: bytes, status: int = 200, **headers):
    return lambda h, n: send(h, status, body, headers={"Content-Encoding": encoding, **headers})


def test_a_compressed_body_is_cut_at_max_bytes_with_memory_bounded(bombs):
    cfg = FetchConfig(allow_private=True, timeout=2.0, max_bytes=MB, retry=NO_RETRY)
    routes = {path: _bomb_route(enc, body) for path, (enc, body) in bombs.items()}
    with Site(routes) as site:
        session = new_session(cfg)
        for path in routes:
            tracemalloc.start()
            started = time.monotonic()
            res = fetch_url(session, site.url + path, cfg, Pacer(0.0))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert res["reason"] == "too_large" and res["body"] is None, (path, res["reason"])
            assert peak < 8 * MB, (path, peak)  # the cap plus a read, not the inflated size
            assert time.monotonic() - started < 5, path
        session.close()


def test_a_redirect_with_a_compressed_bomb_body_is_not_inflated(bombs):
    enc, body = bombs["/gzip.html"]
    cfg = FetchConfig(allow_private=True, timeout=2.0, max_bytes=MB, retry=NO_RETRY)
    routes = {"/moved": _bomb_route(enc, body, status=302, Location="/target"),
              "/target": page(html_page("Target", english(6)))}
    with Site(routes) as site:
        session = new_session(cfg)
        tracemalloc.start()
        res = fetch_url(session, site.url + "/moved", cfg, Pacer(0.0))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        session.close()
    assert res["reason"] == "ok" and res["final_url"] == site.url + "/target"
    assert peak < 8 * MB, peak


def test_a_crawl_records_bombs_as_too_large_and_goes_on(tmp_path, bombs):
    routes = {path: _bomb_route(enc, body) for path, (enc, body) in bombs.items()}
    routes.update({"/": page(links_page("Home", [*bombs, "/fine.html"])),
                   "/fine.html": page(html_page("Fine", english(7)))})
    with Site(routes) as site:
        manifest, log = _crawl(tmp_path, [site.url + "/"], max_bytes=MB)
    reasons = {r["url"][len(site.url):]: r["reason"] for r in log}
    assert reasons == {"/": "ok", "/fine.html": "ok", **{p: "too_large" for p in bombs}}
    assert manifest["dropped"] == {"too_large": 3} and manifest["rows_out"] == 2
