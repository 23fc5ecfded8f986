"""The crawl stage: crawl seed sites politely into raw/v=V (WARC + fetch log).

    spark-submit spark_jobs/__main__.py crawl --version demo --seeds http://127.0.0.1:28000/ \
        --allow-private --max-pages 100 --delay 0.05

Rerunning with the same --version resumes a killed crawl from its last round (progress
in raw/_crawl-v=V/, see spark_jobs/crawl/state.py); --restart starts over.
"""
from typing import NamedTuple

from spark_jobs.jobs._args import base_parser, common_config, parse
from spark_jobs.stage import Stage, run_stage

DEFAULT_UA = "crawl2model/0.1 (+https://example.invalid/bot)"


def build_parser():
    p = base_parser("crawl", "Polite BFS crawl of seed sites into WARC files and a fetch log.", jsonl=False)
    p.add_argument("--seeds", required=True, help="comma-separated seed URLs")
    p.add_argument("--allow-domains", default="",
                   help="comma-separated host or host:port scope (default: the seeds' host:port)")
    p.add_argument("--max-pages", type=int, default=200, help="most URLs to fetch")
    p.add_argument("--max-depth", type=int, default=3, help="link hops from a seed")
    p.add_argument("--delay", type=float, default=1.0, help="seconds between requests to one host "
                   "(robots.txt Crawl-delay wins if larger)")
    p.add_argument("--max-crawl-delay", type=float, default=60.0,
                   help="longest robots.txt Crawl-delay honoured, in seconds: a host asking for more is "
                   "not crawled, its URLs are logged as crawl_delay_too_long")
    p.add_argument("--user-agent", default=DEFAULT_UA)
    p.add_argument("--allow-private", action="store_true",
                   help="also fetch loopback/private addresses (the local demo site is on 127.0.0.1); "
                   "link-local and cloud metadata addresses stay refused")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to connect, and most seconds between two reads of a response")
    p.add_argument("--fetch-deadline", type=float, default=60.0,
                   help="most seconds for one attempt, body included: a server that drips bytes "
                   "fails as fetch_deadline (not retried)")
    p.add_argument("--max-bytes", type=int, default=5 * 1024 * 1024, help="largest page to store")
    p.add_argument("--max-retries", type=int, default=3,
                   help="retries of a 429, 5xx, timeout or connection error (refused, reset) per URL")
    p.add_argument("--backoff-base", type=float, default=1.0,
                   help="seconds: retry n waits between half and all of base * 2^n (capped by --backoff-max)")
    p.add_argument("--backoff-max", type=float, default=60.0, help="longest backoff wait in seconds "
                   "(a server's Retry-After is honoured even when longer, within --retry-budget)")
    p.add_argument("--retry-budget", type=float, default=120.0,
                   help="seconds per URL for all attempts and waits; "
                   "past it the URL fails as budget_exhausted")
    p.add_argument("--checkpoint-every", type=int, default=20,
                   help="URLs per host between checkpoints: a killed crawl refetches at most one such round")
    p.add_argument("--restart", action="store_true",
                   help="discard the saved progress of this --version and crawl from the seeds "
                   "(by default a rerun resumes, and a published crawl is not fetched again)")
    return p


class Plan(NamedTuple):
    cfg: object  # CrawlConfig
    state: object  # CrawlState: the rounds done so far, the resume point


def prepare(args) -> Plan:
    """The crawl's settings and its saved progress (discarded with --restart), before Spark starts."""
    from spark_jobs.crawl.bfs import CrawlConfig
    from spark_jobs.crawl.fetcher import FetchConfig
    from spark_jobs.crawl.retry import RetryPolicy
    from spark_jobs.crawl.state import CrawlState
    from spark_jobs.crawl.urls import parse_allowed

    retry = RetryPolicy(max_retries=args.max_retries, base_delay=args.backoff_base,
                        max_delay=args.backoff_max, budget=args.retry_budget)
    cfg = CrawlConfig(
        seeds=[s for s in args.seeds.split(",") if s.strip()],
        allow_domains=parse_allowed(args.allow_domains.split(",")),
        max_pages=args.max_pages, max_depth=args.max_depth, delay=args.delay,
        checkpoint_every=args.checkpoint_every, max_crawl_delay=args.max_crawl_delay,
        fetch=FetchConfig(user_agent=args.user_agent, timeout=args.timeout, deadline=args.fetch_deadline,
                          max_bytes=args.max_bytes, allow_private=args.allow_private, retry=retry),
    )
    state = CrawlState.for_version(args.root, args.version)
    if args.restart:
        state.discard()
    return Plan(cfg, state)


def done(run):
    from spark_jobs.crawl.output import published

    return published(run.out, run.prepared.state, run.prepared.cfg)


def write(spark, _none, staging, run):
    """Crawl (resuming the saved rounds), then lay the result out in the staging folder."""
    from spark_jobs.crawl.bfs import crawl
    from spark_jobs.crawl.output import write_crawl

    result = run.notes["crawl"] = crawl(spark, run.prepared.cfg, run.prepared.state)
    run.parents = list(run.prepared.cfg.seeds)
    return write_crawl(result, staging)


def after(run, manifest: dict) -> None:
    run.prepared.state.mark_published(run.notes["crawl"].checkpoint)  # then the rounds can go


STAGE = Stage(
    name="crawl", output="raw", settings=lambda argv: parse(build_parser(), argv),
    config=lambda run: {k: v for k, v in common_config(run.args).items() if k != "restart"},
    prepare=prepare, done=done, write=write, after=after)


def main(argv=None, spark=None) -> dict:
    return run_stage(STAGE, argv, spark)
