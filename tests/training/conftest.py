"""Fixtures for training tests: tiny token shards in the tokenize stage's format.

The shards are made here (a tokenizer trained on templated sentences, packed into
seq_len rows) so the tests need neither Spark nor downloaded data. The generators live in
training_test_data.py and are re-exported here for older imports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from training_test_data import (
    ENDINGS,
    OBJECTS,
    SUBJECTS,
    VERBS,
    synthetic_docs,
    train_tokenizer,
    write_shards,
)

__all__ = ["ENDINGS", "OBJECTS", "SUBJECTS", "VERBS", "synthetic_docs", "train_tokenizer", "write_shards"]

_HERE = Path(__file__).resolve().parent
_SELF = sys.modules[__name__]


def pytest_collectstart(collector):
    """Make ``import conftest`` inside tests/training mean this file.

    tests/spark_jobs/conftest.py has the same module name; when both folders run in one
    session the later one owns ``sys.modules["conftest"]``. Prefer importing from
    training_test_data; this keeps ``from conftest import ...`` working meanwhile.
    """
    path = getattr(collector, "path", None)
    if path is not None and _HERE in Path(path).resolve().parents:
        sys.modules["conftest"] = _SELF


@pytest.fixture(scope="session")
def shards_uri(tmp_path_factory) -> str:
    return write_shards(tmp_path_factory.mktemp("data"))


MLFLOW_TEST_EXPERIMENTS = (
    "pretrain-test",
    "finetune-test",
    "pretrain-multiproc-test",
    "pretrain-objectives-test",
    "pretrain-kill-test",
)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    """A file-backed MLflow (sqlite + local artifacts) shared by the session; created once (~6 s)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in MLFLOW_TEST_EXPERIMENTS:  # explicit artifact roots, so nothing lands in the cwd
        client.create_experiment(name, artifact_location=str(root / "artifacts" / name))
    return uri


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread, as each training rank runs; spinning threads on a busy 2-core box is slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
