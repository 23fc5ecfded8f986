"""The real stack with ``C2M_LAUNCHER=podman``: data_refresh → pretrain through Airflow, every Spark
stage and the training run in containers from the images `make images` builds.

Starts a stack of its own (Airflow, MLflow, the generated site) on free ports with
``C2M_LAUNCHER=podman`` in its environment, then:

1. data_refresh (the demo's ``tiny`` sizes) succeeds, each stage's task log shows the stage launched
   as a podman container, and each stage publishes a version with a manifest;
2. the asset-triggered pretrain trains in the trainer image (2 Horovod ranks in one container) and
   registers a ``c2m-base`` model version in MLflow, aliased ``champion``, from a FINISHED run;
3. the same data_refresh with the default launcher (the Variable ``c2m_launcher=local`` overriding
   the environment) publishes manifests with the same counts, drop reasons and schemas, stage by stage.

Part of `make test-images` (marker ``images``), not of `make test`: it needs the images. Where podman
cannot run or an image is missing, it is skipped with the reason and the command that fixes it.

Run with: .venv-airflow/bin/pytest -m images tests/integration/test_podman_launcher.py  (about 10 min)
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stack_support import UNSET, missing_requirements, running_stack, stack_env

pytestmark = [pytest.mark.images, pytest.mark.integration, pytest.mark.timeout(2400)]

STAGES = ("crawl", "extract", "clean", "dedup", "tokenize")
# What a manifest says about the data, as opposed to where and when it was written.
COMPARED = ("stage", "rows_in", "rows_out", "dropped", "schema")


def _why_not() -> str | None:
    missing = missing_requirements()
    if missing:
        return f"needs {', '.join(missing)}"
    if shutil.which("podman") is None:
        return "podman is not installed; run: make images (installs it as root)"
    from ops.launch.podman import PODMAN_RUN, image

    podman = list(PODMAN_RUN[:3])
    for kind in ("spark", "trainer"):
        ref = image(kind)
        proc = subprocess.run([*podman, "image", "exists", ref], capture_output=True, text=True)
        if proc.returncode != 0:
            return f"{ref} is not built ({proc.stderr.strip() or 'podman image exists said no'}); run: make images"
    return None


_REASON = _why_not()
pytestmark.append(pytest.mark.skipif(_REASON is not None, reason=str(_REASON)))


def _podman_env(base: Path) -> dict[str, str]:
    return {**stack_env(base), "C2M_LAUNCHER": "podman"}


@pytest.fixture(scope="module")
def podman_stack(request):
    with running_stack(request, "c2m-podman-", UNSET, _podman_env, label="podman-launcher stack") as s:
        yield s


@pytest.fixture(scope="module")
def client(podman_stack):
    from ops.stack import layout
    from ops.clients.airflow_api import AirflowClient

    c = AirflowClient(podman_stack.airflow_url, layout.airflow_home(podman_stack))
    c.wait_for_dags(["data_refresh", "pretrain"])
    return c


def _refresh(client, s) -> dict:
    """One tiny data_refresh run to success; its stages' XComs by stage name."""
    from ops.stack.demo_profiles import PROFILES
    from ops.stack.demo_runs import DATA_TASKS, crawl_output, explain_failure, trigger_refresh

    # As the demo does: the run takes the weekly slot that is due, so unpausing adds no second run.
    run = trigger_refresh(client, PROFILES["tiny"].data, echo=lambda line: None)
    final = client.wait_for_run("data_refresh", run["dag_run_id"], timeout=1800, progress=None)
    assert final["state"] == "success", explain_failure(client, s, "data_refresh", run["dag_run_id"])
    out = {"run": final}
    for stage, task_id in DATA_TASKS.items():
        out[stage] = (crawl_output(client, run["dag_run_id"]) if stage == "crawl"
                      else client.xcom("data_refresh", run["dag_run_id"], task_id))
    return out


def _logs(s, dag_id: str, run_id: str) -> str:
    from ops.stack import layout

    from stack_support import task_log_text

    folder = layout.airflow_home(s) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    return "\n".join(task_log_text(p) for p in sorted(folder.rglob("*.log")))


def _manifests(outputs: dict) -> dict[str, dict]:
    from ops.lake.datasets import DatasetVersion

    found = {}
    for stage in STAGES:
        uris = outputs[stage].get("uris") or [outputs[stage]["uri"]]
        found[stage] = [DatasetVersion.from_uri(u).read_manifest() for u in uris]
    return found


@pytest.fixture(scope="module")
def podman_refresh(podman_stack, client):
    client.set_paused("pretrain", False)
    return _refresh(client, podman_stack)


def test_data_refresh_runs_every_stage_as_a_container(podman_stack, podman_refresh):
    log = _logs(podman_stack, "data_refresh", podman_refresh["run"]["dag_run_id"])
    for job in ("crawl", "extract", "clean", "dedup", "tokenize"):
        assert f"launching spark job {job} (podman): podman --runtime runc run" in log, job
    assert "launching spark job crawl: " not in log  # nothing fell back to the local launcher
    manifests = _manifests(podman_refresh)
    assert manifests["crawl"][0]["rows_out"] >= 5
    assert manifests["crawl"][0]["dropped"].get("robots_disallowed", 0) >= 1
    assert all(m["rows_out"] > 0 for ms in manifests.values() for m in ms), manifests
    assert podman_refresh["tokenize"]["tokens"]["train"] > 0


def test_pretrain_trains_in_the_trainer_image_and_registers_a_model(podman_stack, client, podman_refresh):
    from ops.stack.demo_runs import explain_failure
    from ops.clients.mlflow_helpers import alias_version, get_run

    started = podman_refresh["run"].get("start_date")
    pre = client.wait_for_new_run("pretrain", after=started, run_type="asset_triggered", progress=None)
    final = client.wait_for_run("pretrain", pre["dag_run_id"], timeout=1800, progress=None)
    assert final["state"] == "success", explain_failure(client, podman_stack, "pretrain", pre["dag_run_id"])
    log = _logs(podman_stack, "pretrain", pre["dag_run_id"])
    assert "launching training training.pretrain (podman): podman --runtime runc run" in log
    assert "crawl2model-trainer" in log
    out = client.xcom("pretrain", pre["dag_run_id"], "train")
    assert out["shards_uri"] == podman_refresh["tokenize"]["uri"]
    assert get_run(podman_stack.mlflow_uri, out["run_id"])["info"]["status"] == "FINISHED"
    base = alias_version(podman_stack.mlflow_uri, "c2m-base", "champion")
    assert base is not None and str(base["version"]) == str(out["model_version"])
    assert base["run_id"] == out["run_id"]


def test_the_default_launcher_publishes_the_same_manifests(podman_stack, client, podman_refresh):
    client.set_paused("pretrain", True)  # the second corpus needs no second pretrain
    client.request("POST", "/api/v2/variables", {"key": "c2m_launcher", "value": "local"})
    local = _refresh(client, podman_stack)
    log = _logs(podman_stack, "data_refresh", local["run"]["dag_run_id"])
    assert "launching spark job crawl: " in log and "(podman)" not in log
    ours, theirs = _manifests(podman_refresh), _manifests(local)
    for stage in STAGES:
        got = [{k: m[k] for k in COMPARED} for m in ours[stage]]
        want = [{k: m[k] for k in COMPARED} for m in theirs[stage]]
        assert got == want, stage
    assert podman_refresh["tokenize"]["tokens"] == local["tokenize"]["tokens"]
