"""One real stack per test session, shared by every integration test file.

Starting Airflow, MLflow and the demo site, and running the tiny pipeline on them, costs
minutes; the pipeline tests, the browser tests and the fault tests all need that same stack,
so it is a session fixture here (``stack``), and the tiny demo's result is one too
(``tiny_demo``): a file run on its own still gets a trained, registered model to look at.
So is the one ``end_to_end`` run (``end_to_end_run``) that two files check.

Order matters, because the tests share state: ``test_stack.py`` checks that a refused conf
creates no run, so it must see the DAGs before anyone else triggers them, and the fault test
kills the scheduler, so it goes last. ``pytest_collection_modifyitems`` runs the files on the
shared stack in ``FILE_ORDER`` (whatever pytest's alphabetical order), after every other test
of the session: the shared stack and its C2M_* variables stay until the session ends. Files
not listed (those with a module-scoped stack of their own, like ``test_s3_stack.py``) go just
before them, so that two stacks never run at once. A new file on the shared stack must be
added to ``FILE_ORDER``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from stack_support import UNSET, run_end_to_end, running_stack, stack_env

FILE_ORDER = ("test_stack.py", "test_browser.py", "test_retry_resume.py", "test_warc_source.py",
              "test_scheduler_restart.py")
_HERE = Path(__file__).resolve().parent


def _rank(item: pytest.Item) -> tuple[int, int]:
    path = Path(str(item.fspath)).resolve()
    if path.parent != _HERE:
        return (0, 0)  # not an integration test: keep it first, in its own order
    name = path.name
    return (1, FILE_ORDER.index(name)) if name in FILE_ORDER else (1, -1)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the real UIs in headless chromium (Playwright)")


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_rank)  # stable: tests keep their order within a file


@pytest.fixture(scope="session")
def stack(request):
    """Airflow, MLflow and the demo site on free ports, under a temporary folder."""
    with running_stack(request, "c2m-integration-", UNSET, stack_env) as s:
        yield s


@pytest.fixture(scope="session")
def tiny_demo(stack):
    """The demo's ``tiny`` profile (data_refresh → asset-triggered pretrain → finetune), run once.

    A failed run is returned too: ``test_stack.py`` asserts on it, and the tests that build on
    its models fail with its failure through ``stack_support.require_demo``.
    """
    from ops.stack.demo import run_demo

    return run_demo("tiny", stack)


@pytest.fixture(scope="session")
def end_to_end_run(stack, tiny_demo):
    """One ``end_to_end`` run whose data_refresh ingests WARC files (stack_support.run_end_to_end).

    ``test_stack.py`` checks how it chains the three DAGs, ``test_warc_source.py`` what its
    data_refresh made of the WARC files: one refresh serves both. After the tiny demo, whose
    ``c2m-base@champion`` its finetune starts from.
    """
    return run_end_to_end(stack)


@pytest.fixture(scope="session")
def artefacts_dir() -> Path:
    """Where screenshots go: $C2M_TEST_ARTEFACTS, else .stack/test-artefacts (gitignored), kept."""
    from ops.lake.roots import REPO_ROOT

    root = Path(os.environ.get("C2M_TEST_ARTEFACTS") or REPO_ROOT / ".stack" / "test-artefacts")
    root.mkdir(parents=True, exist_ok=True)
    print(f"test artefacts (screenshots): {root}")
    return root
