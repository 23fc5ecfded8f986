"""Shard reading, and the sampler's determinism, resume position and rank sharding."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data.shards import ShardDataset, ShardError, ShardLoader, ShardSampler, read_shard_info


def test_reads_rows_across_files_as_written(shards_uri):
    info = read_shard_info(shards_uri)
    ds = ShardDataset(info, "train")
    assert len(ds) == info.splits["train"]["sequences"] and ds.seq_len == info.seq_len
    flat = np.concatenate(
        [np.fromfile(Path(info.data_uri) / f, dtype="<u2") for f in info.splits["train"]["files"]]
    )
    rows = ds.rows(np.array([0, len(ds) // 2, len(ds) - 1]))  # first, across the file boundary, last
    expected = flat.reshape(-1, info.seq_len)[[0, len(ds) // 2, len(ds) - 1]]
    assert (rows == expected).all()


def test_causal_batches_are_shifted_by_one(shards_uri):
    loader = ShardLoader(ShardDataset(read_shard_info(shards_uri), "train"), batch_size=4)
    x, y = loader.next_batch()
    assert x.shape == y.shape == (4, loader.dataset.seq_len - 1)
    assert (x[:, 1:] == y[:, :-1]).all()


def test_same_seed_same_batches_and_resume_continues_exactly():
    a, b = ShardSampler(100, 8, seed=3), ShardSampler(100, 8, seed=3)
    first = [a.next_indices() for _ in range(5)]
    assert all((p == q).all() for p, q in zip(first, [b.next_indices() for _ in range(5)]))
    state = a.state_dict()
    expected = [a.next_indices() for _ in range(20)]  # crosses an epoch boundary
    resumed = ShardSampler(100, 8, seed=3)
    resumed.load_state_dict(state)
    assert all((p == q).all() for p, q in zip(expected, [resumed.next_indices() for _ in range(20)]))
    assert not (ShardSampler(100, 8, seed=4).next_indices() == first[0]).all()


def test_epochs_cover_each_row_once_and_reshuffle():
    s = ShardSampler(40, 8, seed=0)
    epoch0 = np.concatenate([s.next_indices() for _ in range(5)])
    epoch1 = np.concatenate([s.next_indices() for _ in range(5)])
    assert sorted(epoch0) == list(range(40)) == sorted(epoch1)
    assert s.epoch == 1 and not (epoch0 == epoch1).all()


def test_ranks_split_the_single_process_batch():
    single = ShardSampler(100, 8, seed=1)
    ranks = [ShardSampler(100, 4, rank=r, size=2, seed=1) for r in range(2)]
    for _ in range(30):
        parts = [s.next_indices() for s in ranks]
        assert not set(parts[0]) & set(parts[1])
        assert (np.concatenate(parts) == single.next_indices()).all()


def test_position_survives_a_change_of_world_size():
    two = [ShardSampler(100, 4, rank=r, size=2, seed=1) for r in range(2)]
    for _ in range(3):
        [s.next_indices() for s in two]
    one = ShardSampler(100, 8, seed=1)
    one.load_state_dict(two[0].state_dict())
    reference = ShardSampler(100, 8, seed=1)
    [reference.next_indices() for _ in range(3)]
    assert (one.next_indices() == reference.next_indices()).all()


def test_eval_batches_are_fixed_and_rank_disjoint(shards_uri):
    ds = ShardDataset(read_shard_info(shards_uri), "val")
    r0, r1 = (ShardLoader(ds, 2, rank=r, size=2) for r in range(2))
    first = [x for x, _ in r0.eval_batches(2)]
    assert all((a == b).all() for a, b in zip(first, [x for x, _ in r0.eval_batches(2)]))
    assert not (first[0] == next(r1.eval_batches(1))[0]).all()


def test_clear_errors(shards_uri, tmp_path):
    with pytest.raises(ShardError, match="tokenize stage has not finished"):
        read_shard_info(str(tmp_path))
    with pytest.raises(ShardError, match="lower --batch-size"):
        ShardSampler(10, 8, size=2)
    with pytest.raises(ShardError, match="resume on the same shards"):
        ShardSampler(50, 8).load_state_dict(ShardSampler(60, 8).state_dict())
    bad = tmp_path / "shards" / "v=bad"
    bad.mkdir(parents=True)
    manifest = json.loads((Path(shards_uri) / "_manifest.json").read_text())
    (bad / "_manifest.json").write_text(json.dumps({**manifest, "dtype": "int8"}))
    with pytest.raises(ShardError, match="dtype 'int8' unknown"):
        read_shard_info(str(bad))


def _all_rows(shards_uri, split="train"):
    info = read_shard_info(shards_uri)
    files = [Path(info.data_uri) / f for f in info.splits[split]["files"]]
    return np.concatenate([np.fromfile(f, dtype="<u2") for f in files]).reshape(-1, info.seq_len)


def test_gather_keeps_the_shard_dtype_and_order_within_and_across_files(shards_uri):
    ds = ShardDataset(read_shard_info(shards_uri), "train")
    expected = _all_rows(shards_uri)
    boundary = len(ds.arrays[0])
    # both files in one batch, then one file each
    for idx in ([boundary - 1, 0, boundary + 2, 3], [5, 1, 2], [boundary + 4, boundary]):
        got = ds.gather(np.array(idx))
        assert got.dtype == np.dtype("<u2") and (got == expected[idx]).all()
    assert ds.rows(np.array([boundary, 0])).dtype == np.int64


def test_next_batch_is_the_sampled_rows_shifted_as_contiguous_int64(shards_uri):
    ds = ShardDataset(read_shard_info(shards_uri), "train")
    expected = _all_rows(shards_uri).astype(np.int64)
    loader, sampler = ShardLoader(ds, batch_size=4, seed=2), ShardSampler(len(ds), 4, seed=2)
    for _ in range(2 * len(ds) // 4):  # two epochs
        x, y = loader.next_batch()
        rows = expected[sampler.next_indices()]
        assert x.dtype == y.dtype == torch.int64 and x.is_contiguous() and y.is_contiguous()
        assert (x.numpy() == rows[:, :-1]).all() and (y.numpy() == rows[:, 1:]).all()


def test_causal_collated_batches_equal_the_plain_loader_and_resume_exactly(shards_uri):
    from training.data.collators import CausalLM
    from training.data.shards import CollatedLoader

    ds = ShardDataset(read_shard_info(shards_uri), "train")
    plain, collated = ShardLoader(ds, 4, seed=1), CollatedLoader(ds, CausalLM(), 4, seed=1)
    for _ in range(5):
        x, y = plain.next_batch()
        batch = collated.next_batch()
        assert torch.equal(batch["input_ids"], x) and torch.equal(batch["labels"], y)
    state = collated.state_dict()
    expected = [collated.next_batch()["labels"] for _ in range(3)]
    resumed = CollatedLoader(ds, CausalLM(), 4, seed=1)
    resumed.load_state_dict(state)
    assert all(torch.equal(resumed.next_batch()["labels"], e) for e in expected)


def test_a_val_split_smaller_than_one_step_still_serves_eval_batches(tmp_path):
    """A tiny corpus can hash one short document into val: fewer rows than batch x ranks.

    Only training needs a whole step; evaluation wraps around the rows it has."""
    from training.data.collators import CausalLM
    from training.data.shards import CollatedLoader
    from training_test_data import write_shards

    uri = write_shards(tmp_path, val_every=200)
    val = ShardDataset(read_shard_info(uri), "val")
    assert 0 < len(val) < 4 * 2  # the precondition: less than one step of batch 4 on 2 ranks
    with pytest.raises(ShardError, match=r"only \d+ training sequences"):
        CollatedLoader(val, CausalLM(), 4, rank=0, size=2)
    ranks = [CollatedLoader(val, CausalLM(), 4, rank=r, size=2, train=False) for r in range(2)]
    rows = _all_rows(uri, "val")
    for r, loader in enumerate(ranks):
        batches = list(loader.eval_batches(2))
        assert len(batches) == 2
        for k, batch in enumerate(batches):
            expected = rows[np.arange((k * 2 + r) * 4, (k * 2 + r + 1) * 4) % len(val)].astype(np.int64)
            assert (batch["input_ids"].numpy() == expected[:, :-1]).all()
    with pytest.raises(TypeError, match="eval_batches"):
        ranks[0].next_batch()


def test_an_empty_val_split_is_refused_when_the_loader_is_made(tmp_path):
    from training.data.shards import CollatedLoader

    info = read_shard_info(write_shards_with_empty_val(tmp_path))
    with pytest.raises(ShardError, match="val split is empty"):
        CollatedLoader(ShardDataset(info, "val"), None, 4, train=False)


def write_shards_with_empty_val(root: Path) -> str:
    from training_test_data import write_shards

    uri = write_shards(root, seq_len=129, val_every=10**9)  # only document 0: shorter than one sequence
    manifest = json.loads((Path(uri) / "_manifest.json").read_text())
    assert manifest["splits"]["val"]["sequences"] == 0
    return uri
