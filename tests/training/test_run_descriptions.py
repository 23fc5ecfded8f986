"""Run descriptions (``mlflow.note.content``) and registered versions' promotion decisions in words,
against a real (sqlite-backed) MLflow."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from training import registry_gate, tracking


@pytest.fixture
def client(mlflow_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    return MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


def _version(client, name: str, description: str) -> str:
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass
    v = client.create_model_version(name, source="file:///tmp/c2m-no-model", description=description)
    return v.version


def test_describe_run_sets_the_run_description_in_one_paragraph(client):
    mlflow.set_experiment("finetune-test")
    with mlflow.start_run() as run:
        text = tracking.describe_run("Fine-tuning of c2m-base v3.", "polarity v=2", "test accuracy 0.8123")
    assert text == "Fine-tuning of c2m-base v3. Data: polarity v=2. Result: test accuracy 0.8123."
    assert client.get_run(run.info.run_id).data.tags[tracking.NOTE_TAG] == text
    tracking.describe_run("Evaluation", "", "loss 1.0", run_id=run.info.run_id)  # a finished run too
    assert client.get_run(run.info.run_id).data.tags[tracking.NOTE_TAG] == "Evaluation. Result: loss 1.0."


def test_each_version_description_ends_with_the_gate_decision_in_words(client):
    name = "c2m-describe-gate"
    v1 = _version(client, name, "classification on polarity; MLflow run r1")
    registry_gate.gate(name, int(v1), "accuracy", 0.70, "split-a", client=client)
    first = client.get_model_version(name, v1).description
    assert first.startswith("classification on polarity; MLflow run r1\n\n")
    assert "Promotion decision: promoted to champion: no champion yet." in first

    v2 = _version(client, name, "classification on polarity; MLflow run r2")
    registry_gate.gate(name, int(v2), "accuracy", 0.69, "split-a", client=client)
    second = client.get_model_version(name, v2).description
    assert "not promoted; it carries the alias challenger" in second
    assert f"champion v{v1} 0.7000" in second and "this version 0.6900" in second

    registry_gate.gate(name, int(v1), "accuracy", 0.70, "split-a", client=client)  # decided again
    again = client.get_model_version(name, v1).description
    assert again.count("Promotion decision:") == 1 and "already champion" in again
    assert again.startswith("classification on polarity; MLflow run r1\n\n")


def test_forced_promotion_says_so(client):
    name = "c2m-describe-forced"
    registry_gate.gate(name, int(_version(client, name, "")), "perplexity", 20.0, "s", client=client)
    v2 = _version(client, name, "")
    registry_gate.gate(name, int(v2), "perplexity", 30.0, "s", mode="always", client=client)
    words = client.get_model_version(name, v2).description
    assert words.startswith("Promotion decision: made champion by hand") and "does not beat" in words
