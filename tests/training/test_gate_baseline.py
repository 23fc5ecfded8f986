"""The champion gate knows the baseline: below it, no promotion (unless forced), and the tags say why.

A real MLflow registry (sqlite store of the session); versions are registered from a run's
artefact folder, which is all the gate reads.
"""

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from training import registry_gate as gate


@pytest.fixture
def registry(mlflow_uri, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)

    def new_version(name: str) -> int:
        try:
            client.create_registered_model(name)
        except MlflowException as exc:  # already there: add a version; anything else is an error
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        return int(client.create_model_version(name, source=str(tmp_path)).version)

    return client, new_version


def test_below_baseline_is_not_promoted_even_without_a_champion(registry, mlflow_uri, monkeypatch):
    from training import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    client, new_version = registry
    v1 = new_version("gate-baseline-a")
    base = gate.Baseline("TF-IDF+LR", 0.68)
    d = gate.gate("gate-baseline-a", v1, "accuracy", 0.58, "split", client=client, baseline=base)
    assert not d.promoted and d.below_baseline
    tags = client.get_model_version("gate-baseline-a", str(v1)).tags
    assert tags["c2m.gate"] == "below-baseline"
    assert tags["c2m.gate.reason"].startswith("accuracy 0.5800 < TF-IDF+LR baseline 0.6800")
    assert float(tags["c2m.gate.baseline"]) == 0.68 and tags["c2m.gate.baseline_name"] == "TF-IDF+LR"
    with pytest.raises(Exception):
        client.get_model_version_by_alias("gate-baseline-a", "champion")
    with pytest.raises(RuntimeError, match="No version holds that alias.*c2m.gate.reason"):
        tracking.load_model_bundle("models:/gate-baseline-a@champion")  # the consumer is told why

    v2 = new_version("gate-baseline-a")
    d = gate.gate("gate-baseline-a", v2, "accuracy", 0.70, "split", client=client, baseline=base)
    assert d.promoted and int(client.get_model_version_by_alias("gate-baseline-a", "champion").version) == v2
    assert "accuracy 0.7000 > TF-IDF+LR baseline 0.6800" in d.reason


def test_beating_the_champion_is_not_enough_below_the_baseline_unless_forced(registry):
    client, new_version = registry
    name = "gate-baseline-b"
    v1 = new_version(name)
    gate.gate(name, v1, "accuracy", 0.50, "split", client=client)  # an old champion, gated before baselines
    v2 = new_version(name)
    base = gate.Baseline("TF-IDF+LR", 0.68)
    d = gate.gate(name, v2, "accuracy", 0.60, "split", client=client, baseline=base)
    assert not d.promoted and "beats champion v1" in d.reason and "< TF-IDF+LR baseline" in d.reason
    assert int(client.get_model_version_by_alias(name, "champion").version) == v1
    v3 = new_version(name)
    forced = gate.gate(name, v3, "accuracy", 0.60, "split", mode="always", client=client, baseline=base)
    assert forced.promoted and int(client.get_model_version_by_alias(name, "champion").version) == v3
    tags = client.get_model_version(name, str(v3)).tags
    assert tags["c2m.gate"] == "forced" and "< TF-IDF+LR baseline 0.6800" in tags["c2m.gate.reason"]


def test_lower_is_better_and_a_baseline_that_only_informs(registry):
    client, new_version = registry
    name = "gate-baseline-c"
    xz = gate.Baseline("xz-9", 2.5, blocks=False)
    v1 = new_version(name)
    d = gate.gate(name, v1, "bpb", 3.1, "text", client=client, baseline=xz)
    assert d.promoted and d.reason.startswith("bpb 3.1000 > xz-9 baseline 2.5000")
    v2 = new_version(name)
    blocking = gate.Baseline("xz-9", 2.5)
    assert not gate.gate(name, v2, "bpb", 2.9, "text", client=client, baseline=blocking).promoted
    v3 = new_version(name)
    assert gate.gate(name, v3, "bpb", 2.4, "text", client=client, baseline=blocking).promoted
