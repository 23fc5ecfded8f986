"""The crawl's driver loop: breadth-first levels, fetched in Spark rounds, resumable.

Per level the driver (1) fetches robots.txt for hosts it has not seen and caches the
rules, (2) plans the level: robots-disallowed URLs are logged without a fetch, the rest
are fetched in frontier order until ``max_pages`` URLs have been tried, (3) fetches the
plan in rounds: each round is one Spark job with one partition per host (at most
``checkpoint_every`` of that host's URLs, one after another at the host's delay), so
hosts run in parallel across executors while each host sees one request at a time,
(4) commits each round to the crawl state: the fetch tasks write the stored pages as WARC
files themselves and return only metadata (:mod:`spark_jobs.crawl.store`), then the driver
writes the round's fetch-log rows, and (5) at
the end of the level adds new in-scope links (normalised, deduplicated, depth+1) to the
next level, in frontier order, and checkpoints.

Politeness across rounds and levels: each host's last request time travels in the
checkpoint, and a host's next job starts no earlier than that plus its delay (the larger
of ``--delay``, default 1 s, and the robots.txt ``Crawl-delay``). A host whose Crawl-delay
is longer than ``max_crawl_delay`` (default 60 s) is not crawled: its URLs are logged with
``crawl_delay_too_long`` (a day between requests would hold the crawl for days, and crawling
faster than the host asked is not polite). How the state is laid out and why a kill loses
at most one round: :mod:`spark_jobs.crawl.state`.
"""
from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ops.lake import progress
from spark_jobs.crawl import fetcher, store
from spark_jobs.crawl.fetcher import OK, ROBOTS_DISALLOWED, FetchConfig, HostJob, Pacer
from spark_jobs.crawl.robots import ALLOW_ALL, DISALLOW_ALL, MAX_ROBOTS_REDIRECTS, RobotsRules
from spark_jobs.crawl.state import CrawlState, fingerprint
from spark_jobs.crawl.urls import host_key, in_scope, normalize_url, origin

CRAWL_DELAY_TOO_LONG = "crawl_delay_too_long"  # the host's robots.txt Crawl-delay exceeds max_crawl_delay

LOG_COLUMNS = ["url", "final_url", "status", "reason", "bytes", "seconds", "depth", "fetched_at",
               "content_type", "host", "attempts"]


@dataclass
class CrawlConfig:
    """One crawl's settings (the crawl CLI's flags)."""

    seeds: list[str]
    allow_domains: list[tuple[str, int | None]] = field(default_factory=list)
    max_pages: int = 200
    max_depth: int = 3
    delay: float = 1.0  # seconds between requests to one host: at most 1 request/s by default
    checkpoint_every: int = 20  # URLs per host per round; a kill loses at most one round
    max_crawl_delay: float = 60.0  # seconds; a host whose robots.txt asks for more is skipped
    fetch: FetchConfig = field(default_factory=FetchConfig)

    def __post_init__(self):
        normalised = [normalize_url(s) for s in self.seeds]
        bad = [s for s, n in zip(self.seeds, normalised) if n is None]
        if bad or not self.seeds:
            raise ValueError(f"seeds must be http(s) URLs; got {bad or 'none'}")
        self.seeds = list(OrderedDict.fromkeys(normalised))
        finite = math.isfinite(self.delay) and math.isfinite(self.max_crawl_delay)
        if (not finite or self.max_pages < 1 or self.max_depth < 0 or self.delay < 0
                or self.max_crawl_delay < 0 or self.checkpoint_every < 1):
            raise ValueError("need --max-pages >= 1, --max-depth >= 0, finite --delay >= 0 and "
                             "--max-crawl-delay >= 0, and --checkpoint-every >= 1")

    def scope(self) -> list[tuple[str, int | None]]:
        return self.allow_domains or [_host_port(s) for s in self.seeds]

    def fingerprint(self) -> str:
        """What a resumed crawl must share with the crawl it continues."""
        return fingerprint({"seeds": self.seeds, "scope": [list(a) for a in self.scope()],
                            "max_pages": self.max_pages, "max_depth": self.max_depth,
                            "user_agent": self.fetch.user_agent})


@dataclass
class CrawlResult:
    log: list[dict[str, Any]]
    counts: Counter
    warcs: list[tuple[str, int]]  # (URI, records) of the rounds' WARC files, in crawl order
    robots: dict[str, str]
    checkpoint: dict[str, Any]


# a robots.txt fetch that ended this way found the file unreachable (RFC 9309 §2.3.1.4): disallow all
_UNREACHABLE = frozenset({fetcher.TIMEOUT, fetcher.CONNECTION_ERROR, fetcher.FETCH_DEADLINE,
                          fetcher.BUDGET_EXHAUSTED, fetcher.INVALID_RESPONSE, fetcher.DNS_ERROR,
                          fetcher.PRIVATE_ADDRESS})


def fetch_robots(host_origin: str, cfg: CrawlConfig) -> RobotsRules:
    """robots.txt for one host, fetched from the driver, redirects followed as RFC 9309 §2.3.1.2
    asks: up to five, to any host, each hop through the same address checks as a page."""
    fetch_cfg = FetchConfig(**{**cfg.fetch.__dict__, "allowed": (), "max_redirects": MAX_ROBOTS_REDIRECTS})
    session = fetcher.new_session(fetch_cfg)
    try:
        res = fetcher.fetch_url(session, f"{host_origin}/robots.txt", fetch_cfg, Pacer(0.0), None,
                                content_types=(), follow_offhost=True)
    finally:
        session.close()
    return robots_rules(res)


def robots_rules(res: dict[str, Any]) -> RobotsRules:
    """The rules a robots.txt fetch result means (RFC 9309 §2.3.1)."""
    reason, status = res["reason"], res["status"]
    if reason == OK:
        return RobotsRules.from_fetch(status, res["body"])
    if reason in (fetcher.DNS_ERROR, fetcher.PRIVATE_ADDRESS) and status is None:
        return RobotsRules(ALLOW_ALL)  # the host itself: its page fetches fail with this reason too
    if reason in _UNREACHABLE:  # also a redirect target that does not resolve or is refused
        return RobotsRules(DISALLOW_ALL)
    if reason in (fetcher.TOO_MANY_REDIRECTS, fetcher.REDIRECT_LOOP):
        return RobotsRules(ALLOW_ALL)  # more than five redirects, or a loop: "unavailable"
    if status == 429:  # the server is overloaded: unreachable, not unavailable
        return RobotsRules(DISALLOW_ALL)
    return RobotsRules.from_fetch(status, None)  # 4xx: unavailable, allow all; 5xx: disallow all


def run_level(spark, jobs: list[HostJob]) -> list[dict[str, Any]]:
    """Fetch one round in Spark: one partition per host; the tasks write the pages, the driver
    gets their metadata (:mod:`spark_jobs.crawl.store`)."""
    if not jobs:
        return []
    rdd = spark.sparkContext.parallelize(jobs, len(jobs))
    return rdd.mapPartitions(store.fetch_and_store).collect()


def run_inline(spark, jobs: list[HostJob]) -> list[dict[str, Any]]:
    """Fetch one round in this process, host after host (debugging, tests without Spark)."""
    return list(store.fetch_and_store(iter(jobs)))


def new_checkpoint(cfg: CrawlConfig) -> dict[str, Any]:
    return {"fingerprint": cfg.fingerprint(), "level": 0, "fetched": 0, "robots": {}, "last_request": {},
            "seen": list(cfg.seeds), "frontier": [[u, 0] for u in cfg.seeds if in_scope(u, cfg.scope())],
            "finished": False}


def plan_level(frontier: list[tuple[str, int]], robots: dict[str, RobotsRules], fetched: int,
               cfg: CrawlConfig) -> tuple[list[tuple[int, str, int, str]], list[tuple[int, str, int]]]:
    """(skipped, to fetch): (frontier position, url, depth, reason) of URLs that robots.txt
    disallows or whose host asks for a Crawl-delay over ``max_crawl_delay``, and (position, url,
    depth) of those to fetch; pure, so a resume replans alike."""
    skipped, to_fetch = [], []
    ua = cfg.fetch.user_agent
    for position, (url, depth) in enumerate(frontier):
        rules = robots[host_key(url)]
        if not rules.can_fetch(ua, url):
            skipped.append((position, url, depth, ROBOTS_DISALLOWED))
        elif rules.crawl_delay(ua) > cfg.max_crawl_delay:
            skipped.append((position, url, depth, CRAWL_DELAY_TOO_LONG))
        elif fetched + len(to_fetch) < cfg.max_pages:
            to_fetch.append((position, url, depth))
        # else: not attempted, the page budget is spent
    return skipped, to_fetch


def crawl(spark, cfg: CrawlConfig, state: CrawlState, level_runner=run_level) -> CrawlResult:
    """Crawl until the frontier is empty or ``max_pages`` URLs were tried, resuming saved progress."""
    allowed = cfg.scope()
    fetch_cfg = FetchConfig(**{**cfg.fetch.__dict__, "allowed": tuple(allowed)})
    ckpt = state.load_checkpoint(cfg.fingerprint()) or new_checkpoint(cfg)
    rounds = state.rounds()
    for r in rounds:  # rounds after the checkpoint know later requests: keep the hosts' delay after a resume
        for host, when in (r.get("last_request") or {}).items():
            ckpt["last_request"][host] = max(ckpt["last_request"].get(host, 0.0), when)
    robots = {h: RobotsRules(mode, text) for h, (mode, text) in ckpt["robots"].items()}
    while ckpt["frontier"] and ckpt["fetched"] < cfg.max_pages:
        frontier = [(u, d) for u, d in ckpt["frontier"]]
        new_hosts = list(OrderedDict.fromkeys(host_key(u) for u, _ in frontier if host_key(u) not in robots))
        for key in new_hosts:
            robots[key] = fetch_robots(origin(next(u for u, _ in frontier if host_key(u) == key)), cfg)
            ckpt["last_request"][key] = time.time()
        if new_hosts:
            ckpt["robots"] = {h: [r.mode, r.text] for h, r in robots.items()}
            state.save_checkpoint(ckpt)
        skipped, to_fetch = plan_level(frontier, robots, ckpt["fetched"], cfg)
        level = ckpt["level"]
        done = {row["position"] for r in rounds if r["level"] == level for row in r["rows"]}
        todo_skips = [s for s in skipped if s[0] not in done]
        if todo_skips:
            rows = [_skipped(url, depth, position, reason) for position, url, depth, reason in todo_skips]
            rounds.append(state.write_round(_next(rounds), level, rows))
        todo = [f for f in to_fetch if f[0] not in done]
        while todo:
            # pages tried of the page budget, on the job's [progress] lines (ops/lake/progress.py)
            progress.update(done=ckpt["fetched"] + len(to_fetch) - len(todo), total=cfg.max_pages,
                            unit="pages")
            batch, todo = _take_round(todo, cfg.checkpoint_every)
            rounds.append(_fetch_round(spark, batch, level, robots, ckpt, cfg, fetch_cfg, state, rounds,
                                       level_runner))
        level_rows = sorted((row for r in rounds if r["level"] == level for row in r["rows"]),
                            key=lambda row: row["position"])
        ckpt["frontier"] = _next_frontier(level_rows, ckpt, cfg, allowed)
        for row in level_rows:
            row.pop("outlinks", None)  # in the next frontier now; the driver need not hold them
        ckpt["fetched"] += len(to_fetch)
        progress.update(done=ckpt["fetched"], total=cfg.max_pages, unit="pages", level=level)
        ckpt["level"] = level + 1
        state.save_checkpoint(ckpt)
    ckpt["finished"] = True
    state.save_checkpoint(ckpt)
    ordered = sorted(((r["level"], row["position"], row) for r in rounds for row in r["rows"]),
                     key=lambda item: item[:2])
    log = [{c: row.get(c) for c in LOG_COLUMNS} for _, _, row in ordered]
    counts = Counter(row["reason"] for row in log)
    return CrawlResult(log, counts, [w for r in rounds for w in state.round_warcs(r)],
                       {h: r.mode for h, r in robots.items()}, ckpt)


def _next(rounds: list[dict[str, Any]]) -> int:
    return rounds[-1]["number"] + 1 if rounds else 0


def _take_round(todo: list[tuple[int, str, int]], per_host: int):
    """The next round: each host's first ``per_host`` remaining URLs; the rest wait."""
    taken: Counter = Counter()
    batch, rest = [], []
    for item in todo:
        key = host_key(item[1])
        (batch if taken[key] < per_host else rest).append(item)
        taken[key] += 1
    return batch, rest


def _fetch_round(spark, batch, level, robots, ckpt, cfg, fetch_cfg, state, rounds, level_runner):
    by_host: dict[str, list[tuple[int, str, int]]] = OrderedDict()
    for item in batch:
        by_host.setdefault(host_key(item[1]), []).append(item)
    number = _next(rounds)
    jobs = []
    for index, (host, urls) in enumerate(by_host.items()):
        delay = max(cfg.delay, robots[host].crawl_delay(fetch_cfg.user_agent))  # <= max_crawl_delay here
        jobs.append(HostJob(host, tuple(urls), delay, robots[host], fetch_cfg,
                            not_before=ckpt["last_request"].get(host, 0.0) + delay,
                            warc=state.round_warc(number, index)))
    results = sorted(level_runner(spark, jobs), key=lambda r: r["position"])
    for res in results:
        host = res["host"]
        ckpt["last_request"][host] = max(ckpt["last_request"].get(host, 0.0), res.get("ended_at", 0.0))
    stored = Counter(res["host"] for res in results if res["reason"] == OK)
    rows = [{**{c: res.get(c) for c in LOG_COLUMNS}, "position": res["position"], "outlinks": res["outlinks"]}
            for res in results]
    return state.write_round(number, level, rows, [(job.warc, stored[job.host]) for job in jobs],
                             last_request={h: ckpt["last_request"][h] for h in by_host})


def _next_frontier(level_rows, ckpt, cfg, allowed) -> list[list[Any]]:
    """New in-scope links of a level's pages, in frontier order, each URL once per crawl."""
    seen = set(ckpt["seen"])
    added: list[str] = []
    frontier = []
    for row in level_rows:
        for url in [row["final_url"]] + [link for link in row.get("outlinks") or []]:
            is_link = url != row["final_url"]
            if url in seen:
                continue
            if is_link and not (row["depth"] + 1 <= cfg.max_depth and in_scope(url, allowed)):
                continue
            seen.add(url)
            added.append(url)
            if is_link:
                frontier.append([url, row["depth"] + 1])
    ckpt["seen"] = ckpt["seen"] + added
    return frontier


def _host_port(url: str) -> tuple[str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return (parts.hostname, parts.port or fetcher.DEFAULT_PORTS[parts.scheme])


def _skipped(url: str, depth: int, position: int, reason: str) -> dict[str, Any]:
    from spark_jobs.records import utc_now_iso

    row = dict.fromkeys(LOG_COLUMNS)
    row.update(url=url, final_url=url, reason=reason, bytes=0, seconds=0.0, depth=depth,
               fetched_at=utc_now_iso(), host=host_key(url), attempts=0)
    return {**row, "position": position, "outlinks": []}
