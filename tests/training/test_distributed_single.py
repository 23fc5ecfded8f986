"""The single-process backend and the fine-tuning metrics it feeds (checked against scikit-learn)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from training import distributed
from training.metrics import classification_metrics


def test_single_process_fallback(monkeypatch):
    for var in ("HOROVOD_RANK", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    threads = torch.get_num_threads()
    try:
        dist = distributed.init(num_threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert (dist.backend, dist.rank, dist.size, dist.is_main) == ("single", 0, 1, True)
    assert dist.allreduce_mean(2.5) == 2.5 and dist.allreduce_sum(3.0) == 3.0

    model = torch.nn.Linear(3, 1)
    opt = dist.wrap_optimizer(torch.optim.SGD(model.parameters(), lr=0.1), model, backward_passes_per_step=1)
    (model(torch.ones(2, 3)).sum() * 100).backward()
    norm = dist.step(opt, model.parameters(), max_grad_norm=1.0)
    assert norm > 1.0  # the norm before clipping is reported
    dist.zero_grad(opt)
    assert model.weight.grad is None


def test_zero_grad_tolerates_optimizers_without_set_to_none():
    class Old:
        called = False

        def zero_grad(self):
            Old.called = True

    distributed.Distributed().zero_grad(Old())
    assert Old.called


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    confusion = np.zeros((2, 2))
    np.add.at(confusion, (y, p), 1)
    got = classification_metrics(confusion)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert got["f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert classification_metrics(np.array([[5.0, 0.0], [5.0, 0.0]]))["f1"] == pytest.approx(
        f1_score([0] * 5 + [1] * 5, [0] * 10, average="macro", zero_division=0)
    )
