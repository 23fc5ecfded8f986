"""The crawl's driver loop: breadth-first levels, fetched in Spark, one host per partition.

Per level the driver (1) fetches robots.txt for hosts it has not seen and caches the
rules, (2) records robots-disallowed URLs without fetching them, (3) groups the rest by
host and runs one Spark partition per host, which fetches its URLs one after another
with the host's delay, (4) collects the results in frontier order, writes stored pages
to WARC and adds new in-scope links (normalised, deduplicated, depth+1) to the next
level. ``max_pages`` caps the number of URLs fetched. The host's delay also holds
between its robots.txt fetch and its first page, and from one level to the next.
"""
from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from spark_jobs.crawl import fetcher
from spark_jobs.crawl.fetcher import OK, ROBOTS_DISALLOWED, FetchConfig, HostJob, Pacer
from spark_jobs.crawl.robots import RobotsRules
from spark_jobs.crawl.urls import host_key, in_scope, normalize_url, origin
from spark_jobs.crawl.warc import WarcSink

LOG_COLUMNS = ["url", "final_url", "status", "reason", "bytes", "seconds", "depth", "fetched_at",
               "content_type", "host"]


@dataclass
class CrawlConfig:
    """One crawl's settings (the crawl CLI's flags)."""

    seeds: list[str]
    allow_domains: list[tuple[str, int | None]] = field(default_factory=list)
    max_pages: int = 200
    max_depth: int = 3
    delay: float = 1.0
    fetch: FetchConfig = field(default_factory=FetchConfig)

    def __post_init__(self):
        normalised = [normalize_url(s) for s in self.seeds]
        bad = [s for s, n in zip(self.seeds, normalised) if n is None]
        if bad or not self.seeds:
            raise ValueError(f"seeds must be http(s) URLs; got {bad or 'none'}")
        self.seeds = list(OrderedDict.fromkeys(normalised))
        if self.max_pages < 1 or self.max_depth < 0 or self.delay < 0:
            raise ValueError("need --max-pages >= 1, --max-depth >= 0 and --delay >= 0")


@dataclass
class CrawlResult:
    log: list[dict[str, Any]]
    counts: Counter
    warc_files: list[str]
    robots: dict[str, str]


def fetch_robots(host_origin: str, cfg: CrawlConfig) -> RobotsRules:
    """robots.txt for one host, fetched from the driver (RFC 9309 outcomes)."""
    session = fetcher.new_session(cfg.fetch)
    try:
        res = fetcher.fetch_url(session, f"{host_origin}/robots.txt", cfg.fetch, Pacer(0.0), None,
                                content_types=())
    finally:
        session.close()
    if res["reason"] in (fetcher.DNS_ERROR, fetcher.PRIVATE_ADDRESS):
        return RobotsRules("allow_all")  # the page fetches will fail with this reason themselves
    if res["reason"] == OK:
        return RobotsRules.from_fetch(res["status"], res["body"])
    return RobotsRules.from_fetch(res["status"] if res["status"] and res["status"] < 500 else None, None)


def run_level(spark, jobs: list[HostJob]) -> list[dict[str, Any]]:
    """Fetch a level: one partition per host, results back on the driver."""
    if not jobs:
        return []
    rdd = spark.sparkContext.parallelize(jobs, len(jobs))
    return rdd.mapPartitions(fetcher.fetch_host_jobs).collect()


def crawl(spark, cfg: CrawlConfig, warc: WarcSink, level_runner=run_level) -> CrawlResult:
    allowed = cfg.allow_domains or [(_host_port(s)) for s in cfg.seeds]
    fetch_cfg = FetchConfig(**{**cfg.fetch.__dict__, "allowed": tuple(allowed)})
    robots: dict[str, RobotsRules] = {}
    last_request: dict[str, float] = {}  # host -> epoch seconds of its latest request
    seen = set(cfg.seeds)
    frontier = [(url, 0) for url in cfg.seeds if in_scope(url, allowed)]
    log: list[dict[str, Any]] = []
    fetched = 0
    while frontier and fetched < cfg.max_pages:
        for url, _ in frontier:
            key = host_key(url)
            if key not in robots:
                robots[key] = fetch_robots(origin(url), cfg)
                last_request[key] = time.time()
        by_host: dict[str, list[tuple[int, str, int]]] = OrderedDict()
        for url, depth in frontier:
            rules = robots[host_key(url)]
            if not rules.can_fetch(fetch_cfg.user_agent, url):
                log.append(_skipped(url, depth, ROBOTS_DISALLOWED))
                continue
            if fetched >= cfg.max_pages:
                break  # not attempted: the page budget is spent
            fetched += 1
            host_urls = by_host.setdefault(host_key(url), [])
            host_urls.append((len(host_urls), url, depth))
        jobs = []
        for host, urls in by_host.items():
            delay = max(cfg.delay, robots[host].crawl_delay(fetch_cfg.user_agent))
            jobs.append(HostJob(host, tuple(urls), delay, robots[host], fetch_cfg,
                                not_before=last_request.get(host, 0.0) + delay))
        host_order = {host: i for i, host in enumerate(by_host)}
        results = level_runner(spark, jobs)
        results.sort(key=lambda r: (host_order[r["host"]], r["position"]))  # frontier order, deterministic
        next_frontier = []
        for res in results:
            last_request[res["host"]] = max(last_request.get(res["host"], 0.0), res.get("ended_at", 0.0))
            log.append({c: res.get(c) for c in LOG_COLUMNS})
            if res["reason"] == OK:
                warc.write(res)
            seen.add(res["final_url"])
            for link in res["outlinks"]:
                if link not in seen and res["depth"] + 1 <= cfg.max_depth and in_scope(link, allowed):
                    seen.add(link)
                    next_frontier.append((link, res["depth"] + 1))
        frontier = next_frontier
    warc.close()
    counts = Counter(row["reason"] for row in log)
    return CrawlResult(log, counts, list(warc.files), {h: r.mode for h, r in robots.items()})


def _host_port(url: str) -> tuple[str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return (parts.hostname, parts.port or fetcher.DEFAULT_PORTS[parts.scheme])


def _skipped(url: str, depth: int, reason: str) -> dict[str, Any]:
    from spark_jobs.records import utc_now_iso

    row = dict.fromkeys(LOG_COLUMNS)
    row.update(url=url, final_url=url, reason=reason, bytes=0, seconds=0.0, depth=depth,
               fetched_at=utc_now_iso(), host=host_key(url))
    return row
