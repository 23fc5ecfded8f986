"""The walking skeleton end to end: the real stack, the real DAGs, driven over REST.

Starts Airflow, MLflow and a small generated website on free ports with a temporary stack dir
and data root, runs the demo's ``tiny`` profile (data_refresh → asset-triggered pretrain →
finetune) through Airflow's REST API, and checks the runs and MLflow's registry. The stack is
stopped by PID at the end, whatever happens.

Run with: .venv-airflow/bin/pytest -m integration tests/integration  (about 5-10 minutes)
"""
from __future__ import annotations

import random
import shutil
import socket
import time
from pathlib import Path

import pytest

from ops.settings import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

NEEDS = {
    "spark_jobs/jobs/tokenize.py": REPO_ROOT / "spark_jobs" / "jobs" / "tokenize.py",
    "training/finetune.py": REPO_ROOT / "training" / "finetune.py",
    ".venv-jobs/bin/horovodrun": REPO_ROOT / ".venv-jobs" / "bin" / "horovodrun",
    ".venv-airflow/bin/airflow": REPO_ROOT / ".venv-airflow" / "bin" / "airflow",
}
_missing = [name for name, path in NEEDS.items() if not path.exists()]
if shutil.which("java") is None:
    _missing.append("java")
pytestmark.append(pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}"))

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from ops import services
    from ops.settings import get_settings

    base = tmp_path_factory.mktemp("c2m-stack")
    mp = pytest.MonkeyPatch()
    mp.setenv("C2M_STACK_DIR", str(base / "stack"))
    mp.setenv("C2M_DATA_ROOT", str(base / "data"))
    mp.setenv("C2M_SITE_ROOT", str(make_site(base / "site")))
    mp.setenv("C2M_SITE_CRAWL_DELAY", "0")
    for var in ("C2M_AIRFLOW_PORT", "C2M_MLFLOW_PORT", "C2M_SITE_PORT"):
        mp.setenv(var, str(_free_port()))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("C2M_DAGS_FOLDER", raising=False)
    s = get_settings()
    try:
        t0 = time.monotonic()
        services.up(s, timeout=300)
        print(f"stack healthy in {time.monotonic() - t0:.1f} s; RSS MiB {services.memory_mib(s)}")
        yield s
    finally:
        services.down(s)
        mp.undo()


def test_tiny_demo_runs_every_dag_and_registers_models(stack):
    from ops import services
    from ops.airflow_api import AirflowAPIError, AirflowClient
    from ops.demo import run_demo
    from ops.mlflow_helpers import alias_version, get_run

    assert services.up(stack, echo=lambda m: None) == {}, "up() on a healthy stack must do nothing"

    client = AirflowClient(stack.airflow_url, services.airflow_home(stack))
    client.wait_for_dags(["data_refresh", "pretrain", "finetune"])
    with pytest.raises(AirflowAPIError) as bad:
        client.trigger("data_refresh", {"max_pages": -1})
    assert bad.value.status == 400

    result = run_demo("tiny", stack)
    assert result.ok, result.failure
    assert {d: r["state"] for d, r in result.runs.items()} == {
        "data_refresh": "success", "pretrain": "success", "finetune": "success"}
    assert result.runs["pretrain"]["run_type"] == "asset_triggered"

    crawl, tok = result.outputs["crawl"], result.outputs["tokenize"]
    assert crawl["rows_out"] >= 5
    assert crawl["dropped"].get("robots_disallowed", 0) >= 1  # /whatsnew/ is linked but forbidden
    assert tok["tokens"]["train"] > 0
    # No scheduled duplicate of the weekly refresh was started next to the demo's run.
    assert [r["run_type"] for r in client.list_runs("data_refresh")] == ["manual"]

    pre, fin = result.outputs["pretrain"], result.outputs["finetune"]
    assert get_run(stack.mlflow_uri, pre["run_id"])["info"]["status"] == "FINISHED"
    assert get_run(stack.mlflow_uri, fin["run_id"])["info"]["status"] == "FINISHED"
    base = alias_version(stack.mlflow_uri, "c2m-base", "champion")
    sentiment = alias_version(stack.mlflow_uri, "c2m-sentiment", "champion")
    assert base is not None and str(base["version"]) == str(pre["model_version"])
    assert sentiment is not None and str(sentiment["version"]) == str(fin["model_version"])
    assert 0.0 <= fin["accuracy"] <= 1.0
