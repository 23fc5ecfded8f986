"""Task heads on a pretrained backbone: a GPT decoder or a BERT encoder.

``states`` runs either backbone over right-padded ids: a BERT is given the key-padding
mask (its attention is bidirectional, so pads would otherwise leak into every token),
a GPT needs none (causal attention never looks right, where the pads are).

The sequence classifier pools one vector per text, as ``pooling`` says:

- ``last``: the hidden state of the last non-pad token (the eos the tokenisation appends).
  A causal model only sees the whole input there, so GPT-style classifiers read it.
- ``mean``: the mean over the non-pad tokens, the usual choice for an encoder without a
  [CLS] objective (as SimCSE and sentence-BERT pool); it also works on a decoder.

With ``ngram_buckets`` > 0 the classifier is "wide and deep": beside the pooled state's logits
it learns one weight vector per hashed token unigram and bigram of the input (a bag of n-grams,
as fastText's bigram features), summed over the text and scaled by 1/sqrt(count) like an
L2-normalised tf vector. Word-pair cues ("not good") are what a linear model on n-grams reads
best and what a small transformer fine-tuned on a few thousand sentences learns worst. Each
part is trained as a classifier of its own (``parts``; the task's loss is the sum of both
parts' losses), and the prediction pools their log-probabilities with the weight ``mix`` on the
bag, picked on the validation split after every epoch (``training.tasks.classification``): a
strong transformer gets a small weight, a weak one a large one, so the bag never hides what a
good base brings. Summing the parts' logits instead lets a transformer that fits the training
set within two epochs drown the bag with confident logits. The n-gram rows train at
``NGRAM_LR_SCALE`` times the fine-tuning lr (a sparse linear model needs larger steps than a
transformer; see ``training.optim.param_groups``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

POOLINGS = ("last", "mean")


def default_pooling(arch: str) -> str:
    """``mean`` for a BERT (every position saw the whole text), ``last`` for a GPT."""
    return "mean" if arch == "bert" else "last"


NGRAM_LR_SCALE = 30.0
BIGRAM_PRIME = 1_000_003  # mixes the left token into a bigram's bucket
MIX_GRID = tuple(i / 10 for i in range(11))  # the bag's weights tried on validation


def pooled_log_probs(deep: torch.Tensor, wide: torch.Tensor, mix: float | torch.Tensor) -> torch.Tensor:
    """The two parts' class log-probabilities pooled with weight ``mix`` on the bag (a geometric mixture)."""
    return (1 - mix) * torch.log_softmax(deep, dim=-1) + mix * torch.log_softmax(wide, dim=-1)


def ngram_buckets_of(
    idx: torch.Tensor, real: torch.Tensor, buckets: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hashed unigram and bigram ids (B, 2T-1) of token ids (B, T), and which of them are real
    (no pad inside). Unigrams and bigrams hash into the same ``buckets`` rows; n-grams that share
    a row share a weight, as in any hashed feature space (training/tasks/config.NGRAM_BUCKETS)."""
    uni = idx % buckets
    bi = (idx[:, :-1] * BIGRAM_PRIME + idx[:, 1:] + 1) % buckets
    return torch.cat([uni, bi], dim=1), torch.cat([real, real[:, :-1] & real[:, 1:]], dim=1)


def states(backbone: nn.Module, idx: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    """Hidden states (B, T, C) of right-padded ids (B, T); pads are masked out of a BERT's attention."""
    if backbone.cfg.arch == "bert" and pad_id is not None:
        return backbone.hidden_states(idx, attention_mask=idx != pad_id)
    return backbone.hidden_states(idx)


class SequenceClassifier(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        num_labels: int,
        pad_id: int,
        dropout: float = 0.1,
        pooling: str = "",
        ngram_buckets: int = 0,
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
        if ngram_buckets < 0:
            raise ValueError(f"ngram_buckets={ngram_buckets}: must be >= 0 (0 = no n-gram weights)")
        self.ngram_buckets = ngram_buckets
        if ngram_buckets:
            self.ngrams = nn.Embedding(ngram_buckets, num_labels)
            nn.init.zeros_(self.ngrams.weight)
            self.ngrams.lr_scale = NGRAM_LR_SCALE  # on the module: a deepcopy (a distilled student) keeps it
            self.register_buffer("mix", torch.tensor(0.5))  # set on validation; saved with the weights

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T), right-padded with ``pad_id`` -> class logits (B, num_labels); with a
        bag, the parts' pooled log-probabilities (softmax gives the pooled distribution)."""
        deep, wide = self.parts(idx)
        return deep if wide is None else pooled_log_probs(deep, wide, self.mix)

    def parts(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The pooled state's logits and the n-gram bag's (None without ``ngram_buckets``)."""
        hidden = states(self.backbone, idx, self.pad_id)  # (B, T, C)
        real = idx != self.pad_id  # (B, T)
        if self.pooling == "mean":
            w = real.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        else:
            lengths = real.sum(dim=1).clamp(min=1)  # (B,)
            pooled = hidden[torch.arange(idx.size(0), device=idx.device), lengths - 1]  # (B, C)
        deep = self.head(self.drop(pooled))
        if not self.ngram_buckets:
            return deep, None
        feats, keep = ngram_buckets_of(idx, real, self.ngram_buckets)
        w = keep.to(deep.dtype).unsqueeze(-1)  # (B, F, 1)
        return deep, (self.ngrams(feats) * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0).sqrt()
