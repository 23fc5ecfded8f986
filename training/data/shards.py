"""Token shards (the tokenize stage's output) read by memory map, and a resumable per-rank sampler.

Shard format (see the contract): ``shards/v=V/g=G/{train,val}-NNNNN.bin`` (``G``: the generation
``shards/v=V/_manifest.json`` names; files directly in ``v=V`` for older manifests) hold
``seq_len``-token sequences back to back as little-endian uint16/uint32, described by the manifest.
Nothing is loaded into memory up front; each batch reads only its rows.

The sampler walks one seeded permutation per epoch. Each optimiser micro-step takes the
next ``size * batch_size`` indices of that permutation and rank r keeps chunk r. So the
union over ranks equals what a single process with ``size * batch_size`` would see, and
the position is one number (sequences consumed this epoch) that stays valid when a job
resumes with a different number of ranks.

Shards on ``s3://`` are read the same way: the manifest is read from the bucket, and each
file (and the tokenizer) is fetched once per host into a cache keyed by its sha256
(training/data/shard_cache.py) and memory-mapped from there.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ops.lake import storage
from ops.lake.datasets import data_uri_of
from training.data import shard_cache
from training.data.stitch import stitch

DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


class ShardError(RuntimeError):
    """The shards folder is missing, unfinished or inconsistent with its manifest."""


@dataclass(frozen=True)
class ShardInfo:
    """What training needs from a shards manifest."""

    uri: str
    seq_len: int
    vocab_size: int
    eos_id: int
    pad_id: int
    dtype: str
    splits: dict
    manifest: dict
    tokenizer_type: str = "bpe"
    special_tokens: dict = field(default_factory=dict)  # role (eos, pad, mask, unk, cls, sep) -> id
    sentinel_ids: tuple = ()  # span-corruption sentinels, in order
    data_uri: str = ""  # where the files are: the generation the manifest names (default: uri itself)

    def __post_init__(self):
        if not self.data_uri:
            object.__setattr__(self, "data_uri", self.uri)

    @property
    def tokenizer_path(self) -> Path:
        """A local tokenizer.json: the version's own file, or its cached copy for s3:// shards."""
        if not storage.is_s3(self.uri):
            return Path(self.data_uri) / "tokenizer.json"
        return _cached_tokenizer(self.data_uri, self.manifest)

    def local_file(self, name: str, verify: bool = True) -> Path:
        """A local path holding shard file ``name``, checked against the manifest's sha256.

        Local shards are read in place (hashed once per process when ``verify``); s3://
        shards come from the digest-keyed cache, which always checks what it downloads.
        """
        digest = _file_digests(self.splits).get(name)
        if storage.is_s3(self.uri):
            if not digest:
                raise ShardError(f"{self.uri}/_manifest.json has no sha256 for {name}, which s3:// shards "
                                 "need (it keys the local cache); re-run the tokenize stage for this version")
            try:
                return shard_cache.fetch(storage.join(self.data_uri, name), digest, verify=verify,
                                         keep=_file_digests(self.splits).values())  # spared by eviction
            except shard_cache.DigestMismatch as exc:
                raise ShardError(str(exc)) from None
            except storage.MissingObject as exc:
                raise ShardError(f"{exc}; it is listed in {self.uri}/_manifest.json, so the version is "
                                 "incomplete: re-run the tokenize stage for this version") from None
        path = Path(self.data_uri) / name
        if not path.is_file():
            raise ShardError(f"{path} is missing but listed in {self.uri}/_manifest.json; "
                             "re-run the tokenize stage for this version")
        if verify and digest:
            verify_checksum(path, digest)
        return path

    def special_ids(self) -> list[int]:
        """Every special id (roles and sentinels): never masked, never a random replacement."""
        return sorted(set(self.special_tokens.values()) | set(self.sentinel_ids))


def _file_digests(splits: dict) -> dict[str, str]:
    return {name: digest for split in splits.values() for name, digest in (split.get("sha256") or {}).items()}


def _tokenizer_matches(path: Path, sha256: str) -> bool:
    """The manifest's tokenizer_sha256 is of the compact JSON (``Tokenizer.to_str()``), which is what
    the tokenize stage writes. A pretty-printed copy (``Tokenizer.save``) matches once re-serialised
    for BPE and WordPiece; a Unigram's float scores may not round-trip, so such a copy is refused."""
    if shard_cache.file_sha256(path) == sha256:
        return True
    from tokenizers import Tokenizer

    try:
        canonical = Tokenizer.from_file(str(path)).to_str()
    except Exception:  # not a tokenizer at all: a corrupt download
        return False
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest() == sha256


def _cached_tokenizer(uri: str, m: dict) -> Path:
    digest = m.get("tokenizer_sha256")
    if not digest:
        raise ShardError(f"{uri}/_manifest.json has no tokenizer_sha256, which s3:// shards need (it keys "
                         "the local cache); re-run the tokenize stage for this version")
    try:
        return shard_cache.fetch(storage.join(uri, m.get("tokenizer") or "tokenizer.json"), digest,
                                 matches=_tokenizer_matches)
    except shard_cache.DigestMismatch as exc:
        raise ShardError(str(exc)) from None


def _vocab_roles(uri: str, m: dict) -> dict:
    """Family, role ids and sentinels: from the manifest, or (older shards) the tokenizer itself."""
    if "special_tokens" in m:
        return {"tokenizer_type": m.get("tokenizer_type", "bpe"),
                "special_tokens": {k: int(v) for k, v in m["special_tokens"].items()},
                "sentinel_ids": tuple(int(i) for i in m.get("sentinel_ids", ()))}
    path = _cached_tokenizer(uri, m) if storage.is_s3(uri) else Path(uri) / "tokenizer.json"
    if not path.exists():
        return {"special_tokens": {"eos": int(m["eos_id"]), "pad": int(m["pad_id"])}}
    from tokenizers import Tokenizer

    from ops.lake.vocab import describe

    found = describe(Tokenizer.from_file(str(path)))
    return {**found, "sentinel_ids": tuple(found["sentinel_ids"])}


def read_shard_info(uri: str) -> ShardInfo:
    """Read and check ``_manifest.json`` of a shards version, on a local path or s3://.

    The manifest itself is never cached: it is small, and it is what says which bytes
    (digests) the version holds now.
    """
    uri = str(uri)
    manifest_path = storage.join(uri, "_manifest.json")
    try:
        m = json.loads(storage.read_text(manifest_path))
    except FileNotFoundError:  # storage.MissingObject too
        raise ShardError(
            f"{uri} has no _manifest.json: the tokenize stage has not finished for this version. "
            "Run `crawl2model tokenize --version V` (or pass the right --shards folder)."
        ) from None
    data = data_uri_of(uri, m)
    missing = [k for k in ("seq_len", "dtype", "vocab_size", "eos_id", "pad_id", "splits") if k not in m]
    if missing:
        raise ShardError(f"{manifest_path} lacks {missing}; it was not written by the tokenize stage")
    if m["dtype"] not in DTYPES:
        raise ShardError(f"{manifest_path}: dtype {m['dtype']!r} unknown; expected one of {list(DTYPES)}")
    return ShardInfo(uri=str(uri), seq_len=int(m["seq_len"]), vocab_size=int(m["vocab_size"]),
                     eos_id=int(m["eos_id"]), pad_id=int(m["pad_id"]), dtype=m["dtype"],
                     splits=m["splits"], manifest=m, data_uri=data, **_vocab_roles(data, m))


def verify_checksum(path: Path, expected: str) -> None:
    """Refuse a shard whose sha256 differs from the manifest's; each file is hashed once per process."""
    if shard_cache.is_verified(path, expected):
        return
    actual = shard_cache.file_sha256(path)
    if actual != expected:
        raise ShardError(
            f"{path}: sha256 {actual[:16]}... differs from the manifest's {expected[:16]}...; the shard is "
            "corrupt or was changed after tokenizing. Re-run the tokenize stage for this version "
            "(or restore the file)."
        )
    shard_cache.mark_verified(path, expected)


class ShardDataset:
    """All sequences of one split, addressable by a global row index.

    With ``verify`` (the default) each file's sha256 is checked against the manifest
    (when the manifest has one) before it is mapped; s3:// files are always checked when
    they are downloaded into the cache.
    """

    def __init__(self, info: ShardInfo, split: str, verify: bool = True):
        if split not in info.splits:
            raise ShardError(f"{info.uri}: no {split!r} split in the manifest (has {sorted(info.splits)})")
        dtype = DTYPES[info.dtype]
        self.seq_len = info.seq_len
        paths = []
        for name in info.splits[split]["files"]:
            path = info.local_file(name, verify)
            nbytes = path.stat().st_size
            if nbytes % (dtype.itemsize * info.seq_len):
                raise ShardError(f"{path}: {nbytes} bytes is not a whole number of {info.seq_len}-token sequences")
            if nbytes:
                paths.append(path)
        # Several files: one array over all of them when the OS allows (training/data/stitch.py);
        # each file's rows are then a view of it, with no second mapping of the file.
        self._stitched = stitch(paths, dtype, info.seq_len)
        if self._stitched is not None:
            self.arrays = self._stitched.files()
        else:
            self.arrays = [np.memmap(p, dtype=dtype, mode="r").reshape(-1, info.seq_len) for p in paths]
        # Plain-ndarray views of the maps: fancy indexing a np.memmap subclass builds a memmap
        # result (__array_finalize__), about 1 µs per batch that the views skip.
        self._views = [a.view(np.ndarray) for a in self.arrays]
        self.dtype = dtype
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])
        expected = info.splits[split].get("sequences")
        if expected is not None and expected != len(self):
            raise ShardError(f"{info.uri}: manifest says {expected} {split} sequences, files hold {len(self)}")

    def __len__(self) -> int:
        return int(self.starts[-1])

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """Sequences at the given global indices, (len(indices), seq_len), in the shard dtype.

        Rows stay in the narrow shard dtype, so a consumer casts each output once into its
        final layout (:func:`causal_lm_batch`) instead of widening the whole batch to int64
        first and copying slices of it. One file, or several stitched into one map: one
        fancy index. Otherwise (not Linux) a batch within one file is one fancy index, and a
        batch across files is copied row by row from the per-file views.
        """
        if len(self._views) == 1:  # the common case: one shard file, no file lookup at all
            return self._views[0][indices]
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.starts[-1]):
            raise IndexError(f"row indices must lie in [0, {int(self.starts[-1])}) for this split")
        if self._stitched is not None:
            return self._stitched.rows[self._stitched.virtual(indices)]
        files = np.searchsorted(self.starts, indices, side="right") - 1
        if len(files) and (files == files[0]).all():
            return self._views[files[0]][indices - self.starts[files[0]]]
        out = np.empty((len(indices), self.seq_len), dtype=self.dtype)
        views = self._views
        for i, (f, row) in enumerate(zip(files.tolist(), (indices - self.starts[files]).tolist())):
            out[i] = views[f][row]
        return out

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Sequences at the given global indices, (len(indices), seq_len) int64."""
        return self.gather(indices).astype(np.int64)


def causal_lm_batch(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, seq_len) tokens of any integer dtype -> inputs x = seq[:-1], targets y = seq[1:],
    each (B, seq_len - 1) int64 and contiguous.

    Each tensor is cast straight from its shifted slice of the rows: two copies, where
    widening the batch to int64 and then copying both slices out of it makes three.
    """
    return (torch.from_numpy(rows[:, :-1].astype(np.int64, order="C")),
            torch.from_numpy(rows[:, 1:].astype(np.int64, order="C")))


class ShardSampler:
    """Deterministic, resumable, rank-sharded batches over a dataset of ``n`` rows."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, size: int = 1, seed: int = 0):
        if n < batch_size * size:
            raise ShardError(
                f"only {n} training sequences, but one step needs batch_size={batch_size} x {size} ranks; "
                "lower --batch-size or tokenize more text"
            )
        self.n, self.batch_size, self.rank, self.size, self.seed = n, batch_size, rank, size, seed
        self.epoch = 0
        self.consumed = 0  # rows of this epoch's permutation taken by all ranks together
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def next_indices(self) -> np.ndarray:
        """This rank's row indices for the next micro-step; the tail of an epoch is skipped."""
        step_rows = self.batch_size * self.size
        if self.consumed + step_rows > self.n:
            self.epoch += 1
            self.consumed = 0
            self._perm = self._permutation(self.epoch)
        start = self.consumed + self.rank * self.batch_size
        self.consumed += step_rows
        return self._perm[start:start + self.batch_size]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed, "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n or state["seed"] != self.seed:
            raise ShardError(
                f"checkpoint data position is for {state['n']} rows with seed {state['seed']}, "
                f"but this run has {self.n} rows with seed {self.seed}; resume on the same shards and seed "
                "or start a fresh --checkpoint-dir"
            )
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self._perm = self._permutation(self.epoch)


EMPTY_VAL = ("the val split is empty (no full sequence: no val documents, or too few tokens to fill one); "
             "tokenize with a larger --val-fraction or a smaller --seq-len")


class ShardLoader:
    """Causal-LM batches for one rank: ``next_batch()`` and a fixed ``eval_batches(k)``.

    ``train=False`` makes an evaluation-only loader (no sampler): a val split may hold fewer
    sequences than one training step takes (a tiny corpus whose val split is one short
    document), and ``eval_batches`` wraps around it; only a training loader needs a full step.
    """

    def __init__(self, dataset: ShardDataset, batch_size: int, rank: int = 0, size: int = 1, seed: int = 0,
                 train: bool = True):
        self.dataset = dataset
        self.batch_size, self.rank, self.size = batch_size, rank, size
        if not train and len(dataset) == 0:
            raise ShardError(EMPTY_VAL)
        self.sampler = ShardSampler(len(dataset), batch_size, rank, size, seed) if train else None

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return causal_lm_batch(self.dataset.gather(self._training().next_indices()))

    def eval_batches(self, count: int):
        """The same ``count`` batches on every call: rows in order, rank-sharded, wrapping around."""
        for indices in self._eval_indices(count):
            yield causal_lm_batch(self.dataset.gather(indices))

    def _eval_indices(self, count: int):
        """This rank's row indices of eval batches 0..count-1 (what ``eval_batches`` reads)."""
        n = len(self.dataset)
        if n == 0:
            raise ShardError(EMPTY_VAL)
        for k in range(count):
            start = (k * self.size + self.rank) * self.batch_size
            yield np.arange(start, start + self.batch_size) % n

    def state_dict(self) -> dict:
        return self._training().state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._training().load_state_dict(state)

    def _training(self) -> ShardSampler:
        if self.sampler is None:
            raise TypeError("this loader was made with train=False: it serves eval_batches() only")
        return self.sampler


EVAL_STREAM = 1 << 30  # keeps eval batch seeds apart from training positions


class CollatedLoader(ShardLoader):
    """Batches of any objective: sampled rows passed through a collator (training/data/collators.py).

    Rows reach the collator in the shard dtype (uint16/uint32); each collator widens them
    to int64 itself, once, in the layout it returns. A collator whose ``uses_rng`` is
    False (causal LM) gets no generators, which would cost more than its batch.

    The collator's generators are seeded from (seed, epoch, position) - plus the rank for
    the per-rank one - so batches depend only on the sampler position, which the
    checkpoint stores: a resumed job sees exactly the batches it would have seen.
    """

    def __init__(self, dataset: ShardDataset, collator, batch_size: int, rank: int = 0, size: int = 1,
                 seed: int = 0, train: bool = True):
        super().__init__(dataset, batch_size, rank, size, seed, train)
        self.collator, self.seed = collator, seed

    def _collate(self, rows: np.ndarray, key: list[int], collator=None) -> dict:
        collate = collator or self.collator
        if not getattr(collate, "uses_rng", True):  # causal LM draws nothing; two generators cost ~15 µs
            return collate(rows, None, None)
        return collate(rows, np.random.default_rng(key + [self.rank]), np.random.default_rng(key))

    def next_batch(self) -> dict:
        sampler = self._training()
        indices = sampler.next_indices()
        key = [self.seed, sampler.epoch, sampler.consumed]  # unique per step, saved in checkpoints
        return self._collate(self.dataset.gather(indices), key)

    def eval_batches(self, count: int, collator=None):
        """The same ``count`` batches (rows and masks) on every call; ``collator`` overrides the loader's."""
        for k, indices in enumerate(self._eval_indices(count)):
            yield self._collate(self.dataset.gather(indices), [self.seed, EVAL_STREAM, k], collator)
