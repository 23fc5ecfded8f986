"""The classifier's optional bag of hashed n-grams (``--ngram-buckets``): features, loss, lr, export."""

import copy

import pytest
import torch
import torch.nn.functional as F


def _classifier(buckets: int, arch: str = "bert"):
    from training.config import model_config
    from training.models import build_model
    from training.models.heads import SequenceClassifier

    torch.manual_seed(0)
    preset = "bert_tiny_cpu" if arch == "bert" else "gpt_tiny_cpu"
    backbone = build_model(model_config(preset, vocab_size=50, block_size=16))
    return SequenceClassifier(backbone, 2, pad_id=1, ngram_buckets=buckets)


def test_ngram_ids_skip_pads_and_keep_word_order():
    from training.models.heads import ngram_buckets_of

    idx = torch.tensor([[5, 6, 7, 1, 1], [6, 5, 7, 1, 1]])
    feats, keep = ngram_buckets_of(idx, idx != 1, 97)
    assert feats.shape == keep.shape == (2, 9)  # 5 unigrams + 4 bigrams per row
    assert keep.sum(dim=1).tolist() == [5, 5]  # 3 real unigrams + 2 real bigrams
    uni_a, uni_b = set(feats[0, :3].tolist()), set(feats[1, :3].tolist())
    assert uni_a == uni_b  # the same words ...
    assert feats[0, 5:7].tolist() != feats[1, 5:7].tolist()  # ... in another order: other bigrams
    assert int(feats.min()) >= 0 and int(feats.max()) < 97


@pytest.mark.parametrize("arch", ["bert", "gpt"])
def test_the_bag_starts_at_zero_padding_does_not_change_it_and_the_parts_are_pooled(arch):
    from training.models.heads import pooled_log_probs

    plain, wide = _classifier(0, arch).eval(), _classifier(4096, arch).eval()
    ids = torch.tensor([[5, 6, 7, 0], [7, 7, 5, 0]])
    deep, bag = wide.parts(ids)
    assert plain.parts(ids)[1] is None
    assert torch.equal(bag, torch.zeros_like(bag))  # zero init: a uniform bag ...
    assert torch.equal(wide(ids).argmax(-1), plain(ids).argmax(-1))  # ... predicts as the plain classifier
    with torch.no_grad():
        wide.ngrams.weight.normal_()
    padded = torch.tensor([[5, 6, 7, 0, 1, 1], [7, 7, 5, 0, 1, 1]])
    assert torch.allclose(wide.parts(ids)[1], wide.parts(padded)[1], atol=1e-6)
    deep, bag = wide.parts(ids)
    assert float(wide.mix) == 0.5 and torch.allclose(wide(ids), pooled_log_probs(deep, bag, 0.5))
    wide.mix.fill_(1.0)
    assert torch.allclose(wide(ids), torch.log_softmax(bag, -1))  # all weight on the bag
    with pytest.raises(ValueError, match="ngram_buckets=-1"):
        _classifier(-1)


def _task_over_ids(texts_ids, targets, split="train"):
    from training.tasks.classification import ClassificationData, ClassificationTask

    data = ClassificationData("t", ("neg", "pos"), {split: ["a"] * len(targets)}, {split: targets},
                              source=None)
    task = ClassificationTask.__new__(ClassificationTask)
    task.data, task.ids, task.labels = data, {split: texts_ids}, data.labels
    width = max(len(row) for row in texts_ids)
    task.encoder = type("E", (), {"pad_id": 1, "batch": lambda self, ids: torch.tensor(
        [row + [1] * (width - len(row)) for row in ids])})()
    return task


def test_each_part_learns_from_its_own_loss_and_the_bag_gets_a_larger_lr():
    from training.config import OptimConfig
    from training.models.heads import NGRAM_LR_SCALE
    from training.optim import build_optimizer, set_lr

    model = _classifier(512).eval()  # no dropout: the computations below must agree
    with torch.no_grad():
        model.ngrams.weight.normal_()
    task = _task_over_ids([[5, 6, 0], [7, 8, 9, 0]], [0, 1])
    target = torch.tensor([0, 1])
    task.loss(model, [0, 1]).backward()
    got_bag, got_head = model.ngrams.weight.grad.clone(), model.head.weight.grad.clone()
    model.zero_grad()
    deep, wide = model.parts(task.inputs("train", [0, 1]))
    F.cross_entropy(wide, target).backward()  # the bag's own loss alone gives the bag's gradient
    assert got_bag.abs().sum() > 0 and torch.allclose(got_bag, model.ngrams.weight.grad)
    model.zero_grad()
    F.cross_entropy(model.parts(task.inputs("train", [0, 1]))[0], target).backward()
    assert torch.allclose(got_head, model.head.weight.grad)  # and the transformer's its own

    for model in (model, copy.deepcopy(model)):  # a copy (compress's distilled student) keeps the scale
        opt = build_optimizer(model, OptimConfig(lr=1e-3, weight_decay=0.01))
        set_lr(opt, 1e-3)
        bag_group = next(g for g in opt.param_groups if any(p is model.ngrams.weight for p in g["params"]))
        assert bag_group["params"] == [model.ngrams.weight]
        assert bag_group["lr"] == pytest.approx(1e-3 * NGRAM_LR_SCALE)
        others = [g["lr"] for g in opt.param_groups if g is not bag_group]
        assert others and all(lr == pytest.approx(1e-3) for lr in others)


def test_the_bag_weight_is_picked_on_validation():
    from training.models.heads import ngram_buckets_of

    model = _classifier(512).eval()
    rows = [[5, 6, 0], [7, 8, 0], [9, 10, 0], [11, 12, 0]]
    ids = torch.tensor(rows)
    with torch.no_grad():  # the transformer says negative everywhere; the bag knows the truth
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([20.0, -20.0]))  # log-odds 40 for negative
        feats, _ = ngram_buckets_of(ids, ids != 1, 512)
        for row, label in zip(feats.tolist(), [1, 1, 1, 0]):
            for f in row:
                model.ngrams.weight[f, label] += 3.0
    task = _task_over_ids(rows, [1, 1, 1, 0], split="val")
    # the bag outvotes the transformer from a weight of 40 / 46.7 = 0.86 up: 0.9 and 1.0 get all four
    # right, and the tie goes to the weight nearer an even mix
    assert task.calibrate(model, "val") == 0.9 == pytest.approx(float(model.mix))
    assert task.part_accuracies(model, "val") == pytest.approx({"transformer_only_accuracy": 0.25,
                                                               "ngrams_only_accuracy": 1.0, "ngram_mix": 0.9})
    task = _task_over_ids(rows, [0, 0, 0, 0], split="val")
    assert task.calibrate(model, "val") <= 0.5  # now the transformer is right everywhere
    assert task.evaluate(model, "val")["accuracy"] == 1.0
    assert task.calibrate(_classifier(0), "val") is None  # no bag, nothing to pick


def test_the_registered_shape_rebuilds_with_its_bag():
    from training.tasks import export

    model = _classifier(2048)
    config = {"kind": "gpt-classifier", "model": model.backbone.cfg.__dict__, "labels": ["neg", "pos"],
              "pad_id": 1, "pooling": "mean", "ngram_buckets": 2048}
    rebuilt = export.build_module(config)
    model.mix.fill_(0.7)
    rebuilt.load_state_dict(model.state_dict())  # the same parameters, the bag and its weight among them
    assert rebuilt.ngrams.weight.shape == (2048, 2) and float(rebuilt.mix) == pytest.approx(0.7)
    assert not hasattr(export.build_module({**config, "ngram_buckets": 0}), "ngrams")


def test_a_train_subset_is_fixed_nested_mixed_and_leaves_val_and_test_whole():
    from training.tasks import limit_train
    from training.tasks.classification import ClassificationData

    def sorted_by_label():  # a source file listing every negative before every positive
        texts = [f"bad film {i}" for i in range(40)] + [f"good film {i}" for i in range(40)]
        return ClassificationData("t", ("neg", "pos"), {"train": texts, "test": ["x", "y"]},
                                  {"train": [0] * 40 + [1] * 40, "test": [0, 1]}, source=None)

    small, large = limit_train(sorted_by_label(), 10), limit_train(sorted_by_label(), 30)
    assert len(small.texts["train"]) == len(small.targets["train"]) == 10
    assert set(small.texts["train"]) <= set(large.texts["train"])  # a learning curve's points nest
    assert set(small.targets["train"]) == {0, 1}  # both classes, whatever the file's order
    assert small.texts["train"] == limit_train(sorted_by_label(), 10).texts["train"]  # the same every run
    rows = zip(small.texts["train"], small.targets["train"])
    assert all(f"{'bad' if y == 0 else 'good'} film" in t for t, y in rows)  # texts keep their labels
    assert small.texts["test"] == ["x", "y"]
    assert len(limit_train(sorted_by_label(), 0).texts["train"]) == 80
    tagged = type("D", (), {"splits": {"train": [("a", i) for i in range(9)], "val": [("v", 0)]}})()
    assert len(limit_train(tagged, 4).splits["train"]) == 4 and tagged.splits["val"] == [("v", 0)]


def test_a_classifier_has_the_bag_by_default_and_other_tasks_never():
    from training.tasks.config import NGRAM_BUCKETS, TaskConfig

    assert TaskConfig().ngram_buckets == NGRAM_BUCKETS == 2**18  # sentiment
    assert TaskConfig(ngram_buckets=0).ngram_buckets == 0  # the transformer alone, on request
    assert TaskConfig(task="pos", ngram_buckets=4096).ngram_buckets == 0
    assert TaskConfig(task="generation").to_dict()["ngram_buckets"] == 0


def test_counts_split_across_ranks_add_up_to_the_single_process_counts():
    """Each rank scores every size-th row; the all-reduce (here: the sum of both ranks' counts by
    hand) gives what one process counts alone, for the confusion matrix and the bag's scores."""
    model = _classifier(512).eval()
    with torch.no_grad():
        model.ngrams.weight.normal_()
    rows = [[5 + i % 7, 6 + i % 5, 0] for i in range(11)]
    task = _task_over_ids(rows, [i % 2 for i in range(11)], split="val")
    own_counts = staticmethod(lambda t: t)  # each rank's counts as its all-reduce got them
    ranks = [type("Rank", (), {"rank": r, "size": 2, "allreduce_sum": own_counts}) for r in (0, 1)]
    assert task.confusion(model, "val").sum() == 11
    assert (task.confusion(model, "val", ranks[0], batch_size=2)
            + task.confusion(model, "val", ranks[1], batch_size=2) == task.confusion(model, "val")).all()
    whole = task.part_accuracies(model, "val")
    halves = [task.part_accuracies(model, "val", r, batch_size=3) for r in ranks]
    rows_per_rank = (6, 5)
    for key in ("transformer_only_accuracy", "ngrams_only_accuracy"):
        right = sum(h[key] * n for h, n in zip(halves, rows_per_rank))
        assert right == pytest.approx(whole[key] * 11)
