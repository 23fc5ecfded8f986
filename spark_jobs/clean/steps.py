"""The clean stage's step list, in order.

Text edits come first (normalise, redact PII), so that nothing the stage writes, the
rows under removed/ included, holds an e-mail address or phone number. Then the language
check, boilerplate-line cleanup, signals, and the quality filters: Gopher quality, Gopher
repetition, C4, FineWeb. (datatrove runs repetition before quality; the order only
changes which reason a page that fails both is counted under, not whether it is kept.)

Every filter's constructor defaults are its paper's thresholds. A *profile* is a named
set of overrides, and ``--filter-config`` (JSON, keyed by step name) goes on top, e.g.
``{"fineweb_quality": {"max_char_dup_ratio": 0.05}, "gopher_quality": {"min_words": 100}}``.

* ``paper``: the papers' thresholds, C4's "no curly bracket at all" included; use it to
  compare with datatrove.
* ``docs`` (the stage default; the demo corpus is software documentation): API reference
  pages repeat template sentences under every function ("Part of the Stable ABI.",
  "New in version 3.7."), which Gopher's duplicate n-gram and FineWeb's duplicate-line
  rules read as spam. Measured on 200 pages of Python's HTML docs (trafilatura text):
  ``paper`` keeps 23.5% (33.5% with the relaxed curly-bracket rule), ``docs`` keeps 79%;
  the stage kept 82.5% before the repetition and FineWeb rules, and most of what it drops
  are index pages (genindex-*: too_few_punctuated_lines). ``docs`` doubles the duplicate
  5..10-gram fractions (0.30 .. 0.20), raises FineWeb's duplicated-line characters from
  0.01 to 0.15 (the 95th/99th percentiles on those docs are 0.105/0.18) and keeps the
  relaxed curly-bracket rule of :class:`C4QualityFilter`.
"""
from __future__ import annotations

from typing import Any

from spark_jobs.clean.boilerplate import BoilerplateLines
from spark_jobs.clean.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                      GopherRepetitionFilter, LanguageFilter)
from spark_jobs.clean.normalize import NormalizeText
from spark_jobs.clean.pii import RedactPII
from spark_jobs.clean.signals import QualitySignals
from spark_jobs.extract.steps import IdentifyLanguage

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"c4_quality": {"max_curly_bracket_ratio": 0.0}},
    "docs": {
        "gopher_repetition": {
            "dup_n_grams": ((5, 0.30), (6, 0.28), (7, 0.26), (8, 0.24), (9, 0.22), (10, 0.20)),
        },
        "fineweb_quality": {"max_char_dup_ratio": 0.15},
    },
}
DEFAULT_PROFILE = "docs"

CONFIGURABLE = {cls.name: cls for cls in (RedactPII, BoilerplateLines, GopherQualityFilter,
                                          GopherRepetitionFilter, C4QualityFilter, FineWebQualityFilter)}


def _make(cls, overrides: dict[str, dict[str, Any]]):
    kwargs = dict(overrides.get(cls.name, {}))
    for key in ("top_n_grams", "dup_n_grams"):  # JSON gives lists of [n, fraction]
        if key in kwargs:
            kwargs[key] = tuple((int(n), float(frac)) for n, frac in kwargs[key])
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad settings for clean step {cls.name!r}: {exc}; "
                         f"see {cls.__module__}.{cls.__name__} for the accepted thresholds") from None


def step_settings(profile: str = DEFAULT_PROFILE,
                  overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The profile's settings with ``overrides`` on top, per step name (for the manifest too)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown filter profile {profile!r}; choose one of {sorted(PROFILES)}")
    merged = {name: dict(kwargs) for name, kwargs in PROFILES[profile].items()}
    for name, kwargs in (overrides or {}).items():
        merged.setdefault(name, {}).update(kwargs)
    return merged


def default_steps(languages: tuple[str, ...] = ("en",), min_lang_score: float = 0.5,
                  overrides: dict[str, dict[str, Any]] | None = None, redact_pii: bool = True,
                  profile: str = DEFAULT_PROFILE) -> list[object]:
    overrides = step_settings(profile, overrides)
    unknown = sorted(set(overrides) - set(CONFIGURABLE))
    if unknown:
        raise ValueError(f"unknown clean steps {unknown}; configurable steps are {sorted(CONFIGURABLE)}")
    steps: list[object] = [
        IdentifyLanguage(only_missing=True),  # JSONL input may come without lang
        NormalizeText(),
    ]
    if redact_pii:
        steps.append(_make(RedactPII, overrides))
    steps += [
        LanguageFilter(languages, min_lang_score),
        _make(BoilerplateLines, overrides),
        QualitySignals(),
        _make(GopherQualityFilter, overrides),
        _make(GopherRepetitionFilter, overrides),
        _make(C4QualityFilter, overrides),
        _make(FineWebQualityFilter, overrides),
    ]
    return steps
