"""What the integration tests share: a generated website, free ports, the stack's environment.

A plain module, not a fixture file, so that a developer can start the very same stack by hand
(``.venv-airflow/bin/python tests/integration/stack_support.py /tmp/dir``: stack plus tiny demo,
the env written to ``/tmp/dir/env.sh``) and look at the UIs, or try a selector, against it
instead of paying for a fresh stack and pipeline on every attempt. Stop it with
``source /tmp/dir/env.sh && crawl2model down``.
"""
from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

# A small vocabulary for readable, varied English prose that passes quality filters.
_SUBJECTS = ["The river", "A young engineer", "Our small team", "The old library", "Every gardener",
             "The museum guide", "A careful reader", "The city council", "My neighbour", "The night train",
             "A curious student", "The village baker", "This short report", "The mountain path",
             "Each visitor"]
_VERBS = ["describes", "follows", "remembers", "changes", "explains", "protects", "measures", "reaches",
          "collects", "compares", "builds", "questions", "welcomes", "improves", "discovers"]
_OBJECTS = ["the history of the valley", "a quiet morning by the lake", "the price of fresh bread",
            "the rules of an old game", "the shape of the northern coast", "a letter from a distant friend",
            "the sound of rain on the roof", "the plans for a new bridge", "the habits of migrating birds",
            "a recipe for winter soup", "the stars above the harbour", "the cost of repairing the road",
            "the names of forgotten streets", "the growth of young trees", "a map of the hidden caves"]
_TAILS = ["before the sun goes down", "with great patience", "for the first time in years",
          "while the children are at school", "because nobody else will", "in a clear and simple way",
          "after a long and difficult winter", "and nobody seems surprised", "during the autumn festival",
          "as the weather slowly improves", "without asking for any help", "to the delight of everyone"]


def _paragraph(rng: random.Random, n: int = 6) -> str:
    return " ".join(f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
                    f"{rng.choice(_TAILS)}." for _ in range(n))


def make_site(root: Path, pages: int = 14, seed: int = 7) -> Path:
    """index.html linking to ``pages`` article pages, plus a /whatsnew/ subtree robots.txt forbids."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "whatsnew").mkdir(exist_ok=True)
    links = []
    for i in range(pages):
        title = f"Notes from the valley, part {i + 1}"
        body = "\n".join(f"<p>{_paragraph(rng)}</p>" for _ in range(5))
        nxt = f'<a href="page{(i + 1) % pages}.html">next</a>'
        (root / f"page{i}.html").write_text(
            f"<!doctype html><html lang='en'><head><title>{title}</title></head><body>"
            f"<article><h1>{title}</h1>{body}</article><footer>{nxt}</footer></body></html>")
        links.append(f'<li><a href="page{i}.html">{title}</a></li>')
    (root / "whatsnew" / "index.html").write_text(
        "<html><body><p>Forbidden by robots.txt; a polite crawler never fetches this.</p></body></html>")
    (root / "index.html").write_text(
        "<!doctype html><html lang='en'><head><title>Valley notes</title></head><body>"
        f"<h1>Valley notes</h1><p>{_paragraph(rng)}</p><ul>{''.join(links)}</ul>"
        '<a href="whatsnew/index.html">What is new</a></body></html>')
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing_requirements() -> list[str]:
    """What the real stack needs and this machine lacks (the tests skip, naming it)."""
    import shutil

    root = Path(__file__).resolve().parents[2]
    needs = ["spark_jobs/__main__.py", "training/finetune.py", ".venv-jobs/bin/horovodrun",
             ".venv-airflow/bin/airflow"]
    missing = [name for name in needs if not (root / name).exists()]
    if shutil.which("java") is None:
        missing.append("java")
    return missing


# Variables the test stack must not inherit from the developer's shell.
UNSET = ("C2M_LAUNCHER", "MLFLOW_TRACKING_URI", "C2M_DAGS_FOLDER", "C2M_AIRFLOW_LOGIN")


def stack_env(base: Path) -> dict[str, str]:
    """C2M_* settings for a throwaway stack under ``base``, on free ports (never the defaults)."""
    env = {
        "C2M_STACK_DIR": str(base / "stack"),
        "C2M_DATA_ROOT": str(base / "data"),
        "C2M_SITE_ROOT": str(make_site(base / "site")),
        "C2M_SITE_CRAWL_DELAY": "0",
        "C2M_RETRY_DELAY_S": "1",  # parsed into every DAG's retry_delay: failures retry at once
        "C2M_TRIGGER_POKE_S": "1",  # end_to_end sees each triggered run end within a second
        "C2M_DAG_REPARSE_S": "600",  # the DAG files do not change during the tests: parse them once
    }
    for var in ("C2M_AIRFLOW_PORT", "C2M_MLFLOW_PORT", "C2M_SITE_PORT", "C2M_REVIEWS_PORT"):
        env[var] = str(free_port())
    return env


@contextmanager
def running_stack(request, prefix: str, unset: tuple[str, ...], env_for: Callable[[Path], dict[str, str]],
                  label: str = "stack") -> Iterator:
    """A stack on free ports under a temp folder (not pytest's tmp_path: other sessions on this
    machine rotate those away, logs and all), stopped by PID at the end. The folder is kept, and
    its path printed, when a test failed meanwhile; otherwise it is removed."""
    import pytest

    from ops.launch.settings import get_settings
    from ops.stack import processes, services

    base = Path(tempfile.mkdtemp(prefix=prefix))
    failed_before = request.session.testsfailed
    mp = pytest.MonkeyPatch()
    for var in unset:
        mp.delenv(var, raising=False)
    for var, value in env_for(base).items():
        mp.setenv(var, value)
    s = get_settings()
    try:
        t0 = time.monotonic()
        services.up(s, timeout=300)
        print(f"{label} healthy in {time.monotonic() - t0:.1f} s; RSS MiB {processes.memory_mib(s)}")
        yield s
    finally:
        services.down(s)
        mp.undo()
        if request.session.testsfailed == failed_before:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept the {label}'s logs and data for inspection: {base}")


def task_log_text(path: Path) -> str:
    """An Airflow 3 task log (JSON lines) as plain text, one event per line."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(str(json.loads(line).get("event", "")))
        except ValueError:
            out.append(line)
    return "\n".join(out)


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[float]:
    """A run's logged values of one metric, in step order, read over MLflow's REST API."""
    from ops.clients.mlflow_helpers import _get

    points = _get(tracking_uri, "metrics/get-history", run_id=run_id,
                  metric_key=key, max_results="25000").get("metrics", [])
    return [m["value"] for m in sorted(points, key=lambda m: (m.get("step", 0), m.get("timestamp", 0)))]


# WARC files for data_refresh's ``source: warc``, written with warcio in the jobs venv (where
# warcio lives): a per-record gzip WARC with one damaged gzip member and a truncated last member,
# a WARC gzipped whole (one gzip member for every record) and a plain WET file.
_WRITE_WARCS = """
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


def write_warcs(folder: Path, jobs_python: Path) -> str:
    """The WARC files above in ``folder``; returns the glob that names them."""
    repo = Path(__file__).resolve().parents[2]
    folder.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": f"{repo / 'tests' / 'spark_jobs'}:{repo}", "PATH": "/usr/bin:/bin"}
    subprocess.run([str(jobs_python), "-c", _WRITE_WARCS, str(folder)], check=True, env=env)
    (folder / "whole.warc").unlink()  # its gzipped copy is the input
    return f"{folder}/*.warc*"


@dataclass
class EndToEndRun:
    """One finished ``end_to_end`` run and what the tests need to check it."""
    run_id: str
    final: dict  # the end_to_end DAG run once it ended
    children: dict  # DAG id -> the run id end_to_end gave its run of that DAG
    asset_runs_before: int  # asset-triggered pretrain runs before it started


def run_end_to_end(stack) -> EndToEndRun:
    """Trigger ``end_to_end`` with the tiny demo's settings, its data_refresh over the WARC files
    of :func:`write_warcs` (publish off, as end_to_end does), and wait until it ends."""
    from ops.clients.airflow_api import AirflowClient
    from ops.stack import layout
    from ops.stack.demo_profiles import PROFILES

    client = AirflowClient(stack.airflow_url, layout.airflow_home(stack))
    asset_runs = len(client.list_runs("pretrain", run_type="asset_triggered"))
    tiny = PROFILES["tiny"]
    # The demo's corpus already holds the site's pages: dedup against it would leave nothing to train on.
    data = {k: v for k, v in tiny.data.items() if k not in ("pretrain", "max_pages")}
    data.update(dedup_against="none", source="warc",
                warc_glob=write_warcs(Path(stack.data_root).parent / "warc-in", stack.jobs_python))
    conf = {"seeds": [f"{stack.site_url}/"], "max_pages": tiny.data["max_pages"],
            "max_steps": tiny.data["pretrain"]["max_steps"], "epochs": 1, "refresh_conf": data,
            "pretrain_conf": {"batch_size": tiny.data["pretrain"]["batch_size"]},
            "finetune_conf": {k: v for k, v in tiny.finetune.items() if k != "epochs"}}
    client.set_paused("end_to_end", False)
    run_id = client.trigger("end_to_end", conf)["dag_run_id"]
    final = client.wait_for_run("end_to_end", run_id, timeout=1800)
    children = {d: f"{run_id}__{d}" for d in ("data_refresh", "pretrain", "finetune")}
    return EndToEndRun(run_id, final, children, asset_runs)


def require_demo(result) -> None:
    """Fail a test that builds on the tiny pipeline's models with the pipeline's own failure."""
    import pytest

    if not result.ok:
        pytest.fail(f"the tiny demo pipeline this test builds on failed:\n{result.failure}")


def _main() -> None:
    """Start a stack by hand and run the tiny demo on it; prints the env to reuse it."""
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("base", type=Path, help="an empty folder for the stack, data and site")
    parser.add_argument("--no-demo", action="store_true", help="start the stack only")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    env = stack_env(args.base.resolve())
    for var in UNSET:
        os.environ.pop(var, None)
    os.environ.update(env)
    from ops.launch.settings import get_settings
    from ops.stack import services
    from ops.stack.demo import run_demo

    s = get_settings()
    services.up(s, timeout=300)
    print("\n".join(f"export {k}={v}" for k, v in env.items()), flush=True)
    (args.base / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
    if not args.no_demo:
        result = run_demo("tiny", s)
        print("demo ok" if result.ok else f"demo FAILED: {result.failure}", flush=True)


if __name__ == "__main__":
    _main()
