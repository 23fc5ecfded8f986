"""Tokenizer training for three families, chosen by ``--tokenizer bpe|wordpiece|unigram``.

- ``bpe``: GPT-2 style byte-level BPE. Every byte has a token, so no text is ever out
  of vocabulary. Documents are separated by ``<|endoftext|>``.
- ``wordpiece``: BERT style (BERT normaliser and pre-tokenizer, ``##`` continuations).
  Documents are joined with ``[SEP]``; characters never seen in training become ``[UNK]``
  (the stage counts them).
- ``unigram``: SentencePiece/T5 style Unigram LM over NFKC text with ``▁`` word marks.

Each family has its own special tokens, added first so their ids are fixed and small
(the BPE keeps ``<|endoftext|>`` = 0 and ``<|pad|>`` = 1, as the shard contract says;
the families' special tokens are that contract, :mod:`ops.lake.vocab`).
Every family also reserves a mask token (BERT MLM) and ``extra_ids`` sentinel tokens
(T5 span corruption), so every training objective can run on any shards.
Normalisation is configurable; ``auto`` picks the family's usual one. Only the BPE trainer is
bit-reproducible: tokenizers' WordPiece and Unigram trainers iterate hash maps, so ties fall
differently from run to run. The manifest records the tokenizer's sha256, and
``--tokenizer-file`` reuses one exactly.
"""
from __future__ import annotations

from typing import Iterable

from ops.lake.vocab import BPE, KINDS, SPECIALS, UNIGRAM, WORDPIECE

NORMALIZERS = ("auto", "none", "nfc", "nfkc", "nfkc_lower", "bert", "bert_cased")
BYTE_ALPHABET = 256


def _lib():
    try:
        import tokenizers
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise RuntimeError("tokenizer training needs tokenizers: pip install 'crawl2model[spark]'") from exc
    return tokenizers


def special_token_list(kind: str, extra_ids: int = 0, extra_special: Iterable[str] = ()) -> list[str]:
    """All special tokens of ``kind`` in id order: the family's, sentinels, then the user's."""
    spec = SPECIALS[kind]
    tokens = spec.ordered() + [spec.extra.format(i) for i in range(extra_ids)]
    return tokens + [t for t in extra_special if t and t not in tokens]


def build_normalizer(kind: str, name: str = "auto"):
    """A tokenizers normaliser (or None) for ``name``; ``auto`` is the family's usual choice."""
    n = _lib().normalizers
    if name not in NORMALIZERS:
        raise ValueError(f"--normalizer {name!r}: choose one of {', '.join(NORMALIZERS)}")
    if name == "auto":
        name = {BPE: "none", WORDPIECE: "bert", UNIGRAM: "nfkc"}[kind]
    return {
        "none": lambda: None,
        "nfc": n.NFC,
        "nfkc": n.NFKC,
        "nfkc_lower": lambda: n.Sequence([n.NFKC(), n.Lowercase()]),
        "bert": lambda: n.BertNormalizer(lowercase=True),
        "bert_cased": lambda: n.BertNormalizer(lowercase=False),
    }[name]()


def train_tokenizer(texts: Iterable[str], kind: str = BPE, vocab_size: int = 4096, *,
                    min_frequency: int = 2, extra_ids: int = 0, normalizer: str = "auto",
                    extra_special: Iterable[str] = ()):
    """A trained ``tokenizers.Tokenizer`` of ``kind``; ``texts`` is consumed once."""
    if kind not in KINDS:
        raise ValueError(f"--tokenizer {kind!r}: choose one of {', '.join(KINDS)}")
    if extra_ids < 0:
        raise ValueError(f"--extra-ids {extra_ids}: must be >= 0")
    tk = _lib()
    specials = special_token_list(kind, extra_ids, extra_special)
    floor = len(specials) + (BYTE_ALPHABET if kind == BPE else 32)
    if vocab_size < floor:
        bytes_note = " and 256 byte tokens" if kind == BPE else ""
        raise ValueError(f"--vocab-size {vocab_size} leaves no room beyond {len(specials)} special tokens"
                         f"{bytes_note}; use {max(512, 2 * floor)} or more (or fewer --extra-ids)")
    tokenizer, trainer = _MAKERS[kind](tk, vocab_size, min_frequency, specials)
    norm = build_normalizer(kind, normalizer)
    if norm is not None:
        tokenizer.normalizer = norm
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if kind == WORDPIECE:  # [CLS] A [SEP] when callers ask for special tokens (fine-tuning, serving)
        spec = SPECIALS[WORDPIECE]
        tokenizer.post_processor = tk.processors.TemplateProcessing(
            single=f"{spec.cls} $A {spec.sep}", pair=f"{spec.cls} $A {spec.sep} $B:1 {spec.sep}:1",
            special_tokens=[(t, tokenizer.token_to_id(t)) for t in (spec.cls, spec.sep)])
    return tokenizer


def _bpe(tk, vocab_size, min_frequency, specials):
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    return tokenizer, trainer


def _wordpiece(tk, vocab_size, min_frequency, specials):
    tokenizer = tk.Tokenizer(tk.models.WordPiece(unk_token=SPECIALS[WORDPIECE].unk))
    tokenizer.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = tk.decoders.WordPiece()
    trainer = tk.trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
        continuing_subword_prefix="##", show_progress=False)
    return tokenizer, trainer


def _unigram(tk, vocab_size, min_frequency, specials):
    # Unigram prunes a large seed vocabulary by likelihood; it has no pair-count threshold.
    tokenizer = tk.Tokenizer(tk.models.Unigram())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = tk.decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = tk.trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token=SPECIALS[UNIGRAM].unk,
        show_progress=False)
    return tokenizer, trainer


_MAKERS = {BPE: _bpe, WORDPIECE: _wordpiece, UNIGRAM: _unigram}
