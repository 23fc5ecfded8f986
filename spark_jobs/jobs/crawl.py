"""The crawl stage: crawl seed sites politely into raw/v=V (WARC + fetch log).

    spark-submit spark_jobs/__main__.py crawl --version demo --seeds http://127.0.0.1:28000/ \
        --allow-private --max-pages 100 --delay 0.05

Rerunning with the same --version resumes a killed crawl from its last round (progress
in raw/_crawl-v=V/, see spark_jobs/crawl/state.py); --restart starts over.
"""
from typing import NamedTuple

from ops.lake.jobconfig import add_arguments
from spark_jobs.jobs._args import base_parser, common_config, parse
from spark_jobs.jobs.config import CrawlSettings
from spark_jobs.stage import Stage, run_stage

DEFAULT_UA = "crawl2model/0.1 (+https://example.invalid/bot)"


def build_parser():
    p = base_parser("crawl", "Polite BFS crawl of seed sites into WARC files and a fetch log.", jsonl=False)
    return add_arguments(p, CrawlSettings)


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
        seeds=args.seeds, allow_domains=parse_allowed(args.allow_domains),
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
