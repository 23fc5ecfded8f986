"""Model families: a GPT decoder (gpt.py) and a BERT/RoBERTa encoder (bert.py)."""

from __future__ import annotations


def build_model(cfg):
    """The module for ``cfg.arch`` (imported here so callers need not know the families)."""
    if cfg.arch == "bert":
        from training.models.bert import BERT

        return BERT(cfg)
    from training.models.gpt import GPT

    return GPT(cfg)
