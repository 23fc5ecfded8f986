"""data_refresh with ``source: warc`` on the real stack: WARC files instead of a crawl.

The test writes WARC files with warcio (in the jobs venv, where warcio lives): a per-record
gzip WARC with one damaged gzip member and a truncated last member, a WARC gzipped whole (one
gzip member for every record) and a plain WET file. It triggers ``data_refresh`` with
``source: warc`` and a ``warc_glob`` naming them, and checks that the crawl path was skipped,
that the raw version counts the damaged stretches as ``corrupt_record`` (kept under
``removed/corrupt_record/``) and that extract turned every good record into a document.

Runs on the shared stack (conftest.FILE_ORDER); it needs no earlier run.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stack_support import missing_requirements

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]
_missing = missing_requirements()
pytestmark.append(pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}"))

VERSION = "warc-it"
_WRITE = """
import gzip, io, sys
from warcio.warcwriter import WARCWriter
from warc_test_files import damage, write_warc, write_wet
from spark_test_data import english

out = sys.argv[1]
damage(f"{out}/a.warc.gz", write_warc(f"{out}/a.warc.gz", pages=6))  # page1 damaged, page5 cut
write_warc(f"{out}/whole.warc", pages=3, gzip=False, start=20)
with open(f"{out}/whole.warc", "rb") as fh:
    data = fh.read()
with open(f"{out}/c.warc.gz", "wb") as fh:
    fh.write(gzip.compress(data))  # `gzip whole.warc`: one member for all records
write_wet(f"{out}/d.warc.wet", [english(40 + i, sentences=12).encode() for i in range(3)])
"""


def _write_warcs(folder: Path, jobs_python: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": f"{repo / 'tests' / 'spark_jobs'}:{repo}", "PATH": "/usr/bin:/bin"}
    subprocess.run([str(jobs_python), "-c", _WRITE, str(folder)], check=True, env=env)
    (folder / "whole.warc").unlink()  # its gzipped copy is the input


def test_data_refresh_ingests_warc_files_with_a_damaged_member(stack):
    import pyarrow.parquet as pq

    from ops.clients.airflow_api import AirflowClient
    from ops.lake.datasets import DatasetVersion
    from ops.stack import layout
    from ops.stack.demo import explain_failure

    folder = Path(stack.data_root).parent / "warc-in"
    folder.mkdir(parents=True, exist_ok=True)
    _write_warcs(folder, stack.jobs_python)
    client = AirflowClient(stack.airflow_url, layout.airflow_home(stack))
    client.wait_for_dags(["data_refresh"])
    client.set_paused("data_refresh", False)
    conf = {"source": "warc", "warc_glob": f"{folder}/*.warc*", "version": VERSION, "publish": False,
            "dedup_against": "none", "vocab_size": 512, "seq_len": 32}
    run = client.trigger("data_refresh", conf)
    final = client.wait_for_run("data_refresh", run["dag_run_id"], timeout=1200)
    assert final["state"] == "success", explain_failure(client, stack, "data_refresh", run["dag_run_id"])

    states = client.task_states("data_refresh", run["dag_run_id"])
    assert states["ingest.source"] == "success" and states["ingest.warc"] == "success"
    assert states["ingest.shards"] == "skipped" and states["ingest.crawl"] == "skipped"
    assert states["ingest.extract"] == "success"

    raw = DatasetVersion(stack.data_root, "raw", VERSION)
    manifest = raw.read_manifest()
    # a.warc.gz: 4 of 6 pages whole, one damaged member, one cut; c.warc.gz: 3; the WET file: 3
    assert manifest["source"] == "warc"
    assert (manifest["rows_in"], manifest["rows_out"], manifest["dropped"]) == (12, 10, {"corrupt_record": 2})
    corrupt = pq.read_table(raw.data_path("removed", "corrupt_record")).column("url").to_pylist()
    assert sorted(u.split("#")[0].rsplit("/", 1)[1] for u in corrupt) == ["a.warc.gz", "a.warc.gz"]

    extracted = DatasetVersion(stack.data_root, "extracted", VERSION)
    em = extracted.read_manifest()
    assert em["parents"] == [raw.uri]
    assert (em["rows_in"], em["rows_out"], em["dropped"]) == (10, 10, {})
    parts = sorted(Path(extracted.data_uri).glob("*.parquet"))
    urls = {u for p in parts for u in pq.read_table(p, columns=["url"]).column("url").to_pylist()}
    good = {f"http://warc.test/page{i}.html" for i in (0, 2, 3, 4, 20, 21, 22)}
    good |= {f"http://wet.test/{i}" for i in range(3)}
    assert urls == good
