"""Worker for bench/tokenize.py: one process calling ``Tokenizer.encode_batch`` on the same text.

Run with RAYON_NUM_THREADS=1, so this is the practical ceiling of one core. Reads the JSONL
first (not timed), then encodes in batches of ``--batch`` texts (Spark's Arrow batch size).
Prints one JSON line: seconds, tokens, documents.

    .venv-jobs/bin/python bench/_encode_ceiling.py TOKENIZER.json INPUT.jsonl --batch 256
"""
import argparse
import json
import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # bench/tokenize.py must not shadow the stdlib module `tokenize`
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("tokenizer")
    p.add_argument("jsonl")
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(args.tokenizer)
    texts = [json.loads(line)["text"] for line in open(args.jsonl, encoding="utf-8")]
    tokens = 0
    start = time.perf_counter()
    for i in range(0, len(texts), args.batch):
        tokens += sum(len(e.ids) for e in tok.encode_batch(texts[i:i + args.batch], add_special_tokens=False))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "tokens": tokens, "docs": len(texts)}), flush=True)


if __name__ == "__main__":
    main()
