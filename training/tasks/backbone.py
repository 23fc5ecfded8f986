"""The pretrained backbone of every task: load it, check its tokenizer, freeze and group it for transfer.

Transfer learning here means: the base GPT's weights (or, for the random-init baseline,
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
from training.models.gpt import GPT

EOS_TOKEN, PAD_TOKEN = "<|endoftext|>", "<|pad|>"


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


def build_backbone(bundle, dropout: float, pretrained: bool = True) -> GPT:
    """The base GPT with its weights (or freshly initialised), dropout set for fine-tuning."""
    kind = bundle.config.get("kind")
    if kind != "gpt-lm":
        raise ValueError(
            f"{bundle.local_dir}: base model kind is {kind!r}; fine-tuning needs a pretrained "
            "gpt-lm (register one with training.pretrain)"
        )
    check_tokenizer(bundle.tokenizer_path, bundle.config)
    backbone = GPT(ModelConfig(**{**bundle.config["model"], "dropout": dropout}))
    if pretrained:
        backbone.load_state_dict(bundle.state_dict())
    return backbone


def freeze_layers(backbone: GPT, k: int) -> int:
    """Freeze the embeddings and blocks[:k]; return how many parameters were frozen."""
    n_layer = len(backbone.blocks)
    if k > n_layer:
        raise ValueError(f"--freeze-layers {k}: the base model has only {n_layer} blocks")
    if k == 0:
        return 0
    frozen = [backbone.tok_emb, backbone.pos_emb, *backbone.blocks[:k]]
    count = 0
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
            count += p.numel()
    return count


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable), tied weights counted once."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
