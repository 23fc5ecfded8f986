"""What the compression table measures: scores aside, size, parameters and CPU latency.

Kept apart from :mod:`training.compress` (which picks and runs a method) so the
measurements can be read and tested on their own. Latency is wall-clock p50/p95 over
repeats after a warm-up, single-threaded as torch is configured by the caller; a forward
pass for every model, and for generation models also greedy decoding of a fixed number
of new tokens (see :func:`measure`).
"""

from __future__ import annotations

import gzip
import io
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters), counting int8 packed Linear weights as parameters too."""
    tensors = {id(p): p.detach() for p in model.parameters()}
    for m in model.modules():
        if callable(getattr(m, "weight", None)):  # dynamically quantised Linear: weight() unpacks
            w = m.weight()
            tensors[id(w)] = w.dequantize() if w.is_quantized else w
            if callable(getattr(m, "bias", None)) and m.bias() is not None:
                tensors[id(m.bias())] = m.bias()
    total = sum(t.numel() for t in tensors.values())
    return total, sum(int(torch.count_nonzero(t)) for t in tensors.values())


def size_on_disk(model: nn.Module) -> tuple[int, int]:
    """(bytes of the saved state dict, bytes gzipped): what pruning's zeros buy when compressed."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    raw = buf.getvalue()
    return len(raw), len(gzip.compress(raw, compresslevel=6))


def _forward(model: nn.Module, inputs):
    return model(inputs)


@torch.no_grad()
def latency_ms(
    models: list[nn.Module], inputs, repeats: int, warmup: int = 3, call=_forward
) -> list[tuple[float, float]]:
    """p50 and p95 wall time (ms) of ``call(model, inputs)`` (default: a forward pass) per model.

    The models are timed in alternation: each repeat runs every model once, so all of them
    see the same background load and their ratio is fair on a shared machine even when
    absolute times drift.
    """
    for model in models:
        model.eval()
        for _ in range(warmup):
            call(model, inputs)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):
        for model, samples in zip(models, times):
            t0 = time.perf_counter()
            call(model, inputs)
            samples.append((time.perf_counter() - t0) * 1000)
    return [(float(np.percentile(t, 50)), float(np.percentile(t, 95))) for t in times]


def latency_inputs(task, batch: int) -> torch.Tensor:
    """``batch`` test examples (repeated if the split is small), padded to one width.

    Generation pads (or cuts) to exactly ``max_len`` tokens: a fixed-length forward pass,
    so batch 1 and batch 32 time the same sequence length whatever the test rows are.
    """
    n = task.size("test")
    rows = [i % n for i in range(batch)]
    if task.kind == "classification":
        return task.inputs("test", rows)
    ids = task.batch("test", rows)[0]
    if task.kind == "generation":
        width = task.encoder.max_len
        ids = F.pad(ids, (0, max(0, width - ids.size(1))), value=task.encoder.pad_id)[:, :width]
    return ids


def decode_plan(task, new_tokens: int) -> tuple[int, int]:
    """(new tokens per row, longest prompt kept): as many as asked for that fit in ``max_len``."""
    n_new = min(new_tokens, task.encoder.max_len - 1)  # at least one prompt token stays
    return n_new, task.encoder.max_len - n_new


def decode_prompts(task, batch: int, new_tokens: int) -> list[list[int]]:
    """``batch`` test prompts (repeated if the split is small) as generation sees them, cut from
    the left so that ``new_tokens`` more fit in ``max_len``."""
    keep = decode_plan(task, new_tokens)[1]
    n = task.size("test")
    return [task.decode_prompt(task.encoded["test"][i % n])[-keep:] for i in range(batch)]


def greedy_decode(new_tokens: int, task):
    """``call`` for :func:`latency_ms`: the task's own greedy decoder, ``new_tokens`` per row.

    eos is ignored (no token id is -1), so every row makes exactly ``new_tokens`` tokens
    whatever the model predicts: an original and a compressed model do the same work.
    """
    from training.tasks.generation import generate

    def call(model, prompts):
        return generate(model, prompts, new_tokens, -1, task.encoder.pad_id, task.encoder.max_len)

    return call


def decode_input(task, new_tokens: int) -> str:
    """What the decode columns time, in words, for the table (the numbers after capping)."""
    n_new, keep = decode_plan(task, new_tokens)
    return (
        f"greedy decode: batch x {n_new} new tokens (eos ignored) after test prompts of up to "
        f"{keep} tokens; no KV cache"
    )


def latency_input(task) -> str:
    """What the latency columns time, in words, for the table."""
    if task.kind == "generation":
        return f"forward pass: batch x {task.encoder.max_len} tokens (teacher-forced; no decoding)"
    return "forward pass: batch x padded test examples"


def measure(models: dict[str, nn.Module], task, repeats: int, decode_tokens: int = 32) -> list[dict]:
    """One table row per model: test scores, parameters, size on disk, latency at batch 1 and 32.

    Generation models also get decode latency at batch 1 and 32. A decode is ``decode_tokens``
    forward passes, so fewer repeats of it (a third, at least 3) give as steady a median.
    """
    rows = []
    for name, model in models.items():
        scores = task.evaluate(model, "test")
        params, nonzero = parameter_counts(model)
        raw, zipped = size_on_disk(model)
        rows.append(
            {
                "model": name,
                **{k: round(v, 6) for k, v in scores.items()},
                "parameters": params,
                "nonzero_parameters": nonzero,
                "size_mb": round(raw / 2**20, 4),
                "size_mb_gzip": round(zipped / 2**20, 4),
                "latency_input": latency_input(task),
            }
        )
    for batch in (1, 32):
        timed = latency_ms(
            list(models.values()),
            latency_inputs(task, batch),
            repeats if batch == 1 else max(5, repeats // 3),
        )
        for row, (p50, p95) in zip(rows, timed):
            row[f"latency_b{batch}_p50_ms"], row[f"latency_b{batch}_p95_ms"] = round(p50, 4), round(p95, 4)
    if task.kind != "generation":
        return rows
    n_new = decode_plan(task, decode_tokens)[0]
    for row in rows:
        row["decode_input"] = decode_input(task, decode_tokens)
    for batch in (1, 32):
        timed = latency_ms(
            list(models.values()),
            decode_prompts(task, batch, decode_tokens),
            max(3, repeats // 3),
            warmup=1,
            call=greedy_decode(n_new, task),
        )
        for row, (p50, p95) in zip(rows, timed):
            row[f"decode_b{batch}_p50_ms"], row[f"decode_b{batch}_p95_ms"] = round(p50, 4), round(p95, 4)
    return rows


def comparison(base: dict, new: dict, metric: str) -> dict:
    """The compressed model relative to the original (speed-up > 1 is faster, size ratio < 1 smaller)."""
    keys = dict.fromkeys((metric, "perplexity"))  # generation: BLEU and perplexity both
    deltas = {f"delta_{k}": round(new[k] - base[k], 6) for k in keys if k in new}
    speedups = {
        f"{name}_b{b}_p50": round(base[f"{column}_b{b}_p50_ms"] / new[f"{column}_b{b}_p50_ms"], 3)
        for name, column in (("speedup", "latency"), ("decode_speedup", "decode"))
        for b in (1, 32)
        if f"{column}_b{b}_p50_ms" in new
    }
    return {
        **deltas,
        "size_ratio": round(new["size_mb"] / base["size_mb"], 4),
        **speedups,
        "sparsity": round(1 - new["nonzero_parameters"] / new["parameters"], 4),
    }
