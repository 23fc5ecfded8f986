"""OURS: the Spark tokenize stage (encode + pack + shards). REFERENCE: one process calling the
same ``tokenizers`` ``encode_batch`` (the practical ceiling of one core). Also OURS: the
training shard loader against a plain ``np.memmap`` slicing loop.

    .venv-jobs/bin/python bench/tokenize.py                      # 12.5, 25, 50 MB of real text
    .venv-jobs/bin/python bench/tokenize.py --sizes-mb 5 --cores 2

The tokenizer (byte-level BPE, ``--vocab-size``) is trained once on a sample with the
project's trainer and passed to the stage with ``--tokenizer-file``, so the stage time is
encode + pack + write. Each Spark Python worker runs tokenizers with RAYON_NUM_THREADS=1
(one core per task); the ceiling runs with one thread. Target: stage tokens/s per core
>= 0.8 x the ceiling; Spark start-up is reported apart.
Loader: ``ShardLoader.next_batch()`` (what pretraining samples through) against
``arr[idx]`` on the same memmap with the same indices; target >= 0.9x.
"""
import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # this file must not shadow the stdlib module `tokenize`
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.common import (JOBS_PY, REPO, job_env, last_json_line, ratio, run_measured, table, timed,  # noqa: E402
                          work_dir, write_result)
from bench.corpus import corpus_path, write_jsonl  # noqa: E402


def take_mb(path: Path, megabytes: float) -> list[dict]:
    """The first documents of the corpus up to ``megabytes`` of UTF-8 text."""
    out, total = [], 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            out.append({"id": doc["id"], "text": doc["text"]})
            total += len(doc["text"].encode("utf-8"))
            if total >= megabytes * 1e6:
                break
    if total < megabytes * 1e6 * 0.99:
        raise SystemExit(f"the corpus has only {total / 1e6:.1f} MB of text; ask for --sizes-mb up to that")
    return out


def train_tokenizer_file(docs: list[dict], out: Path, vocab_size: int) -> Path:
    from spark_jobs.tokenize.trainers import BPE, train_tokenizer

    with timed() as t:
        tok = train_tokenizer((d["text"] for d in docs), BPE, vocab_size, extra_ids=32)
    tok.save(str(out))
    print(f"[tokenize] trained a {vocab_size}-token BPE on {len(docs)} documents in {t.seconds:.1f} s", flush=True)
    return out


def run_ceiling(tokenizer: Path, jsonl: Path) -> dict:
    env = job_env(1) | {"RAYON_NUM_THREADS": "1"}
    res = run_measured([JOBS_PY, REPO / "bench" / "_encode_ceiling.py", tokenizer, jsonl], env=env)
    return last_json_line(res["stdout"]) | {"peak_rss_mb": res["peak_rss_mb"]}


def run_stage(tokenizer: Path, jsonl: Path, root: Path, cores: int, seq_len: int) -> dict:
    import pyarrow.parquet as pq

    shutil.rmtree(root, ignore_errors=True)
    env = job_env(cores) | {"RAYON_NUM_THREADS": "1"}
    cmd = [JOBS_PY.parent / "spark-submit", "--master", f"local[{cores}]", "--driver-memory", "3g",
           REPO / "bench" / "_spark_stage.py", "tokenize", "--", "--root", root, "--version", "bench",
           "--input-jsonl", jsonl, "--tokenizer-file", tokenizer, "--seq-len", seq_len]
    res = run_measured(cmd, env=env)
    inner = last_json_line(res["stdout"])
    folder = root / "shards" / "v=bench"
    tokens = sum(pq.read_table(f, columns=["n_tokens"]).column("n_tokens").to_numpy().sum()
                 for f in folder.glob("part-*.parquet"))
    return {"seconds": inner["stage_s"], "startup_s": inner["startup_s"], "tokens": int(tokens),
            "peak_rss_mb": res["peak_rss_mb"], "shards": str(folder)}


def bench_loader(shards: str, batch_size: int, steps: int, repeats: int = 3) -> dict:
    """Samples/s of ShardLoader.next_batch() and of a plain memmap loop over the same indices."""
    import numpy as np
    import torch

    from training.data.shards import ShardDataset, ShardLoader, read_shard_info

    info = read_shard_info(shards)
    dataset = ShardDataset(info, "train")
    n = len(dataset)
    dtype = np.dtype("<u2") if info.dtype == "uint16" else np.dtype("<u4")
    files = [Path(shards) / f for f in info.splits["train"]["files"]]
    maps = [np.memmap(f, dtype=dtype, mode="r").reshape(-1, info.seq_len) for f in files]
    plain = maps[0] if len(maps) == 1 else np.concatenate(maps)  # (several files: copied into RAM once)
    per_epoch = n // batch_size
    batches = [np.random.default_rng([0, s // per_epoch]).permutation(n)[(s % per_epoch) * batch_size:
                                                                         (s % per_epoch + 1) * batch_size]
               for s in range(steps)]  # the same indices the sampler draws, computed before timing

    def ours():
        loader = ShardLoader(dataset, batch_size, seed=0)
        for _ in range(steps):
            x, y = loader.next_batch()
        return x

    def reference():
        for idx in batches:
            t = torch.from_numpy(plain[idx].astype(np.int64))
            x, y = t[:, :-1].contiguous(), t[:, 1:].contiguous()
        return x

    best = {}
    for name, fn in (("ours", ours), ("memmap", reference)) * repeats:  # interleaved; best of `repeats`
        with timed() as t:
            fn()
        best[name] = min(best.get(name, float("inf")), t.seconds)
    return {"rows": n, "seq_len": info.seq_len, "batch_size": batch_size, "steps": steps,
            "ours_samples_per_s": round(steps * batch_size / best["ours"], 1),
            "memmap_samples_per_s": round(steps * batch_size / best["memmap"], 1),
            "ratio": ratio(best["memmap"], best["ours"]), "multi_file": len(files) > 1}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes-mb", default="12.5,25,50", help="text sizes in MB (UTF-8), comma separated")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--loader-batch", type=int, default=32)
    p.add_argument("--loader-steps", type=int, default=3000)
    args = p.parse_args(argv)
    sizes = [float(s) for s in args.sizes_mb.split(",")]
    work = work_dir("tokenize")
    corpus = corpus_path()
    tokenizer = train_tokenizer_file(take_mb(corpus, 5), work / "tokenizer.json", args.vocab_size)

    results, rows = {}, []
    for mb in sizes:
        jsonl = write_jsonl(take_mb(corpus, mb), work / f"input-{mb}.jsonl")
        ceiling = run_ceiling(tokenizer, jsonl)
        stage = run_stage(tokenizer, jsonl, work / f"data-{mb}", args.cores, args.seq_len)
        if stage["tokens"] != ceiling["tokens"]:
            raise RuntimeError(f"token counts differ: stage {stage['tokens']}, encode_batch {ceiling['tokens']}")
        ceil_rate = ceiling["tokens"] / ceiling["seconds"]
        stage_rate = stage["tokens"] / stage["seconds"]
        per_core = ratio(stage_rate / args.cores, ceil_rate)
        results[str(mb)] = {"docs": ceiling["docs"], "tokens": stage["tokens"], "ceiling": ceiling, "stage": stage,
                            "ceiling_tokens_per_s": round(ceil_rate), "stage_tokens_per_s": round(stage_rate),
                            "per_core_ratio": per_core}
        rows.append([mb, ceiling["docs"], stage["tokens"], round(ceil_rate), round(stage_rate),
                     round(stage_rate / args.cores), per_core, round(stage["seconds"], 1), round(stage["startup_s"], 1)])
        print(f"[tokenize] {mb} MB done", flush=True)
    print(table(rows, ["MB", "docs", "tokens", "ceiling tok/s (1 core)", f"stage tok/s ({args.cores} cores)",
                       "stage tok/s per core", "× ceiling per core", "stage s", "Spark start-up s"]))
    loader = bench_loader(results[str(max(sizes))]["stage"]["shards"], args.loader_batch, args.loader_steps)
    print(table([[loader["rows"], loader["seq_len"], loader["batch_size"], loader["ours_samples_per_s"],
                  loader["memmap_samples_per_s"], loader["ratio"]]],
                ["train rows", "seq_len", "batch", "ShardLoader samples/s", "np.memmap samples/s", "× memmap"]))
    write_result("tokenize", {"cores": args.cores, "vocab_size": args.vocab_size, "seq_len": args.seq_len,
                              "sizes": results, "loader": loader})


if __name__ == "__main__":
    main()
