"""The promotion gate: a new model version becomes ``champion`` only if it beats the current one.

Consumers load ``models:/<name>@champion``, so moving that alias is a deployment. The gate
compares the new version's test metric with the champion's *on the same test split*
(identified by a digest of its examples, stored as a version tag). A champion whose
number is missing or was measured on another split is re-scored by the caller's
``rescore`` callback on this split; without one the gate refuses rather than compare
apples with pears. The new version is promoted when it wins by more than ``margin``
(direction from the metric: perplexity and loss go down); otherwise it gets the alias
``challenger``. Either way it is tagged with the comparison, and its description ends with
the decision in words, so the registry UI shows why.

Tags written on the new version: ``c2m.test.<metric>``, ``c2m.test.split``,
``c2m.gate`` (promoted|challenger|below-baseline|forced|not-promoted), ``c2m.gate.reason`` and the
comparison itself: ``c2m.gate.metric``, ``c2m.gate.value``, ``c2m.gate.champion_version``,
``c2m.gate.champion_value``, ``c2m.gate.margin`` and ``c2m.gate.split`` (the digest of
what both numbers were measured on).

The gate also knows the task's cheap baseline (training/baselines.py), scored on the same
split: a version below it is never promoted (status ``below-baseline``, alias ``challenger``)
unless the mode is ``always``, whatever the champion scores; ``c2m.gate.baseline`` and
``c2m.gate.baseline_name`` record it, and the reason reads e.g. "accuracy 0.5800 < TF-IDF+LR
baseline 0.6800". A baseline with ``blocks=False`` is recorded and named in the reason but does
not stop a promotion.

The pretrain gate compares bits per byte on the same raw text (training/bpb.py), which stays
comparable when the tokenizer changes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

from training.metrics import higher_is_better

CHAMPION = "champion"
CHALLENGER = "challenger"
BELOW_BASELINE = "below-baseline"
TAG_SPLIT = "c2m.test.split"
TAG_GATE = "c2m.gate"
TAG_REASON = "c2m.gate.reason"
TAG_COMPARISON = "c2m.gate."  # prefix of the comparison tags (metric, value, champion_*, margin, split)


def metric_tag(metric: str) -> str:
    return f"c2m.test.{metric}"


@dataclass
class GateDecision:
    promoted: bool
    reason: str
    metric: str
    value: float
    champion_version: int | None = None
    champion_value: float | None = None
    margin: float = 0.0
    baseline_value: float | None = None
    baseline_name: str = ""
    below_baseline: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Baseline:
    """A cheap baseline's score on the same split; ``blocks``: a version below it is not promoted."""

    name: str
    value: float
    blocks: bool = True


def beats(value: float, champion_value: float, metric: str, margin: float = 0.0) -> bool:
    """True when ``value`` is better than ``champion_value`` by more than ``margin``."""
    if higher_is_better(metric):
        return value > champion_value + margin
    return value < champion_value - margin


def _champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no alias yet (or no such model): nothing to beat
        return None


def record_metric(client, name: str, version: int | str, metric: str, value: float, split_id: str) -> None:
    client.set_model_version_tag(name, str(version), metric_tag(metric), repr(float(value)))
    client.set_model_version_tag(name, str(version), TAG_SPLIT, split_id)


def champion_score(
    client, champion, metric: str, split_id: str, rescore: Callable[[str], float] | None
) -> float | None:
    """The champion's metric on this split: from its tags, else re-scored (and recorded), else None."""
    tags = champion.tags or {}
    if tags.get(TAG_SPLIT) == split_id and metric_tag(metric) in tags:
        return float(tags[metric_tag(metric)])
    if rescore is None:
        return None
    value = float(rescore(f"models:/{champion.name}/{champion.version}"))
    record_metric(client, champion.name, champion.version, metric, value, split_id)
    return value


def decide(
    client,
    name: str,
    version: int,
    metric: str,
    value: float,
    split_id: str,
    margin: float = 0.0,
    rescore: Callable[[str], float] | None = None,
    baseline: Baseline | None = None,
) -> GateDecision:
    """Compare without changing any alias (the decision alone; :func:`apply` acts on it).

    With a ``baseline`` the version must reach it first; then it must beat the champion.
    """
    decision = _against_champion(client, name, version, metric, value, split_id, margin, rescore)
    if baseline is None:
        return decision
    from training.baselines import describe

    tie = math.isclose(value, baseline.value, rel_tol=1e-9, abs_tol=1e-12)  # e.g. BLEU 100 both
    below = not tie and not beats(value, baseline.value, metric)
    decision.baseline_value, decision.baseline_name = float(baseline.value), baseline.name
    line = describe(metric, value, baseline.value, baseline.name)
    if below and baseline.blocks:
        decision.promoted, decision.below_baseline = False, True
        decision.reason = f"{line}: a model below its baseline is not promoted; {decision.reason}"
    else:
        decision.reason = f"{line}; {decision.reason}"
    return decision


def _against_champion(
    client,
    name: str,
    version: int,
    metric: str,
    value: float,
    split_id: str,
    margin: float,
    rescore: Callable[[str], float] | None,
) -> GateDecision:
    champion = _champion(client, name)
    if champion is None:
        return GateDecision(True, f"no {CHAMPION} yet", metric, value, margin=margin)
    if int(champion.version) == int(version):
        return GateDecision(
            True, f"version {version} is already {CHAMPION}", metric, value, int(version), value, margin
        )
    try:
        old = champion_score(client, champion, metric, split_id, rescore)
    except Exception as exc:  # e.g. the champion was trained on other labels: not comparable
        return GateDecision(
            False,
            f"could not score {CHAMPION} v{champion.version} on this split ({exc})",
            metric,
            value,
            int(champion.version),
            margin=margin,
        )
    if old is None:
        return GateDecision(
            False,
            f"{CHAMPION} v{champion.version} has no {metric} on this test split "
            "and no re-scoring was offered; evaluate it first",
            metric,
            value,
            int(champion.version),
            margin=margin,
        )
    sign = ">" if higher_is_better(metric) else "<"
    wins = beats(value, old, metric, margin)
    verdict = "beats" if wins else "does not beat"
    reason = (
        f"{metric} {value:.4f} {verdict} {CHAMPION} v{champion.version}'s {old:.4f} "
        f"(needs {sign} {old:.4f} {'+' if sign == '>' else '-'} margin {margin:g})"
    )
    return GateDecision(wins, reason, metric, value, int(champion.version), old, margin)


def comparison_tags(decision: GateDecision, split_id: str) -> dict[str, str]:
    """What was compared, as version tags: both numbers, the margin and what they were measured on."""
    tags = {
        "metric": decision.metric,
        "value": repr(float(decision.value)),
        "margin": repr(float(decision.margin)),
        "split": split_id,
    }
    if decision.champion_version is not None:
        tags["champion_version"] = str(decision.champion_version)
    if decision.champion_value is not None:
        tags["champion_value"] = repr(float(decision.champion_value))
    if decision.baseline_value is not None:
        tags["baseline"] = repr(float(decision.baseline_value))
        tags["baseline_name"] = decision.baseline_name
    return {TAG_COMPARISON + k: v for k, v in tags.items()}


def apply(
    client, name: str, version: int, decision: GateDecision, split_id: str, mode: str = "gate"
) -> GateDecision:
    """Tag the version with the comparison and move the aliases. ``mode``: gate, always or never."""
    record_metric(client, name, version, decision.metric, decision.value, split_id)
    promote = decision.promoted if mode == "gate" else mode == "always"
    if mode == "always" and not decision.promoted:
        status = "forced"
    elif promote:
        status = "promoted"
    elif decision.below_baseline:
        status = BELOW_BASELINE
    else:
        status = CHALLENGER if mode == "gate" else "not-promoted"
    client.set_model_version_tag(name, str(version), TAG_GATE, status)
    client.set_model_version_tag(name, str(version), TAG_REASON, decision.reason[:5000])
    for key, value in comparison_tags(decision, split_id).items():
        client.set_model_version_tag(name, str(version), key, value)
    if promote:
        client.set_registered_model_alias(name, CHAMPION, str(version))
    elif mode == "gate":
        client.set_registered_model_alias(name, CHALLENGER, str(version))
    describe_decision(client, name, version, status, decision)
    return GateDecision(**{**decision.to_dict(), "promoted": promote})


DECISION_HEADING = "Promotion decision:"
STATUS_WORDS = {
    "promoted": f"promoted to {CHAMPION}",
    "forced": f"made {CHAMPION} by hand (promotion mode 'always') although the gate would not promote it",
    CHALLENGER: f"not promoted; it carries the alias {CHALLENGER}",
    "not-promoted": "not promoted (promotion mode 'never')",
    BELOW_BASELINE: f"not promoted, below its baseline; it carries the alias {CHALLENGER}",
}


def decision_words(status: str, decision: GateDecision) -> str:
    """The gate's decision as a sentence for the version's description."""
    compared = ""
    if decision.champion_value is not None:
        compared = (f" Compared on test {decision.metric}: this version {decision.value:.4f}, "
                    f"{CHAMPION} v{decision.champion_version} {decision.champion_value:.4f}, "
                    f"margin {decision.margin:g}.")
    return f"{DECISION_HEADING} {STATUS_WORDS.get(status, status)}: {decision.reason}.{compared}"


def describe_decision(client, name: str, version: int | str, status: str, decision: GateDecision) -> None:
    """Append the decision to the version's description (replacing an earlier decision paragraph)."""
    current = client.get_model_version(name, str(version)).description or ""
    kept = current.split(DECISION_HEADING, 1)[0].rstrip()
    words = decision_words(status, decision)
    client.update_model_version(name, str(version), description=f"{kept}\n\n{words}" if kept else words)


def gate(
    name: str,
    version: int,
    metric: str,
    value: float,
    split_id: str,
    margin: float = 0.0,
    mode: str = "gate",
    rescore: Callable[[str], float] | None = None,
    client=None,
    baseline: Baseline | None = None,
) -> GateDecision:
    """Decide and apply in one call (the entry point jobs use)."""
    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient()
    if mode not in ("gate", "always", "never"):
        raise ValueError(f"promotion mode {mode!r}: choose gate, always or never")
    # Forced modes still compare (without re-scoring), so the tags say what the gate would have done.
    decision = decide(
        client, name, version, metric, value, split_id, margin, rescore if mode == "gate" else None, baseline
    )
    if mode != "gate":
        decision.reason = f"promotion mode {mode!r}; the gate says: {decision.reason}"
    return apply(client, name, version, decision, split_id, mode)
