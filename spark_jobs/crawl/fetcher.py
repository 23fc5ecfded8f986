"""Fetch one host's URLs politely and safely; runs inside a Spark task.

Each attempt: resolve and refuse internal addresses, follow at most ``max_redirects``
same-host redirects (checking robots and address on every hop, and failing with
``redirect_loop`` when a hop returns to a URL of the same chain), refuse non-HTML content
types before reading the body, stream the body with a byte cap and a wall-clock cap.

The socket timeout alone cannot bound an attempt: a server that sends a byte every few
seconds resets it on every byte. So each attempt also has a total ``deadline``, kept by
one mechanism: a timer shuts the attempt's socket down when it passes
(:mod:`spark_jobs.crawl.watchdog`), whether the status line, the headers (which http.client
reads itself) or the body were still arriving, and the attempt ends with ``fetch_deadline``
at the deadline, not at its last byte. The deadline is also checked before every redirect
hop, and bounds the connect timeout of each.

A 429, 5xx, timeout or connection error (refused, reset mid-response) is retried with
backoff within the URL's time budget (:mod:`spark_jobs.crawl.retry`); a name that does
not resolve (``dns_error``) or a response that cannot be parsed is final. Every request,
retries included, waits for the host's pacer, so the per-host rate limit holds. Every
outcome is a result dict with a named ``reason`` and the number of ``attempts``; ``ok``
means stored. A failure of one URL never stops the crawl.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import urlsplit

from spark_jobs.crawl import connections, retry, safety, watchdog
from spark_jobs.crawl.links import extract_links
from spark_jobs.crawl.retry import RetryPolicy
from spark_jobs.crawl.robots import RobotsRules
from spark_jobs.crawl.urls import DEFAULT_PORTS, host_key, in_scope, normalize_url
from spark_jobs.records import utc_now_iso

# Outcome reasons (stat keys). "ok" is the only one that stores a page.
OK = "ok"
ROBOTS_DISALLOWED = "robots_disallowed"
HTTP_4XX = "http_error_4xx"
HTTP_5XX = "http_error_5xx"
HTTP_OTHER = "http_status_other"
TIMEOUT = "timeout"  # still timing out after every retry
CONNECTION_ERROR = "connection_error"  # refused or reset, still after every retry
FETCH_DEADLINE = "fetch_deadline"  # the response was still arriving at the attempt's deadline
INVALID_RESPONSE = "invalid_response"  # not parseable as HTTP (bad header, bad gzip): not retried
CONTENT_TYPE = "content_type"
TOO_LARGE = "too_large"
TOO_MANY_REDIRECTS = "too_many_redirects"
REDIRECT_LOOP = "redirect_loop"
HTTP_429_EXHAUSTED = "http_429_exhausted"  # still 429 after every retry
BUDGET_EXHAUSTED = "budget_exhausted"  # the next retry wait would pass the URL's time budget
REDIRECT_OUT_OF_SCOPE = "redirect_out_of_scope"
REDIRECTED_OFFHOST = "redirected_offhost"  # target goes back to the frontier as a new URL
DNS_ERROR = safety.DNS_ERROR
PRIVATE_ADDRESS = safety.PRIVATE_ADDRESS

RETRYABLE_REASONS = frozenset({TIMEOUT, CONNECTION_ERROR})

HTML_TYPES = ("text/html", "application/xhtml+xml")
REDIRECT_CODES = (301, 302, 303, 307, 308)
_DROP_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}


@dataclass(frozen=True)
class FetchConfig:
    """How every request behaves; the defaults are the crawl CLI's."""

    user_agent: str = "crawl2model/0.1 (+https://example.invalid/bot)"
    timeout: float = 10.0  # seconds to connect, and between two reads of one response
    deadline: float = 60.0  # seconds for one whole attempt (all hops, the body included)
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    allow_private: bool = False
    allowed: tuple[tuple[str, int | None], ...] = field(default_factory=tuple)
    content_types: tuple[str, ...] = HTML_TYPES
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self):
        finite = math.isfinite(self.timeout) and math.isfinite(self.deadline)
        if (not finite or self.timeout <= 0 or self.deadline <= 0 or self.max_bytes < 1
                or self.max_redirects < 0):
            raise ValueError("fetch settings need finite --timeout > 0 and --fetch-deadline > 0, "
                             f"--max-bytes >= 1 and max_redirects >= 0; got {self}")


class Pacer:
    """Spaces requests to one host by at least ``delay`` seconds."""

    def __init__(self, delay: float):
        self.delay = delay
        self.last = 0.0

    def wait(self) -> None:
        pause = self.last + self.delay - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self.last = time.monotonic()


def new_session(cfg: FetchConfig):
    import requests

    session = requests.Session()
    connections.mount(session, cfg.allow_private)  # peers checked after connecting; cut at the deadline
    session.trust_env = False  # direct connections: the address check must see the real peer
    # With allow_redirects=False requests still prepares the next hop of a redirect (Response.next),
    # reading the whole redirect body first, decompressed and without a cap: a gzip bomb in a 302.
    # The fetcher follows redirects itself, so that preparation is switched off.
    session.resolve_redirects = lambda *args, **kwargs: iter(())
    session.headers.update({"User-Agent": cfg.user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9"})
    return session


def _status_reason(status: int) -> str:
    if 400 <= status < 500:
        return HTTP_4XX
    if status >= 500:
        return HTTP_5XX
    return HTTP_OTHER


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def fetch_url(session, url: str, cfg: FetchConfig, pacer: Pacer, robots: RobotsRules | None = None,
              content_types: tuple[str, ...] | None = None, follow_offhost: bool = False) -> dict[str, Any]:
    """Fetch one URL, retrying 429/5xx/timeouts/connection errors (see retry.py); always returns
    a result dict. ``follow_offhost`` follows redirects to other hosts (robots.txt, RFC 9309) where
    a page's redirect ends with ``redirected_offhost``; every hop passes the same address checks."""
    policy = cfg.retry
    rng = retry.rng_for(url)
    start = time.monotonic()
    attempt = 0
    while True:
        remaining = policy.budget - (time.monotonic() - start)
        result = _fetch_once(session, url, cfg, pacer, robots, content_types, remaining, follow_offhost)
        result["attempts"] = attempt + 1
        if not _retryable(result):
            break
        if attempt >= policy.max_retries:
            result["reason"] = _exhausted_reason(result)
            break
        wait = retry.next_wait(attempt, result.pop("retry_after", None), policy, rng, time.time())
        if time.monotonic() - start + wait >= policy.budget:
            result["reason"] = BUDGET_EXHAUSTED
            break
        time.sleep(wait)
        attempt += 1
    result.pop("retry_after", None)
    result["seconds"] = round(time.monotonic() - start, 4)
    return result


def _retryable(result: dict[str, Any]) -> bool:
    return result["reason"] in RETRYABLE_REASONS or (
        result["reason"] in (HTTP_4XX, HTTP_5XX, HTTP_OTHER) and result["status"] in retry.RETRY_STATUSES)


def _exhausted_reason(result: dict[str, Any]) -> str:
    return HTTP_429_EXHAUSTED if result["status"] == 429 else result["reason"]


def _fetch_once(session, url: str, cfg: FetchConfig, pacer: Pacer, robots: RobotsRules | None,
                content_types: tuple[str, ...] | None, budget_left: float,
                follow_offhost: bool = False) -> dict[str, Any]:
    """One attempt: the redirect chain from ``url`` to a stored page or a named failure.

    The attempt ends by ``cfg.deadline`` or by what is left of the URL's retry budget,
    whichever comes first; the reason says which (fetch_deadline, budget_exhausted)."""
    allowed_types = cfg.content_types if content_types is None else content_types
    result: dict[str, Any] = {"url": url, "final_url": url, "status": None, "reason": None,
                              "content_type": None, "headers": [], "body": None, "bytes": 0,
                              "outlinks": [], "fetched_at": utc_now_iso()}
    start = time.monotonic()
    limit = min(cfg.deadline, budget_left)
    late = FETCH_DEADLINE if cfg.deadline <= budget_left else BUDGET_EXHAUSTED
    timeout = min(cfg.timeout, limit)
    current = url
    chain = {url}
    try:
        with watchdog.time_limit(limit) as watch:  # also cuts a status line or headers still arriving
            for hop in range(cfg.max_redirects + 1):
                parts = urlsplit(current)
                refused = safety.check_host(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme],
                                            cfg.allow_private)
                if refused:
                    return _done(result, refused, start)
                pacer.wait()
                left = limit - (time.monotonic() - start)
                if left <= 0:
                    return _done(result, late, start)
                hop_timeout = min(timeout, left)
                result["fetched_at"] = utc_now_iso()
                with session.get(current, timeout=(hop_timeout, hop_timeout), allow_redirects=False,
                                 stream=True) as resp:
                    if watch.expired:  # what arrived before the cut is not a response
                        return _done(result, late, start)
                    result.update(final_url=current, status=resp.status_code,
                                  content_type=resp.headers.get("Content-Type"),
                                  retry_after=resp.headers.get("Retry-After"))
                    if resp.status_code in REDIRECT_CODES and resp.headers.get("Location"):
                        target = normalize_url(resp.headers["Location"], current)
                        if target is None:
                            return _done(result, HTTP_OTHER, start)
                        if target in chain:
                            return _done(result, REDIRECT_LOOP, start)
                        chain.add(target)
                        if cfg.allowed and not in_scope(target, list(cfg.allowed)):
                            return _done(result, REDIRECT_OUT_OF_SCOPE, start)
                        if host_key(target) != host_key(current) and not follow_offhost:
                            result["outlinks"] = [target]
                            return _done(result, REDIRECTED_OFFHOST, start)
                        if robots is not None and not robots.can_fetch(cfg.user_agent, target):
                            return _done(result, ROBOTS_DISALLOWED, start)
                        current = target
                        continue
                    if not 200 <= resp.status_code < 300:
                        return _done(result, _status_reason(resp.status_code), start)
                    if allowed_types and _mime(result["content_type"]) not in allowed_types:
                        return _done(result, CONTENT_TYPE, start)
                    declared = resp.headers.get("Content-Length", "").strip()
                    if declared.isascii() and declared.isdigit() and (  # int() of 5,000 digits raises
                            len(declared) > 18 or int(declared) > cfg.max_bytes):
                        return _done(result, TOO_LARGE, start)
                    body, failed = _read_body(resp, cfg.max_bytes)
                    if watch.expired and not failed:  # cut mid-body: the end seen was the cut's
                        failed = late
                    if failed:
                        return _done(result, TOO_LARGE if failed == TOO_LARGE else late, start)
                    result["headers"] = [(k, v) for k, v in resp.headers.items()
                                         if k.lower() not in _DROP_HEADERS]
                    result["body"] = bytes(body)
                    result["bytes"] = len(body)
                    return _done(result, OK, start)
            return _done(result, TOO_MANY_REDIRECTS, start)
    except _transport_errors() as exc:
        if time.monotonic() - start >= limit - 0.01:  # the watchdog shut the socket at the deadline
            return _done(result, late, start)
        return _done(result, failure_reason(exc), start)


def _read_body(resp, max_bytes: int) -> tuple[bytes, str | None]:
    """(body, None) at the end of the response, or (partial, too_large) past ``max_bytes``.

    ``read1`` returns whatever has arrived rather than waiting for a full 64 KiB chunk. The
    attempt's deadline is the watchdog's: it shuts the socket, the read ends early, and the
    caller sees that the watch expired."""
    body = bytearray()
    while True:
        chunk = resp.raw.read1(64 * 1024, decode_content=True)
        if not chunk:
            return bytes(body), None
        body += chunk
        if len(body) > max_bytes:
            return bytes(body), TOO_LARGE


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a request can raise (imported lazily: this module is pickled to Spark workers)."""
    import http.client

    import requests
    import urllib3

    return (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
            OSError)


def failure_reason(exc: BaseException) -> str:
    """private_address, dns_error, timeout, connection_error or invalid_response for an exception
    of a request.

    requests wraps the real cause (MaxRetryError(NameResolutionError(...)), ConnectionError(
    ProtocolError(ConnectionResetError))), so the whole chain is searched, by type."""
    import http.client
    import socket

    import requests
    import urllib3

    chain = list(_exception_chain(exc))

    def found(*types) -> bool:
        return any(isinstance(e, types) for e in chain)

    if found(connections.PrivatePeer):
        return PRIVATE_ADDRESS
    if found(urllib3.exceptions.NameResolutionError, socket.gaierror):
        return DNS_ERROR
    # the OS's own error first: urllib3's NewConnectionError subclasses ConnectTimeoutError
    if found(TimeoutError):
        return TIMEOUT
    if found(ConnectionError, urllib3.exceptions.NewConnectionError):
        return CONNECTION_ERROR
    if found(urllib3.exceptions.TimeoutError, requests.exceptions.Timeout):
        return TIMEOUT
    if found(urllib3.exceptions.ProtocolError, requests.exceptions.ConnectionError,
             requests.exceptions.ChunkedEncodingError, http.client.IncompleteRead):
        return CONNECTION_ERROR
    return INVALID_RESPONSE


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        reason = getattr(e, "reason", None)
        todo += [e.__cause__, e.__context__, reason if isinstance(reason, BaseException) else None]
        todo += [a for a in e.args if isinstance(a, BaseException)]


def _done(result: dict[str, Any], reason: str, start: float) -> dict[str, Any]:
    result["reason"] = reason
    result["seconds"] = round(time.monotonic() - start, 4)
    if reason != OK:
        result["body"] = None
    return result


@dataclass(frozen=True)
class HostJob:
    """One host's share of a BFS level: what one Spark partition fetches, in order."""

    host: str
    urls: tuple[tuple[int, str, int], ...]  # (position in the level, url, depth)
    delay: float
    robots: RobotsRules
    config: FetchConfig
    not_before: float = 0.0  # epoch seconds: the host's last request (robots.txt, last level) + delay
    warc: str = ""  # where the task writes the host's stored pages (spark_jobs.crawl.store)


def fetch_host_jobs(jobs: Iterator[HostJob]) -> Iterator[dict[str, Any]]:
    """The Spark partition function: hosts one after another, each URL after its delay."""
    for job in jobs:
        session = new_session(job.config)
        pacer = Pacer(job.delay)
        time.sleep(max(0.0, job.not_before - time.time()))
        try:
            for position, url, depth in job.urls:
                result = fetch_url(session, url, job.config, pacer, job.robots)
                result.update(position=position, depth=depth, host=job.host, ended_at=time.time())
                if result["reason"] == OK:
                    result["outlinks"] = extract_links(result["body"], result["final_url"])
                yield result
        finally:
            session.close()
