"""Hostile input end to end: crawl a site of bad pages, extract what was stored, and check
that every URL ends with a named reason (or is kept), that nothing stops the run and that
nothing is lost. The crawl runs in-process (``run_inline``) and extraction as plain steps,
so this is fast; the last test runs the same through the Spark jobs."""
from __future__ import annotations

import time

import pyarrow.parquet as pq
import pytest

from crawl_server import Site, drip, links_page, page, redirect, reset_first, send
from spark_test_data import english, html_page
from ops.lake.datasets import DatasetVersion
from spark_jobs.crawl.bfs import CrawlConfig, run_inline
from spark_jobs.crawl.fetcher import FetchConfig
from spark_jobs.crawl.output import run_crawl
from spark_jobs.crawl.retry import RetryPolicy
from spark_jobs.crawl.state import CrawlState
from spark_jobs.extract import steps as ex
from spark_jobs.extract.warc_reader import iter_warc
from spark_jobs.steps import apply_steps

MB = 1024 * 1024
HUGE = 50 * MB  # generated while it is sent, never stored
DEADLINE = 2.0  # seconds per response: ends /drip.html


def _huge(with_length: bool):
    def route(h, n):
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        if with_length:
            h.send_header("Content-Length", str(HUGE))
        else:
            h.send_header("Connection", "close")  # the body ends when the connection does
            h.close_connection = True
        h.end_headers()
        chunk = b"<p>" + b"x" * (MB - 7) + b"</p>\n"
        for _ in range(HUGE // MB):
            h.wfile.write(chunk)
    return route


def _busy_once(h, n):
    if n == 1:
        send(h, 429, b"slow down", headers={"Retry-After": "1"})
    else:
        send(h, 200, html_page("Busy", english(21)))


# path -> the reason its URL must end with: a crawl reason, an extract drop reason, or "kept"
EXPECTED = {
    "/": "kept",
    "/good.html": "kept",
    "/invalid-utf8.html": "invalid_utf8",
    "/binary.html": "binary_content",
    "/huge.html": "too_large",
    "/huge-stream.html": "too_large",
    "/loop-a": "redirect_loop",
    "/self": "redirect_loop",
    "/hang.html": "timeout",
    "/busy.html": "kept",  # 429 + Retry-After: 1, then fine
    "/busy-always.html": "http_429_exhausted",
    "/drip.html": "fetch_deadline",  # a byte every 0.1 s: within the 0.3 s timeout, past the 2 s deadline
    "/reset-twice.html": "kept",  # connection reset twice, then served
    "/reset-always.html": "connection_error",
    "/empty.html": "empty_document",
    "/blank.html": "empty_document",
    "/nothing-to-read.html": "empty_after_extraction",
}


def _routes(site_release) -> dict:
    cp1252 = ("Über die Straße, café, naïve, déjà vu. " * 40).encode("cp1252")
    return {
        "/robots.txt": page(b"User-agent: *\nDisallow:\n", ctype="text/plain"),
        "/": page(links_page("Home", list(EXPECTED)[1:], english(20))),
        "/good.html": page(html_page("Good", english(22))),
        "/invalid-utf8.html": page(b"<html><body><p>" + cp1252 + b"</p></body></html>"),
        "/binary.html": page(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8),
        "/huge.html": _huge(with_length=True),
        "/huge-stream.html": _huge(with_length=False),
        "/loop-a": redirect("/loop-b"),
        "/loop-b": redirect("/loop-a"),
        "/self": redirect("/self"),
        "/hang.html": lambda h, n: site_release.wait(10),
        "/busy.html": _busy_once,
        "/busy-always.html": page(b"no", status=429, **{"Retry-After": "0"}),
        "/drip.html": drip(site_release, every=0.1),
        "/reset-twice.html": reset_first(2, page(html_page("Reset", english(25)))),
        "/reset-always.html": reset_first(99, page(b"never")),
        "/empty.html": page(b""),
        "/blank.html": page(b"  \n\t \r\n  "),
        "/nothing-to-read.html": page(b"<html><head><script>var x = 1;</script></head>"
                                      b"<body><nav></nav></body></html>"),
    }


def _config(url: str, **kw) -> CrawlConfig:
    policy = RetryPolicy(max_retries=2, base_delay=0.05, max_delay=0.1, budget=3.0)
    fetch = FetchConfig(allow_private=True, timeout=0.3, deadline=DEADLINE, max_bytes=5 * MB, retry=policy)
    return CrawlConfig(seeds=[url + "/"], delay=kw.pop("delay", 0.0), max_depth=1, fetch=fetch, **kw)


def _crawl(root, url, **kw) -> tuple[dict, list[dict]]:
    out = DatasetVersion(str(root), "raw", "bad")
    manifest = run_crawl(None, _config(url, **kw), out, CrawlState.for_version(str(root), "bad"), config={},
                         level_runner=run_inline)
    return manifest, pq.read_table(out.data_path("fetch_log", "part-00000.parquet")).to_pylist()


def _extract(warc_path: str) -> dict[str, str]:
    """url -> extract drop reason or 'kept', through the extract stage's own steps."""
    fates = {}
    for row in iter_warc(warc_path):
        _, reason = apply_steps(row, ex.default_steps())
        fates[row["url"]] = reason or "kept"
    return fates


@pytest.fixture(scope="module")
def bad_crawl(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    site = Site({})
    site.routes.update(_routes(site.release))
    with site:
        started = time.monotonic()
        manifest, log = _crawl(root, site.url)
        elapsed = time.monotonic() - started
    return site, root, manifest, log, elapsed


def test_every_bad_url_ends_with_its_reason_and_nothing_is_lost(bad_crawl):
    site, root, manifest, log, _ = bad_crawl
    raw = DatasetVersion(str(root), "raw", "bad")
    fates = {}
    for name in manifest["warc_files"]:
        fates.update(_extract(raw.data_path(name)))
    final = {}
    for row in log:
        path = row["url"][len(site.url):]
        final[path] = fates[row["final_url"]] if row["reason"] == "ok" else row["reason"]
    assert final == EXPECTED
    # accounting: every URL once in the log; every stored page once in the WARC and through extraction
    assert len(log) == len({r["url"] for r in log}) == manifest["rows_in"]
    assert len(fates) == manifest["rows_out"] == sum(r["reason"] == "ok" for r in log)


def test_bad_input_crawl_is_fast_and_the_50mb_pages_were_not_read(bad_crawl):
    site, _, manifest, log, elapsed = bad_crawl
    by_path = {r["url"][len(site.url):]: r for r in log}
    assert by_path["/huge.html"]["bytes"] == 0  # refused on Content-Length, before the body
    assert by_path["/busy.html"]["attempts"] == 2 and by_path["/hang.html"]["attempts"] == 3
    assert by_path["/reset-twice.html"]["attempts"] == 3 and by_path["/reset-always.html"]["attempts"] == 3
    drip = by_path["/drip.html"]
    assert drip["attempts"] == 1 and DEADLINE <= drip["seconds"] < DEADLINE + 0.5
    assert by_path["/loop-a"]["status"] == 302
    assert elapsed < 10, elapsed  # timeouts and budgets bound the hostile pages


def test_a_truncated_warc_record_is_counted_not_fatal(bad_crawl, tmp_path):
    _, root, manifest, _, _ = bad_crawl
    data = open(DatasetVersion(str(root), "raw", "bad").data_path(manifest["warc_files"][0]), "rb").read()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(data[: len(data) - 200])  # the last record loses its end
    fates = _extract(str(cut))
    assert list(fates.values()).count("corrupt_record") == 1
    assert sum(v != "corrupt_record" for v in fates.values()) == manifest["rows_out"] - 1


@pytest.mark.parametrize("robots, fetched", [
    (None, True),  # missing (404): no rules, crawl everything
    (page(b"User-agent: *\nDisallow: /\n", ctype="text/plain"), False),  # disallows everything
    (page(b"oops", status=500), False),  # server error: RFC 9309 says assume disallow-all
])
def test_robots_missing_500_or_disallow_all(tmp_path, robots, fetched):
    routes = {"/": page(links_page("Home", ["/a.html"])), "/a.html": page(html_page("A", english(23)))}
    if robots is not None:
        routes["/robots.txt"] = robots
    with Site(routes) as site:
        manifest, log = _crawl(tmp_path, site.url)
    reasons = {r["url"][len(site.url):]: r["reason"] for r in log}
    if fetched:
        assert reasons == {"/": "ok", "/a.html": "ok"}
    else:
        assert reasons == {"/": "robots_disallowed"} and site.page_hits() == {}
        assert manifest["dropped"] == {"robots_disallowed": 1} and manifest["rows_out"] == 0


@pytest.mark.spark
def test_bad_input_through_the_spark_jobs(spark, tmp_path):
    """The same site through crawl.main and extract.main: both finish, the accounting holds."""
    from spark_jobs.jobs import crawl as crawl_job
    from spark_jobs.jobs import extract as extract_job

    site = Site({})
    site.routes.update(_routes(site.release))
    common = ["--root", str(tmp_path), "--version", "bad"]
    with site:
        raw = crawl_job.main(common + ["--seeds", site.url + "/", "--allow-private", "--delay", "0",
                                       "--timeout", "0.3", "--max-depth", "1", "--max-retries", "2",
                                       "--backoff-base", "0.05", "--backoff-max", "0.1",
                                       "--retry-budget", "3", "--fetch-deadline", str(DEADLINE)],
                             spark=spark)
    extracted = extract_job.main(common + ["--page-timeout", "10"], spark=spark)
    crawl_drops = {r for r, n in raw["dropped"].items() if n}
    extract_drops = {r for r, n in extracted["dropped"].items() if n}
    expected = {r for r in EXPECTED.values() if r != "kept"}
    assert crawl_drops | extract_drops == expected
    assert extracted["rows_in"] == raw["rows_out"]
    assert raw["rows_in"] == len(EXPECTED)
    assert extracted["rows_out"] == list(EXPECTED.values()).count("kept")


@pytest.mark.spark
def test_extract_timeout_fires_inside_a_spark_worker(spark):
    """The time limit needs the worker's main thread (SIGALRM): check that Spark gives it one."""
    from spark_jobs.runner import DROP, apply_steps_df

    para = english(1).encode()[:200]
    # ~2.7 MB of markup: about 1 s of trafilatura on a quiet core, so 0.3 s always runs out
    # (one page repeated would not do: the parser stops at the first </html>)
    slow = b"<html><body>" + b"".join(b"<div><p>%d " % i + para + b"</p></div>" for i in range(12000)) \
        + b"</body></html>"
    fine = html_page("Fine", english(24))
    # the first page in a fresh worker also pays trafilatura's lazy set-up: it only warms up
    rows = [("warm-up", fine, "text/html"), ("fine", fine, "text/html"), ("slow", slow, "text/html")]
    df = spark.createDataFrame(rows, "id string, html binary, content_type string").coalesce(1)
    steps = [ex.DecodeHtml(), ex.ExtractMainText(timeout=0.3)]
    out = apply_steps_df(df, steps, [("id", "string"), ("text", "string")]).collect()
    reasons = {r["id"]: r[DROP] for r in out}
    assert reasons["slow"] == "extract_timeout" and reasons["fine"] is None
