"""MinHash signatures and LSH band keys, vectorised with numpy (no Spark here).

A document becomes the set of its word 5-grams (lowercased words, punctuation dropped);
two documents' Jaccard similarity J is the share of 5-grams they have in common. A
MinHash signature keeps, for each of ``bands × rows`` hash functions, the minimum hash
over the document's 5-grams; two signatures agree in one position with probability J.
LSH cuts the signature into ``bands`` bands of ``rows`` values: documents that agree in
a whole band become candidates, which happens with probability 1 - (1 - J^rows)^bands.
FineWeb's 14 × 8 puts the 50% point near J = 0.69 (see :func:`candidate_probability`):
pairs at J = 0.9 are found 99.9% of the time, pairs at J = 0.5 about 5%.

Everything per batch is array work: all words of a batch are hashed in one call
(``pandas.util.hash_array``, deterministic siphash), 5-gram hashes are a weighted sum
of shifted word-hash arrays, and the ``bands × rows`` permutations are one broadcast
``(a·x + b) mod (2^61 - 1)`` over a block of shingles, reduced per document with
``np.minimum.reduceat``. Python loops only over documents (to split words) and over
blocks of shingles.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

_WORDS = re.compile(r"\w+")
_MERSENNE = np.uint64((1 << 61) - 1)
_MASK32 = np.uint64(0xFFFFFFFF)
_EMPTY = np.uint32(0xFFFFFFFF)
BLOCK_SHINGLES = 16_384  # shingles per broadcast block: 16k × 112 × 8 bytes ≈ 15 MB


@dataclass(frozen=True)
class MinHashConfig:
    """Shingle size, LSH shape and hash seed. Saved with every version's signatures, which
    later versions can only reuse if these match."""

    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1

    def __post_init__(self):
        if self.ngram < 1 or self.bands < 1 or self.rows < 1:
            raise ValueError(f"ngram, bands and rows must be positive, got {self}")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    @property
    def threshold(self) -> float:
        """The Jaccard similarity at which a pair becomes a candidate with probability 1/2."""
        js = np.linspace(0, 1, 2001)
        return float(js[np.argmin(np.abs(candidate_probability(js, self.bands, self.rows) - 0.5))])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_threshold(cls, threshold: float, num_perm: int = 112, ngram: int = 5, seed: int = 1,
                      false_positive_weight: float = 0.5) -> "MinHashConfig":
        """The bands × rows (bands · rows ≤ num_perm) whose S-curve best separates pairs above
        and below ``threshold``: the least weighted area of false positives (J < threshold,
        yet candidates) plus false negatives (J ≥ threshold, missed)."""
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        below = np.linspace(0, threshold, 200)
        above = np.linspace(threshold, 1, 200)
        best, best_cost = None, np.inf
        for bands in range(1, num_perm + 1):
            for rows in range(1, num_perm // bands + 1):
                fp = np.trapezoid(candidate_probability(below, bands, rows), below)
                fn = np.trapezoid(1 - candidate_probability(above, bands, rows), above)
                cost = false_positive_weight * fp + (1 - false_positive_weight) * fn
                if cost < best_cost - 1e-12:
                    best, best_cost = (bands, rows), cost
        return cls(ngram=ngram, bands=best[0], rows=best[1], seed=seed)


def candidate_probability(jaccard, bands: int, rows: int):
    """P(two documents share at least one band) for Jaccard similarity ``jaccard``."""
    return 1 - (1 - np.asarray(jaccard, dtype=float) ** rows) ** bands


def words_of(text: str | None) -> list[str]:
    """Lowercased word tokens; punctuation and spacing do not change a shingle."""
    return _WORDS.findall((text or "").lower())


class MinHasher:
    """Signatures for batches of texts; the permutations come from the config's seed."""

    def __init__(self, cfg: MinHashConfig = MinHashConfig()):
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        # a, b < 2^32 and x < 2^32 keep a·x + b below 2^64: exact in uint64 before the mod
        self.a = rng.integers(1, 1 << 32, size=cfg.num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 32, size=cfg.num_perm, dtype=np.uint64)
        self.position_weights = rng.integers(1, 1 << 63, size=cfg.ngram, dtype=np.uint64) | np.uint64(1)
        self.band_weights = rng.integers(1, 1 << 63, size=cfg.rows, dtype=np.uint64) | np.uint64(1)

    # ------------------------------------------------------------ shingles
    def shingles(self, texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(32-bit shingle hashes of all documents, back to back; shingles per document).

        A document shorter than ``ngram`` words is one shingle of all its words; an empty
        one has none.
        """
        import pandas as pd

        n = self.cfg.ngram
        words = [words_of(t) for t in texts]
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        flat = [w for ws in words for w in ws]
        if not flat:
            return np.zeros(0, dtype=np.uint64), np.zeros(len(texts), dtype=np.int64)
        word_hash = pd.util.hash_array(np.array(flat, dtype=object))
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
        total_positions = max(len(flat) - n + 1, 0)
        rolled = np.zeros(total_positions, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(n):
                rolled += word_hash[k:k + total_positions] * self.position_weights[k]
        full = lengths >= n
        per_doc = counts[full]
        offsets = np.arange(per_doc.sum()) - np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
        full_hashes = rolled[np.repeat(starts[full], per_doc) + offsets]
        out = np.empty(int(counts.sum()), dtype=np.uint64)
        doc_of = np.repeat(np.arange(len(texts)), counts)
        out[np.isin(doc_of, np.flatnonzero(full))] = full_hashes
        short = np.flatnonzero((lengths > 0) & ~full)
        if len(short):
            pos = np.cumsum(counts) - counts
            with np.errstate(over="ignore"):
                for d in short:  # rare: pages under ``ngram`` words
                    seg = word_hash[starts[d]:starts[d] + lengths[d]]
                    out[pos[d]] = np.sum(seg * self.position_weights[:len(seg)], dtype=np.uint64)
        return (out ^ (out >> np.uint64(32))) & _MASK32, counts

    # ------------------------------------------------------------ signatures
    def signatures(self, texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(uint32 signatures [docs, bands·rows], shingles per document)."""
        shingles, counts = self.shingles(texts)
        sig = np.full((len(texts), self.cfg.num_perm), _EMPTY, dtype=np.uint32)
        doc_of = np.repeat(np.arange(len(texts)), counts)
        for lo in range(0, len(shingles), BLOCK_SHINGLES):
            x = shingles[lo:lo + BLOCK_SHINGLES]
            docs = doc_of[lo:lo + BLOCK_SHINGLES]
            hashed = (x[:, None] * self.a[None, :] + self.b[None, :]) % _MERSENNE & _MASK32
            hashed = hashed.astype(np.uint32)
            seg_starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            mins = np.minimum.reduceat(hashed, seg_starts, axis=0)
            owners = docs[seg_starts]
            sig[owners] = np.minimum(sig[owners], mins)
        return sig, counts

    def bands(self, sig: np.ndarray) -> np.ndarray:
        """int64 bucket key per (document, band): a hash of the band's ``rows`` values."""
        cfg = self.cfg
        values = sig.reshape(len(sig), cfg.bands, cfg.rows).astype(np.uint64)
        with np.errstate(over="ignore"):
            keys = (values * self.band_weights[None, None, :]).sum(axis=2, dtype=np.uint64)
            keys ^= keys >> np.uint64(29)
        return keys.view(np.int64)


def to_bytes(sig_row: np.ndarray) -> bytes:
    return np.ascontiguousarray(sig_row, dtype="<u4").tobytes()


def from_bytes(blobs: Iterable[bytes], num_perm: int) -> np.ndarray:
    data = b"".join(blobs)
    return np.frombuffer(data, dtype="<u4").reshape(-1, num_perm).astype(np.uint32)


def jaccard(a: str, b: str, ngram: int = 5) -> float:
    """Exact Jaccard similarity of two texts' word n-gram sets (for tests and benchmarks)."""
    def grams(text):
        w = words_of(text)
        return {tuple(w[i:i + ngram]) for i in range(max(len(w) - ngram + 1, 1 if w else 0))}

    sa, sb = grams(a), grams(b)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0
