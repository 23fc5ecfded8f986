"""Split assignment and packing of token streams into fixed-length sequences.

Shard format (contract): a flat little-endian array of uint16 (uint32 when the vocab has
more than 65,535 tokens) holding N sequences of exactly ``seq_len`` tokens. Documents
are joined with EOS after each one; the tail shorter than ``seq_len`` is dropped and
counted. Pure Python + numpy, so tests run without Spark.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

import numpy as np

TRAIN, VAL = "train", "val"


def split_bucket(doc_id: str) -> float:
    """A uniform number in [0, 1) from sha1(id)."""
    return int.from_bytes(hashlib.sha1(doc_id.encode("utf-8")).digest()[:8], "big") / 2**64


def split_of(doc_id: str, val_fraction: float) -> str:
    """Deterministic split from sha1(id): the same document is always on the same side."""
    return VAL if split_bucket(doc_id) < val_fraction else TRAIN


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<u4")


@dataclass
class Packer:
    """Streams documents into a file as full ``seq_len`` rows; keeps the remainder in memory.

    Tokens are held as numpy chunks and documents arrive many at a time (:meth:`add_docs`),
    so packing costs a few array operations per Arrow batch, not a Python step per token.
    """

    out: BinaryIO
    seq_len: int
    eos_id: int
    dtype: np.dtype
    flush_tokens: int = 1 << 20
    sequences: int = 0
    docs: int = 0
    _chunks: list[np.ndarray] = field(default_factory=list)
    _pending: int = 0

    def add(self, tokens: Iterable[int]) -> None:
        """One document (its token ids, without the EOS that follows it)."""
        ids = tokens if isinstance(tokens, (list, tuple, np.ndarray)) else list(tokens)
        ids = np.asarray(ids, dtype=self.dtype)
        self.add_docs(ids, np.array([ids.size]))

    def add_docs(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        """Documents end to end in ``flat`` (of ``dtype``), ``lengths[i]`` tokens each; EOS after each."""
        n = len(lengths)
        if not n:
            return
        stream = np.empty(flat.size + n, dtype=self.dtype)
        eos_at = np.cumsum(lengths) + np.arange(n)  # each EOS shifts the later documents by one
        is_token = np.ones(stream.size, dtype=bool)
        is_token[eos_at] = False
        stream[is_token] = flat
        stream[eos_at] = self.eos_id
        self._chunks.append(stream)
        self._pending += stream.size
        self.docs += n
        if self._pending >= self.flush_tokens:
            self._flush()

    def _flush(self) -> None:
        full = self._pending // self.seq_len * self.seq_len
        if not full:
            return
        stream = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self.out.write(stream[:full].tobytes())
        self.sequences += full // self.seq_len
        rest = stream[full:]
        self._chunks, self._pending = ([rest] if rest.size else []), rest.size

    def close(self) -> int:
        """Write what fills whole sequences; return the number of tail tokens dropped."""
        self._flush()
        dropped = self._pending
        self._chunks, self._pending = [], 0
        return dropped


def pack_tokens(docs: Iterable[Iterable[int]], seq_len: int, eos_id: int,
                dtype=np.dtype("<u2")) -> np.ndarray:
    """In-memory packing (for tests and small inputs): an [N, seq_len] array."""
    import io

    buf = io.BytesIO()
    packer = Packer(buf, seq_len, eos_id, np.dtype(dtype))
    for tokens in docs:
        packer.add(tokens)
    packer.close()
    return np.frombuffer(buf.getvalue(), dtype=dtype).reshape(-1, seq_len)
