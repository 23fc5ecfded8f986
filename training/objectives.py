"""From an objective's config to its collator, the positions its model needs, and its loss.

Which model trains which objective (config.OBJECTIVE_ARCHS):

- ``clm``: GPT, next-token loss on every position.
- ``span``: GPT as a prefix LM - T5 span corruption without a separate encoder: the
  corrupted input is a bidirectional prefix, the sentinel-delimited spans follow and are
  predicted left to right. It keeps one decoder for every objective, so the result is a
  ``gpt-lm`` that fine-tuning and generation use like any other.
- ``mlm``: BERT (masked positions predicted from both sides).
- ``contrastive``: BERT; SimCSE over mean-pooled embeddings, dropout views, in-batch negatives.
- ``mixture``: GPT, one of clm/span/mlm per batch by weight. Its mlm batches use the decoder
  with a full bidirectional prefix (every position sees the whole row), as UL2/GLM do.
"""

from __future__ import annotations

import numpy as np
import torch

from training.config import ObjectiveConfig
from training.data.collators import (
    CLM,
    CONTRASTIVE,
    IGNORE,
    MIXTURE,
    MLM,
    SPAN,
    CausalLM,
    Contrastive,
    MaskedLM,
    Mixture,
    SpanCorruption,
    info_nce_loss,
    parse_weights,
    word_starts_from_tokenizer,
)
from training.data.shards import ShardInfo
from training.models.gpt import lm_loss


def _need(info: ShardInfo, role: str, what: str) -> int:
    if role not in info.special_tokens:
        raise ValueError(
            f"{info.uri}: the tokenizer has no {role} token, which {what} needs; re-run the "
            "tokenize stage (every tokenizer family reserves one now)"
        )
    return info.special_tokens[role]


def build_collator(ocfg: ObjectiveConfig, info: ShardInfo, arch: str, name: str | None = None):
    """The collator for objective ``name`` (default ``ocfg.name``) on shards ``info``."""
    name = name or ocfg.name
    seq_len = info.seq_len
    if name == CLM:
        return CausalLM()
    if name == MLM:
        starts = word_starts_from_tokenizer(info.tokenizer_path) if ocfg.whole_word else None
        if starts is not None and len(starts) < info.vocab_size:  # ids past the vocab file never start words
            starts = np.pad(starts, (0, info.vocab_size - len(starts)))
        return MaskedLM(
            info.vocab_size,
            _need(info, "mask", "masked LM"),
            info.special_ids(),
            probability=ocfg.mlm_probability,
            word_starts=starts,
            length=seq_len - 1 if arch == "gpt" else None,
        )
    if name == SPAN:
        if not info.sentinel_ids:
            raise ValueError(
                f"{info.uri}: the tokenizer has no sentinel tokens for span corruption; "
                "re-tokenize with --extra-ids 32 (or more)"
            )
        return SpanCorruption(list(info.sentinel_ids), seq_len, ocfg.noise_density, ocfg.mean_span)
    if name == CONTRASTIVE:
        return Contrastive(ocfg.crop_len)
    if name == MIXTURE:
        weights = parse_weights(ocfg.mixture)
        return Mixture({n: build_collator(ocfg, info, arch, n) for n in weights}, weights)
    raise ValueError(f"unknown objective {name!r}")


def compute_loss(model, batch: dict, temperature: float = 0.05) -> torch.Tensor:
    """The batch's training loss, whatever its objective (mean over labelled tokens or pairs)."""
    objective, ids = batch["objective"], batch["input_ids"]
    if objective == CONTRASTIVE:
        z1, z2 = model.embed(ids).chunk(2)  # the two dropout views of each row
        return info_nce_loss(z1, z2, temperature)
    if "prefix_len" in batch:
        logits = model(ids, prefix_len=batch["prefix_len"])
    elif objective == MLM and getattr(model.cfg, "arch", "gpt") == "gpt":
        logits = model(ids, prefix_len=torch.full((len(ids),), ids.size(1), dtype=torch.long))
    else:
        logits = model(ids)
    labels = batch["labels"]
    if objective != CLM and not bool((labels != IGNORE).any()):
        return logits.sum() * 0.0  # nothing masked in this batch: no signal, but no NaN either
    return lm_loss(logits, labels)
