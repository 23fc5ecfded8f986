"""BERT encoder, the GPT's prefix-LM mask, named configs and shape validation."""

import math

import pytest
import torch

from training.config import (
    JobConfig,
    ObjectiveConfig,
    bert_base,
    bert_tiny_cpu,
    fit_to_data,
    gpt_1b,
    gpt_124m,
    model_config,
    model_diff,
)
from training.models import build_model
from training.models.bert import BERT
from training.models.gpt import GPT, prefix_lm_mask


def _bert(**kw):
    torch.manual_seed(0)
    return BERT(bert_tiny_cpu(vocab_size=97, block_size=16, **kw))


def test_shapes_tied_mlm_head_and_bert_init():
    model = _bert()
    idx = torch.randint(0, 97, (3, 16))
    assert model(idx).shape == (3, 16, 97) and model.embed(idx).shape == (3, 64)
    assert "mlm_bias" in dict(model.named_parameters())
    assert not any(n.endswith("decoder.weight") for n, _ in model.named_parameters())  # tied to tok_emb
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.layers[0].fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert (model.layers[0].fc.bias == 0).all() and (model.layers[0].ln_1.weight == 1).all()
    assert isinstance(build_model(bert_tiny_cpu(vocab_size=10, block_size=8)), BERT)
    assert isinstance(build_model(model_config("tiny", vocab_size=10, block_size=8)), GPT)


def test_attention_is_bidirectional_and_padding_is_ignored():
    model = _bert(dropout=0.0).eval()
    idx = torch.randint(5, 97, (1, 10))
    changed = idx.clone()
    changed[0, 8] = 4
    assert not torch.allclose(model(idx)[:, :8], model(changed)[:, :8])  # earlier positions see later ones
    padded = torch.cat([idx, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 10), torch.zeros(1, 3)], dim=1)
    assert torch.allclose(model(padded, mask)[:, :10], model(idx), atol=1e-5)
    assert torch.allclose(model.embed(padded, mask), model.embed(idx), atol=1e-5)


def test_mlm_loss_falls_on_a_tiny_batch():
    model = _bert(dropout=0.0)
    idx = torch.randint(5, 97, (4, 16))
    masked = idx.clone()
    masked[:, ::4] = 4
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            model(masked)[:, ::4].reshape(-1, 97), idx[:, ::4].reshape(-1)
        )
        first = first or loss.item()
        loss.backward()
        opt.step()
    assert first == pytest.approx(math.log(97), abs=0.5) and loss.item() < 0.3 * first


def test_prefix_lm_mask_and_gpt_prefix_forward():
    mask = prefix_lm_mask(torch.tensor([3, 0]), 5)[:, 0]
    assert mask[0, 0].tolist() == [True, True, True, False, False]  # prefix sees the whole prefix
    assert mask[0, 4].tolist() == [True] * 5 and mask[1].equal(torch.ones(5, 5).tril().bool())
    torch.manual_seed(0)
    gpt = GPT(model_config("tiny", vocab_size=50, block_size=12)).eval()
    idx = torch.randint(0, 50, (2, 12))
    assert torch.allclose(gpt(idx), gpt(idx, prefix_len=torch.zeros(2, dtype=torch.long)), atol=1e-5)
    changed = idx.clone()
    changed[:, 3] = (idx[:, 3] + 1) % 50
    prefix = torch.full((2,), 5)
    assert not torch.allclose(gpt(idx, prefix)[:, :3], gpt(changed, prefix)[:, :3])  # bidirectional in prefix
    late = idx.clone()
    late[:, 9] = (idx[:, 9] + 1) % 50
    assert torch.allclose(gpt(idx, prefix)[:, :9], gpt(late, prefix)[:, :9], atol=1e-6)  # causal after it


def test_named_configs_and_their_sizes():
    assert model_config("tiny").n_layer == 2 and model_config("gpt_tiny_cpu") == model_config("tiny")
    with torch.device("meta"):  # parameter counts without allocating them
        sizes = {
            name: build_model(cfg()).num_parameters()
            for name, cfg in (("124m", gpt_124m), ("1b", gpt_1b), ("bert", bert_base))
        }
    assert sizes["124m"] == pytest.approx(124.5e6, rel=0.01)  # GPT-2 small with the 50304 vocab
    assert sizes["1b"] == pytest.approx(1.32e9, rel=0.02)
    assert sizes["bert"] == pytest.approx(110e6, rel=0.03)  # BERT-base without token types and pooler
    assert bert_base().arch == "bert" and bert_base().block_size == 512


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: bert_tiny_cpu(n_head=3), "model.d_model=64 is not divisible by n_head=3"),
        (lambda: model_config("tiny", arch="rnn"), "model.arch='rnn'"),
        (lambda: fit_to_data(bert_tiny_cpu(), positions=1024, vocab_size=100), "model.block_size=512"),
        (
            lambda: JobConfig(model=bert_tiny_cpu(), objective=ObjectiveConfig(name="clm")),
            "model.arch='bert'",
        ),
        (
            lambda: JobConfig(model=model_config("tiny"), objective=ObjectiveConfig(name="mlm")),
            "model.arch='gpt'",
        ),
        (lambda: ObjectiveConfig(name="mixture", mixture="clm=1,contrastive=1"), "objective.mixture"),
        (lambda: ObjectiveConfig(noise_density=1.5), "objective.noise_density"),
    ],
)
def test_impossible_shapes_fail_at_construction_naming_the_field(build, field):
    with pytest.raises(ValueError, match=field.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_model_diff_names_the_changed_fields_and_tolerates_older_checkpoints():
    now = model_config("tiny", vocab_size=300, block_size=32)
    saved = {k: v for k, v in now.__dict__.items() if k != "arch"}  # written before the arch field existed
    assert model_diff(saved, now) == {}
    assert model_diff({**saved, "n_layer": 4}, now) == {"n_layer": (4, 2)}
    assert fit_to_data(model_config("tiny"), 32, 300) == now


@pytest.mark.parametrize("build", [lambda: model_config("tiny", vocab_size=50, block_size=12),
                                   lambda: bert_tiny_cpu(vocab_size=50, block_size=12, dropout=0.0)])
def test_activation_checkpointing_gives_the_same_gradients(build):
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_model(build())
        model.activation_checkpointing = checkpointing
        idx = torch.randint(0, 50, (2, 12))
        model(idx).logsumexp(-1).mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
