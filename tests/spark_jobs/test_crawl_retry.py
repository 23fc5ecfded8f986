"""Retries: the backoff schedule as a pure function, then fetches against a real local server."""
from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from crawl_server import Site, drip, drip_headers, page, refused_port, reset_first, send
from spark_jobs.crawl import retry
from spark_jobs.crawl.fetcher import FetchConfig, Pacer, fetch_url, new_session
from spark_jobs.crawl.retry import RetryPolicy

HTML = b"<html><body><p>fine</p></body></html>"


# ---------------------------------------------------------------- the schedule (pure)

def test_backoff_is_exponential_with_equal_jitter_and_capped():
    policy = RetryPolicy(max_retries=8, base_delay=0.5, max_delay=10.0)
    waits = retry.backoff_schedule(policy, retry.rng_for("http://h.test/a"))
    for n, wait in enumerate(waits):
        ceiling = min(10.0, 0.5 * 2 ** n)
        assert ceiling / 2 <= wait <= ceiling, (n, wait)
    assert all(5.0 <= w <= 10.0 for w in waits[5:])  # 0.5 * 2**5 = 16 is capped at 10
    assert len(set(waits)) == len(waits)  # jittered


def test_jitter_is_seeded_by_url():
    policy = RetryPolicy(max_retries=5)
    a1 = retry.backoff_schedule(policy, retry.rng_for("http://h.test/a"))
    a2 = retry.backoff_schedule(policy, retry.rng_for("http://h.test/a"))
    b = retry.backoff_schedule(policy, retry.rng_for("http://h.test/b"))
    assert a1 == a2  # reproducible
    assert a1 != b  # but URLs do not retry in lockstep
    assert retry.backoff_schedule(policy, retry.rng_for("http://h.test/a", seed=1)) != a1


def test_parse_retry_after_seconds_and_http_date():
    now = time.time()
    assert retry.parse_retry_after("7", now) == 7.0
    in_30s = formatdate(now + 30, usegmt=True)
    assert 28.0 <= retry.parse_retry_after(in_30s, now) <= 31.0
    assert retry.parse_retry_after(formatdate(now - 60, usegmt=True), now) == 0.0  # in the past: now
    for garbled in (None, "", "soon", "-5", "1.5e3", "Mon, 99 Foo 2020"):
        assert retry.parse_retry_after(garbled, now) is None


def test_retry_after_replaces_the_backoff():
    policy = RetryPolicy(base_delay=100.0, max_delay=100.0)
    rng = retry.rng_for("u")
    assert retry.next_wait(0, "2", policy, rng, time.time()) == 2.0
    assert 50.0 <= retry.next_wait(0, "whenever", policy, rng, time.time()) <= 100.0


@pytest.mark.parametrize("bad", [dict(max_retries=-1), dict(base_delay=2, max_delay=1), dict(budget=0)])
def test_policy_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match="retry settings"):
        RetryPolicy(**bad)


# ---------------------------------------------------------------- against a server

def _fetch(site: Site | str, path: str, policy: RetryPolicy, timeout: float = 0.3, delay: float = 0.0,
           deadline: float = 60.0, allow_private: bool = True):
    cfg = FetchConfig(allow_private=allow_private, timeout=timeout, deadline=deadline, retry=policy)
    session = new_session(cfg)
    try:
        return fetch_url(session, getattr(site, "url", site) + path, cfg, Pacer(delay))
    finally:
        session.close()


FAST = RetryPolicy(max_retries=3, base_delay=0.05, max_delay=0.2, budget=5.0)


def _flaky(failures: int, status: int, **headers):
    def route(h, n):
        if n <= failures:
            send(h, status, b"busy", headers=headers)
        else:
            send(h, 200, HTML)
    return route


def test_5xx_then_success_is_retried():
    with Site({"/p": _flaky(2, 503)}) as site:
        res = _fetch(site, "/p", FAST)
    assert res["reason"] == "ok" and res["attempts"] == 3 and res["body"] == HTML
    assert site.hits["/p"] == 3


def test_5xx_every_time_is_http_error_5xx_after_all_retries():
    with Site({"/p": page(b"down", status=500)}) as site:
        res = _fetch(site, "/p", FAST)
    assert res["reason"] == "http_error_5xx" and res["status"] == 500 and res["attempts"] == 4
    assert site.hits["/p"] == 4


def test_429_every_time_is_http_429_exhausted():
    with Site({"/p": page(b"slow down", status=429)}) as site:
        res = _fetch(site, "/p", FAST)
    assert res["reason"] == "http_429_exhausted" and res["attempts"] == 4


def test_404_is_not_retried():
    with Site({}) as site:
        res = _fetch(site, "/nope", FAST)
    assert res["reason"] == "http_error_4xx" and res["attempts"] == 1 and site.hits["/nope"] == 1


@pytest.mark.parametrize("header", ["1", "date"])
def test_429_retry_after_is_honoured(header):
    value = "1" if header == "1" else formatdate(time.time() + 2, usegmt=True)  # HTTP-date: whole seconds
    with Site({"/p": _flaky(1, 429, **{"Retry-After": value})}) as site:
        res = _fetch(site, "/p", RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.01, budget=5.0))
        first, second = site.times("/p")
    assert res["reason"] == "ok" and res["attempts"] == 2
    assert second - first >= 0.95  # the server's wait, not the 10 ms backoff


def test_retry_after_beyond_the_budget_fails_at_once():
    with Site({"/p": page(b"later", status=429, **{"Retry-After": "3600"})}) as site:
        started = time.monotonic()
        res = _fetch(site, "/p", RetryPolicy(max_retries=5, budget=2.0))
    assert res["reason"] == "budget_exhausted" and res["status"] == 429 and res["attempts"] == 1
    assert time.monotonic() - started < 3.0  # did not sleep towards an hour


def test_hanging_server_times_out_after_retries_within_the_budget():
    with Site({}) as site:
        site.routes["/hang"] = lambda h, n: site.release.wait(10)  # never answers
        started = time.monotonic()
        res = _fetch(site, "/hang", RetryPolicy(max_retries=2, base_delay=0.05, max_delay=0.1, budget=3.0),
                     timeout=0.2)
        elapsed = time.monotonic() - started
    assert res["reason"] == "timeout" and res["attempts"] == 3 and site.hits["/hang"] == 3
    assert elapsed < 2.0


def test_budget_caps_retries_of_a_hanging_server():
    with Site({}) as site:
        site.routes["/hang"] = lambda h, n: site.release.wait(10)
        started = time.monotonic()
        res = _fetch(site, "/hang", RetryPolicy(max_retries=50, base_delay=0.1, max_delay=0.4, budget=1.2),
                     timeout=0.8)
        elapsed = time.monotonic() - started
    assert res["reason"] == "budget_exhausted" and 1 < res["attempts"] < 50
    # The last attempt's timeout is cut to what is left of the budget: uncut, the second attempt
    # (from ~0.9 s) would run its whole 0.8 s timeout.
    assert elapsed < 1.2 + 0.4


def test_retries_respect_the_host_delay():
    with Site({"/p": _flaky(3, 503)}) as site:
        res = _fetch(site, "/p", RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.01, budget=5.0),
                     delay=0.25)
        times = site.times("/p")
    assert res["reason"] == "ok"
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.24  # the pacer, not the 10 ms backoff


# ---------------------------------------------------------------- connection errors and slow drips

def test_refused_connection_is_retried_then_connection_error():
    url = f"http://127.0.0.1:{refused_port()}"
    started = time.monotonic()
    res = _fetch(url, "/p", FAST)
    assert res["reason"] == "connection_error" and res["attempts"] == 4 and res["status"] is None
    assert 0.05 < time.monotonic() - started < 3.0  # it did back off between the tries


def test_refused_connection_stops_at_the_budget():
    res = _fetch(f"http://127.0.0.1:{refused_port()}", "/p",
                 RetryPolicy(max_retries=50, base_delay=0.1, max_delay=0.4, budget=1.0))
    assert res["reason"] == "budget_exhausted" and 1 < res["attempts"] < 50


@pytest.mark.parametrize("mid_body", [False, True], ids=["before-response", "mid-body"])
def test_reset_connections_are_retried_until_the_page_comes(mid_body):
    with Site({"/p": reset_first(2, page(HTML), mid_body=mid_body)}) as site:
        res = _fetch(site, "/p", FAST)
    assert res["reason"] == "ok" and res["attempts"] == 3 and res["body"] == HTML
    assert site.hits["/p"] == 3


def test_reset_every_time_is_connection_error_after_all_retries():
    with Site({"/p": reset_first(99, page(HTML))}) as site:
        res = _fetch(site, "/p", FAST)
    assert res["reason"] == "connection_error" and res["attempts"] == 4 and site.hits["/p"] == 4


@pytest.mark.parametrize("allow_private", [True, False], ids=["resolved-by-requests", "address-check"])
def test_unknown_host_is_dns_error_and_not_retried(allow_private):
    res = _fetch("http://no-such-host.invalid", "/p", FAST, allow_private=allow_private)
    assert res["reason"] == "dns_error" and res["attempts"] == 1


def test_slow_drip_ends_at_the_deadline_and_is_not_retried():
    site = Site({})
    site.routes["/drip"] = drip(site.release, every=0.1)  # each byte well inside the 0.5 s timeout
    with site:
        started = time.monotonic()
        res = _fetch(site, "/drip", FAST, timeout=0.5, deadline=1.0)
        elapsed = time.monotonic() - started
    assert res["reason"] == "fetch_deadline" and res["attempts"] == 1 and res["body"] is None
    assert 1.0 <= elapsed < 2.5, elapsed  # at the deadline, not after 1000 s of drip
    assert site.hits["/drip"] == 1


def test_dripping_headers_end_at_the_deadline_and_the_session_still_works():
    site = Site({"/p": page(HTML)})
    site.routes["/slow-headers"] = drip_headers(site.release, every=0.1)  # each byte inside the timeout
    cfg = FetchConfig(allow_private=True, timeout=0.5, deadline=1.0, retry=FAST)
    session = new_session(cfg)
    with site:
        started = time.monotonic()
        res = fetch_url(session, site.url + "/slow-headers", cfg, Pacer(0.0))
        elapsed = time.monotonic() - started
        after = fetch_url(session, site.url + "/p", cfg, Pacer(0.0))  # the cut connection is not reused
    session.close()
    assert res["reason"] == "fetch_deadline" and res["attempts"] == 1 and res["status"] is None
    assert 1.0 <= elapsed < 2.5, elapsed  # cut at the deadline by the watchdog, not when the server stops
    assert after["reason"] == "ok" and after["body"] == HTML


def test_deadline_longer_than_the_page_keeps_it():
    site = Site({})
    site.routes["/drip"] = drip(site.release, every=0.02, size=20)  # 0.4 s in all
    with site:
        res = _fetch(site, "/drip", FAST, timeout=0.3, deadline=3.0)
    assert res["reason"] == "ok" and res["body"] == b"x" * 20


def test_deadline_beyond_the_budget_is_budget_exhausted():
    site = Site({})
    site.routes["/drip"] = drip(site.release, every=0.1)
    with site:
        res = _fetch(site, "/drip", RetryPolicy(budget=0.8), timeout=0.5, deadline=30.0)
    assert res["reason"] == "budget_exhausted" and res["seconds"] < 1.2


def test_a_connection_that_reaches_a_private_address_is_refused_before_any_request(monkeypatch):
    """DNS rebinding: the address check's lookup says public, the connection lands on 127.0.0.1.
    No resolver here answers two ways on demand, so the check's answer is injected; the
    connection, the peer check and the server are real."""
    from spark_jobs.crawl import safety

    monkeypatch.setattr(safety, "check_host", lambda host, port, allow_private=False: None)
    with Site({"/p": page(HTML)}) as site:
        res = _fetch(site, "/p", FAST, allow_private=False)
        allowed = _fetch(site, "/p", FAST, allow_private=True)
    assert res["reason"] == "private_address" and res["attempts"] == 1 and res["status"] is None
    assert allowed["reason"] == "ok" and site.hits["/p"] == 1  # only the allowed fetch reached the server


def test_undecodable_body_is_invalid_response_and_not_retried():
    with Site({"/p": page(b"this is not gzip", **{"Content-Encoding": "gzip"})}) as site:
        res = _fetch(site, "/p", FAST)
    assert res["reason"] == "invalid_response" and res["attempts"] == 1


@pytest.mark.parametrize("bad", [dict(timeout=0), dict(deadline=0), dict(deadline=-1)])
def test_fetch_config_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match="fetch settings"):
        FetchConfig(**bad)
