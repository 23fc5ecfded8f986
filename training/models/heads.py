"""Task heads on a pretrained backbone: a GPT decoder or a BERT encoder.

``states`` runs either backbone over right-padded ids: a BERT is given the key-padding
mask (its attention is bidirectional, so pads would otherwise leak into every token),
a GPT needs none (causal attention never looks right, where the pads are).

The sequence classifier pools one vector per text, as ``pooling`` says:

- ``last``: the hidden state of the last non-pad token (the eos the tokenisation appends).
  A causal model only sees the whole input there, so GPT-style classifiers read it.
- ``mean``: the mean over the non-pad tokens, the usual choice for an encoder without a
  [CLS] objective (as SimCSE and sentence-BERT pool); it also works on a decoder.
"""

from __future__ import annotations

import torch
import torch.nn as nn

POOLINGS = ("last", "mean")


def default_pooling(arch: str) -> str:
    """``mean`` for a BERT (every position saw the whole text), ``last`` for a GPT."""
    return "mean" if arch == "bert" else "last"


def states(backbone: nn.Module, idx: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    """Hidden states (B, T, C) of right-padded ids (B, T); pads are masked out of a BERT's attention."""
    if backbone.cfg.arch == "bert" and pad_id is not None:
        return backbone.hidden_states(idx, attention_mask=idx != pad_id)
    return backbone.hidden_states(idx)


class SequenceClassifier(nn.Module):
    def __init__(
        self, backbone: nn.Module, num_labels: int, pad_id: int, dropout: float = 0.1, pooling: str = ""
    ):
        super().__init__()
        pooling = pooling or default_pooling(backbone.cfg.arch)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}: choose one of {', '.join(POOLINGS)}")
        self.backbone = backbone
        self.pad_id = pad_id
        self.num_labels = num_labels
        self.pooling = pooling
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.cfg.d_model, num_labels)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T), right-padded with ``pad_id`` -> class logits (B, num_labels)."""
        hidden = states(self.backbone, idx, self.pad_id)  # (B, T, C)
        real = idx != self.pad_id  # (B, T)
        if self.pooling == "mean":
            w = real.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        else:
            lengths = real.sum(dim=1).clamp(min=1)  # (B,)
            pooled = hidden[torch.arange(idx.size(0), device=idx.device), lengths - 1]  # (B, C)
        return self.head(self.drop(pooled))
