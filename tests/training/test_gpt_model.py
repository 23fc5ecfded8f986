"""GPT and classifier shapes, weight tying, causality, and a tiny overfit."""

import torch

from training.config import model_config
from training.models.gpt import GPT, lm_loss
from training.models.heads import SequenceClassifier


def _model(**kw):
    torch.manual_seed(0)
    return GPT(model_config("tiny", vocab_size=97, block_size=16, **kw))


def test_forward_shapes_and_tied_weights():
    model = _model()
    idx = torch.randint(0, 97, (3, 16))
    assert model(idx).shape == (3, 16, 97)
    assert model.hidden_states(idx).shape == (3, 16, 64)
    assert model.lm_head.weight is model.tok_emb.weight
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))


def test_attention_is_causal():
    model = _model().eval()
    idx = torch.randint(0, 97, (1, 10))
    changed = idx.clone()
    changed[0, 7] = (idx[0, 7] + 1) % 97
    a, b = model(idx), model(changed)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)  # the past never sees the future
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_initial_loss_near_uniform_and_tiny_overfit():
    model = _model()
    seq = torch.randint(0, 97, (2, 17))
    x, y = seq[:, :-1], seq[:, 1:]
    first = lm_loss(model(x), y).item()
    assert abs(first - torch.log(torch.tensor(97.0)).item()) < 0.3  # GPT-2 init starts near ln(V)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        loss = lm_loss(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


def test_classifier_reads_the_last_real_token_and_ignores_padding():
    pad = 96
    clf = SequenceClassifier(_model(), num_labels=2, pad_id=pad).eval()
    ids = torch.tensor([[5, 6, 7, pad, pad], [5, 6, 7, 8, 9]])
    logits = clf(ids)
    assert logits.shape == (2, 2)
    assert torch.allclose(logits[0], clf(torch.tensor([[5, 6, 7]]))[0], atol=1e-6)
