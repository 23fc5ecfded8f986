"""extract reads the raw versions of a sharded crawl into one extracted version."""
from __future__ import annotations

import pytest
from warc_test_files import write_warc


@pytest.mark.spark
def test_extract_unions_two_raw_versions_with_both_parents(spark, tmp_path):
    from ops.lake.datasets import DatasetVersion
    from spark_jobs.jobs import extract, ingest
    from spark_jobs.runner import read_version

    root = str(tmp_path / "data")
    for version, (pages, start) in {"r-c0": (3, 0), "r-c1": (2, 10)}.items():
        src = tmp_path / version
        src.mkdir()
        write_warc(src / "a.warc.gz", pages=pages, start=start)
        argv = ["--root", root, "--version", version, "--warc-glob", str(src / "*.warc.gz")]
        ingest.main(argv, spark=spark)

    m = extract.main(["--root", root, "--version", "r", "--input-versions", "r-c0,r-c1"], spark=spark)
    assert m["rows_in"] == 5
    assert m["rows_in"] == m["rows_out"] + sum(m["dropped"].values())  # the accounting invariant
    assert m["parents"] == [DatasetVersion(root, "raw", v).uri for v in ("r-c0", "r-c1")]
    urls = {r.url for r in read_version(spark, DatasetVersion(root, "extracted", "r")).collect()}
    assert {"http://warc.test/page0.html", "http://warc.test/page10.html"} <= urls

    single = extract.main(["--root", root, "--version", "r-c1"], spark=spark)  # one version: as before
    assert single["parents"] == [DatasetVersion(root, "raw", "r-c1").uri] and single["rows_in"] == 2


def test_input_versions_must_be_valid_and_distinct():
    from spark_jobs.jobs.extract import build_parser

    parsed = build_parser().parse_args(["--version", "v", "--input-versions", "a,b"])
    assert parsed.input_versions == ["a", "b"]
    for bad in ("a,a", "a,b c", ","):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--version", "v", "--input-versions", bad])


def test_a_crawl_that_stored_no_page_fails_extract_saying_why(tmp_path):
    """Nothing to extract is a crawl-setting problem (here the SSRF guard refused every host):
    the error names the crawl's drop reasons and the switch, not a missing-file error."""
    from ops.lake.datasets import DatasetVersion
    from spark_jobs.jobs.extract import EmptyRawVersion, raw_frame
    from spark_jobs.runner import publish_version
    from spark_jobs.staging import Staging

    root = str(tmp_path / "data")
    with Staging(DatasetVersion(root, "raw", "v1")) as staging:
        publish_version(staging, rows_in=3, counts={"private_address": 3}, parents=[], config={})
    with pytest.raises(EmptyRawVersion, match=r"private_address: 3.*allow_private"):
        raw_frame(None, root, ["v1"])  # no Spark job is started for an empty version
