"""The extract stage: raw/v=V (WARC) → extracted/v=V (text, title, lang).

    spark-submit spark_jobs/__main__.py extract --version demo
    spark-submit spark_jobs/__main__.py extract --version mine --input-jsonl pages.jsonl  # id, text or html
    spark-submit spark_jobs/__main__.py extract --version cc --warc-glob '/crawls/CC-MAIN-*/*.warc.gz'
    spark-submit spark_jobs/__main__.py extract --version v1 --input-versions v1-c0,v1-c1  # crawl shards

WARC and WET files (Common Crawl layout) are read directly with ``--warc-glob``, or from
raw/v=V (written by the crawl or ingest stage). Damaged records count as ``corrupt_record``;
a page whose decoding or extraction runs past --page-timeout as ``extract_timeout``. The
manifest's ``charset_notes`` counts pages whose declared charset is not a WHATWG label
(decoded by sniffing; the row's ``charset_note`` says so).
"""
from ops.lake.jobconfig import add_arguments
from spark_jobs.jobs._args import base_parser, common_config, parse
from spark_jobs.jobs.config import ExtractSettings
from spark_jobs.stage import Stage, run_stage


def build_parser():
    p = base_parser("extract", "Extract main text, title and language from crawled HTML.")
    add_arguments(p, ExtractSettings)
    p.add_argument("--input-versions", type=_versions, default=None,
                   help="comma-separated raw versions to read together (a sharded crawl), instead of "
                   "--input-version; the manifest's parents list them in this order")
    return p


def _versions(text: str) -> list[str]:
    import argparse

    from ops.lake.datasets import check_version

    try:
        versions = [check_version(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not versions or len(set(versions)) != len(versions):
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more distinct versions, e.g. v1-c0,v1-c1")
    return versions


def raw_frame(spark, root: str, versions: list[str]):
    """Rows of every finished raw version, unioned, and their URIs (first version first).

    Each version keeps its own ``source`` ("warc" when the ingest stage wrote it). Of several
    versions, one that stored no page (a crawl shard whose hosts were all down or disallowed)
    is still a parent but adds no rows. When no version stored a page there is nothing to extract,
    and the error says why the crawl stored none (its drop reasons).
    """
    from functools import reduce

    from ops.lake.datasets import DatasetVersion
    from spark_jobs.extract.warc_reader import warc_frame
    from spark_jobs.staging import local_input

    frames, parents = [], []
    for version in versions:
        raw = DatasetVersion(root, "raw", version)
        manifest = raw.read_manifest()  # raises with a hint when the version is unfinished
        parents.append(raw.uri)
        if manifest.get("rows_out") == 0:
            continue
        frames.append(warc_frame(spark, local_input(raw), source=manifest.get("source", "crawl")))
    if not frames:
        raise EmptyRawVersion(versions, manifest)
    return reduce(lambda a, b: a.unionByName(b), frames), parents


class EmptyRawVersion(ValueError):
    """The raw input holds no page: the crawl fetched nothing it could store."""

    def __init__(self, versions: list[str], manifest: dict):
        dropped = manifest.get("dropped") or {}
        why = ", ".join(f"{reason}: {n}" for reason, n in sorted(dropped.items())) or "no URL was tried"
        super().__init__(
            f"raw version(s) {', '.join(versions)} stored no page ({why}). Check the crawl's seeds and "
            "--allow-domains; 'private_address' means the SSRF guard refused the hosts (pass "
            "--allow-private / the allow_private Param only for sites on your own network)")


def charset_notes(spark, files: list[str]) -> dict[str, int]:
    """Rows per ``charset_note`` (pages whose declared charset named no encoding) in these files."""
    from pyspark.sql import functions as F

    from spark_jobs.extract.steps import CHARSET_NOTE

    if not files:
        return {}
    rows = (spark.read.parquet(*files).where(F.col(CHARSET_NOTE).isNotNull())
            .groupBy(CHARSET_NOTE).count().collect())
    return {r[CHARSET_NOTE]: int(r["count"]) for r in sorted(rows, key=lambda r: r[CHARSET_NOTE])}


def read(spark, run):
    """WARC/WET files matching --warc-glob, else the finished raw version(s)."""
    from spark_jobs.extract.warc_reader import SOURCE_WARC, warc_frame

    args = run.args
    if args.warc_glob:
        return warc_frame(spark, args.warc_glob, source=SOURCE_WARC), [args.warc_glob]
    return raw_frame(spark, args.root, args.input_versions or [args.input_version])


def steps(run) -> list:
    from spark_jobs.extract.steps import default_steps

    return default_steps(run.args.max_page_bytes, run.args.page_timeout)


def notes_output(spark, staging, run) -> dict:
    """The manifest's ``charset_notes``, from the kept rows as written."""
    return {"charset_notes": charset_notes(spark, sorted(staging.files("*part-*.parquet").values()))}


def out_columns() -> list:
    from spark_jobs.extract.steps import CHARSET_NOTE
    from spark_jobs.records import columns

    return columns((CHARSET_NOTE, "string"))


JSONL_EXTRA = ("html",)  # a JSONL record may bring html instead of text

STAGE = Stage(
    name="extract", output="extracted", settings=lambda argv: parse(build_parser(), argv),
    config=lambda run: common_config(run.args), read=read, jsonl_extra=JSONL_EXTRA,
    steps=steps, columns=out_columns, outputs=(notes_output,))


def main(argv=None, spark=None) -> dict:
    return run_stage(STAGE, argv, spark)
