"""The promotion gate: champion moves only on a better test metric, on the same split; always tagged."""

from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException

from training import registry_gate as gate


class FakeRegistry:
    """The MlflowClient calls the gate makes, in memory."""

    def __init__(self):
        self.aliases, self.tags, self.descriptions = {}, {}, {}

    def get_model_version(self, name, version):
        description = self.descriptions.get((name, str(version)))
        return SimpleNamespace(name=name, version=str(version), description=description)

    def update_model_version(self, name, version, description):
        self.descriptions[(name, str(version))] = description

    def get_model_version_by_alias(self, name, alias):
        if (name, alias) not in self.aliases:
            raise MlflowException(f"no alias {alias}")
        v = self.aliases[(name, alias)]
        return SimpleNamespace(name=name, version=v, tags=dict(self.tags.get((name, v), {})))

    def set_registered_model_alias(self, name, alias, version):
        self.aliases[(name, alias)] = str(version)

    def set_model_version_tag(self, name, version, key, value):
        self.tags.setdefault((name, str(version)), {})[key] = value


def test_first_version_is_promoted_and_tagged():
    reg = FakeRegistry()
    d = gate.gate("m", 1, "accuracy", 0.7, "split-a", client=reg)
    assert d.promoted and reg.aliases[("m", "champion")] == "1"
    assert (
        reg.tags[("m", "1")]["c2m.test.accuracy"] == "0.7" and reg.tags[("m", "1")]["c2m.gate"] == "promoted"
    )


def test_worse_or_within_margin_becomes_challenger_with_the_reason():
    reg = FakeRegistry()
    gate.gate("m", 1, "accuracy", 0.70, "split-a", client=reg)
    d = gate.gate("m", 2, "accuracy", 0.71, "split-a", margin=0.02, client=reg)
    assert not d.promoted and d.champion_version == 1 and d.champion_value == 0.70
    assert reg.aliases[("m", "champion")] == "1" and reg.aliases[("m", "challenger")] == "2"
    assert (
        reg.tags[("m", "2")]["c2m.gate"] == "challenger"
        and "does not beat" in reg.tags[("m", "2")]["c2m.gate.reason"]
    )
    assert gate.gate("m", 3, "accuracy", 0.75, "split-a", margin=0.02, client=reg).promoted
    assert reg.aliases[("m", "champion")] == "3"


def test_lower_is_better_metrics_and_forced_modes():
    reg = FakeRegistry()
    gate.gate("lm", 1, "perplexity", 20.0, "s", client=reg)
    assert gate.gate("lm", 2, "perplexity", 18.0, "s", client=reg).promoted
    assert not gate.gate("lm", 3, "perplexity", 25.0, "s", mode="never", client=reg).promoted
    d = gate.gate("lm", 4, "perplexity", 30.0, "s", mode="always", client=reg)
    assert (
        d.promoted
        and reg.tags[("lm", "4")]["c2m.gate"] == "forced"
        and reg.aliases[("lm", "champion")] == "4"
    )
    with pytest.raises(ValueError, match="gate, always or never"):
        gate.gate("lm", 5, "perplexity", 1.0, "s", mode="sometimes", client=reg)


def test_champion_scored_on_another_split_is_rescored_or_refused():
    reg = FakeRegistry()
    gate.gate("m", 1, "f1", 0.9, "old-split", client=reg)
    refused = gate.gate("m", 2, "f1", 0.5, "new-split", client=reg)
    assert not refused.promoted and "evaluate it first" in refused.reason
    seen = []
    d = gate.gate("m", 3, "f1", 0.6, "new-split", client=reg, rescore=lambda uri: seen.append(uri) or 0.55)
    assert seen == ["models:/m/1"] and d.promoted and d.champion_value == 0.55
    assert reg.tags[("m", "1")]["c2m.test.split"] == "new-split"  # the re-score is remembered


def test_a_champion_that_cannot_be_rescored_is_kept():
    reg = FakeRegistry()
    gate.gate("m", 1, "f1", 0.9, "old-split", client=reg)

    def broken(uri):
        raise ValueError("the data's labels differ from the model's")

    d = gate.gate("m", 2, "f1", 0.95, "new-split", client=reg, rescore=broken)
    assert not d.promoted and "labels differ" in d.reason and reg.aliases[("m", "champion")] == "1"
