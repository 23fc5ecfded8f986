"""The vocabulary contract of a shards version: each tokenizer family's special tokens and roles.

The tokenize stage (:mod:`spark_jobs.tokens.trainers`) trains tokenizers with these special
tokens first, so their ids are fixed and small, and records :func:`describe`'s answer in the
shards manifest; training (:mod:`training.data.shards`) reads the roles back from the manifest,
or from the tokenizer file of shards whose manifest predates the roles.
"""
from __future__ import annotations

from dataclasses import dataclass

BPE, WORDPIECE, UNIGRAM = "bpe", "wordpiece", "unigram"
KINDS = (BPE, WORDPIECE, UNIGRAM)
ROLES = ("eos", "pad", "unk", "mask", "cls", "sep")


@dataclass(frozen=True)
class SpecialTokens:
    """The special token of each role in one family; ``eos`` separates documents when packing."""

    eos: str
    pad: str
    mask: str
    extra: str  # sentinel name pattern, formatted with the sentinel's index
    unk: str | None = None
    cls: str | None = None
    sep: str | None = None

    def ordered(self) -> list[str]:
        """The family's specials in vocabulary order (the first ones get ids 0, 1, ...)."""
        order = {
            "<|endoftext|>": [self.eos, self.pad, self.mask],
            "[SEP]": [self.pad, self.unk, self.cls, self.sep, self.mask],
            "</s>": [self.pad, self.eos, self.unk, self.mask],
        }[self.eos]
        return [t for t in order if t]

    def roles(self) -> dict[str, str]:
        return {r: getattr(self, r) for r in ROLES if getattr(self, r)}


SPECIALS = {
    BPE: SpecialTokens(eos="<|endoftext|>", pad="<|pad|>", mask="<|mask|>", extra="<|extra_id_{}|>"),
    WORDPIECE: SpecialTokens(eos="[SEP]", pad="[PAD]", mask="[MASK]", extra="[EXTRA_{}]",
                             unk="[UNK]", cls="[CLS]", sep="[SEP]"),
    UNIGRAM: SpecialTokens(eos="</s>", pad="<pad>", mask="<mask>", extra="<extra_id_{}>", unk="<unk>"),
}


def describe(tokenizer) -> dict:
    """What the shards manifest records about a tokenizer: family, role ids and sentinel ids.

    Works on tokenizers trained here and on ones brought with ``--tokenizer-file``, by
    looking up each family's special-token names. Raises when no document separator is found.
    """
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    for kind in KINDS:
        spec = SPECIALS[kind]
        if spec.eos in vocab and spec.pad in vocab:
            break
    else:
        names = ", ".join(f"{s.eos}+{s.pad}" for s in SPECIALS.values())
        raise ValueError(f"tokenizer has no known document separator and pad token (one of {names}); "
                         "train it with spark_jobs.tokens.trainers.train_tokenizer")
    roles = {role: vocab[name] for role, name in spec.roles().items() if name in vocab}
    sentinels = []
    while spec.extra.format(len(sentinels)) in vocab:
        sentinels.append(vocab[spec.extra.format(len(sentinels))])
    return {"tokenizer_type": kind, "special_tokens": roles, "sentinel_ids": sentinels}
