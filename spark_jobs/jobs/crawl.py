"""spark-submit entry: crawl seed sites politely into raw/v=V (WARC + fetch log).

    spark-submit spark_jobs/jobs/crawl.py --version demo --seeds http://127.0.0.1:28000/ \
        --allow-private --max-pages 100 --delay 0.05

Rerunning with the same --version resumes a killed crawl from its last round (progress
in raw/_crawl-v=V/, see spark_jobs/crawl/state.py); --restart starts over.
"""
import os
import sys

# spark-submit puts this folder first on sys.path, where jobs/tokenize.py would shadow the stdlib.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from ops.lake.jobconfig import add_arguments  # noqa: E402
from spark_jobs.jobs._args import base_parser, common_config, parse, print_summary  # noqa: E402
from spark_jobs.jobs.config import CrawlSettings  # noqa: E402


def build_parser():
    p = base_parser("crawl", "Polite BFS crawl of seed sites into WARC files and a fetch log.", jsonl=False)
    return add_arguments(p, CrawlSettings)


def main(argv=None, spark=None) -> dict:
    from ops.lake.datasets import DatasetVersion
    from spark_jobs.crawl.bfs import CrawlConfig
    from spark_jobs.crawl.fetcher import FetchConfig
    from spark_jobs.crawl.output import run_crawl
    from spark_jobs.crawl.retry import RetryPolicy
    from spark_jobs.crawl.state import CrawlState
    from spark_jobs.crawl.urls import parse_allowed
    from spark_jobs.runner import get_spark

    args = parse(build_parser(), argv)
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
    spark = spark or get_spark("crawl2model-crawl")
    out = DatasetVersion(args.root, "raw", args.version)
    config = {k: v for k, v in common_config(args).items() if k != "restart"}
    manifest = run_crawl(spark, cfg, out, state, config=config)
    print_summary(manifest)
    return manifest


if __name__ == "__main__":
    main(sys.argv[1:])
