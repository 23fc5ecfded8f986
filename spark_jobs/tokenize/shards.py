"""Spark side of tokenization: encode in batches, then pack each partition into shards.

Encoding is a ``mapInPandas`` with ``encode_batch`` (the tokenizer JSON is broadcast and
loaded once per task). Packing repartitions the kept documents by id hash, sorts each
partition by (split, id), and writes one ``{split}`` file per partition; the driver then
renames those to contiguous ``train-00000.bin``, ``train-00001.bin``…
"""
from __future__ import annotations

import os
from typing import Any, Iterator

from spark_jobs.runner import DROP
from spark_jobs.tokenize.pack import TRAIN, VAL, Packer, dtype_for, split_bucket

EMPTY_TOKENS = "empty_tokens"
ENCODED_DDL = (f"id string, bucket double, split string, n_tokens int, n_unk int, tokens array<int>, "
               f"{DROP} string")


class HashingWriter:
    """A file wrapper that keeps the sha256 of everything written (the manifest's shard checksum)."""

    def __init__(self, fh):
        import hashlib

        self.fh, self.sha256 = fh, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.fh.write(data)

    def close(self) -> None:
        self.fh.close()


def encode_df(df, tokenizer_json: str, val_fraction: float, unk_id: int | None = None):
    """Per document: split, token ids, how many are ``unk_id``, and ``empty_tokens`` for none.

    Characters a WordPiece/Unigram vocabulary never saw become the unknown token; they
    are counted (``n_unk``) rather than dropped, so the manifest says how much text was lost.
    """
    spark = df.sparkSession
    shared = spark.sparkContext.broadcast(tokenizer_json)

    def encode(batches):
        import pandas as pd
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(shared.value)
        for pdf in batches:
            texts = [t if isinstance(t, str) else "" for t in pdf["text"]]
            ids = [enc.ids for enc in tokenizer.encode_batch(texts, add_special_tokens=False)]
            buckets = [split_bucket(i) for i in pdf["id"]]
            yield pd.DataFrame({
                "id": pdf["id"],
                "bucket": buckets,
                "split": [VAL if b < val_fraction else TRAIN for b in buckets],
                "n_tokens": [len(x) for x in ids],
                "n_unk": [x.count(unk_id) if unk_id is not None else 0 for x in ids],
                "tokens": ids,
                DROP: [None if x else EMPTY_TOKENS for x in ids],
            })

    return df.select("id", "text").mapInPandas(encode, ENCODED_DDL)


def ensure_val(encoded, val_fraction: float):
    """A tiny corpus can hash no document into val; then the lowest-hash document goes there.

    Training needs a val split to report val loss; this keeps the split a function of
    the ids alone (the same corpus always gives the same split).
    """
    from pyspark.sql import functions as F

    kept = encoded.filter(F.col(DROP).isNull())
    sizes = {row["split"]: row["count"] for row in kept.groupBy("split").count().collect()}
    if val_fraction <= 0 or sizes.get(VAL) or sizes.get(TRAIN, 0) < 2:
        return encoded
    first = kept.orderBy("bucket", "id").select("id").first()["id"]
    return encoded.withColumn("split", F.when(F.col("id") == first, F.lit(VAL)).otherwise(F.col("split")))


def pack_partitions(kept, folder: str, seq_len: int, eos_id: int, vocab_size: int,
                    partitions: int) -> list[dict]:
    """Write packed shards into ``folder``; return one summary per (partition, split) file."""
    dtype = dtype_for(vocab_size)

    def pack(index: int, rows: Iterator[Any]) -> Iterator[dict[str, Any]]:
        packers: dict[str, tuple[Packer, Any, str]] = {}
        for row in rows:
            if row["split"] not in packers:
                name = f"_{row['split']}-p{index:05d}.bin"
                fh = HashingWriter(open(os.path.join(folder, name), "wb"))
                packers[row["split"]] = (Packer(fh, seq_len, eos_id, dtype), fh, name)
            packers[row["split"]][0].add(row["tokens"])
        for split, (packer, fh, name) in packers.items():
            dropped = packer.close()
            fh.close()
            yield {"split": split, "partition": index, "file": name, "docs": packer.docs,
                   "sequences": packer.sequences, "tokens": packer.sequences * seq_len,
                   "tokens_dropped": dropped, "sha256": fh.sha256.hexdigest()}

    ordered = (kept.select("id", "split", "tokens").repartition(partitions, "id")
               .sortWithinPartitions("split", "id"))
    return ordered.rdd.mapPartitionsWithIndex(pack).collect()


def finalize_shards(folder: str, parts: list[dict]) -> dict[str, dict]:
    """Rename partition files to contiguous names; summarise each split for the manifest.

    Each split lists its ``files`` and their ``sha256`` (computed while writing), which
    the training loader checks before it reads a shard.
    """
    splits: dict[str, dict] = {}
    for split in (TRAIN, VAL):
        mine = sorted((p for p in parts if p["split"] == split), key=lambda p: p["partition"])
        files, sums = [], {}
        summary = {"files": files, "sha256": sums, "sequences": 0, "tokens": 0, "tokens_dropped": 0,
                   "docs": 0}
        for part in mine:
            src = os.path.join(folder, part["file"])
            if part["sequences"] == 0:
                os.remove(src)  # nothing whole to train on; its tokens are counted as dropped
            else:
                name = f"{split}-{len(files):05d}.bin"
                os.rename(src, os.path.join(folder, name))
                files.append(name)
                sums[name] = part["sha256"]
            for key in ("sequences", "tokens", "tokens_dropped", "docs"):
                summary[key] += part[key]
        splits[split] = summary
    return splits
