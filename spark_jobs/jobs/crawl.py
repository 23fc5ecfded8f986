"""spark-submit entry: crawl seed sites politely into raw/v=V (WARC + fetch log).

    spark-submit spark_jobs/jobs/crawl.py --version demo --seeds http://127.0.0.1:28000/ \
        --allow-private --max-pages 100 --delay 0.05
"""
import os
import sys

# spark-submit puts this folder first on sys.path, where jobs/tokenize.py would shadow the stdlib.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from spark_jobs.jobs._args import base_parser, common_config, parse, print_summary  # noqa: E402

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
    p.add_argument("--user-agent", default=DEFAULT_UA)
    p.add_argument("--allow-private", action="store_true",
                   help="allow loopback/private addresses (the local demo site is on 127.0.0.1)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--max-bytes", type=int, default=5 * 1024 * 1024, help="largest page to store")
    return p


def main(argv=None, spark=None) -> dict:
    from ops.datasets import DatasetVersion
    from spark_jobs.crawl.bfs import CrawlConfig
    from spark_jobs.crawl.fetcher import FetchConfig
    from spark_jobs.crawl.output import write_crawl
    from spark_jobs.crawl.urls import parse_allowed
    from spark_jobs.runner import get_spark
    from spark_jobs.staging import Staging

    args = parse(build_parser(), argv)
    cfg = CrawlConfig(
        seeds=[s for s in args.seeds.split(",") if s.strip()],
        allow_domains=parse_allowed(args.allow_domains.split(",")),
        max_pages=args.max_pages, max_depth=args.max_depth, delay=args.delay,
        fetch=FetchConfig(user_agent=args.user_agent, timeout=args.timeout, max_bytes=args.max_bytes,
                          allow_private=args.allow_private),
    )
    spark = spark or get_spark("crawl2model-crawl")
    out = DatasetVersion(args.root, "raw", args.version)
    with Staging(out) as staging:
        manifest = write_crawl(spark, cfg, staging, config=common_config(args))
    print_summary(manifest)
    return manifest


if __name__ == "__main__":
    main(sys.argv[1:])
