"""A linear-chain CRF over per-position tag scores: training by the forward algorithm, decoding by Viterbi.

A softmax head picks each tag on its own, so it happily predicts ``I-person`` after ``O``;
a CRF scores whole tag sequences (emissions plus a learned tag-to-tag transition matrix),
which is what entity-level F1 rewards. ``allowed_transitions`` adds the BIO grammar as a
hard constraint, so even an untrained CRF never decodes an impossible sequence.

Shapes: B batch, W positions (words), K tags. ``mask`` (B, W) is True on real positions
and must be left-aligned (every sequence starts at position 0), as right-padding gives.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

FORBIDDEN = -1e4  # a transition score that no path survives


def allowed_transitions(labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """BIO rules as (start_allowed (K,), transition_allowed (K, K) [from, to]) booleans.

    ``I-X`` may only follow ``B-X`` or ``I-X`` and may not start a sentence; tags without
    a B/I prefix (POS tags) are unconstrained.
    """
    k = len(labels)
    start = torch.ones(k, dtype=torch.bool)
    trans = torch.ones(k, k, dtype=torch.bool)
    for j, to in enumerate(labels):
        if not to.startswith("I-"):
            continue
        start[j] = False
        for i, frm in enumerate(labels):
            trans[i, j] = frm in (f"B-{to[2:]}", to)
    return start, trans


class CRF(nn.Module):
    def __init__(self, num_tags: int, labels: Sequence[str] | None = None):
        super().__init__()
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        start_ok, trans_ok = (
            allowed_transitions(labels)
            if labels is not None
            else (torch.ones(num_tags, dtype=torch.bool), torch.ones(num_tags, num_tags, dtype=torch.bool))
        )
        # Buffers, so the constraint travels with the state dict and the device.
        self.register_buffer("start_penalty", (~start_ok).float() * FORBIDDEN)
        self.register_buffer("transition_penalty", (~trans_ok).float() * FORBIDDEN)

    def _scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.start + self.start_penalty, self.transitions + self.transition_penalty

    def path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised score of the given tag paths, (B,)."""
        start, trans = self._scores()
        mask_f = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, W)
        score = start[tags[:, 0]] + (emit * mask_f).sum(1)
        score = score + (trans[tags[:, :-1], tags[:, 1:]] * mask_f[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        return score + self.end[last]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Σ over all tag paths of exp(score), (B,), by the forward algorithm."""
        start, trans = self._scores()
        alpha = start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.size(1)):
            # (B, K_from, 1) + (K_from, K_to) + (B, 1, K_to) -> logsumexp over from
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the gold paths; padded tag ids may be anything valid."""
        if not bool(mask[:, 0].all()):
            raise ValueError("CRF mask must be left-aligned: every sequence needs a first position")
        tags = tags.clamp(min=0)  # ignore-index padding -> any valid id; the mask hides it
        return (self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)).mean()

    @torch.no_grad()
    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The best tag path of each sequence, trimmed to its length."""
        start, trans = self._scores()
        score = start + emissions[:, 0]  # (B, K)
        back = []
        for t in range(1, emissions.size(1)):
            best, idx = (score.unsqueeze(2) + trans).max(dim=1)  # best previous tag per next tag
            nxt = best + emissions[:, t]
            keep = mask[:, t].unsqueeze(1)
            score = torch.where(keep, nxt, score)
            # Past a sequence's end, point each tag at itself so backtracking passes through.
            back.append(torch.where(keep, idx, torch.arange(self.num_tags).expand_as(idx)))
        score = score + self.end
        paths = []
        lengths = mask.sum(1).tolist()
        for b in range(emissions.size(0)):
            tag = int(score[b].argmax())
            path = [tag]
            for t in range(len(back) - 1, -1, -1):
                tag = int(back[t][b, tag])
                path.append(tag)
            paths.append(path[::-1][: lengths[b]])
        return paths
