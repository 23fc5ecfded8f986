"""A BERT/RoBERTa encoder: bidirectional attention, post-norm blocks, tied MLM head.

Follows BERT (Devlin et al. 2019) as RoBERTa trains it: no token-type embeddings and no
next-sentence head, learned positions, post-LayerNorm residual blocks, and an MLM head
(dense -> GELU -> LayerNorm -> vocabulary projection tied to the input embedding, plus
a bias). Attention is ``scaled_dot_product_attention`` with an optional key-padding
mask. ``embed`` mean-pools the final hidden states of the non-pad tokens into one vector
per sequence, the SimCSE representation. Initialisation is BERT's: N(0, 0.02) for
weights and embeddings, zero biases, unit LayerNorm gains.
Shapes: B batch, T tokens, C channels (d_model), V vocab.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from training.config import ModelConfig

LN_EPS = 1e-12  # BERT's LayerNorm epsilon


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, C); ``key_mask`` (B, 1, 1, T) bool, True = a real token that may be attended."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class EncoderLayer(nn.Module):
    """Post-norm: x = LN(x + drop(attn(x))), then x = LN(x + drop(ffn(x)))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=LN_EPS, bias=cfg.bias)
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model, bias=cfg.bias)
        self.out = nn.Linear(4 * cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=LN_EPS, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.ln_1(x + self.drop(self.attn(x, key_mask)))
        return self.ln_2(x + self.drop(self.out(F.gelu(self.fc(x)))))


class BERT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.emb_ln = nn.LayerNorm(cfg.d_model, eps=LN_EPS, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layer))
        # MLM head; the output projection is the input embedding (tied), with its own bias.
        self.mlm_dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.mlm_ln = nn.LayerNorm(cfg.d_model, eps=LN_EPS)
        self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    activation_checkpointing = False  # set by the trainer: recompute layers in backward to save memory

    def hidden_states(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids (B, T) (and a (B, T) 1/0 mask of real tokens) -> hidden states (B, T, C)."""
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size={self.cfg.block_size}")
        key_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        x = self.drop(self.emb_ln(self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))))
        for layer in self.layers:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                x = checkpoint(layer, x, key_mask, use_reentrant=False)
            else:
                x = layer(x, key_mask)
        return x

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids (B, T) -> MLM logits (B, T, V) at every position."""
        h = self.mlm_ln(F.gelu(self.mlm_dense(self.hidden_states(idx, attention_mask))))
        return F.linear(h, self.tok_emb.weight, self.mlm_bias)

    def embed(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One vector per sequence (B, C): the mean of the real tokens' final hidden states."""
        h = self.hidden_states(idx, attention_mask)
        if attention_mask is None:
            return h.mean(dim=1)
        w = attention_mask.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
        return (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
