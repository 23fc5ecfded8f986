"""OURS: the Spark tokenize stage (encode + pack + shards). REFERENCE: one process calling the
same ``tokenizers`` ``encode_batch`` (the practical ceiling of one core). Also OURS: the
training shard loader against a plain ``np.memmap`` slicing loop.

    .venv-jobs/bin/python -m bench.tokens                      # 50, 100, 180 MB of real text
    .venv-jobs/bin/python -m bench.tokens --sizes-mb 5 --cores 2

Input: the bench corpus followed by Debian's change logs (``bench/corpus.py``), written as a
finished ``corpus`` version of 8 Parquet parts, which the stage reads with ``--input-version``
as the pipeline hands it the dedup stage's output. The tokenizer (byte-level BPE,
``--vocab-size``) is trained once on a sample with the project's trainer and passed to the
stage with ``--tokenizer-file``, so the stage time is read + encode + doc index + pack + write.
Each Spark Python worker runs tokenizers with RAYON_NUM_THREADS=1 (one core per task), and the
stage runs with the JVM options ``ops/launch/local`` gives it locally. The ceiling runs with one
thread on the same texts, twice: ``encode_batch`` (the reference) and
``encode_batch_fast`` (what the stage calls: same ids, no offsets; ~25% faster). Target: stage
tokens/s per core >= 0.8 x the ceiling; Spark start-up (JVM, session, a Python worker per core)
is reported apart.
Loader: ``ShardLoader.next_batch()`` and ``CollatedLoader`` with the causal-LM collator (what
pretraining samples through) against ``arr[idx]`` on the same memmap with the same indices and
the same conversion to (x, y) int64 tensors; target >= 0.9x. ``--loader-only SHARDS`` runs
just that part on a finished shards folder.
"""
import os
import argparse
import json
import shutil
from pathlib import Path

from bench.common import (JOBS_PY, REPO, job_env, last_json_line, ratio, run_measured, table, timed,
                          work_dir, write_result)
from bench.corpus import changelog_path, corpus_path
from ops.lake.datasets import DatasetVersion

CALLS = ("encode_batch", "encode_batch_fast")


def take_mb(paths: list[Path], megabytes: float) -> list[dict]:
    """The first documents of the corpus files, in order, up to ``megabytes`` of UTF-8 text."""
    out, total = [], 0
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                doc = json.loads(line)
                out.append({"id": doc["id"], "text": doc["text"]})
                total += len(doc["text"].encode("utf-8"))
                if total >= megabytes * 1e6:
                    return out
    if total < megabytes * 1e6 * 0.99:
        raise SystemExit(f"the corpus has only {total / 1e6:.1f} MB of text; ask for --sizes-mb up to that")
    return out


INPUT_PARTS = 8  # part files of the input version, as the dedup stage writes with 8 shuffle partitions


def write_input_version(docs: list[dict], root: Path) -> Path:
    """The documents as a finished ``corpus`` version (part-*.parquet + manifest) under ``root``:
    the stage reads it with ``--input-version`` exactly as the pipeline hands it dedup's output."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    version = DatasetVersion(str(root), "corpus", "in")
    shutil.rmtree(version.uri, ignore_errors=True)
    os.makedirs(version.uri)
    per = -(-len(docs) // INPUT_PARTS)
    for i in range(INPUT_PARTS):
        part = docs[i * per:(i + 1) * per]
        pq.write_table(pa.table({"id": [d["id"] for d in part], "text": [d["text"] for d in part]}),
                       os.path.join(version.uri, f"part-{i:05d}.parquet"))
    version.write_manifest(rows_in=len(docs), rows_out=len(docs), dropped={}, parents=["bench corpus"],
                           config={"bench": "tokenize"})
    return Path(version.uri)


def train_tokenizer_file(docs: list[dict], out: Path, vocab_size: int) -> Path:
    from ops.lake.vocab import BPE
    from spark_jobs.tokens.trainers import train_tokenizer

    with timed() as t:
        tok = train_tokenizer((d["text"] for d in docs), BPE, vocab_size, extra_ids=32)
    tok.save(str(out))
    print(f"[tokenize] trained a {vocab_size}-token BPE on {len(docs)} documents in {t.seconds:.1f} s", flush=True)
    return out


def run_ceiling(tokenizer: Path, corpus: Path) -> dict:
    env = job_env(1) | {"RAYON_NUM_THREADS": "1"}
    res = run_measured([JOBS_PY, REPO / "bench" / "_encode_ceiling.py", tokenizer, corpus], env=env)
    return last_json_line(res["stdout"]) | {"peak_rss_mb": res["peak_rss_mb"]}


def run_stage(tokenizer: Path, root: Path, cores: int, seq_len: int) -> dict:
    import pyarrow.parquet as pq

    from ops.launch.local import LOCAL_JAVA_OPTIONS

    shutil.rmtree(root / "shards", ignore_errors=True)
    env = job_env(cores) | {"RAYON_NUM_THREADS": "1"}
    # shuffle partitions and JVM options as ops/launch/local.spark_submit_command sets them locally
    cmd = [JOBS_PY.parent / "spark-submit", "--master", f"local[{cores}]", "--driver-memory", "3g",
           "--conf", "spark.sql.shuffle.partitions=8", "--driver-java-options", LOCAL_JAVA_OPTIONS["tokenize"],
           REPO / "bench" / "_spark_stage.py", "tokenize", "--", "--root", root, "--version", "bench",
           "--input-version", "in", "--tokenizer-file", tokenizer, "--seq-len", seq_len]
    res = run_measured(cmd, env=env)
    inner = last_json_line(res["stdout"])
    folder = root / "shards" / "v=bench"
    data = Path(DatasetVersion(str(root), "shards", "bench").data_uri)  # the generation its manifest names
    tokens = sum(pq.read_table(f, columns=["n_tokens"]).column("n_tokens").to_numpy().sum()
                 for f in data.glob("part-*.parquet"))
    return {"seconds": inner["stage_s"], "startup_s": inner["startup_s"], "tokens": int(tokens),
            "peak_rss_mb": res["peak_rss_mb"], "shards": str(folder)}


class _PlainLoops:
    """The reference loaders: plain loops over the memmaps of one split, fed precomputed indices.

    ``memmap`` gathers on a plain-ndarray view of the memmap and casts each shifted slice
    straight to int64 (the cheapest loop we know: the target's reference); ``memmap_widen``
    casts the whole batch to int64 and copies both slices out of it (the usual idiom). With
    several shard files a plain loop must find each row's file: ``rows`` then fancy-indexes
    when the batch lies in one file, else copies row by row (the fastest plain loop over
    several maps we found), and ``in_ram`` fancy-indexes one array holding the whole split in
    memory, which no loader over shards can be (the bound, for scale).
    """

    def __init__(self, maps: list, seq_len: int, dtype, batches: list):
        import numpy as np

        self.plains = [m.view(np.ndarray) for m in maps]
        self.starts = np.cumsum([0] + [len(m) for m in maps])
        self.seq_len, self.dtype, self.batches = seq_len, dtype, batches
        self.whole = np.concatenate(self.plains) if len(maps) > 1 else None  # copied into RAM once

    def rows(self, idx):
        import numpy as np

        if len(self.plains) == 1:
            return self.plains[0][idx]
        where = np.searchsorted(self.starts, idx, side="right") - 1
        if (where == where[0]).all():
            return self.plains[where[0]][idx - self.starts[where[0]]]
        rows = np.empty((len(idx), self.seq_len), dtype=self.dtype)
        for i, (f, r) in enumerate(zip(where.tolist(), (idx - self.starts[where]).tolist())):
            rows[i] = self.plains[f][r]
        return rows

    @staticmethod
    def _shifted(rows):
        import numpy as np
        import torch

        return (torch.from_numpy(rows[:, :-1].astype(np.int64, order="C")),
                torch.from_numpy(rows[:, 1:].astype(np.int64, order="C")))

    def memmap(self):
        return (self._shifted(self.rows(idx)) for idx in self.batches)

    def memmap_widen(self):
        import numpy as np
        import torch

        for idx in self.batches:
            t = torch.from_numpy(self.rows(idx).astype(np.int64))
            yield t[:, :-1].contiguous(), t[:, 1:].contiguous()

    def in_ram(self):
        return (self._shifted(self.whole[idx]) for idx in self.batches)


def _check_same_batches(sides: dict, reference) -> None:
    """Every side yields the reference's batches: both tensors, int64, contiguous."""
    import torch

    for name, fn in sides.items():
        for (x, y), (rx, ry) in zip(fn(), reference()):
            same = torch.equal(x, rx) and torch.equal(y, ry)
            if not (same and x.dtype == torch.int64 and x.is_contiguous() and y.is_contiguous()):
                raise RuntimeError(f"loader benchmark: {name} yields different batches than the plain loop")


def _time_interleaved(sides: dict, repeats: int) -> tuple[dict, dict]:
    """Wall and thread-CPU seconds of drawing every batch of each side, ``repeats`` times, interleaved
    so that load changes hit every side alike."""
    import collections
    import time

    seconds: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            c0 = time.thread_time()
            with timed() as t:
                collections.deque(fn(), maxlen=0)  # draw every batch, keep none
            seconds[name].append(t.seconds)
            cpu[name].append(time.thread_time() - c0)
    return seconds, cpu


def bench_loader(shards: str, batch_size: int, steps: int, repeats: int = 5) -> dict:
    """Samples/s of our loaders and of plain memmap loops over the same indices (medians, interleaved).

    OURS: ``ShardLoader.next_batch()`` and ``CollatedLoader`` with the causal-LM collator (the
    path ``training.pretrain`` samples through). REFERENCES (:class:`_PlainLoops`) are fed the
    indices our sampler draws, computed before timing, and produce the same (x, y) int64
    contiguous tensors. Every side's batches are checked equal before timing.
    """
    import statistics

    import numpy as np

    from training.data.collators import CausalLM
    from training.data.shards import CollatedLoader, ShardDataset, ShardLoader, read_shard_info

    info = read_shard_info(shards)
    dataset = ShardDataset(info, "train")
    n = len(dataset)
    dtype = np.dtype("<u2") if info.dtype == "uint16" else np.dtype("<u4")
    files = [Path(info.data_uri) / f for f in info.splits["train"]["files"]]  # the manifest's generation
    maps = [np.memmap(f, dtype=dtype, mode="r").reshape(-1, info.seq_len) for f in files]
    per_epoch = n // batch_size
    batches = [np.random.default_rng([0, s // per_epoch]).permutation(n)[(s % per_epoch) * batch_size:
                                                                         (s % per_epoch + 1) * batch_size]
               for s in range(steps)]  # the same indices the sampler draws, computed before timing
    plain = _PlainLoops(maps, info.seq_len, dtype, batches)

    def shard_loader():
        loader = ShardLoader(dataset, batch_size, seed=0)
        return (loader.next_batch() for _ in range(steps))

    def collated():
        loader = CollatedLoader(dataset, CausalLM(), batch_size, seed=0)
        return ((b["input_ids"], b["labels"]) for b in (loader.next_batch() for _ in range(steps)))

    sides = {"ours": shard_loader, "ours_collated": collated, "memmap": plain.memmap,
             "memmap_widen": plain.memmap_widen}
    if plain.whole is not None:
        sides["in_ram"] = plain.in_ram
    _check_same_batches(sides, plain.memmap)
    seconds, cpu = _time_interleaved(sides, repeats)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    rate = {name: round(steps * batch_size / s, 1) for name, s in median.items()}
    cpu_median = {name: statistics.median(s) for name, s in cpu.items()}
    return {"rows": n, "seq_len": info.seq_len, "batch_size": batch_size, "steps": steps, "repeats": repeats,
            "samples_per_s": rate, "seconds": seconds, "cpu_seconds": cpu,
            "cpu_ratio": ratio(cpu_median["memmap"], cpu_median["ours"]),
            "cpu_ratio_collated": ratio(cpu_median["memmap"], cpu_median["ours_collated"]),
            "ratio": ratio(median["memmap"], median["ours"]),
            "ratio_collated": ratio(median["memmap"], median["ours_collated"]),
            "ratio_vs_widen": ratio(median["memmap_widen"], median["ours"]), "files": len(files),
            "ratio_vs_in_ram": ratio(median["in_ram"], median["ours"]) if "in_ram" in sides else None}


def print_loader(loaders: list[dict]) -> None:
    rows = []
    for loader in loaders:
        r = loader["samples_per_s"]
        rows.append([loader["files"], loader["rows"], loader["seq_len"], loader["batch_size"], r["ours"],
                     r["ours_collated"], r["memmap"], r["memmap_widen"], loader["ratio"], loader["ratio_collated"],
                     loader["ratio_vs_widen"], loader["cpu_ratio"], loader["cpu_ratio_collated"],
                     r.get("in_ram", ""), loader["ratio_vs_in_ram"] or ""])
    print(table(rows, ["files", "train rows", "seq_len", "batch", "ShardLoader samples/s",
                       "CollatedLoader(clm) samples/s", "np.memmap samples/s", "np.memmap widen samples/s",
                       "× memmap", "collated × memmap", "× memmap widen", "× memmap (CPU s)",
                       "collated × memmap (CPU s)", "in-RAM array samples/s", "× in-RAM array"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes-mb", default="50,100,180",
                   help="text sizes in MB (UTF-8), comma separated; the corpus and change logs hold ~184 MB")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--loader-batch", type=int, default=32)
    p.add_argument("--loader-steps", type=int, default=3000)
    p.add_argument("--loader-repeats", type=int, default=5, help="interleaved rounds; medians are reported")
    p.add_argument("--loader-only", default=None, metavar="SHARDS",
                   help="only the loader benchmark, on this finished shards folder (no Spark)")
    args = p.parse_args(argv)
    if args.loader_only:
        loader = bench_loader(args.loader_only, args.loader_batch, args.loader_steps, args.loader_repeats)
        print_loader([loader])
        write_result("tokenize_loader", {"shards": args.loader_only, "loader": loader})
        return
    sizes = [float(s) for s in args.sizes_mb.split(",")]
    work = work_dir("tokenize")
    corpus = [corpus_path(), changelog_path()]
    tokenizer = train_tokenizer_file(take_mb(corpus, 5), work / "tokenizer.json", args.vocab_size)

    results, rows = {}, []
    for mb in sizes:
        root = work / f"data-{mb}"
        ceiling = run_ceiling(tokenizer, write_input_version(take_mb(corpus, mb), root))
        stage = run_stage(tokenizer, root, args.cores, args.seq_len)
        rates = {call: ceiling[call]["tokens"] / ceiling[call]["seconds"] for call in CALLS}
        if stage["tokens"] != ceiling["encode_batch"]["tokens"]:
            raise RuntimeError(f"token counts differ: stage {stage['tokens']}, "
                               f"encode_batch {ceiling['encode_batch']['tokens']}")
        stage_rate = stage["tokens"] / stage["seconds"]
        per_core = {call: ratio(stage_rate / args.cores, rate) for call, rate in rates.items()}
        results[str(mb)] = {"docs": ceiling["docs"], "tokens": stage["tokens"], "ceiling": ceiling, "stage": stage,
                            "ceiling_tokens_per_s": {c: round(r) for c, r in rates.items()},
                            "stage_tokens_per_s": round(stage_rate), "per_core_ratio": per_core}
        rows.append([mb, ceiling["docs"], stage["tokens"], round(rates["encode_batch"]),
                     round(rates["encode_batch_fast"]), round(stage_rate), round(stage_rate / args.cores),
                     per_core["encode_batch"], per_core["encode_batch_fast"], round(stage["seconds"], 1),
                     round(stage["startup_s"], 1)])
        print(f"[tokenize] {mb} MB done", flush=True)
    print(table(rows, ["MB", "docs", "tokens", "encode_batch tok/s (1 core)", "encode_batch_fast tok/s (1 core)",
                       f"stage tok/s ({args.cores} cores)", "stage tok/s per core", "× encode_batch per core",
                       "× encode_batch_fast per core", "stage s", "Spark start-up s"]))
    # the smallest size's shards (one train file at the default sizes) and the largest's (several)
    loader = [bench_loader(results[str(mb)]["stage"]["shards"], args.loader_batch, args.loader_steps,
                           args.loader_repeats) for mb in sorted({min(sizes), max(sizes)})]
    print_loader(loader)
    write_result("tokenize", {"cores": args.cores, "vocab_size": args.vocab_size, "seq_len": args.seq_len,
                              "sizes": results, "loader": loader})


if __name__ == "__main__":
    main()
