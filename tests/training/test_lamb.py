"""LAMB against hand-computed trust ratios and an independent float64 reference; and it trains."""

import math

import numpy as np
import pytest
import torch

from training.config import OptimConfig, model_config
from training.models.gpt import GPT, lm_loss
from training.optim import Lamb, build_optimizer


def _step(param: torch.Tensor, grad, **kw) -> torch.Tensor:
    p = torch.nn.Parameter(param.clone())
    opt = Lamb([{"params": [p], "weight_decay": kw.pop("weight_decay", 0.0)}], **kw)
    p.grad = torch.as_tensor(grad, dtype=torch.float32)
    opt.step()
    return p.detach()


def test_first_step_by_hand():
    # Step 1: m_hat = g, v_hat = g^2, so the Adam direction is g / (|g| + eps) ~ sign(g) = [1, -1].
    # ||w|| = 5, ||u|| = sqrt(2): trust ratio 5 / sqrt(2); w moves by lr * 3.5355 along [1, -1].
    w = _step(torch.tensor([3.0, 4.0]), [1.0, -2.0], lr=0.1, eps=1e-12, always_adapt=True)
    r = 5 / math.sqrt(2)
    assert w.tolist() == pytest.approx([3 - 0.1 * r, 4 + 0.1 * r], rel=1e-5)
    # The ratio is clipped at max_trust: ||w|| = 500 would give 353.6.
    w = _step(torch.tensor([300.0, 400.0]), [1.0, -2.0], lr=0.1, eps=1e-12, always_adapt=True)
    assert w.tolist() == pytest.approx([300 - 0.1 * 10, 400 + 0.1 * 10], rel=1e-6)
    # Zero weights (a fresh bias) take the plain Adam step: trust ratio 1.
    assert _step(torch.zeros(2), [1.0, -2.0], lr=0.1, eps=1e-12, always_adapt=True).tolist() == pytest.approx(
        [-0.1, 0.1], rel=1e-5
    )
    # Weight decay joins the update before the ratio: u = sign(g) + wd * w.
    u = np.array([1.0, -1.0]) + 0.5 * np.array([3.0, 4.0])
    expected = np.array([3.0, 4.0]) - 0.1 * 5 / np.linalg.norm(u) * u
    w = _step(torch.tensor([3.0, 4.0]), [1.0, -2.0], lr=0.1, eps=1e-12, weight_decay=0.5)
    assert w.tolist() == pytest.approx(expected.tolist(), rel=1e-5)


def _reference(params, grads_per_step, groups, lr, betas, eps, max_trust):
    """LAMB in float64 numpy, written from the paper's Algorithm 2 (with bias correction)."""
    params = [p.astype(np.float64).copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, g in enumerate(grads):
            wd = groups[i]
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            u = (m[i] / (1 - betas[0] ** t)) / (np.sqrt(v[i] / (1 - betas[1] ** t)) + eps) + wd * params[i]
            ratio = 1.0
            if wd:
                wn, un = np.linalg.norm(params[i]), np.linalg.norm(u)
                ratio = min(wn / un, max_trust) if wn > 0 and un > 0 else 1.0
            params[i] = params[i] - lr * ratio * u
    return params


def test_matches_an_independent_reference_over_several_steps():
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(4, 3)), rng.normal(size=3) * 0.1]
    grads = [[rng.normal(size=(4, 3)), rng.normal(size=3)] for _ in range(5)]
    torch_params = [torch.nn.Parameter(torch.tensor(p, dtype=torch.float32)) for p in init]
    opt = Lamb(
        [
            {"params": [torch_params[0]], "weight_decay": 0.01},
            {"params": [torch_params[1]], "weight_decay": 0.0},
        ],
        lr=0.01,
        betas=(0.9, 0.999),
        eps=1e-6,
    )
    for step_grads in grads:
        for p, g in zip(torch_params, step_grads):
            p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
    expected = _reference(init, grads, [0.01, 0.0], 0.01, (0.9, 0.999), 1e-6, 10.0)
    for p, e in zip(torch_params, expected):
        assert np.allclose(p.detach().numpy(), e, rtol=1e-5, atol=1e-6)
    assert int(opt.state[torch_params[0]]["step"]) == 5


def test_lamb_trains_the_tiny_gpt_and_round_trips_its_state():
    torch.manual_seed(0)
    model = GPT(model_config("tiny", vocab_size=60, block_size=16))
    opt = build_optimizer(model, OptimConfig(name="lamb", lr=2e-2, weight_decay=0.01))
    assert isinstance(opt, Lamb) and [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    seq = torch.randint(0, 60, (4, 17))
    first = None
    for _ in range(40):
        opt.zero_grad()
        loss = lm_loss(model(seq[:, :-1]), seq[:, 1:])
        first = first or loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < 0.4 * first
    again = build_optimizer(model, OptimConfig(name="lamb"))
    again.load_state_dict(opt.state_dict())
    assert all(
        torch.equal(a["exp_avg"], b["exp_avg"]) for a, b in zip(opt.state.values(), again.state.values())
    )
