"""The linear-chain CRF against brute force over every tag path, and the BIO constraint."""

import itertools

import pytest
import torch

from training.models.crf import CRF, allowed_transitions


def _random_crf(k: int, seed: int = 0) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(k)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def _brute_force(crf: CRF, emissions: torch.Tensor, length: int):
    """Scores of every path of one sequence: (log partition, best path)."""
    k = emissions.size(-1)
    paths = list(itertools.product(range(k), repeat=length))
    mask = torch.ones(1, length, dtype=torch.bool)
    with torch.no_grad():
        scores = torch.stack(
            [crf.path_score(emissions[None, :length], torch.tensor([p]), mask)[0] for p in paths]
        )
    return torch.logsumexp(scores, 0), list(paths[int(scores.argmax())])


def test_forward_algorithm_and_viterbi_match_brute_force_with_padding():
    k, width = 3, 4
    crf = _random_crf(k)
    emissions = torch.randn(2, width, k)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])  # second sequence is padded
    log_z = crf.log_partition(emissions, mask).detach()
    paths = crf.viterbi(emissions, mask)
    for b, length in enumerate((4, 2)):
        z, best = _brute_force(crf, emissions[b], length)
        assert float(log_z[b]) == pytest.approx(float(z), abs=1e-4)
        assert paths[b] == best


def test_nll_is_positive_and_gradients_flow():
    crf = _random_crf(4, seed=1)
    emissions = torch.randn(3, 5, 4, requires_grad=True)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[2, 3:] = False
    tags = torch.randint(0, 4, (3, 5))
    tags[2, 3:] = -100  # ignore-index padding is tolerated under the mask
    loss = crf.nll(emissions, tags, mask)
    loss.backward()
    assert loss.item() > 0 and emissions.grad.abs().sum() > 0 and crf.transitions.grad is not None
    with pytest.raises(ValueError, match="left-aligned"):
        crf.nll(emissions, tags, torch.zeros(3, 5, dtype=torch.bool))


def test_bio_constraints_forbid_impossible_sequences():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    start, trans = allowed_transitions(labels)
    assert start.tolist() == [True, True, False, True, False]
    assert trans[1, 2] and trans[2, 2] and not trans[0, 2] and not trans[3, 2]
    crf = CRF(len(labels), labels)
    emissions = torch.full((1, 3, 5), -5.0)
    emissions[0, :, 2] = 5.0  # the emissions shout I-PER everywhere
    emissions[0, 0, 0] = 0.0
    assert crf.viterbi(emissions, torch.ones(1, 3, dtype=torch.bool)) == [[1, 2, 2]]  # B-PER I-PER I-PER
