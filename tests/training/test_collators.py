"""Objectives' collators: the statistics each one promises, determinism and exact resume."""

import math

import numpy as np
import pytest
import torch

from training.data.collators import (
    IGNORE,
    CausalLM,
    Contrastive,
    MaskedLM,
    Mixture,
    SpanCorruption,
    info_nce_loss,
    parse_weights,
    random_segmentation,
    span_counts,
    word_starts_from_tokenizer,
)

V, MASK, SPECIALS = 1000, 3, [0, 1, 2, 3]
SENTINELS = list(range(4, 36))


def _rows(b=64, t=256, seed=0):
    rows = np.random.default_rng(seed).integers(36, V, size=(b, t))
    rows[:, ::50] = 0  # document separators, as packed shards have
    return rows


def test_causal_targets_are_the_inputs_shifted_by_one():
    rows = _rows(2, 9)
    batch = CausalLM()(rows)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, 8)
    assert (batch["input_ids"][:, 1:] == batch["labels"][:, :-1]).all()
    assert (batch["labels"].numpy() == rows[:, 1:]).all() and CausalLM().positions(9) == 8


def test_mlm_masks_15_percent_80_10_10_and_never_specials():
    rows = _rows()
    mlm = MaskedLM(V, MASK, SPECIALS)
    batch = mlm(rows, np.random.default_rng(1))
    ids, labels = batch["input_ids"].numpy(), batch["labels"].numpy()
    chosen = labels != IGNORE
    normal = rows != 0
    assert not chosen[~normal].any() and (ids[~normal] == 0).all()  # separators untouched, never labelled
    assert chosen[normal].mean() == pytest.approx(0.15, abs=0.01)  # ~16k candidates: sd ~0.003
    assert (labels[chosen] == rows[chosen]).all()
    masked, kept = ids[chosen] == MASK, ids[chosen] == rows[chosen]
    randomised = ~masked & ~kept
    assert masked.mean() == pytest.approx(0.8, abs=0.03)
    assert kept.mean() == pytest.approx(0.1, abs=0.02)  # includes random draws that hit the same id (~0.01%)
    assert randomised.mean() == pytest.approx(0.1, abs=0.02)
    assert not np.isin(ids[chosen][randomised], SPECIALS).any()  # random replacements are never special
    assert (ids[~chosen] == rows[~chosen]).all()


def test_whole_word_masking_takes_every_piece_of_a_word():
    starts = np.zeros(V, dtype=bool)
    starts[36:500] = True  # ids 36..499 begin words, 500.. continue them
    starts[SPECIALS] = True
    mlm = MaskedLM(V, MASK, SPECIALS, word_starts=starts)
    rows = _rows(seed=2)
    labels = mlm(rows, np.random.default_rng(3))["labels"].numpy()
    chosen = labels != IGNORE
    for row, pick in zip(rows, chosen):
        word = np.cumsum(starts[row] | np.isin(row, SPECIALS))
        for w in np.unique(word[pick]):
            members = (word == w) & ~np.isin(row, SPECIALS)
            assert pick[members].all()  # all pieces of a chosen word, never part of one
    assert chosen[rows != 0].mean() == pytest.approx(0.15, abs=0.02)


def test_random_segmentation_and_span_counts():
    rng = np.random.default_rng(0)
    for _ in range(50):
        parts = random_segmentation(20, 6, rng)
        assert len(parts) == 6 and parts.sum() == 20 and parts.min() >= 1
    assert span_counts(100, 0.15, 3.0) == (15, 5)
    assert span_counts(10, 0.5, 100.0) == (5, 1)


def test_span_corruption_statistics_and_exact_reconstruction():
    seq_len = 128
    span = SpanCorruption(SENTINELS, seq_len, noise_density=0.15, mean_span=3.0)
    assert span.source_length + 2 * span.spans <= seq_len  # input ++ target fits the row
    assert span.noise / span.source_length == pytest.approx(0.15, abs=0.01)
    assert span.noise / span.spans == pytest.approx(3.0, abs=0.5)
    rng = np.random.default_rng(0)
    lengths = []
    for row in _rows(200, seq_len, seed=4)[:, : span.source_length]:
        mask = span.noise_mask(rng)
        inputs, targets = span.corrupt(row, mask)
        assert len(inputs) == span.prefix and len(targets) == span.noise + span.spans
        # Rebuild the row: replace sentinel k in the input by what follows sentinel k in the target.
        pieces = np.split(targets, np.flatnonzero(np.isin(targets, SENTINELS)))[1:]
        fill = {int(p[0]): p[1:] for p in pieces}
        rebuilt = np.concatenate([fill[int(t)] if t in fill else [t] for t in inputs])
        assert (rebuilt == row).all()
        assert [int(p[0]) for p in pieces] == SENTINELS[: span.spans]  # sentinels in order
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
        lengths += list(edges[1::2] - edges[::2])
    assert np.mean(lengths) == pytest.approx(span.noise / span.spans)
    assert len(set(lengths)) > 3  # span lengths vary around their mean


def test_span_batch_is_a_prefix_lm_with_loss_on_targets_only():
    span = SpanCorruption(SENTINELS, 64)
    batch = span(_rows(4, 64), np.random.default_rng(0))
    x, y, prefix = batch["input_ids"], batch["labels"], batch["prefix_len"]
    assert x.shape == y.shape == (4, span.positions(64)) and (prefix == span.prefix).all()
    assert (y[:, : span.prefix - 1] == IGNORE).all() and (y[:, span.prefix - 1 :] != IGNORE).all()
    assert (x[:, span.prefix :] == y[:, span.prefix - 1 : -1]).all()  # shifted within the target part
    assert int(y[0, span.prefix - 1]) == SENTINELS[0]  # the target starts with the first sentinel
    with pytest.raises(ValueError, match="--extra-ids"):
        SpanCorruption(SENTINELS[:2], 512)


def test_contrastive_pairs_and_info_nce():
    rows = _rows(8, 32)
    both = Contrastive()(rows, np.random.default_rng(0))["input_ids"]
    assert both.shape == (16, 32) and (both[:8] == both[8:]).all()
    cropped = Contrastive(crop_len=10)(rows, np.random.default_rng(0))["input_ids"].numpy()
    assert cropped.shape == (16, 10)
    for i, row in enumerate(rows):  # each view is a window of its own row
        for view in (cropped[i], cropped[8 + i]):
            assert any((row[s : s + 10] == view).all() for s in range(23))

    z = torch.eye(16)[:8] * 5
    assert info_nce_loss(z, z, temperature=0.05).item() < 1e-6  # positives found, negatives orthogonal
    same = torch.ones(8, 4)
    assert info_nce_loss(same, same).item() == pytest.approx(math.log(8), rel=1e-5)  # chance: ln B
    z1 = torch.randn(8, 16, requires_grad=True)
    z2 = torch.randn(8, 16)
    loss = info_nce_loss(z1, z2, symmetric=True)
    loss.backward()
    with torch.no_grad():  # a step against the gradient makes pairs more findable
        assert info_nce_loss(z1 - 0.5 * z1.grad, z2, symmetric=True) < loss


def test_mixture_samples_by_weight_deterministically_and_ranks_agree():
    mix = Mixture(
        {"clm": CausalLM(), "mlm": MaskedLM(V, MASK, SPECIALS), "span": SpanCorruption(SENTINELS, 64)},
        parse_weights("clm=0.6,mlm=0.3,span=0.1"),
    )
    draws = [mix.choose(np.random.default_rng([7, i])) for i in range(3000)]
    for name, weight in (("clm", 0.6), ("mlm", 0.3), ("span", 0.1)):
        assert draws.count(name) / 3000 == pytest.approx(weight, abs=0.03)
    assert draws == [mix.choose(np.random.default_rng([7, i])) for i in range(3000)]
    assert draws != [mix.choose(np.random.default_rng([8, i])) for i in range(3000)]
    rows = _rows(2, 64)
    a = mix(rows, np.random.default_rng([1, 0]), np.random.default_rng([1]))  # rank 0
    b = mix(rows, np.random.default_rng([1, 1]), np.random.default_rng([1]))  # rank 1: same objective
    assert a["objective"] == b["objective"]
    assert Mixture({"clm": CausalLM(), "mlm": MaskedLM(V, MASK, SPECIALS)}, {"clm": 1, "mlm": 0}).names == [
        "clm"
    ]
    with pytest.raises(ValueError, match="mixture weights"):
        Mixture({"clm": CausalLM()}, {"mlm": 1.0})
    with pytest.raises(ValueError, match="name=weight"):
        parse_weights("clm:0.5")


def test_collated_loader_resumes_exactly_and_eval_is_fixed(shards_uri):
    from training.data.shards import CollatedLoader, ShardDataset, read_shard_info

    info = read_shard_info(shards_uri)
    ds = ShardDataset(info, "train")
    mlm = MaskedLM(info.vocab_size, info.special_tokens["mask"], info.special_ids())
    loader = CollatedLoader(ds, mlm, 4, seed=5)
    [loader.next_batch() for _ in range(3)]
    state = loader.state_dict()
    expected = [loader.next_batch() for _ in range(4)]
    again = CollatedLoader(ds, mlm, 4, seed=5)
    again.load_state_dict(state)
    for a, b in zip(expected, [again.next_batch() for _ in range(4)]):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    first = [b["labels"] for b in loader.eval_batches(2)]
    assert all(torch.equal(a, b["labels"]) for a, b in zip(first, loader.eval_batches(2)))
    r1 = CollatedLoader(ds, mlm, 4, rank=1, size=2, seed=5)
    r0 = CollatedLoader(ds, mlm, 4, rank=0, size=2, seed=5)
    assert not torch.equal(r0.next_batch()["input_ids"], r1.next_batch()["input_ids"])


def test_word_starts_follow_each_tokenizer_family(tmp_path):
    from ops.lake.vocab import KINDS
    from spark_jobs.tokens.trainers import train_tokenizer

    docs = ["The teacher remembers the long road every morning. A dog finds the red ball."] * 20
    for kind in KINDS:
        tok = train_tokenizer(iter(docs), kind, 400, extra_ids=2)
        tok.save(str(tmp_path / f"{kind}.json"))
        starts = word_starts_from_tokenizer(tmp_path / f"{kind}.json")
        assert len(starts) == tok.get_vocab_size()
        enc = tok.encode("the teacher remembers the long road", add_special_tokens=False)
        words = [starts[i] for i in enc.ids]
        assert sum(words) == 6 - (kind == "bpe"), (kind, enc.tokens)  # byte-level BPE: no space before word 1
        assert all(starts[i] for i in range(4))  # specials count as word starts
