"""A small GPT: token + position embeddings, pre-norm transformer blocks, tied LM head.

Written for reading, after nanoGPT: five small modules and a config. The model knows
nothing of data parallelism or tracking; ``forward`` returns logits only so that the
MLflow pytorch flavour can serve it as is, and the loss lives with the training loop.
Shapes: B batch, T time (tokens), C channels (d_model), V vocab.

``prefix_len`` (B,) turns the decoder into a prefix LM for span corruption: the first
``prefix_len`` positions of each row see each other in both directions, the rest stay
causal. Without it attention is plainly causal (and SDPA's fast causal path is used).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.config import ModelConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.proj.residual_scaled = True  # GPT-2 init: shrink residual projections by depth
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C); ``attn_mask`` (B, 1, T, T) bool, True = may attend; None = causal."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            is_causal=attn_mask is None,
            dropout_p=self.dropout if self.training else 0.0,
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.proj.residual_scaled = True
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        # Weight tying: the input embedding doubles as the output projection (fewer
        # parameters, better perplexity at small scale).
        self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 init: N(0, 0.02), zero biases, residual projections scaled by 1/sqrt(2 * n_layer)."""
        if isinstance(module, nn.Linear):
            std = (
                0.02 / math.sqrt(2 * self.cfg.n_layer) if getattr(module, "residual_scaled", False) else 0.02
            )
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def hidden_states(self, idx: torch.Tensor, prefix_len: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids (B, T) -> final normalised hidden states (B, T, C)."""
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size={self.cfg.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        mask = None if prefix_len is None else prefix_lm_mask(prefix_len, T)
        for block in self.blocks:
            x = self._checkpointed(block, x, mask) if self._use_checkpointing() else block(x, mask)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, prefix_len: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids (B, T) -> next-token logits (B, T, V)."""
        return self.lm_head(self.hidden_states(idx, prefix_len))

    activation_checkpointing = False  # set by the trainer: recompute blocks in backward to save memory

    def _use_checkpointing(self) -> bool:
        return self.activation_checkpointing and self.training and torch.is_grad_enabled()

    @staticmethod
    def _checkpointed(block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        from torch.utils.checkpoint import checkpoint

        return checkpoint(block, x, mask, use_reentrant=False)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights are counted once


def prefix_lm_mask(prefix_len: torch.Tensor, T: int) -> torch.Tensor:
    """(B, 1, T, T) bool: query i may see key j if j <= i, or if j is inside the row's prefix."""
    i = torch.arange(T, device=prefix_len.device)
    causal = i[None, :] <= i[:, None]  # (T, T) [query, key]
    in_prefix = i[None, :] < prefix_len.view(-1, 1)  # (B, T) over keys
    return (causal[None] | in_prefix[:, None, :])[:, None]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean next-token cross-entropy; logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=ignore_index
    )
