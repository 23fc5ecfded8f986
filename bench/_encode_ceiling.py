"""Worker for bench/tokens.py: one process calling ``tokenizers`` on the stage's input texts.

Run with RAYON_NUM_THREADS=1, so this is the practical ceiling of one core. Reads the texts
of the input version's ``part-*.parquet`` first (not timed), then encodes them in batches of
``--batch`` texts twice, each time with a freshly loaded tokenizer (cold word cache):
``encode_batch`` (the reference) and ``encode_batch_fast`` (the call the stage makes:
the same ids, no character offsets). Prints one JSON line with seconds and tokens of each.

    .venv-jobs/bin/python -m bench._encode_ceiling TOKENIZER.json CORPUS_VERSION_FOLDER --batch 256
"""
import argparse
import glob
import json
import os
import time


def encode_all(tokenizer_file: str, texts: list, batch: int, call: str) -> dict:
    from tokenizers import Tokenizer

    encode = getattr(Tokenizer.from_file(tokenizer_file), call)
    tokens = 0
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        tokens += sum(len(e.ids) for e in encode(texts[i:i + batch], add_special_tokens=False))
    return {"seconds": time.perf_counter() - start, "tokens": tokens}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("tokenizer")
    p.add_argument("folder", help="a corpus version folder with part-*.parquet (id, text)")
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    import pyarrow.parquet as pq

    texts = []
    for path in sorted(glob.glob(os.path.join(args.folder, "part-*.parquet"))):
        texts += pq.read_table(path, columns=["text"]).column("text").to_pylist()
    out = {"docs": len(texts)}
    for call in ("encode_batch", "encode_batch_fast"):
        out[call] = encode_all(args.tokenizer, texts, args.batch, call)
    if out["encode_batch"]["tokens"] != out["encode_batch_fast"]["tokens"]:
        raise SystemExit("encode_batch and encode_batch_fast gave different token counts")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
