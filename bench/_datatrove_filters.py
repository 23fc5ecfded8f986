"""Worker for bench/data_filters.py, run inside bench/.venv-datatrove (never the project's venvs).

Runs datatrove's Gopher repetition → Gopher quality → C4 quality filters (FineWeb's order,
paper defaults) with its LocalPipelineExecutor over the sharded JSONL, one task per shard
and ``--workers`` processes. Kept ids and dropped (id, reason) pairs are written as tiny
uncompressed JSONL so the decisions can be compared by id. Prints one JSON line: seconds.

    bench/.venv-datatrove/bin/python -m bench._datatrove_filters IN_DIR OUT_DIR --workers 2
"""
import argparse
import json
import os
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("input_dir")
    p.add_argument("output_dir")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tasks", type=int, default=0, help="default: one per input file")
    args = p.parse_args()

    import glob

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    tasks = args.tasks or len(glob.glob(os.path.join(args.input_dir, "*.jsonl")))
    out = args.output_dir

    def dropped(name):
        return JsonlWriter(f"{out}/dropped/{name}", compression=None,
                           adapter=lambda self, doc: {"id": doc.id, "reason": doc.metadata.get("filter_reason")})

    pipeline = [
        JsonlReader(args.input_dir, glob_pattern="*.jsonl", compression=None, add_file_path=False),
        GopherRepetitionFilter(exclusion_writer=dropped("gopher_repetition")),
        GopherQualityFilter(exclusion_writer=dropped("gopher_quality")),
        C4QualityFilter(exclusion_writer=dropped("c4_quality")),
        JsonlWriter(f"{out}/kept", compression=None, adapter=lambda self, doc: {"id": doc.id}),
    ]
    executor = LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=args.workers,
                                     logging_dir=f"{out}/logs", skip_completed=False)
    start = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "tasks": tasks, "workers": args.workers}), flush=True)


if __name__ == "__main__":  # the local executor re-imports this file in its workers
    main()
