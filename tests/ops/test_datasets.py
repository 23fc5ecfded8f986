"""Dataset versions: manifest written last, accounting invariant, latest version."""
import json
import time

import pytest

from ops.lake.datasets import (DatasetVersion, ManifestError, check_accounting, check_version, latest_version,
                          new_generation, prune_generations)


def test_manifest_records_counts_and_files(tmp_path):
    dv = DatasetVersion(str(tmp_path), "clean", "v1")
    (tmp_path / "clean" / "v=v1").mkdir(parents=True)
    (tmp_path / "clean" / "v=v1" / "part-00000.parquet").write_bytes(b"x" * 10)
    assert not dv.is_complete()
    m = dv.write_manifest(rows_in=5, rows_out=3, dropped={"too_short": 2}, parents=["p"], config={"a": 1})
    assert dv.is_complete()
    on_disk = json.loads((tmp_path / "clean" / "v=v1" / "_manifest.json").read_text())
    assert on_disk == m
    assert m["files"] == ["part-00000.parquet"] and m["bytes"] == 10
    assert json.loads((tmp_path / "clean" / "v=v1" / "stats.json").read_text())["dropped"] == {"too_short": 2}


def test_a_manifest_commits_the_generation_it_names_and_counts_only_its_files(tmp_path):
    dv = DatasetVersion(str(tmp_path), "clean", "v1")
    old = new_generation()
    time.sleep(0.002)
    new = new_generation()
    assert old < new  # ids sort by age (to the millisecond)
    for gen, size in ((old, 4), (new, 10)):
        folder = tmp_path / "clean" / "v=v1" / f"g={gen}"
        (folder / "removed" / "r").mkdir(parents=True)
        (folder / "part-00000.parquet").write_bytes(b"x" * size)
        (folder / "removed" / "r" / "part-00000.parquet").write_bytes(b"y")
    m = dv.write_manifest(rows_in=5, rows_out=3, dropped={"r": 2}, parents=[], config={}, generation=new)
    assert m["generation"] == new and m["files"] == ["part-00000.parquet"] and m["bytes"] == 10
    assert dv.data_uri == str(tmp_path / "clean" / "v=v1" / f"g={new}")
    assert json.loads(open(dv.data_path("stats.json")).read())["rows_out"] == 3  # beside what it counts
    assert not (tmp_path / "clean" / "v=v1" / "stats.json").exists()
    assert prune_generations(dv, grace_s=0) == [old]
    assert sorted(p.name for p in (tmp_path / "clean" / "v=v1").iterdir()) == ["_manifest.json", f"g={new}"]


def test_a_legacy_manifest_lists_only_the_files_directly_in_the_version(tmp_path):
    """Without a generation the version folder is the data folder; g= folders are not its files."""
    dv = DatasetVersion(str(tmp_path), "clean", "v1")
    (tmp_path / "clean" / "v=v1" / "g=20260101T000000000-0000abcd").mkdir(parents=True)
    (tmp_path / "clean" / "v=v1" / "g=20260101T000000000-0000abcd" / "part-00009.parquet").write_bytes(b"z")
    (tmp_path / "clean" / "v=v1" / "part-00000.parquet").write_bytes(b"x")
    m = dv.write_manifest(rows_in=1, rows_out=1, dropped={}, parents=[], config={})
    assert m["generation"] == "" and m["files"] == ["part-00000.parquet"] and dv.data_uri == dv.uri
    assert prune_generations(dv, grace_s=0) == ["20260101T000000000-0000abcd"]  # never committed
    assert (tmp_path / "clean" / "v=v1" / "part-00000.parquet").exists()


def test_manifest_refuses_lost_documents(tmp_path):
    dv = DatasetVersion(str(tmp_path), "clean", "v1")
    with pytest.raises(ManifestError, match="accounting broken"):
        dv.write_manifest(rows_in=5, rows_out=3, dropped={"too_short": 1}, parents=[], config={})
    assert not dv.is_complete()


def test_unfinished_version_is_not_trusted(tmp_path):
    dv = DatasetVersion(str(tmp_path), "corpus", "v2")
    with pytest.raises(ManifestError, match="has not finished"):
        dv.read_manifest()


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "v 1", "x" * 65])
def test_bad_versions_are_rejected(bad):
    with pytest.raises(ValueError, match="invalid"):
        check_version(bad)


def test_from_uri_round_trip(tmp_path):
    dv = DatasetVersion(str(tmp_path), "shards", "2026-11-29")
    assert DatasetVersion.from_uri(dv.uri) == dv


def test_latest_version_ignores_unfinished(tmp_path):
    for v in ("a", "b"):
        DatasetVersion(str(tmp_path), "corpus", v).write_manifest(
            rows_in=0, rows_out=0, dropped={}, parents=[], config={})
    (tmp_path / "corpus" / "v=c").mkdir()  # no manifest: an attempt that died
    assert latest_version(str(tmp_path), "corpus") in {"a", "b"}
    assert latest_version(str(tmp_path), "shards") is None


def test_check_accounting_ok():
    check_accounting(3, 1, {"a": 1, "b": 1})
