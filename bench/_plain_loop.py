"""Worker for bench/train_throughput.py: the minimal PyTorch loop, no framework.

The same GPT module (training.models) and config as the trainer builds for these shards,
AdamW, grad clipping at 1.0, batches sliced straight out of an ``np.memmap``; no
distributed wrapper, no checkpointing, no MLflow. Prints one JSON line: steps/s, tokens/s.

The trainer raises glibc's mmap and trim thresholds (training/distributed.py
``tune_malloc``), which removes per-step page faults on the large logits buffers; the loop
does the same (three lines, no framework import) so the ratio measures the framework, not
the allocator. ``--glibc-malloc`` keeps glibc's defaults, to measure what the setting gives.

    .venv-jobs/bin/python -m bench._plain_loop SHARDS_DIR --steps 150 --batch-size 16 --threads 1
"""
import argparse
import json
import os
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("shards")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", default="tiny")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--glibc-malloc", action="store_true", help="keep glibc's default mmap/trim thresholds")
    args = p.parse_args()
    if not args.glibc_malloc and sys.platform == "linux" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30), libc.mallopt(-1, 1 << 30)  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD

    import numpy as np
    import torch
    import torch.nn.functional as F

    from ops.lake.datasets import data_uri_of
    from training.config import fit_to_data, model_config
    from training.models import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    m = json.load(open(os.path.join(args.shards, "_manifest.json")))
    seq_len = m["seq_len"]
    files = data_uri_of(args.shards, m)  # the generation the manifest names
    data = np.memmap(os.path.join(files, m["splits"]["train"]["files"][0]),
                     dtype=np.uint16 if m["dtype"] == "uint16" else np.uint32, mode="r").reshape(-1, seq_len)
    cfg = fit_to_data(model_config(args.model), seq_len - 1, m["vocab_size"])
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(args.steps):
        rows = torch.from_numpy(data[rng.integers(0, len(data), args.batch_size)].astype(np.int64))
        x, y = rows[:, :-1], rows[:, 1:]
        logits = model(x)
        logits = logits[0] if isinstance(logits, tuple) else logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    seconds = time.perf_counter() - start
    tokens = args.steps * args.batch_size * cfg.block_size
    print(json.dumps({"steps": args.steps, "seconds": seconds, "steps_per_s": args.steps / seconds,
                      "tokens_per_s": tokens / seconds, "params": sum(p.numel() for p in model.parameters()),
                      "block_size": cfg.block_size, "glibc_malloc": args.glibc_malloc}), flush=True)


if __name__ == "__main__":
    main()
