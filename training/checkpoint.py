"""Checkpoints that resume a job exactly: model, optimiser, fp16 scaler, step, data position, RNG, config.

Each checkpoint is one file ``step-00000100.pt`` written to a temp name and renamed, so a
crash mid-write never leaves a half file under a real name; the newest ``keep_last``
are kept. Loading walks from the newest down and skips any file that does not load
(say, a disk filled up), so one bad file costs a few steps, not the run.

Everything stored is tensors and plain Python values, so files load with
``torch.load(weights_only=True)``: a checkpoint can't run code when it is read.
"""

from __future__ import annotations

import logging
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ops import storage

log = logging.getLogger(__name__)
_NAME = re.compile(r"^step-(\d{8})\.pt$")


def _dir(uri: str) -> Path:
    if storage.is_s3(uri):
        raise ValueError(f"{uri}: checkpoints on s3:// are not supported yet; use a local --checkpoint-dir")
    return Path(uri)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain values and tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(directory: str) -> list[Path]:
    """Checkpoint files, oldest first."""
    d = _dir(directory)
    if not d.exists():
        return []
    return sorted(p for p in d.iterdir() if _NAME.match(p.name))


def save(directory: str, step: int, state: dict[str, Any], keep_last: int = 2) -> Path:
    """Write ``state`` (plus the step) atomically as the checkpoint of ``step``; prune old ones."""
    d = _dir(directory)
    d.mkdir(parents=True, exist_ok=True)
    final = d / f"step-{step:08d}.pt"
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({**state, "step": step}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    for old in list_checkpoints(directory)[:-keep_last]:
        old.unlink(missing_ok=True)
    return final


def load_latest(directory: str) -> dict[str, Any] | None:
    """The newest checkpoint that loads, or None when there is none."""
    for path in reversed(list_checkpoints(directory)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or corrupt file: fall back to the previous one
            log.warning(
                "checkpoint %s does not load (%s: %s); trying an older one", path, type(exc).__name__, exc
            )
            continue
        if not isinstance(state, dict) or "step" not in state:
            log.warning("checkpoint %s holds no step; trying an older one", path)
            continue
        state["path"] = str(path)
        return state
    return None
