"""User data sets as JSONL splits: ``{"text", "label"}`` (classification) or ``{"tokens", "tags"}``.

A data folder holds ``train.jsonl``, ``val.jsonl`` (or ``validation.jsonl``) and
``test.jsonl``. The label list comes from the train split alone, in first-seen order, so
a label that only appears in val or test is an error that names it (the model could
never predict it, and silently scoring it would flatter or sink the metric). Empty texts
are dropped and counted under ``empty_text``; malformed lines are an error with their
line number.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from training.data.polarity import Example
from training.data.tagged import TaggedSentence

SPLIT_FILES = {"train": ("train.jsonl",), "val": ("val.jsonl", "validation.jsonl"), "test": ("test.jsonl",)}
EMPTY_TEXT = "empty_text"


@dataclass
class JsonlData:
    labels: tuple[str, ...]
    splits: dict[str, list]
    path: Path
    dropped: dict[str, int] = field(default_factory=dict)


def _split_path(folder: Path, split: str) -> Path:
    for name in SPLIT_FILES[split]:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(
        f"{folder} has no {' or '.join(SPLIT_FILES[split])}; a data folder needs "
        "train.jsonl, val.jsonl and test.jsonl"
    )


def _records(path: Path, keys: tuple[str, str]):
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc})") from exc
            if not isinstance(rec, dict) or any(k not in rec for k in keys):
                raise ValueError(f"{path}:{n}: each line needs the keys {keys}")
            yield n, rec


def _check_unseen(path: Path, seen: Counter, labels: tuple[str, ...]) -> None:
    unseen = {label: n for label, n in seen.items() if label not in labels}
    if unseen:
        raise ValueError(
            f"{path} has labels never seen in train.jsonl: {unseen}; add training examples for "
            "them or remove them (a model cannot predict a label it never saw)"
        )


def load_classification(folder: str | Path) -> JsonlData:
    folder = Path(folder)
    raw = {split: list(_records(_split_path(folder, split), ("text", "label"))) for split in SPLIT_FILES}
    labels = tuple(dict.fromkeys(str(rec["label"]) for _, rec in raw["train"]))
    dropped = Counter()
    splits: dict[str, list[Example]] = {}
    for split, records in raw.items():
        _check_unseen(_split_path(folder, split), Counter(str(r["label"]) for _, r in records), labels)
        keep = []
        for _, rec in records:
            text = " ".join(str(rec["text"]).split())
            if not text:
                dropped[EMPTY_TEXT] += 1
                continue
            keep.append(Example(text=text, label=labels.index(str(rec["label"]))))
        splits[split] = keep
    return JsonlData(labels, splits, folder, dict(dropped))


def load_tagging(folder: str | Path) -> JsonlData:
    folder = Path(folder)
    raw = {split: list(_records(_split_path(folder, split), ("tokens", "tags"))) for split in SPLIT_FILES}
    labels = tuple(dict.fromkeys(str(t) for _, rec in raw["train"] for t in rec["tags"]))
    dropped = Counter()
    splits: dict[str, list[TaggedSentence]] = {}
    for split, records in raw.items():
        path = _split_path(folder, split)
        _check_unseen(path, Counter(str(t) for _, r in records for t in r["tags"]), labels)
        keep = []
        for n, rec in records:
            if len(rec["tokens"]) != len(rec["tags"]):
                raise ValueError(f"{path}:{n}: {len(rec['tokens'])} tokens but {len(rec['tags'])} tags")
            if not rec["tokens"]:
                dropped[EMPTY_TEXT] += 1
                continue
            keep.append(TaggedSentence(tuple(map(str, rec["tokens"])), tuple(map(str, rec["tags"]))))
        splits[split] = keep
    return JsonlData(labels, splits, folder, dict(dropped))
