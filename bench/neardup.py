"""Pure pieces of the dedup benchmark: near-duplicate generation, exact Jaccard, an exact
similarity join, and precision/recall of a removed set. No Spark, no datatrove; unit-tested
in tests/bench/test_bench_units.py.

Similarity is the Jaccard index of word 5-gram sets, words being lowercased ``\\w+`` runs
(the definition both MinHash implementations approximate; datatrove also strips
punctuation and normalises numbers, which changes few shingles on this text).
"""
from __future__ import annotations

import hashlib
import math
import random
import re
from collections import defaultdict

import numpy as np

WORDS = re.compile(r"\w+")
_TOKENS = re.compile(r"(\s+)")


def words_of(text: str) -> list[str]:
    return WORDS.findall(text.lower())


def shingle_set(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """The exact set of word n-grams (a text shorter than n words is one shingle of all its words)."""
    w = words_of(text)
    if len(w) < n:
        return {tuple(w)} if w else set()
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def hashed_shingles(text: str, n: int = 5) -> np.ndarray:
    """Sorted unique 64-bit hashes of the n-gram set (blake2b, so stable across processes)."""
    hashes = {int.from_bytes(hashlib.blake2b(" ".join(s).encode(), digest_size=8).digest(), "little", signed=True)
              for s in shingle_set(text, n)}
    return np.array(sorted(hashes), dtype=np.int64)


# ---------------------------------------------------------------- generating near-duplicates

def make_variant(text: str, rate: float, rng: random.Random, vocab: list[str], style: str = "scattered") -> str:
    """A copy of ``text`` with about ``rate`` of its words edited (substituted, deleted or inserted).

    ``scattered`` puts each edit at a random position (every edit breaks up to 5 shingles);
    ``block`` edits one contiguous run of words, as when a paragraph or a header changes.
    Whitespace between the words is kept, so the copy keeps the original's lines.
    """
    parts = _TOKENS.split(text)  # words at even indices, whitespace at odd ones
    words = parts[0::2]
    spaces = parts[1::2]
    n_edits = max(1, round(rate * len(words)))
    if style == "block":
        start = rng.randrange(0, max(1, len(words) - n_edits))
        positions = range(start, min(len(words), start + n_edits))
    else:
        positions = rng.sample(range(len(words)), min(n_edits, len(words)))
    for pos in sorted(positions, reverse=True):
        op = rng.random()
        if op < 0.5:
            words[pos] = rng.choice(vocab)
        elif op < 0.75:
            words[pos] = ""
        else:
            words[pos] = words[pos] + " " + rng.choice(vocab)
    out = []
    for i, w in enumerate(words):
        out.append(w)
        if i < len(spaces):
            out.append(spaces[i])
    return re.sub(r" {2,}", " ", "".join(out))


# ---------------------------------------------------------------- exact all-pairs join

def similarity_join(sets: list[np.ndarray], threshold: float) -> list[tuple[int, int]]:
    """Every pair (i < j) whose hashed-shingle sets have Jaccard >= threshold (prefix filtering).

    Tokens are ranked rarest first; two sets with J >= t must share a token among the first
    |A| - ceil(t·|A|) + 1 of each, so only pairs sharing a prefix token are verified, and
    only when their sizes allow J >= t. Sound and complete for the hashed sets.
    """
    nonempty = [i for i, s in enumerate(sets) if len(s)]
    if not nonempty:
        return []
    uniq, counts = np.unique(np.concatenate([sets[i] for i in nonempty]), return_counts=True)
    rank_of = dict(zip(uniq.tolist(), np.lexsort((uniq, counts)).argsort().tolist()))
    index: dict[int, list[int]] = defaultdict(list)
    ranked = {}
    for i in nonempty:
        r = np.sort(np.fromiter((rank_of[h] for h in sets[i].tolist()), dtype=np.int64, count=len(sets[i])))
        ranked[i] = r
        prefix = len(r) - math.ceil(threshold * len(r) - 1e-9) + 1
        for tok in r[:prefix].tolist():
            index[tok].append(i)
    candidates = set()
    for docs in index.values():
        if len(docs) > 1:
            for a in range(len(docs)):
                for b in range(a + 1, len(docs)):
                    i, j = docs[a], docs[b]
                    small, big = sorted((len(ranked[i]), len(ranked[j])))
                    if small >= threshold * big:
                        candidates.add((min(i, j), max(i, j)))
    pairs = []
    for i, j in sorted(candidates):
        inter = len(np.intersect1d(ranked[i], ranked[j], assume_unique=True))
        if inter / (len(ranked[i]) + len(ranked[j]) - inter) >= threshold:
            pairs.append((i, j))
    return pairs


def components(n: int, pairs) -> list[int]:
    """Union-find: the component label (smallest member) of each of n nodes."""
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(x) for x in range(n)]


# ---------------------------------------------------------------- scoring a removed set

def removal_scores(labels: list[int], removed: set[int]) -> dict:
    """Precision, recall and F1 of removing ``removed`` when the truth clusters are ``labels``.

    A cluster of size k should lose k - 1 documents (which one survives does not matter).
    Removals count as correct up to k - 1 per cluster; the rest (a singleton removed, or a
    whole cluster removed) are false positives.
    """
    size: dict[int, int] = defaultdict(int)
    hit: dict[int, int] = defaultdict(int)
    for i, c in enumerate(labels):
        size[c] += 1
        if i in removed:
            hit[c] += 1
    should = sum(k - 1 for k in size.values())
    correct = sum(min(hit[c], size[c] - 1) for c in hit)
    precision = correct / len(removed) if removed else 1.0
    recall = correct / should if should else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"removed": len(removed), "should_remove": should, "correct": correct,
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}
