"""Damaged WARC/WET input: counted as corrupt_record, skipped, never fatal; ingest → extract."""
from __future__ import annotations

import os

import pytest

from warc_test_files import damage, write_warc, write_wet
from spark_jobs.extract import steps as ex
from spark_jobs.extract.warc_reader import iter_warc
from spark_jobs.extract.warc_scan import scan_warc
from spark_jobs.steps import apply_steps


def _scan(path):
    with open(path, "rb") as fh:
        return list(scan_warc(fh, os.path.getsize(path)))


def test_whole_file_has_no_corrupt_items(tmp_path):
    path = tmp_path / "ok.warc.gz"
    write_warc(path, pages=3)
    items = _scan(path)
    assert [i.rec_type for i in items] == ["warcinfo"] + ["request", "response"] * 3
    assert all(i.kind == "record" for i in items)
    assert sum(i.length for i in items) == os.path.getsize(path)  # byte ranges tile the file


@pytest.mark.parametrize("gzip", [True, False])
def test_damaged_and_truncated_records_are_skipped_and_counted(tmp_path, gzip):
    path = tmp_path / ("bad.warc.gz" if gzip else "bad.warc")
    offsets = write_warc(path, pages=4, gzip=gzip)
    damage(path, offsets)
    items = _scan(path)
    responses = [i.url for i in items if i.rec_type == "response"]
    corrupt = [i for i in items if i.kind == "corrupt"]
    assert responses == ["http://warc.test/page0.html", "http://warc.test/page2.html"]  # read on after damage
    assert [c.offset for c in corrupt] == [offsets[1], offsets[3]]  # where each damaged record starts


def test_iter_warc_rows_and_the_corrupt_record_reason(tmp_path):
    path = tmp_path / "bad.warc.gz"
    damage(path, write_warc(path, pages=4))
    rows = list(iter_warc(str(path)))
    reasons = [apply_steps(dict(r), [ex.WarcRecordFilter()])[1] for r in rows]
    assert reasons == [None, ex.CORRUPT_RECORD, None, ex.CORRUPT_RECORD]
    assert rows[1]["url"] == f"{path}#offset={rows[1]['url'].rsplit('=', 1)[1]}" and rows[1]["id"]


def test_wet_conversion_records_become_text_rows(tmp_path):
    path = tmp_path / "x.warc.wet"
    good = ("Plain text from a WET file, already extracted by the crawler. " * 5).encode()
    write_wet(path, [good, b"\x81\x8d\x8f\x90\x9d" * 40])  # bytes no charset decodes
    rows = list(iter_warc(str(path)))
    assert rows[0]["text"] == good.decode() and rows[0].get("html") is None
    doc, reason = apply_steps(dict(rows[0]), ex.default_steps())
    assert reason is None and doc["lang"] == "en"
    assert apply_steps(dict(rows[1]), ex.default_steps())[1] == ex.DECODE_ERROR


@pytest.mark.spark
def test_ingest_then_extract(spark, tmp_path):
    from ops.lake.datasets import DatasetVersion
    from spark_jobs.jobs import extract, ingest

    src = tmp_path / "crawl"
    src.mkdir()
    damage(src / "a.warc.gz", write_warc(src / "a.warc.gz", pages=4))
    write_warc(src / "b.warc", pages=2, gzip=False, start=10)
    root = str(tmp_path / "data")
    argv = ["--root", root, "--version", "cc", "--warc-glob", str(src / "*.warc*")]
    manifest = ingest.main(argv, spark=spark)
    assert (manifest["rows_in"], manifest["rows_out"], manifest["dropped"]) == (6, 4, {"corrupt_record": 2})
    assert manifest["skipped_record_types"] == {"request": 6, "warcinfo": 2}
    assert manifest["source"] == "warc"
    assert manifest["warc_files"] == ["part-00000.warc.gz", "part-00001.warc.gz"]
    raw = DatasetVersion(root, "raw", "cc")
    assert spark.read.parquet(raw.data_path("removed", "corrupt_record")).count() == 2
    assert spark.read.parquet(raw.data_path("fetch_log")).count() == 6
    copied = [i for f in manifest["warc_files"] for i in _scan(raw.data_path(f))]
    assert all(i.kind == "record" for i in copied) and len(copied) == 4  # clean gzip copies

    extracted = extract.main(["--root", root, "--version", "cc"], spark=spark)
    assert extracted["rows_in"] == 4 and extracted["rows_out"] == 4
    direct = extract.main(["--root", root, "--version", "direct", "--warc-glob", str(src / "*.warc*")],
                          spark=spark)
    assert direct["rows_in"] == 6 and direct["dropped"] == {"corrupt_record": 2} and direct["rows_out"] == 4


@pytest.mark.spark
@pytest.mark.integration
def test_cli_ingest_help_and_run(tmp_path, monkeypatch, capsys):
    """``crawl2model ingest`` through the real spark-submit: its help, then a run over a
    Common Crawl style WARC, a WET file and an ARC file, one of them damaged."""
    import warc_test_files as wf
    from ops import cli
    from ops.lake.datasets import DatasetVersion

    monkeypatch.setenv("C2M_SPARK_MASTER", "local[2]")
    assert cli.main(["ingest", "--help"]) == 0
    assert "--warc-glob" in capsys.readouterr().out
    src = tmp_path / "cc"
    src.mkdir()
    members = [wf.gz(r) for r in wf.common_crawl_warc_records(3)]
    members[5] = members[5][:40] + b"\x00" * 30 + members[5][70:]  # the second page's response
    (src / "a.warc.gz").write_bytes(b"".join(members))
    wf.write_records(src / "b.warc.wet.gz", wf.common_crawl_wet_records(2))
    wf.write_records(src / "c.arc", wf.arc_records(2), per_record_gzip=False)
    root = tmp_path / "data"
    assert cli.main(["ingest", "--root", str(root), "--version", "cc", "--warc-glob", str(src / "*")]) == 0
    manifest = DatasetVersion(str(root), "raw", "cc").read_manifest()
    assert (manifest["rows_in"], manifest["rows_out"], manifest["dropped"]) == (7, 6, {"corrupt_record": 1})
    assert manifest["skipped_record_types"] == {"metadata": 3, "request": 3, "warcinfo": 3}
    assert "v=cc: rows_in=7 rows_out=6 dropped={'corrupt_record': 1}" in capsys.readouterr().out


@pytest.mark.spark
def test_ingest_other_tools_files_record_types_and_extract_reasons(spark, tmp_path):
    """Heritrix (revisits, a 404, a redirect), a wget WARC gzipped whole and plain resource
    records: documents are copied, other record types counted by type, and extract drops
    what is no page with its usual reasons."""
    import warc_test_files as wf
    from spark_jobs.jobs import extract, ingest

    src = tmp_path / "in"
    src.mkdir()
    wf.write_records(src / "heritrix.warc.gz", wf.heritrix_records(2))
    (src / "wget.warc.gz").write_bytes(wf.gz(b"".join(wf.wget_records(2))))
    wf.write_records(src / "resources.warc", wf.resource_records(), per_record_gzip=False)
    root = str(tmp_path / "data")
    manifest = ingest.main(["--root", root, "--version", "t", "--warc-glob", str(src / "*")], spark=spark)
    assert (manifest["rows_in"], manifest["rows_out"], manifest["dropped"]) == (10, 10, {})
    assert manifest["skipped_record_types"] == {"metadata": 5, "request": 4, "revisit": 2, "warcinfo": 3}
    extracted = extract.main(["--root", root, "--version", "t"], spark=spark)
    assert extracted["rows_in"] == 10 and extracted["rows_out"] == 7
    assert extracted["dropped"] == {"http_status": 2, "not_html": 1}
