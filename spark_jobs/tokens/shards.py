"""Spark side of tokenization: encode in batches, then pack each partition into shards.

Encoding is a ``mapInArrow`` around ``encode_batch`` (the tokenizer JSON is broadcast and
loaded once per Python worker, which Spark reuses across tasks). Token ids leave Python as
one ``binary`` value per document (the shard dtype's little-endian bytes), built from Arrow
buffers: no per-row pandas frame, and
the JVM caches and shuffles one byte string per document. Packing reads those back with
``np.frombuffer`` and packs a whole Arrow batch with a few numpy operations, where it used
to turn every row into Python objects and extend a list token by token.
Packing repartitions the kept documents by id hash, sorts each partition by (split, id),
and writes one ``{split}`` file per partition; the driver then renames those to
contiguous ``train-00000.bin``, ``train-00001.bin``…
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from itertools import chain
from typing import Any, Iterator

import numpy as np

from spark_jobs.runner import DROP
from spark_jobs.tokens.pack import TRAIN, VAL, Packer, dtype_for, split_bucket

EMPTY_TOKENS = "empty_tokens"
ENCODED_DDL = (f"id string, bucket double, split string, n_tokens int, n_unk int, tokens binary, "
               f"{DROP} string")
PACKED_DDL = ("split string, partition int, file string, docs long, sequences long, tokens long, "
              "tokens_dropped long, sha256 string")


# Texts per encode_batch_fast call. Measured on one core (12.5 MB of the bench corpus, byte-level
# BPE 8,192): 256 per call took 5-12% less time than one call for the whole 10,000-row Arrow batch,
# and holds a fraction of its Encoding objects in memory at once.
ENCODE_CHUNK = 256
TASKS_PER_CORE = 4  # encoding tasks per core, so one slow split cannot leave the other cores idle


def split_input_conf(spark) -> dict[str, str]:
    """Read the input in about ``TASKS_PER_CORE`` splits per core, so encoding tasks balance.

    Spark's default is one split per core (a 25 MB JSONL becomes two tasks on two cores),
    and splits differ in tokenizing cost (measured: 4.1 vs 5.5 CPU s), so one core sat idle
    at the end. Smaller file splits cost no shuffle and keep the input's row order; only
    the doc index is written as more, smaller part files.
    """
    cores = spark.sparkContext.defaultParallelism
    return {"spark.sql.files.minPartitionNum": str(TASKS_PER_CORE * cores),
            "spark.sql.files.openCostInBytes": str(1 << 20)}


@contextmanager
def session_conf(spark, settings: dict[str, str]):
    """Runtime SQL settings for one job; the session's own values come back afterwards."""
    before = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


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


def encode_batch(tokenizer, ids: list, texts: list, val_fraction: float, unk_id: int | None,
                 dtype: np.dtype):
    """One Arrow batch of ``ENCODED_DDL`` rows for these documents (pure: tests call it without Spark).

    ``encode_batch_fast`` gives the same ids as ``encode_batch`` without computing character
    offsets, which shards never use: 25% less CPU on one core (9.6 s against 12.6 s for 50 MB).
    Characters a WordPiece/Unigram vocabulary never saw become the unknown token; they
    are counted (``n_unk``) rather than dropped, so the manifest says how much text was lost.
    """
    import pyarrow as pa

    texts = [t if isinstance(t, str) else "" for t in texts]
    chunks = (texts[start:start + ENCODE_CHUNK] for start in range(0, len(texts), ENCODE_CHUNK))
    encoded = [enc.ids for chunk in chunks
               for enc in tokenizer.encode_batch_fast(chunk, add_special_tokens=False)]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    flat = np.fromiter(chain.from_iterable(encoded), dtype=dtype, count=int(lengths.sum()))
    ends = np.cumsum(lengths)
    if unk_id is None:
        n_unk = np.zeros(len(ids), dtype=np.int32)
    else:
        seen = np.concatenate([[0], np.cumsum(flat == unk_id)])
        n_unk = (seen[ends] - seen[ends - lengths]).astype(np.int32)
    offsets = np.concatenate([[0], ends * dtype.itemsize]).astype(np.int32)
    tokens = pa.Array.from_buffers(pa.binary(), len(ids), [None, pa.py_buffer(offsets), pa.py_buffer(flat)])
    buckets = [split_bucket(i) for i in ids]
    return pa.RecordBatch.from_arrays([
        pa.array(ids, pa.string()),
        pa.array(buckets, pa.float64()),
        pa.array([VAL if b < val_fraction else TRAIN for b in buckets], pa.string()),
        pa.array(lengths, pa.int32()),
        pa.array(n_unk, pa.int32()),
        tokens,
        pa.array([None if n else EMPTY_TOKENS for n in lengths.tolist()], pa.string()),
    ], names=["id", "bucket", "split", "n_tokens", "n_unk", "tokens", DROP])


_WORKER_TOKENIZER: dict[str, Any] = {}  # this Python worker's tokenizer, by its JSON


def worker_tokenizer(tokenizer_json: str):
    """The tokenizer for ``tokenizer_json``, loaded once per Python worker, not once per task.

    Spark reuses a worker for the job's tasks (``spark.python.worker.reuse``), so later
    tasks skip the parse and keep the BPE word cache the earlier ones filled, as one
    ``encode_batch`` process does. Holds one tokenizer: a new JSON replaces it.
    """
    tokenizer = _WORKER_TOKENIZER.get(tokenizer_json)
    if tokenizer is None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(tokenizer_json)
        _WORKER_TOKENIZER.clear()
        _WORKER_TOKENIZER[tokenizer_json] = tokenizer
    return tokenizer


def encode_df(df, tokenizer_json: str, val_fraction: float, unk_id: int | None = None,
              vocab_size: int = 65535):
    """Per document: split, token ids (``binary``, in the shard dtype), how many are ``unk_id``,
    and ``empty_tokens`` for none. Lazy: the caller persists it and runs the actions."""
    shared = df.sparkSession.sparkContext.broadcast(tokenizer_json)
    dtype = dtype_for(vocab_size)

    def encode(batches):
        tokenizer = worker_tokenizer(shared.value)
        for batch in batches:
            yield encode_batch(tokenizer, batch.column("id").to_pylist(), batch.column("text").to_pylist(),
                               val_fraction, unk_id, dtype)

    return df.select("id", "text").mapInArrow(encode, ENCODED_DDL)


def split_stats(encoded, long_tokens: int) -> dict[str, int]:
    """Rows encoded, kept documents per split, token and unknown-token totals, documents over
    ``long_tokens``: one aggregation (the action that fills the cache) for all the manifest
    and :func:`ensure_val` need. Dropped rows have no tokens, so the sums are the kept ones'.
    """
    from pyspark.sql import functions as F

    kept = F.col(DROP).isNull()

    def count_if(cond):
        return F.sum(cond.cast("long"))

    row = encoded.agg(F.count(F.lit(1)).alias("rows"),
                      count_if(kept & (F.col("split") == TRAIN)).alias(TRAIN),
                      count_if(kept & (F.col("split") == VAL)).alias(VAL),
                      F.sum("n_tokens").alias("tokens"), F.sum("n_unk").alias("unk"),
                      count_if(F.col("n_tokens") > long_tokens).alias("long")).first()
    return {key: int(row[key] or 0) for key in ("rows", TRAIN, VAL, "tokens", "unk", "long")}


def ensure_val(encoded, val_fraction: float, sizes: dict[str, int]):
    """A tiny corpus can hash no document into val; then the lowest-hash document goes there.

    Training needs a val split to report val loss; this keeps the split a function of
    the ids alone (the same corpus always gives the same split). ``sizes`` holds the kept
    documents per split (:func:`split_stats`).
    """
    from pyspark.sql import functions as F

    if val_fraction <= 0 or sizes.get(VAL) or sizes.get(TRAIN, 0) < 2:
        return encoded
    kept = encoded.filter(F.col(DROP).isNull())
    first = kept.orderBy("bucket", "id").select("id").first()["id"]
    return encoded.withColumn("split", F.when(F.col("id") == first, F.lit(VAL)).otherwise(F.col("split")))


def pack_batches(batches, folder: str, index: int, seq_len: int, eos_id: int, dtype: np.dtype) -> list[dict]:
    """Pack Arrow batches (id, split, tokens; sorted by split, then id) into ``_{split}-p{index}.bin``.

    Returns one summary per split file written. Pure (no Spark), so a unit test can drive it.
    """
    import pyarrow.compute as pc

    packers: dict[str, tuple[Packer, HashingWriter, str]] = {}
    for batch in batches:
        splits = batch.column("split")
        for split in pc.unique(splits).to_pylist():
            if split not in packers:
                name = f"_{split}-p{index:05d}.bin"
                fh = HashingWriter(open(os.path.join(folder, name), "wb"))
                packers[split] = (Packer(fh, seq_len, eos_id, dtype), fh, name)
            docs = batch.column("tokens").filter(pc.equal(splits, split)).to_pylist()
            lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs)) // dtype.itemsize
            packers[split][0].add_docs(np.frombuffer(b"".join(docs), dtype=dtype), lengths)
    out = []
    for split, (packer, fh, name) in packers.items():
        dropped = packer.close()
        fh.close()
        out.append({"split": split, "partition": index, "file": name, "docs": packer.docs,
                    "sequences": packer.sequences, "tokens": packer.sequences * seq_len,
                    "tokens_dropped": dropped, "sha256": fh.sha256.hexdigest()})
    return out


def pack_partitions(kept, folder: str, seq_len: int, eos_id: int, vocab_size: int,
                    partitions: int) -> list[dict]:
    """Write packed shards into ``folder`` (a local folder, or an S3 prefix that each task
    uploads its files to); return one summary per (partition, split) file."""
    dtype = dtype_for(vocab_size)

    def pack(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        from pyspark import TaskContext

        from spark_jobs.staging import local_folder

        schema = pa.schema([("split", pa.string()), ("partition", pa.int32()), ("file", pa.string()),
                            ("docs", pa.int64()), ("sequences", pa.int64()), ("tokens", pa.int64()),
                            ("tokens_dropped", pa.int64()), ("sha256", pa.string())])
        index = TaskContext.get().partitionId()
        with local_folder(folder) as local:
            parts = pack_batches(batches, local, index, seq_len, eos_id, dtype)
        for part in parts:
            yield pa.RecordBatch.from_pylist([part], schema=schema)

    ordered = (kept.select("id", "split", "tokens").repartition(partitions, "id")
               .sortWithinPartitions("split", "id"))
    return [row.asDict() for row in ordered.mapInArrow(pack, PACKED_DDL).collect()]


def finalize_shards(staging, parts: list[dict]) -> dict[str, dict]:
    """Rename partition files (in a :class:`~spark_jobs.staging.Staging`) to contiguous names;
    summarise each split for the manifest.

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
            if part["sequences"] == 0:
                staging.remove(part["file"])  # nothing whole to train on; its tokens are counted as dropped
            else:
                name = f"{split}-{len(files):05d}.bin"
                staging.move(part["file"], name)
                files.append(name)
                sums[name] = part["sha256"]
            for key in ("sequences", "tokens", "tokens_dropped", "docs"):
                summary[key] += part[key]
        splits[split] = summary
    return splits
