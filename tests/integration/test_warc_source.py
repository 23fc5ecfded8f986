"""data_refresh with ``source: warc`` on the real stack: WARC files instead of a crawl.

The WARC files (stack_support.write_warcs) are a per-record gzip WARC with one damaged gzip
member and a truncated last member, a WARC gzipped whole (one gzip member for every record)
and a plain WET file. The data_refresh run that ingests them is the one ``end_to_end`` starts
(conftest's ``end_to_end_run``, whose chaining ``test_stack.py`` checks): one refresh serves
both files. The test checks that the crawl path was skipped, that the raw version counts the
damaged stretches as ``corrupt_record`` (kept under ``removed/corrupt_record/``) and that
extract turned every good record into a document.

Runs on the shared stack (conftest.FILE_ORDER).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from stack_support import missing_requirements

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]
_missing = missing_requirements()
pytestmark.append(pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}"))


def test_data_refresh_ingests_warc_files_with_a_damaged_member(stack, end_to_end_run):
    import pyarrow.parquet as pq

    from ops.clients.airflow_api import AirflowClient
    from ops.lake.datasets import DatasetVersion
    from ops.stack import layout
    from ops.stack.demo_runs import explain_failure

    client = AirflowClient(stack.airflow_url, layout.airflow_home(stack))
    run = {"dag_run_id": end_to_end_run.children["data_refresh"]}
    final = client.get_run("data_refresh", run["dag_run_id"])
    assert final["state"] == "success", explain_failure(client, stack, "data_refresh", run["dag_run_id"])
    version = final["conf"]["version"]  # end_to_end's plan names it after its own run
    assert final["conf"]["source"] == "warc" and final["conf"]["publish"] is False

    states = client.task_states("data_refresh", run["dag_run_id"])
    assert states["ingest.source"] == "success" and states["ingest.warc"] == "success"
    assert states["ingest.shards"] == "skipped" and states["ingest.crawl"] == "skipped"
    assert states["ingest.extract"] == "success"

    raw = DatasetVersion(stack.data_root, "raw", version)
    manifest = raw.read_manifest()
    # a.warc.gz: 4 of 6 pages whole, one damaged member, one cut; c.warc.gz: 3; the WET file: 3
    assert manifest["source"] == "warc"
    assert (manifest["rows_in"], manifest["rows_out"], manifest["dropped"]) == (12, 10, {"corrupt_record": 2})
    corrupt = pq.read_table(raw.data_path("removed", "corrupt_record")).column("url").to_pylist()
    assert sorted(u.split("#")[0].rsplit("/", 1)[1] for u in corrupt) == ["a.warc.gz", "a.warc.gz"]

    extracted = DatasetVersion(stack.data_root, "extracted", version)
    em = extracted.read_manifest()
    assert em["parents"] == [raw.uri]
    assert (em["rows_in"], em["rows_out"], em["dropped"]) == (10, 10, {})
    parts = sorted(Path(extracted.data_uri).glob("*.parquet"))
    urls = {u for p in parts for u in pq.read_table(p, columns=["url"]).column("url").to_pylist()}
    good = {f"http://warc.test/page{i}.html" for i in (0, 2, 3, 4, 20, 21, 22)}
    good |= {f"http://wet.test/{i}" for i in range(3)}
    assert urls == good
