"""GPU throughput of the project's GPT: GPT-124M and GPT-350M, bf16 autocast, seq 1024,
torch.compile on, one H100/H200. Reports tokens/s and MFU against 989 TFLOP/s dense bf16
(H100 SXM; the H200 has the same tensor cores), with training FLOPs per token from the
trainer's own model, 6N + 12·L·d·T (training.pretrain.flops_per_token).

    .venv-jobs/bin/python -m bench.gpu_train --dry-run        # CPU: configs and the FLOP model only
    .venv-jobs/bin/python -m bench.gpu_train                  # needs CUDA; about 5 minutes

Each model: build, compile, ``--warmup`` steps (compilation happens here, timed apart),
then ``--steps`` timed steps of forward + backward + fused AdamW on random token ids
(throughput does not depend on the data). Without CUDA it prints the FLOP model, says it
needs a CUDA GPU, and exits with status 2, writing nothing measured.
"""
import sys
import argparse
import time
from types import SimpleNamespace

from bench.common import table, write_result

PEAK_TFLOPS = 989.0  # H100 SXM dense bf16 (no sparsity)
MODELS = {"gpt_124m": 16, "gpt_350m": 8}  # name -> default micro-batch (sequences) per step


def flop_model(name: str, seq_len: int) -> dict:
    """Parameters and training FLOPs per token of a named config (built on the meta device: no memory)."""
    import torch

    from training.config import model_config
    from training.models import build_model
    from training.pretrain import flops_per_token

    cfg = model_config(name, block_size=seq_len)
    with torch.device("meta"):
        model = build_model(cfg)
    n = model.num_parameters()
    fpt = flops_per_token(SimpleNamespace(model=cfg), n)
    return {"model": name, "params": n, "n_layer": cfg.n_layer, "d_model": cfg.d_model, "seq_len": seq_len,
            "vocab_size": cfg.vocab_size, "flops_per_token": fpt, "six_n": 6 * n,
            "attention_12LdT": 12 * cfg.n_layer * cfg.d_model * seq_len}


def measure(name: str, batch: int, seq_len: int, warmup: int, steps: int, compile_: bool) -> dict:
    import torch
    import torch.nn.functional as F

    from training.config import model_config
    from training.models import build_model

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = model_config(name, block_size=seq_len)
    model = build_model(cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if compile_ else model
    x = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = fwd(x[:, :-1])
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    out = {"batch": batch, "steps": steps, "seconds": seconds, "warmup_and_compile_s": warm_s,
           "tokens_per_s": steps * batch * seq_len / seconds,
           "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1)}
    del model, opt, fwd
    torch.cuda.empty_cache()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="print configs and the FLOP model; no GPU needed")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch", type=int, default=0, help="sequences per step (default: per model, see MODELS)")
    p.add_argument("--warmup", type=int, default=15)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS)
    args = p.parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    flops = {n: flop_model(n, args.seq_len) for n in names}
    print(table([[f["model"], f"{f['params'] / 1e6:.1f} M", f["n_layer"], f["d_model"], f["seq_len"],
                  f"{f['six_n'] / 1e9:.3f}", f"{f['attention_12LdT'] / 1e9:.3f}", f"{f['flops_per_token'] / 1e9:.3f}",
                  f"{args.peak_tflops * 1e12 / f['flops_per_token']:,.0f}"] for f in flops.values()],
                ["model", "params N", "layers", "d", "T", "6N GFLOP", "12LdT GFLOP", "FLOP/token (G)",
                 "tokens/s at 100% MFU"]))
    if args.dry_run:
        print("[gpu_train] dry run: FLOP model only, nothing measured")
        return 0

    import torch

    if not torch.cuda.is_available():
        print("[gpu_train] this benchmark needs a CUDA GPU (one H100/H200); none is visible here. "
              "Run it on a GPU machine, or pass --dry-run for the FLOP model only.", flush=True)
        return 2
    results, rows = {}, []
    for name in names:
        r = measure(name, args.batch or MODELS.get(name, 8), args.seq_len, args.warmup, args.steps, not args.no_compile)
        r["mfu"] = r["tokens_per_s"] * flops[name]["flops_per_token"] / (args.peak_tflops * 1e12)
        results[name] = {**flops[name], **r}
        rows.append([name, r["batch"], round(r["tokens_per_s"]), f"{r['mfu']:.1%}", round(r["warmup_and_compile_s"], 1),
                     r["peak_gpu_mem_gb"]])
    print(table(rows, ["model", "batch", "tokens/s", "MFU", "warm-up + compile s", "peak GPU GB"]))
    write_result("gpu_train", {"device": torch.cuda.get_device_name(0), "peak_tflops": args.peak_tflops,
                               "compile": not args.no_compile, "precision": "bf16 autocast", "models": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
