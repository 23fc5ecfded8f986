"""Exact dedup: one document per normalised-text hash, the smallest id wins.

The hash ignores case, punctuation and whitespace, so the same page served with a
different trailing newline or curly quotes collapses into one cluster. ``dup_cluster``
(the hash) is kept on every row, so later versions can dedup against this one.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from spark_jobs.records import sha1_hex

EXACT_DUPLICATE = "exact_duplicate"
DUP_CLUSTER = "dup_cluster"
_SPACES = re.compile(r"\s+")


def normalize_for_hash(text: str) -> str:
    """Lowercase, punctuation removed (Unicode category P*), whitespace collapsed."""
    text = unicodedata.normalize("NFC", text or "").lower()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return _SPACES.sub(" ", text).strip()


def text_hash(text: str) -> str:
    return sha1_hex(normalize_for_hash(text))


class ExactHash:
    """Map step: ``dup_cluster`` = sha1 of the normalised text."""

    name = "exact_hash"

    def map(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc[DUP_CLUSTER] = text_hash(doc.get("text") or "")
        return doc


def mark_duplicates(df, drop_col: str):
    """Spark: within each cluster keep the row with the smallest id; tag the rest.

    Rows already dropped by an earlier step keep their reason and take no part.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    live = F.col(drop_col).isNull()
    rank = F.row_number().over(Window.partitionBy(DUP_CLUSTER, live.alias("_live")).orderBy("id"))
    return (df.withColumn("_rank", rank)
              .withColumn(drop_col, F.when(live & (F.col("_rank") > 1), F.lit(EXACT_DUPLICATE))
                          .otherwise(F.col(drop_col)))
              .drop("_rank"))
