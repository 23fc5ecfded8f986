"""The Airflow Assets that link the DAGs: declared once here, imported by producer and consumer.

``corpus`` is the training corpus that ``data_refresh`` publishes and ``pretrain`` is
scheduled on. Its URI names where the token shards live: the ``shards`` dataset under the
data root (``file://`` for a local root, ``s3://`` for a bucket). Each event's extra names the
exact shards version (:data:`EXTRA_SHARDS_URI` in :mod:`ops.dagkit.run_params`), since the
Asset stands for every version of that dataset. The URI comes from the environment only
(``$C2M_DATA_ROOT`` or the stack's S3 settings), so DAG parsing reads no DB or network; a
different data root is a different Asset.
"""
from __future__ import annotations

from pathlib import Path

from airflow.sdk import Asset

from ops.lake import storage
from ops.launch.settings import get_settings

CORPUS_DATASET = "shards"  # the lake dataset whose new versions the corpus Asset announces


def corpus_uri(data_root: str) -> str:
    """The corpus Asset's URI for a data root: ``s3://bucket/prefix/shards`` or ``file:///…/shards``."""
    if storage.is_s3(data_root):
        return storage.join(data_root, CORPUS_DATASET)
    return (Path(data_root).resolve() / CORPUS_DATASET).as_uri()


CORPUS = Asset(name="corpus", uri=corpus_uri(get_settings().data_root))
