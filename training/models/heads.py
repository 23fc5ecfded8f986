"""Task heads on a pretrained GPT backbone.

A causal model only sees the whole input at its last position, so the sequence
classifier pools the hidden state of the last non-pad token (the eos the tokenisation
appends), as GPT-style classifiers do.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from training.models.gpt import GPT


class SequenceClassifier(nn.Module):
    def __init__(self, backbone: GPT, num_labels: int, pad_id: int, dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.pad_id = pad_id
        self.num_labels = num_labels
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.cfg.d_model, num_labels)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T), right-padded with ``pad_id`` -> class logits (B, num_labels)."""
        hidden = self.backbone.hidden_states(idx)  # (B, T, C)
        lengths = (idx != self.pad_id).sum(dim=1).clamp(min=1)  # (B,)
        last = hidden[torch.arange(idx.size(0), device=idx.device), lengths - 1]  # (B, C)
        return self.head(self.drop(last))
