"""The pretrained backbone of every task: load it, check its tokenizer, freeze and group it for transfer.

The base is a registered ``gpt-lm`` (a causal decoder) or ``bert-mlm`` (an MLM-pretrained
bidirectional encoder); classification and tagging take either, generation needs a GPT.
A BERT's MLM head is kept (the registered weights load as they are) but frozen: no task
trains it. Transfer learning here means: the base model's weights (or, for the random-init baseline,
the same architecture from scratch), a new head, and an optimiser that treats layers
differently. ``--freeze-layers k`` fixes the embeddings and the first k blocks (they hold
the most general features and the fewest task-specific ones); ``--layer-lr-decay d``
trains block i from the top at ``lr * d**i`` and the embeddings at the smallest rate
(ULMFiT's discriminative fine-tuning; the groups are built by ``training.optim``, shared
with pretraining), so the head learns fast while early layers move little.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from training.config import ModelConfig
from training.models import build_model

EOS_TOKEN, PAD_TOKEN = "<|endoftext|>", "<|pad|>"
BASE_KINDS = {"gpt-lm": "gpt", "bert-mlm": "bert"}  # registered base kind -> architecture


def check_tokenizer(tokenizer_path: str | Path, config: dict) -> None:
    """Fail early when the tokenizer cannot have produced the base model's token ids."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    vocab, model_vocab = tok.get_vocab_size(), config["model"]["vocab_size"]
    problems = []
    if vocab > model_vocab:
        problems.append(f"it has {vocab} tokens but the model embeds only {model_vocab}")
    for name, key in ((EOS_TOKEN, "eos_id"), (PAD_TOKEN, "pad_id")):
        if key in config and tok.token_to_id(name) != config[key]:
            problems.append(f"{name} is id {tok.token_to_id(name)} there but {config[key]} in the model")
    if problems:
        raise ValueError(
            f"the tokenizer {tokenizer_path} does not match the base model: {'; '.join(problems)}. "
            "Use the tokenizer.json registered with the model (the tokenize stage's output "
            "it was pretrained on)."
        )


def build_backbone(bundle, dropout: float, pretrained: bool = True) -> nn.Module:
    """The base GPT or BERT with its weights (or freshly initialised), dropout set for fine-tuning."""
    kind = bundle.config.get("kind")
    if kind not in BASE_KINDS:
        raise ValueError(
            f"{bundle.local_dir}: base model kind is {kind!r}; fine-tuning needs a pretrained "
            "gpt-lm or bert-mlm (register one with training.pretrain: --objective clm or mlm)"
        )
    check_tokenizer(bundle.tokenizer_path, bundle.config)
    backbone = build_model(ModelConfig(**{**bundle.config["model"], "dropout": dropout}))
    if pretrained:
        backbone.load_state_dict(bundle.state_dict())
    for name, p in backbone.named_parameters():
        if name.startswith("mlm_"):  # the MLM head: loaded with the weights, trained by no task
            p.requires_grad_(False)
    return backbone


def blocks_of(backbone: nn.Module) -> nn.ModuleList:
    """The transformer blocks, bottom first: a GPT's ``blocks``, a BERT's ``layers``."""
    return backbone.layers if backbone.cfg.arch == "bert" else backbone.blocks


def embeddings_of(backbone: nn.Module) -> list[nn.Module]:
    """What sits below the first block: token and position tables (and a BERT's embedding norm)."""
    extra = [backbone.emb_ln] if backbone.cfg.arch == "bert" else []
    return [backbone.tok_emb, backbone.pos_emb, *extra]


def freeze_layers(backbone: nn.Module, k: int) -> int:
    """Freeze the embeddings and the first k blocks; return how many parameters were frozen."""
    blocks = blocks_of(backbone)
    if k > len(blocks):
        raise ValueError(f"--freeze-layers {k}: the base model has only {len(blocks)} blocks")
    if k == 0:
        return 0
    count = 0
    for module in [*embeddings_of(backbone), *blocks[:k]]:
        for p in module.parameters():
            p.requires_grad_(False)
            count += p.numel()
    return count


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable), tied weights counted once."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
