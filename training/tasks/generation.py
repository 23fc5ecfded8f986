"""Generation fine-tuning for GPT models: prompt -> continuation, scored with BLEU.

Data: the built-in Python-docs set (signature -> first sentence, training/data/pydoc_pairs.py)
or a JSONL folder of ``{"prompt", "completion"}`` lines (``--task generation --data DIR``,
the split files of the other tasks). The model is the base GPT itself, LM head included:
fine-tuning only moves its weights towards the task, so nothing new has to be learned
from scratch.

Each example is ``prompt + completion + eos`` with labels ``-100`` on the prompt, so the
loss (and the perplexity) is over what the model must produce, eos included: a model
that never learns to stop would ramble past every reference. An example longer than
``max_len`` loses prompt tokens from the *left* (the end of the prompt, next to the
completion, matters most) and, if the completion alone does not fit, the completion's
tail and its eos; both are counted per split.

Decoding is greedy by default (deterministic); ``top_k``/``temperature`` sample instead,
seeded per example so a result does not depend on batching or ranks. It stops at eos or
after ``max_new_tokens``. The primary metric is corpus BLEU (sacrebleu, 13a); chrF and
completion perplexity come with it. The best epoch is picked on validation *loss* by
default (``TaskConfig.select_on``): BLEU on a small split is noisy, the loss is not.
Corpus BLEU and chrF are functions of summed sufficient statistics, so ranks score their
slices and the statistics are all-reduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from training import metrics as M
from training.data import jsonl, pydoc_pairs
from training.data.pydoc_pairs import Pair, PairData as GenerationData
from training.models.gpt import GPT

IGNORE = -100
KIND = "gpt-generator"


class GenerationLM(nn.Module):
    """The base GPT under the name the fine-tuning loop expects (``.backbone``); forward = LM logits."""

    def __init__(self, backbone: GPT):
        super().__init__()
        self.backbone = backbone

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> next-token logits (B, T, V)."""
        return self.backbone(idx)


def load_jsonl(folder: str | Path) -> GenerationData:
    """train/val/test .jsonl of ``prompt`` and ``completion``; empty ones are dropped and counted."""
    folder = Path(folder)
    splits, dropped = {}, {}
    for split in jsonl.SPLIT_FILES:
        keep = []
        for _, rec in jsonl._records(jsonl._split_path(folder, split), ("prompt", "completion")):
            prompt, completion = str(rec["prompt"]), str(rec["completion"])
            if not prompt.strip() or not completion.strip():
                dropped[jsonl.EMPTY_TEXT] = dropped.get(jsonl.EMPTY_TEXT, 0) + 1
                continue
            keep.append(Pair(prompt, completion))
        splits[split] = keep
    return GenerationData(f"jsonl-{folder.name}", splits, folder, dropped)


def load_data(task: str, subset: str = "", data: str = "", max_examples: int = 0) -> GenerationData:
    if data:
        d = load_jsonl(data)
        if max_examples:
            d.splits = {k: v[:max_examples] for k, v in d.splits.items()}
        return d
    if subset not in ("", "pydocs"):
        raise ValueError(
            f"generation subset {subset!r}: the built-in set is 'pydocs'; pass --data DIR for others"
        )
    return pydoc_pairs.load_splits(max_examples)


@dataclass
class Encoded:
    ids: list[int]  # prompt + completion (+ eos unless the completion was cut)
    n_prompt: int  # how many of ``ids`` are prompt (no loss there)
    prompt_cut: bool
    completion_cut: bool


class PairEncoder:
    """(prompt, completion) -> ids with the prompt length, cut to ``max_len`` as the module says."""

    def __init__(self, tokenizer_path, eos_id: int, pad_id: int, max_len: int):
        from tokenizers import Tokenizer

        if max_len < 2:
            raise ValueError(f"max_len={max_len}: a prompt token and a completion token need 2")
        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.eos_id, self.pad_id, self.max_len = eos_id, pad_id, max_len

    def encode(self, prompt: str, completion: str) -> Encoded:
        p = self.tok.encode(prompt).ids or [self.eos_id]  # never an empty context
        c = self.tok.encode(completion).ids + [self.eos_id]
        completion_cut = len(c) > self.max_len - 1  # keep at least one prompt token
        c = c[: self.max_len - 1]
        prompt_cut = len(p) > self.max_len - len(c)
        p = p[len(p) - min(len(p), self.max_len - len(c)) :]
        return Encoded(p + c, len(p), prompt_cut, completion_cut)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids).strip()


def collate(encoded: list[Encoded], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids (B, T) right-padded with pad, labels (B, T): -100 on prompt and padding)."""
    width = max(len(e.ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for b, e in enumerate(encoded):
        ids[b, : len(e.ids)] = torch.tensor(e.ids)
        labels[b, e.n_prompt : len(e.ids)] = torch.tensor(e.ids[e.n_prompt :])
    return ids, labels


def completion_nll(model, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token NLL (B, T-1) of each label given everything before it; 0 where ignored."""
    logits = model(ids)[:, :-1]
    return F.cross_entropy(
        logits.transpose(1, 2).float(), labels[:, 1:], ignore_index=IGNORE, reduction="none"
    )


def _pick(logits: torch.Tensor, top_k: int, temperature: float, generators) -> torch.Tensor:
    """Next token per row: argmax, or a sample from the top-k at ``temperature``."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1)
    return torch.stack([torch.multinomial(probs[i], 1, generator=g)[0] for i, g in enumerate(generators)])


@torch.no_grad()
def generate(
    model,
    prompts: list[list[int]],
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    max_len: int,
    top_k: int = 0,
    temperature: float = 0.0,
    seeds: list[int] | None = None,
) -> list[list[int]]:
    """New token ids per prompt (eos not included), stopping at eos, ``max_new_tokens`` or ``max_len``.

    Rows are right-padded in one tensor; with causal attention a row's logits at its last
    real position do not see the padding after it, so each step runs the unfinished rows
    once and reads each at its own end (no KV cache: the models here are small).
    """
    lengths = [len(p) for p in prompts]
    width = min(max_len, max(lengths) + max_new_tokens)
    if max(lengths) > width:
        raise ValueError(f"a prompt of {max(lengths)} tokens leaves no room in max_len={max_len}")
    buf = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for b, p in enumerate(prompts):
        buf[b, : len(p)] = torch.tensor(p)
    gens = [torch.Generator().manual_seed(s) for s in (seeds or [0] * len(prompts))]
    out: list[list[int]] = [[] for _ in prompts]
    active = [b for b in range(len(prompts)) if lengths[b] < width]
    for _ in range(max_new_tokens):
        if not active:
            break
        T = max(lengths[b] for b in active)
        logits = model(buf[active, :T])  # (A, T, V)
        last = logits[torch.arange(len(active)), torch.tensor([lengths[b] - 1 for b in active])]
        nxt = _pick(last, top_k, temperature, [gens[b] for b in active]).tolist()
        still = []
        for b, token in zip(active, nxt):
            if token == eos_id:
                continue
            buf[b, lengths[b]] = token
            lengths[b] += 1
            out[b].append(token)
            if lengths[b] < width:
                still.append(b)
        active = still
    return out


class GenerationTask:
    """What the fine-tuning loop, evaluation and the gate need to know about generation."""

    kind = "generation"
    primary_metric = M.BLEU

    def __init__(
        self,
        data: GenerationData,
        encoder: PairEncoder,
        dropout: float = 0.1,
        max_new_tokens: int = 32,
        top_k: int = 0,
        temperature: float = 0.0,
        seed: int = 0,
    ):
        self.data, self.encoder, self.dropout = data, encoder, dropout
        self.max_new_tokens, self.top_k, self.temperature = max_new_tokens, top_k, temperature
        self.seed, self.labels = seed, data.labels
        self.encoded = {
            s: [encoder.encode(p.prompt, p.completion) for p in pairs] for s, pairs in data.splits.items()
        }
        self.truncated = {
            s: sum(e.prompt_cut or e.completion_cut for e in encs) for s, encs in self.encoded.items()
        }
        self.completions_cut = {s: sum(e.completion_cut for e in encs) for s, encs in self.encoded.items()}

    def size(self, split: str) -> int:
        return len(self.encoded[split])

    def build_model(self, backbone: GPT) -> GenerationLM:
        if backbone.cfg.arch != "gpt":
            raise ValueError(
                f"generation needs a GPT base (it continues text left to right); this base is a "
                f"{backbone.cfg.arch.upper()}. Pass --base-model with a gpt-lm "
                "(e.g. models:/c2m-base@champion)"
            )
        return GenerationLM(backbone)

    def batch(self, split: str, indices) -> tuple[torch.Tensor, torch.Tensor]:
        return collate([self.encoded[split][i] for i in indices], self.encoder.pad_id)

    def loss(self, model, indices, split: str = "train") -> torch.Tensor:
        ids, labels = self.batch(split, indices)
        logits = model(ids)[:, :-1]
        targets = labels[:, 1:].reshape(-1)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets, ignore_index=IGNORE)

    def decode_prompt(self, e: Encoded) -> list[int]:
        """The prompt as generation sees it: its end, leaving ``max_new_tokens`` (at least half) of room."""
        keep = max(self.encoder.max_len // 2, self.encoder.max_len - self.max_new_tokens, 1)
        return e.ids[: e.n_prompt][-keep:]

    @torch.no_grad()
    def predict(self, model, split: str, indices=None, batch_size: int = 32) -> list[str]:
        """Generated continuations (text) for the given rows (default: the whole split)."""
        was_training = model.training
        model.eval()
        rows = list(range(self.size(split))) if indices is None else list(indices)
        out = []
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            new = generate(
                model,
                [self.decode_prompt(self.encoded[split][r]) for r in chunk],
                self.max_new_tokens,
                self.encoder.eos_id,
                self.encoder.pad_id,
                self.encoder.max_len,
                self.top_k,
                self.temperature,
                seeds=[self.seed * 1_000_003 + r for r in chunk],
            )
            out += [self.encoder.decode(ids) for ids in new]
        model.train(was_training)
        return out

    @torch.no_grad()
    def nll(self, model, split: str, rows: list[int], batch_size: int = 32) -> list[tuple[float, int]]:
        """(summed completion NLL, completion tokens incl. eos) per row, teacher-forced."""
        was_training = model.training
        model.eval()
        out = []
        for i in range(0, len(rows), batch_size):
            ids, labels = self.batch(split, rows[i : i + batch_size])
            nll = completion_nll(model, ids, labels)
            counts = (labels[:, 1:] != IGNORE).sum(1)
            out += [(float(n), int(c)) for n, c in zip(nll.sum(1), counts)]
        model.train(was_training)
        return out

    def references(self, split: str) -> list[str]:
        return [p.completion.strip() for p in self.data.splits[split]]

    def evaluate(self, model, split: str, dist=None, batch_size: int = 32) -> dict[str, float]:
        """BLEU, chrF, completion perplexity and loss; each rank scores every size-th row, stats summed."""
        rank, size = (dist.rank, dist.size) if dist else (0, 1)
        rows = list(range(rank, self.size(split), size))
        refs = self.references(split)
        hyps = self.predict(model, split, rows, batch_size)
        nll = self.nll(model, split, rows, batch_size)
        bleu = np.sum(M.bleu_stats(hyps, [refs[r] for r in rows]), 0) if rows else np.zeros(M.BLEU_STATS)
        chrf = np.sum(M.chrf_stats(hyps, [refs[r] for r in rows]), 0) if rows else np.zeros(M.CHRF_STATS)
        totals = torch.tensor(
            [sum(n for n, _ in nll), sum(c for _, c in nll), *bleu, *chrf], dtype=torch.float64
        )
        if dist is not None:
            totals = dist.allreduce_sum(totals)
        t = totals.tolist()
        tokens = int(t[1])
        return {
            M.BLEU: M.bleu_from_stats(t[2 : 2 + M.BLEU_STATS]),
            M.CHRF: M.chrf_from_stats(t[2 + M.BLEU_STATS :]),
            M.PERPLEXITY: M.perplexity(t[0], tokens) if tokens else float("inf"),
            "loss": t[0] / tokens if tokens else float("inf"),
        }

    def error_rows(self, model, split: str, worst_k: int, batch_size: int = 32) -> tuple[dict, list[dict]]:
        """(scores, the ``worst_k`` rows by sentence BLEU, then by completion NLL): the error analysis."""
        hyps, refs = self.predict(model, split, batch_size=batch_size), self.references(split)
        nll = self.nll(model, split, list(range(self.size(split))), batch_size)
        rows = [
            {
                "index": i,
                "prompt": pair.prompt,
                "reference": ref,
                "generated": hyp,
                "sentence_bleu": round(M.sentence_bleu(hyp, ref), 4),
                "nll_per_token": round(n / max(c, 1), 4),
            }
            for i, (pair, hyp, ref, (n, c)) in enumerate(zip(self.data.splits[split], hyps, refs, nll))
        ]
        rows.sort(key=lambda r: (r["sentence_bleu"], -r["nll_per_token"], r["index"]))
        total, tokens = sum(n for n, _ in nll), sum(c for _, c in nll)
        scores = {
            M.BLEU: M.bleu(hyps, refs),
            M.CHRF: M.chrf(hyps, refs),
            M.PERPLEXITY: M.perplexity(total, tokens),
            "loss": total / tokens,
            "examples": len(refs),
            "truncated": self.truncated[split],
            "completions_cut": self.completions_cut[split],
        }
        return scores, rows[:worst_k]

    def model_config(self) -> dict:
        """Fields serving and evaluation need, merged into the registered model_config.json."""
        return {
            "kind": KIND,
            "eos_id": self.encoder.eos_id,
            "pad_id": self.encoder.pad_id,
            "max_len": self.encoder.max_len,
            "dropout": self.dropout,
            "max_new_tokens": self.max_new_tokens,
            "top_k": self.top_k,
            "temperature": self.temperature,
            "seed": self.seed,
        }
