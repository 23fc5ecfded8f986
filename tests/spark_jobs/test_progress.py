"""Progress lines of the data jobs: a real Spark stage and a real crawl say what they are doing
at least every 10 s, and the crawl counts pages tried of its budget (the lines themselves:
tests/ops/test_progress_lines.py)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ops.lake import progress

REPO = Path(__file__).resolve().parents[2]

_JOB = textwrap.dedent("""
    import time
    from spark_jobs.runner import get_spark

    spark = get_spark("crawl2model-sleepy", master="local[2]")
    print("job: Spark is up", flush=True)

    def slow(rows):
        time.sleep(7)
        return rows

    n = spark.sparkContext.parallelize(range(8), 4).mapPartitions(slow).count()  # 2 waves of 7 s
    print(f"job: counted {n}", flush=True)
    time.sleep(13)  # the driver busy outside Spark
    print("job: done", flush=True)
    spark.stop()
""")


@pytest.mark.spark
@pytest.mark.timeout(240)
def test_a_spark_job_prints_progress_at_least_every_10_s():
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop(progress.EVERY_ENV, None)  # the default interval, as the jobs run
    proc = subprocess.Popen([sys.executable, "-c", _JOB], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[tuple[float, str]] = []
    for line in proc.stdout:
        lines.append((time.monotonic(), line.rstrip("\n")))
    assert proc.wait() == 0, "\n".join(text for _, text in lines)
    text = "\n".join(t for _, t in lines)
    start = next(i for i, (_, t) in enumerate(lines) if t == "job: Spark is up")
    timed = [when for when, t in lines[start:] if t.startswith(("job:", progress.PREFIX))]
    gaps = [b - a for a, b in zip(timed, timed[1:])]
    assert max(gaps) < 20, (gaps, text)  # the bound; the ticker prints every 10 s
    ours = [t for _, t in lines if t.startswith(f"{progress.PREFIX} sleepy:")]
    assert any("tasks" in t and "/4 tasks" in t for t in ours), text  # a stage's tasks done/total
    assert any("driver working, no Spark stage running" in t for t in ours), text
    after = [when for when, t in lines if t.startswith(progress.PREFIX)]
    assert after[-1] <= lines[-1][0]  # nothing printed after the session stopped


def test_the_crawl_counts_pages_tried_of_its_budget(tmp_path):
    from crawl_server import Site
    from test_crawl_resume import crawl_into, site_routes

    buf = io.StringIO()
    p = progress.start("crawl", stream=buf, every=0.05)
    try:
        with Site(site_routes(slow=0.03)) as site:
            manifest = crawl_into(str(tmp_path), site.url, checkpoint_every=2, max_pages=9)
    finally:
        progress.stop()
    tried = manifest["rows_in"] - manifest["dropped"].get("robots_disallowed", 0)
    assert (p.done, p.total, p.unit) == (tried, 9, "pages")
    counts = [line.split(": ", 1)[1].split(" ", 1)[0] for line in buf.getvalue().splitlines()]
    assert "1/9" in counts and f"{tried}/9" in counts  # it moved during the crawl, round by round
