"""The two UIs as users meet them, in a real browser on the real stack.

Debian's ``chromium`` driven by Playwright's Python package through ``executable_path``
(Playwright's own browser download is not reachable here), headless, with a fresh profile
per test. Runs after ``test_stack.py`` on the shared stack (conftest.FILE_ORDER), where the
tiny demo has trained and registered ``c2m-base``:

1. Airflow: open ``finetune``, press Trigger, fill the Params form (number fields, an enum
   picker, the run id), submit, and watch the run's page until it says Success. The conf the
   API received is checked against what was typed, so a form that drops a field fails.
2. MLflow: open the pretrain run, see its registered model, open the metric charts and wait
   until the ``train/loss`` chart has drawn one point per logged value, in the order of the
   values; then see ``champion`` on the right version of ``c2m-base``.

Screenshots are written to the artefacts folder (conftest ``artefacts_dir``; the path is
printed), on success and on failure. Skipped, with the reason, where chromium or Playwright
is missing: ``make browser-deps`` installs chromium, the ``dev`` extra Playwright.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from stack_support import missing_requirements, require_demo

CHROMIUM = os.environ.get("C2M_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
UI_TIMEOUT_MS = 60_000  # React apps on a loaded 2-core machine: first paint can take seconds


def _browser_missing() -> list[str]:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append("chromium (`make browser-deps`, or apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[dev]')")
    return missing


_missing = missing_requirements() + _browser_missing()
pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(1500),
              pytest.mark.skipif(bool(_missing), reason=f"needs {', '.join(_missing)}")]


@pytest.fixture
def page(request):
    """A page in a fresh headless chromium profile; a failing test leaves a screenshot."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    profile = tempfile.mkdtemp(prefix="c2m-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(UI_TIMEOUT_MS)
            try:
                yield context.new_page()
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _shot(target, folder: Path, name: str) -> Path:
    """Screenshot of a page or an element, written atomically (temp file, then rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(target.screenshot())
    os.replace(tmp, path)
    print(f"screenshot: {path}")
    return path


@contextlib.contextmanager
def _shot_on_failure(page, folder: Path, name: str):
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            _shot(page, folder, f"FAILED-{name}")
        raise


# ---------------------------------------------------------------- Airflow

def _open_section(dialog, title: str) -> None:
    """The Params form groups fields by ``section`` in an accordion; open one (others close)."""
    button = dialog.get_by_role("button", name=title, exact=True)
    if button.get_attribute("aria-expanded") != "true":
        button.click()


def _fill_number(dialog, param: str, value: int) -> None:
    field = dialog.locator(f"input[name='element_{param}']")
    field.fill(str(value))
    field.press("Tab")  # the number input commits its value on blur


def _wait_for_run_state(page, run_id: str, timeout_s: float) -> str:
    """The state badge next to the run's heading, once the run has finished (the UI polls)."""
    from playwright.sync_api import Error

    badge = page.locator("h2", has_text=run_id).locator("xpath=..").get_by_test_id("state-badge")
    deadline = time.monotonic() + timeout_s
    last_reload = time.monotonic()
    while True:
        try:
            state = badge.inner_text(timeout=10_000).strip().lower()
        except Error:
            state = "?"
        if state in ("success", "failed") or time.monotonic() > deadline:
            return state
        if time.monotonic() - last_reload > 30:  # belt and braces, should the page stop polling
            page.reload()
            last_reload = time.monotonic()
        time.sleep(2)


def test_airflow_ui_triggers_finetune_from_its_params_form_and_the_run_succeeds(
        stack, tiny_demo, artefacts_dir, page):
    from playwright.sync_api import expect

    from ops.clients.airflow_api import AirflowClient
    from ops.stack import layout
    from ops.stack.demo_runs import explain_failure

    require_demo(tiny_demo)
    client = AirflowClient(stack.airflow_url, layout.airflow_home(stack))
    client.set_paused("finetune", False)
    run_id = f"browser__{time.strftime('%Y%m%dT%H%M%S')}"
    typed = {"max_examples": 256, "epochs": 1, "np": 1, "promote": "never"}
    folder = artefacts_dir / "browser"
    with _shot_on_failure(page, folder, "airflow"):
        page.goto(f"{stack.airflow_url}/dags/finetune")
        expect(page).to_have_title("finetune - Airflow")
        _shot(page, folder, "airflow-1-finetune-dag")
        page.get_by_role("button", name="Trigger Dag", exact=True).click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("Trigger Dag - finetune")

        _open_section(dialog, "Task")
        _fill_number(dialog, "max_examples", typed["max_examples"])
        _open_section(dialog, "Training")
        _fill_number(dialog, "epochs", typed["epochs"])
        dialog.get_by_label("Promotion").click()  # an enum Param: a picker, not free text
        page.get_by_role("option", name=typed["promote"], exact=True).click()
        _shot(page, folder, "airflow-2-params-form")
        _open_section(dialog, "Launch")
        _fill_number(dialog, "np", typed["np"])
        _open_section(dialog, "Advanced Options")
        dialog.get_by_label("Run ID").fill(run_id)
        # the conf JSON follows the form (the editor draws its first lines only: check one there;
        # the API check below reads every typed value back from the triggered run)
        expect(dialog).to_contain_text('"epochs": 1')
        _shot(page, folder, "airflow-3-conf")
        dialog.get_by_role("button", name="Trigger", exact=True).click()
        expect(dialog).to_be_hidden()

        conf = client.get_run("finetune", run_id)["conf"]
        assert {k: conf.get(k) for k in typed} == typed, conf

        page.goto(f"{stack.airflow_url}/dags/finetune/runs/{urllib.parse.quote(run_id)}")
        state = _wait_for_run_state(page, run_id, timeout_s=900)
        assert state == "success", explain_failure(client, stack, "finetune", run_id)
        assert client.get_run("finetune", run_id)["state"] == "success"
        # The task writes the run's note as it ends; the page polls states, not notes: reload.
        page.reload()
        mlflow_run = client.xcom("finetune", run_id, "train")["run_id"]
        expect(page.get_by_role("link", name=mlflow_run)).to_have_attribute(
            "href", re.compile(rf"/runs/{mlflow_run}$"))  # the note links to the MLflow run
        _shot(page, folder, "airflow-4-run-succeeded")


# ---------------------------------------------------------------- MLflow

def _close_assistant(page) -> None:
    """MLflow 3.17 opens an assistant side panel; closed, the charts get the page's width."""
    close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.first.click()


def _point_ys(chart) -> list[float]:
    """Vertical pixel positions of a plotly line chart's markers, left to right."""
    coords = chart.locator(".scatterlayer path.point").evaluate_all(
        "els => els.map(e => { const m = e.transform.baseVal.consolidate().matrix; return [m.e, m.f]; })")
    return [y for _, y in sorted(coords)]


def test_mlflow_ui_shows_the_pretrain_loss_chart_and_the_champion_alias(
        stack, tiny_demo, artefacts_dir, page):
    from playwright.sync_api import expect

    from ops.clients.mlflow_helpers import alias_version, get_run
    from stack_support import metric_history

    require_demo(tiny_demo)
    champion = alias_version(stack.mlflow_uri, "c2m-base", "champion")
    assert champion is not None, "the tiny demo registered no c2m-base@champion"
    version, run_id = str(champion["version"]), champion["run_id"]
    run = get_run(stack.mlflow_uri, run_id)
    losses = metric_history(stack.mlflow_uri, run_id, "train/loss")
    assert len(losses) >= 3, losses
    folder = artefacts_dir / "browser"
    with _shot_on_failure(page, folder, "mlflow"):
        page.goto(f"{stack.mlflow_uri}/#/experiments/{run['info']['experiment_id']}/runs/{run_id}")
        expect(page.get_by_role("heading", name=run["info"]["run_name"])).to_be_visible()
        _close_assistant(page)
        registered = page.locator(f"a[href='#/models/c2m-base/versions/{version}']").first
        expect(registered).to_contain_text("c2m-base")  # the model version this run registered
        _shot(page, folder, "mlflow-1-pretrain-run")

        page.get_by_role("tab", name="Model metrics").click()
        chart = page.get_by_test_id("experiment-view-compare-runs-card").filter(
            has=page.locator("h4[title='train/loss']"))
        chart.scroll_into_view_if_needed()
        # Plotly draws after the data arrives: wait for one marker per logged value.
        expect(chart.locator(".scatterlayer path.point")).to_have_count(len(losses), timeout=UI_TIMEOUT_MS)
        ys = _point_ys(chart)
        _shot(chart, folder, "mlflow-2-loss-chart")
        _shot(page, folder, "mlflow-3-model-metrics")
        # Higher loss is drawn higher (smaller y): the chart plots these values, in step order.
        for (a, ya), (b, yb) in zip(zip(losses, ys), zip(losses[1:], ys[1:])):
            if abs(a - b) > 1e-3 * max(abs(a), 1.0):
                assert (ya < yb) == (a > b), (losses, ys)

        page.goto(f"{stack.mlflow_uri}/#/models/c2m-base")
        row = page.get_by_role("row").filter(
            has=page.get_by_role("link", name=f"Version {version}", exact=True))
        expect(row.get_by_title("champion", exact=True)).to_be_visible()
        _close_assistant(page)
        _shot(page, folder, "mlflow-4-registered-model")


def _jobs_checkout() -> Path:
    """The checkout the stack's jobs import ``spark_jobs`` from (the jobs venv's editable install;
    launched jobs get no PYTHONPATH, so a worktree's own copy is not what they run)."""
    import subprocess

    from ops.launch.settings import get_settings

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import os, spark_jobs; "
            "print(os.path.dirname(os.path.dirname(os.path.abspath(spark_jobs.__file__))))")
    out = subprocess.run([str(get_settings().jobs_python), "-c", code], env=env, cwd="/", text=True,
                         capture_output=True, timeout=60)
    return Path(out.stdout.strip() or "?").resolve()


def test_mlflow_ui_shows_the_data_card_funnel(stack, tiny_demo, artefacts_dir, page):
    from playwright.sync_api import expect

    from ops.clients.mlflow_helpers import data_card_run, list_artifacts

    require_demo(tiny_demo)
    here = Path(__file__).resolve().parents[2]
    if _jobs_checkout() != here:
        pytest.skip(f"the stack's jobs run the code in {_jobs_checkout()}, not this checkout ({here}); "
                    "its tokenize stage logs that code's data card")
    shards = tiny_demo.outputs["tokenize"]["uri"]
    card = data_card_run(stack.mlflow_uri, shards)
    assert card is not None, f"no data-card run for {shards}"
    run_id, experiment_id = card["info"]["run_id"], card["info"]["experiment_id"]
    logged = {f["path"] for f in list_artifacts(stack.mlflow_uri, run_id, "data_card")}
    assert "data_card/funnel.png" in logged, logged
    folder = artefacts_dir / "browser"
    with _shot_on_failure(page, folder, "data-card"):
        page.goto(f"{stack.mlflow_uri}/#/experiments/{experiment_id}/runs/{run_id}")
        expect(page.get_by_role("heading", name=card["info"]["run_name"])).to_be_visible()
        _close_assistant(page)
        expect(page.get_by_text("Data card of shards version")).to_be_visible()  # the run's description
        page.get_by_role("tab", name="Artifacts").click()
        page.get_by_text("data_card", exact=True).first.click()
        page.get_by_text("funnel.png", exact=True).first.click()
        expect(page.get_by_text("data_card/funnel.png", exact=True)).to_be_visible()
        image = page.locator("img").first
        expect(image).to_be_visible()
        # The PNG decoded in the browser: the funnel is drawn 8 inches or more wide at 100 dpi.
        page.wait_for_function("img => img.complete && img.naturalWidth >= 600", arg=image.element_handle())
        _shot(page, folder, "mlflow-5-data-card-funnel")
