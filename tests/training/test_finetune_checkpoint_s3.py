"""Finetuning's best checkpoint (``--checkpoint-dir``) on a local folder and on an s3:// prefix."""
from __future__ import annotations

import torch

from ops.lake import storage
from s3_test_server import s3_bucket, s3_env  # noqa: F401  (fixtures)
from training.tasks.loop import save_best


def _state(seed: int) -> dict:
    torch.manual_seed(seed)
    return {"w": torch.randn(4, 3), "b": torch.randn(3)}


def _load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_best_checkpoint_on_s3_replaces_the_previous_best(s3_bucket, tmp_path):
    prefix = f"{s3_bucket}/finetune/ckpt"
    first = save_best(_state(0), prefix, {"epoch": 1, "val": {"accuracy": 0.5}})
    second = save_best(_state(1), prefix, {"epoch": 2, "val": {"accuracy": 0.7}})
    assert first == second == f"{prefix}/best.pt"
    assert storage.list_files(prefix) == [f"{prefix}/best.pt"]  # one object: no temp leftovers
    local = tmp_path / "best.pt"
    storage.download_file(second, local)
    saved = _load(local)
    assert saved["epoch"] == 2 and saved["val"] == {"accuracy": 0.7}
    for name, tensor in _state(1).items():
        assert torch.equal(saved["model"][name], tensor)


def test_best_checkpoint_in_a_local_folder(tmp_path):
    folder = tmp_path / "ckpt"
    uri = save_best(_state(2), str(folder), {"epoch": 3})
    assert uri == str(folder / "best.pt") and sorted(p.name for p in folder.iterdir()) == ["best.pt"]
    assert torch.equal(_load(uri)["model"]["w"], _state(2)["w"])
