"""Worker for bench/dedup.py, run inside bench/.venv-datatrove: datatrove's 4-stage MinHash dedup.

Stages (FineWeb's settings: 5-grams, 14 buckets x 8 hashes): signatures (one task per input
shard), buckets (one task per bucket), clustering (one task), filtering (one task per shard,
removed documents' ids written aside). Prints one JSON line with each stage's seconds.

    bench/.venv-datatrove/bin/python -m bench._datatrove_dedup IN_DIR WORK_DIR --workers 2
"""
import argparse
import json
import os
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("input_dir")
    p.add_argument("work_dir")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    import glob

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1)
    shards = len(glob.glob(os.path.join(args.input_dir, "*.jsonl")))
    w = args.work_dir

    def reader():
        return JsonlReader(args.input_dir, glob_pattern="*.jsonl", compression=None, add_file_path=False)

    stages = {
        "signatures": LocalPipelineExecutor(
            [reader(), MinhashDedupSignature(f"{w}/sigs", config=cfg)], tasks=shards, workers=args.workers,
            logging_dir=f"{w}/logs/sigs", skip_completed=False),
        "buckets": LocalPipelineExecutor(
            [MinhashDedupBuckets(f"{w}/sigs", f"{w}/buckets", config=cfg)], tasks=cfg.num_buckets,
            workers=args.workers, logging_dir=f"{w}/logs/buckets", skip_completed=False),
        "cluster": LocalPipelineExecutor(
            [MinhashDedupCluster(f"{w}/buckets", f"{w}/remove_ids", config=cfg)], tasks=1, workers=1,
            logging_dir=f"{w}/logs/cluster", skip_completed=False),
        "filter": LocalPipelineExecutor(
            [reader(),
             MinhashDedupFilter(f"{w}/remove_ids", exclusion_writer=JsonlWriter(
                 f"{w}/removed", compression=None, adapter=lambda self, doc: {"id": doc.id})),
             JsonlWriter(f"{w}/kept", compression=None, adapter=lambda self, doc: {"id": doc.id})],
            tasks=shards, workers=args.workers, logging_dir=f"{w}/logs/filter", skip_completed=False),
    }
    seconds = {}
    for name, executor in stages.items():
        start = time.perf_counter()
        executor.run()
        seconds[name] = time.perf_counter() - start
    print(json.dumps({"stage_seconds": seconds, "seconds": sum(seconds.values()), "shards": shards}), flush=True)


if __name__ == "__main__":  # the local executor re-imports this file in its workers
    main()
