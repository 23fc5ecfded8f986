"""MinHash signatures and LSH settings without Spark."""
from __future__ import annotations

import random

import numpy as np
import pytest

from spark_test_data import english
from spark_jobs.dedup.minhash import (MinHashConfig, MinHasher, candidate_probability, from_bytes, jaccard,
                                      to_bytes)


def _edit(text: str, fraction: float, seed: int) -> str:
    """Replace a fraction of the words with new ones (known edits)."""
    rng = random.Random(seed)
    words = text.split()
    for i in rng.sample(range(len(words)), max(1, int(fraction * len(words)))):
        words[i] = f"edit{seed}x{i}"
    return " ".join(words)


def test_signature_agreement_estimates_jaccard():
    base = english(1, sentences=60)
    hasher = MinHasher(MinHashConfig(bands=32, rows=8))  # 256 hashes: a tighter estimate
    for fraction in (0.01, 0.05, 0.15):
        other = _edit(base, fraction, seed=3)
        sig, _ = hasher.signatures([base, other])
        assert abs((sig[0] == sig[1]).mean() - jaccard(base, other)) < 0.1, fraction


def test_signatures_do_not_depend_on_the_batch():
    texts = [english(i, sentences=5) for i in range(6)] + ["", "two words", "Two, words!"]
    hasher = MinHasher()
    together, counts = hasher.signatures(texts)
    alone = np.vstack([hasher.signatures([t])[0] for t in texts])
    assert (together == alone).all()
    assert counts[-3:].tolist() == [0, 1, 1]  # empty: no shingle; short: one shingle of all its words
    assert (together[-2] == together[-1]).all()  # case and punctuation do not matter
    assert (together[-3] == 0xFFFFFFFF).all()


def test_signatures_round_trip_and_bands():
    hasher = MinHasher()
    sig, _ = hasher.signatures([english(1), english(1), english(2)])
    assert (from_bytes([to_bytes(r) for r in sig], 112) == sig).all()
    bands = hasher.bands(sig)
    assert bands.shape == (3, 14) and bands.dtype == np.int64
    assert (bands[0] == bands[1]).all() and (bands[0] != bands[2]).sum() >= 13


def test_large_documents_are_processed_in_blocks():
    from spark_jobs.dedup import minhash

    text = " ".join(english(i, sentences=40) for i in range(12))
    full, _ = MinHasher().signatures([text])
    old = minhash.BLOCK_SHINGLES
    minhash.BLOCK_SHINGLES = 97
    try:
        blocked, _ = MinHasher().signatures([english(3), text])
    finally:
        minhash.BLOCK_SHINGLES = old
    assert (blocked[1] == full[0]).all()


def test_config_defaults_and_threshold_choice():
    cfg = MinHashConfig()
    assert (cfg.bands, cfg.rows, cfg.num_perm, cfg.ngram) == (14, 8, 112, 5)
    assert 0.65 < cfg.threshold < 0.75
    assert candidate_probability(0.9, 14, 8) > 0.99 and candidate_probability(0.3, 14, 8) < 0.01
    strict = MinHashConfig.for_threshold(0.9, num_perm=112)
    loose = MinHashConfig.for_threshold(0.5, num_perm=112)
    assert strict.num_perm <= 112 and loose.num_perm <= 112
    assert loose.threshold < cfg.threshold < strict.threshold
    assert abs(strict.threshold - 0.9) < 0.1 and abs(loose.threshold - 0.5) < 0.1
    with pytest.raises(ValueError):
        MinHashConfig.for_threshold(1.5)
