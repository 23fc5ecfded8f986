"""Near-duplicate dedup in Spark: signatures → LSH buckets → edges → components → decisions.

Nodes are exact-dedup clusters (their ``dup_cluster`` hash), so each text is hashed
once. Signatures of this version's survivors are computed in ``mapInPandas`` (numpy,
:mod:`spark_jobs.dedup.minhash`); earlier corpus versions contribute the signatures they
saved under ``signatures/``, never recomputed. Documents sharing an LSH bucket are linked
to the bucket's smallest node (a star, not all pairs), and only buckets holding at least
one new node are kept: old-to-old links cannot change a decision. Components then come
from :func:`spark_jobs.dedup.components.connected_components`.

Decisions, per component:

* it holds a node of an earlier version: every new node goes, as
  ``exact_duplicate_earlier_version`` (same normalised text hash) or
  ``near_duplicate_earlier_version``; earlier versions are never rewritten;
* otherwise the longest text wins (ties: the smallest id), the rest are ``near_duplicate``.

Every row's ``dup_cluster`` becomes its component's name (the smallest node hash), so the
exact and near-duplicate copies of a document share one cluster id.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spark_jobs.dedup.minhash import MinHashConfig, MinHasher, to_bytes

NEAR_DUPLICATE = "near_duplicate"
NEAR_DUPLICATE_EARLIER = "near_duplicate_earlier_version"
EXACT_DUPLICATE_EARLIER = "exact_duplicate_earlier_version"
SIGNATURES_DIR = "signatures"
SIGNATURE_COLUMNS = [("node", "string"), ("id", "string"), ("text_len", "bigint"), ("shingles", "bigint"),
                     ("signature", "binary")]


def signature_frame(rows, cfg: MinHashConfig, node_col: str = "dup_cluster"):
    """(node, id, text_len, shingles, signature) for each row, computed batch-wise with numpy."""
    from spark_jobs.records import ddl

    hasher = MinHasher(cfg)

    def compute(batches):
        import pandas as pd

        for pdf in batches:
            texts = pdf["text"].tolist()
            sig, counts = hasher.signatures(texts)
            yield pd.DataFrame({
                "node": pdf["node"], "id": pdf["id"],
                "text_len": [len(t or "") for t in texts], "shingles": counts,
                "signature": [to_bytes(row) for row in sig],
            })

    return rows.selectExpr(f"`{node_col}` as node", "id", "text").mapInPandas(compute, ddl(SIGNATURE_COLUMNS))


def band_frame(signatures, cfg: MinHashConfig):
    """(node, band, bucket, is_new): one row per band of every signature with at least one shingle.

    The bucket is xxhash64 of the band's ``rows`` values (4 bytes each, sliced from the
    stored signature), computed in the JVM: a Python pass would cost a worker round trip
    per row for one hash. Two nodes share a bucket exactly when their band is equal
    (up to 64-bit hash collisions), as with :meth:`MinHasher.bands`."""
    from pyspark.sql import functions as F

    width = cfg.rows * 4
    buckets = F.array(*[F.xxhash64(F.substring("signature", band * width + 1, width))
                        for band in range(cfg.bands)])
    return (signatures.where(F.col("shingles") > 0)
            .select("node", F.posexplode(buckets).alias("band", "bucket"), "is_new"))


def candidate_edges(bands):
    """Edges (a, b), a > b: each node of a bucket with a new node, linked to the bucket's smallest node."""
    from pyspark.sql import functions as F

    stats = (bands.groupBy("band", "bucket")
             .agg(F.min("node").alias("root"), F.count("*").alias("size"), F.max("is_new").alias("has_new"))
             .where((F.col("size") > 1) & F.col("has_new")))
    return (bands.join(stats, ["band", "bucket"]).where(F.col("node") != F.col("root"))
            .select(F.col("node").alias("a"), F.col("root").alias("b")).distinct())


def decide(signatures, components):
    """(node, cluster, reason) for every new node; reason null = keep.

    ``signatures`` has every node in play with ``is_new``; ``components`` maps nodes that
    have an edge to their component.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    old_nodes = signatures.where(~F.col("is_new")).select("node").distinct()
    new = signatures.where(F.col("is_new")).select("node", "id", "text_len")
    comp = (new.join(components, "node", "left")
            .withColumn("cluster", F.coalesce("component", "node")).drop("component"))
    old_in = (components.join(old_nodes, "node", "left_semi")
              .select(F.col("component").alias("cluster")).distinct().withColumn("has_old", F.lit(True)))
    exact_old = old_nodes.withColumn("exact_old", F.lit(True))
    rank = F.row_number().over(Window.partitionBy("cluster").orderBy(F.desc("text_len"), F.asc("id")))
    ranked = (comp.join(old_in, "cluster", "left").join(exact_old, "node", "left")
              .withColumn("rank", rank))
    reason = (F.when(F.col("exact_old"), F.lit(EXACT_DUPLICATE_EARLIER))
              .when(F.col("has_old"), F.lit(NEAR_DUPLICATE_EARLIER))
              .when(F.col("rank") > 1, F.lit(NEAR_DUPLICATE)))
    return ranked.select("node", "cluster", reason.alias("reason"))


def apply_decisions(rows, decisions, drop_col: str, node_col: str = "dup_cluster"):
    """Tag live rows with their node's reason; give every row its component as dup_cluster."""
    from pyspark.sql import functions as F

    d = decisions.select(F.col("node").alias("_node"), F.col("cluster").alias("_cluster"),
                         F.col("reason").alias("_reason"))
    joined = rows.join(d, F.col(node_col) == F.col("_node"), "left")
    return (joined.withColumn(drop_col, F.when(F.col(drop_col).isNull(), F.col("_reason"))
                              .otherwise(F.col(drop_col)))
            .withColumn(node_col, F.coalesce("_cluster", node_col))
            .drop("_node", "_cluster", "_reason"))


# ---------------------------------------------------------------- earlier versions

def earlier_signature_versions(root: str, current: str, before: str, cfg: MinHashConfig) -> list[Any]:
    """Finished corpus versions other than ``current``, created up to ``before`` (ISO time),
    that saved signatures. Versions with other MinHash settings are refused: their
    signatures cannot be compared with these."""
    from ops.lake import storage
    from ops.lake.datasets import MANIFEST, DatasetVersion

    base = storage.join(root, "corpus")
    if storage.is_s3(root):
        manifests = storage.list_files(base, suffix=MANIFEST)
    else:
        manifests = sorted(str(p) for p in Path(base).glob(f"v=*/{MANIFEST}"))
    found = []
    for uri in manifests:
        version = uri.rstrip("/").split("/")[-2][2:]
        if version == current:
            continue
        manifest = json.loads(storage.read_text(uri))
        if manifest.get("created_at", "") > before or not manifest.get("minhash"):
            continue
        theirs = {k: manifest["minhash"].get(k) for k in cfg.to_dict()}
        if theirs != cfg.to_dict():
            raise ValueError(f"corpus v={version} saved MinHash signatures with {theirs}, but this run uses "
                             f"{cfg.to_dict()}; rerun with the same settings, or with --dedup-against none "
                             "(or an explicit list of compatible versions)")
        found.append(DatasetVersion(root, "corpus", version))
    return sorted(found, key=lambda dv: dv.version)


def read_signatures(spark, versions: list[Any]):
    """The saved signatures of earlier versions (local paths, ``s3a://`` in s3a mode, else
    downloaded from S3 into the staging folder, removed when the job ends)."""
    from ops.lake import storage
    from spark_jobs import s3io
    from spark_jobs.staging import download_copy

    files: list[str] = []
    for dv in versions:
        folder = dv.data_path(SIGNATURES_DIR)  # in the generation its manifest names
        if s3io.direct(dv.root):
            files += [storage.to_s3a(uri) for uri in storage.list_files(folder, suffix=".parquet")]
        elif storage.is_s3(dv.root):
            files += download_copy(folder, f"c2m-sigs-v{dv.version}-",
                                   keep=lambda rel: rel.endswith(".parquet"))[1]
        else:
            files += sorted(str(p) for p in Path(folder).glob("part-*.parquet"))
    if not files:
        return None
    return spark.read.parquet(*files)


# ---------------------------------------------------------------- the whole near-dedup pass

def near_dedup(spark, tagged, work_dir: str, cfg: MinHashConfig, earlier: list[Any], drop_col: str):
    """Near-dedup the live rows of ``tagged`` (exact dedup done) against each other and ``earlier``.

    Signatures are written once under ``work_dir`` and read back, so the numpy pass runs
    once however often Spark reuses them. Returns (tagged rows with near-dup reasons and
    merged ``dup_cluster``, this version's signatures, facts for the manifest).
    """
    from pyspark.sql import functions as F

    from spark_jobs.dedup.components import connected_components, solver_for

    from ops.lake import storage

    sig_dir = storage.join(work_dir, "signatures")  # work_dir may be an s3a:// URI
    live = tagged.where(F.col(drop_col).isNull())
    signature_frame(live, cfg).write.mode("overwrite").parquet(sig_dir)
    new_sigs = spark.read.parquet(sig_dir)
    in_play = new_sigs.withColumn("is_new", F.lit(True))
    old = read_signatures(spark, earlier)
    if old is not None:
        in_play = in_play.unionByName(old.select(*new_sigs.columns).withColumn("is_new", F.lit(False)))
    edges = candidate_edges(band_frame(in_play, cfg)).localCheckpoint()
    n_edges = edges.count()
    if n_edges:
        components, rounds = connected_components(edges, oriented=True, edge_count=n_edges)
    else:
        components, rounds = spark.createDataFrame([], "node string, component string"), 0
    decisions = decide(in_play, components)
    info = {"candidate_edges": n_edges, "component_rounds": rounds,
            "components_on": solver_for(n_edges)}
    return apply_decisions(tagged, decisions, drop_col), new_sigs, info
