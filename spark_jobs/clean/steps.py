"""The clean stage's step list, in order: cheap language check first, then text rules."""
from __future__ import annotations

from spark_jobs.clean.filters import C4QualityFilter, GopherQualityFilter, LanguageFilter
from spark_jobs.clean.normalize import NormalizeText
from spark_jobs.clean.signals import QualitySignals
from spark_jobs.extract.steps import IdentifyLanguage


def default_steps(languages: tuple[str, ...] = ("en",), min_lang_score: float = 0.5) -> list[object]:
    return [
        IdentifyLanguage(only_missing=True),  # JSONL input may come without lang
        LanguageFilter(languages, min_lang_score),
        NormalizeText(),
        QualitySignals(),
        GopherQualityFilter(),
        C4QualityFilter(),
    ]
