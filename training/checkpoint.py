"""Checkpoints that resume a job exactly: model, optimiser, fp16 scaler, step, data position, RNG, config.

Each checkpoint is one file ``step-00000100.pt`` in a local folder or under an ``s3://``
prefix, made visible only when whole: locally a temp file is renamed; on S3 the file is
written locally first and uploaded by one PUT or a completed multipart upload (atomic per
object). The newest ``keep_last`` are kept.

On S3 each checkpoint also has a digest object ``step-00000100.pt.sha256`` ("<sha256>
<bytes>"), uploaded before the checkpoint, so a checkpoint is never visible without it:
an object truncated or changed on the server (by another tool, a bad copy, a faulty
server) is caught by its size before downloading, or by its sha256 after. A resumed S3
checkpoint goes through the host's content-addressed cache (training/data/shard_cache.py),
so the ranks on one host download it once, not once each. Locally the rename is the
guarantee and a damaged file fails to load.

Loading walks from the newest down and skips any checkpoint whose size or digest is wrong
or that does not load (a disk filled up, an object truncated), so one bad file costs a
few steps, not the run. An S3 checkpoint without its digest is not trusted.

Everything stored is tensors and plain Python values, so files load with
``torch.load(weights_only=True)``: a checkpoint can't run code when it is read.

:class:`Checkpointer` is given a job's stateful parts once, by name (torchtitan's
CheckpointManager, smaller): a checkpoint holds ``{name: part.state_dict()}`` plus its
``format`` and step, and loading hands each part its entry back. What a checkpoint holds
is therefore listed in one place, the dict of parts the job builds.
"""

from __future__ import annotations

import logging
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ops.lake import storage
from training.data import shard_cache
from training.data.shard_cache import file_sha256

log = logging.getLogger(__name__)
_NAME = re.compile(r"^step-(\d{8})\.pt$")
DIGEST_SUFFIX = ".sha256"
# The layout of a checkpoint's dict. 1 (no "format" key): the train state's step, losses,
# MLflow run id and RNG states at the top level; 2: under "train_state", see upgrade().
FORMAT = 2


class CheckpointMismatch(RuntimeError):
    """A checkpoint that cannot resume this job (another model, objective, optimiser or format)."""


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


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


def _name(uri: str | Path) -> str:
    return str(uri).rstrip("/").rsplit("/", 1)[-1]


def _children(directory: str, suffix: str) -> list:
    """Files directly in ``directory`` (not in sub-folders) ending in ``suffix``, sorted."""
    if storage.is_s3(directory):
        base = str(directory).rstrip("/")
        return [u for u in storage.list_files(base, suffix=suffix) if u.rsplit("/", 1)[0] == base]
    d = Path(directory)
    if not d.exists():
        return []
    return sorted(p for p in d.iterdir() if p.name.endswith(suffix))


def list_checkpoints(directory: str) -> list:
    """Checkpoints, oldest first: Paths in a local folder, URIs (str) under an s3:// prefix."""
    return [c for c in _children(directory, ".pt") if _NAME.match(_name(c))]


def _digest_line(path: Path) -> str:
    return f"{file_sha256(path)} {path.stat().st_size}\n"


def _write_local(path: Path, state: dict[str, Any]) -> None:
    with open(path, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())


def save(directory: str, step: int, state: dict[str, Any], keep_last: int = 2) -> Path | str:
    """Write ``state`` (plus the step) atomically as the checkpoint of ``step``; prune old ones.

    Returns the checkpoint's Path (local) or URI (s3://).
    """
    name = f"step-{step:08d}.pt"
    payload = {**state, "step": step}
    if storage.is_s3(directory):
        final: Path | str = storage.join(directory, name)
        with tempfile.TemporaryDirectory(prefix="c2m-ckpt-") as tmp:
            local = Path(tmp, name)
            _write_local(local, payload)
            storage.write_text(final + DIGEST_SUFFIX, _digest_line(local))
            storage.upload_file(local, final)  # multipart above C2M_S3_MULTIPART_MB; visible when complete
    else:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        final = d / name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=d)
        os.close(fd)
        try:
            _write_local(Path(tmp), payload)
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    prune(directory, keep_last)
    return final


def prune(directory: str, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints, and digests whose checkpoint is gone."""
    checkpoints = list_checkpoints(directory)
    for old in checkpoints[:-keep_last] if keep_last > 0 else []:
        storage.remove(str(old))  # the checkpoint first: it never exists without its digest
        storage.remove(str(old) + DIGEST_SUFFIX)
    kept = {str(c) for c in list_checkpoints(directory)}
    for digest in map(str, _children(directory, DIGEST_SUFFIX)):
        checkpoint = digest[: -len(DIGEST_SUFFIX)]
        if _NAME.match(_name(checkpoint)) and checkpoint not in kept:
            storage.remove(digest)  # left by a crash between writing a digest and its checkpoint


def _expected(uri: str) -> tuple[str, int] | None:
    """(sha256, bytes) from the checkpoint's digest file; None when it has none (local checkpoints)."""
    try:
        sha, size = storage.read_text(uri + DIGEST_SUFFIX).split()
        return sha, int(size)
    except FileNotFoundError:
        return None
    except ValueError:  # unreadable digest file: treat as a digest nothing matches
        return "", -1


def _load_checked(checkpoint: Path | str) -> tuple[dict[str, Any] | None, str]:
    """(state, "") for a whole checkpoint, else (None, why it can't be used)."""
    uri = str(checkpoint)
    expected = _expected(uri)
    if expected is None and storage.is_s3(uri):
        return None, f"it has no digest object {_name(uri)}{DIGEST_SUFFIX} (not written by this code?)"
    size = storage.size(uri) if expected else None  # a truncated object is seen before downloading it
    if expected and size != expected[1]:
        return None, f"{size} bytes, its digest says {expected[1]} (truncated?)"
    changed = "its sha256 differs from its digest (corrupt or changed after writing)"
    if storage.is_s3(uri):
        # Through the host's content-addressed cache: the ranks on one host download it once
        # (one takes the digest's lock, the others find the file), each checks its sha256.
        try:
            local = shard_cache.fetch(uri, expected[0])
        except shard_cache.DigestMismatch:
            return None, changed
    else:
        local = Path(uri)
        if expected and file_sha256(local) != expected[0]:
            return None, changed
    try:
        state = torch.load(local, map_location="cpu", weights_only=True)
    except Exception as exc:
        return None, f"it does not load ({type(exc).__name__}: {exc})"
    if not isinstance(state, dict) or "step" not in state:
        return None, "it holds no step"
    return state, ""


def load_latest(directory: str) -> dict[str, Any] | None:
    """The newest checkpoint that is whole and loads, or None when there is none."""
    for checkpoint in reversed(list_checkpoints(directory)):
        state, problem = _load_checked(checkpoint)
        if problem:
            log.warning("checkpoint %s is skipped: %s; trying an older one", checkpoint, problem)
            continue
        state["path"] = str(checkpoint)
        return state
    return None


def upgrade(state: dict[str, Any]) -> dict[str, Any]:
    """A loaded checkpoint in the current layout (:data:`FORMAT`); fails on a newer one, saying what to do."""
    fmt = int(state.get("format", 1))
    if fmt > FORMAT:
        raise CheckpointMismatch(
            f"is checkpoint format {fmt}, newer than this code reads ({FORMAT}); resume with the code "
            "that wrote it, or use a fresh --checkpoint-dir"
        )
    if fmt == 1 and "train_state" not in state:
        train_loss, val_loss = state.pop("losses")
        state["train_state"] = {
            "step": state["step"],
            "train_loss": train_loss,
            "val_loss": val_loss,
            "mlflow_run_id": state.pop("mlflow_run_id", None),
            "rng": state.pop("rng"),
        }
    state["format"] = FORMAT
    return state


class Checkpointer:
    """Saves and restores a job's stateful parts together, as one checkpoint file per step.

    ``parts`` maps a name to anything with ``state_dict()``/``load_state_dict()`` (model,
    optimiser, scaler, data loader, train state, config check); they are loaded in the
    order given. The caller decides when and on which rank to save (rank 0 only under
    Horovod); every rank loads the same file, so all ranks resume alike.
    """

    def __init__(self, directory: str, parts: dict[str, Stateful], keep_last: int = 2):
        self.directory, self.parts, self.keep_last = directory, parts, keep_last

    def save(self, step: int) -> str:
        """Write every part's state as the checkpoint of ``step``; return its path or URI."""
        state = {"format": FORMAT, **{name: part.state_dict() for name, part in self.parts.items()}}
        return str(save(self.directory, step, state, keep_last=self.keep_last))

    def load(self) -> str | None:
        """Restore every part from the newest whole checkpoint; its path or URI, None when there is none."""
        state = load_latest(self.directory)
        if state is None:
            return None
        path = state["path"]
        try:
            state = upgrade(state)
            missing = [name for name in self.parts if name not in state]
            if missing:
                raise CheckpointMismatch(
                    f"holds no {', '.join(missing)} (not written by this job?); use a fresh --checkpoint-dir"
                )
            for name, part in self.parts.items():
                part.load_state_dict(state[name])
        except CheckpointMismatch as exc:
            raise CheckpointMismatch(f"{path} {exc}") from None
        return path
