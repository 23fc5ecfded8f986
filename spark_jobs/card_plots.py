"""The data card's pictures: PNGs drawn from the manifests and the versions' own files.

- ``funnel.png``: rows per stage, oldest first, each bar split into the rows kept and the rows
  dropped by reason (a stage's bar is its rows in: rows out + Σ dropped);
- ``doc_length.png``: a histogram of kept documents' length in tokens (the shards' document
  index, ``n_tokens``);
- ``languages.png``: each language's share of the corpus documents (their ``lang`` column);
- ``shard_tokens.png``: tokens per shard file, train and val (file size / token width).

Drawn with matplotlib's Agg canvas (a bare ``Figure``: no pyplot, no display). Where a figure's
data is missing (a JSONL corpus without ``lang``, an old manifest) that figure is left out and
the others are still drawn. Reading the corpus's ``lang`` column stops after ``MAX_FILES``
files, and the figure says so.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ops.lake import storage

FUNNEL, LENGTHS, LANGUAGES, SHARD_TOKENS = "funnel.png", "doc_length.png", "languages.png", "shard_tokens.png"
TITLES = {FUNNEL: "Rows per stage and drops by reason", LENGTHS: "Document length (tokens)",
          LANGUAGES: "Language share of the corpus", SHARD_TOKENS: "Tokens per shard file"}
MAX_FILES = 32  # parquet files read for a histogram (S3 files are downloaded whole)
MAX_REASONS = 9  # drop reasons drawn one by one; the rest are summed as "other"
MAX_LANGUAGES = 12
KEPT_COLOR = "#4c956c"


def _figure(width: float = 8.0, height: float = 4.5):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def funnel(chain: list[dict[str, Any]], path: Path) -> Path:
    """Stacked bars: per stage (oldest first) the kept rows, then each drop reason on top."""
    stages = list(reversed(chain))
    totals: Counter = Counter()
    for m in stages:
        totals.update({r: int(n or 0) for r, n in (m.get("dropped") or {}).items()})
    shown = [r for r, _ in totals.most_common(MAX_REASONS)]
    fig, ax = _figure(max(6.0, 1.6 * len(stages) + 3.0))
    labels = [f"{m.get('stage')}\nv={m.get('version')}" for m in stages]
    kept = [int(m.get("rows_out") or 0) for m in stages]
    ax.bar(labels, kept, color=KEPT_COLOR, label="kept")
    bottom = list(kept)
    colors = iter(_palette(len(shown) + 1))
    for reason in shown + (["other"] if len(totals) > len(shown) else []):
        heights = [_dropped(m, reason, shown) for m in stages]
        ax.bar(labels, heights, bottom=bottom, color=next(colors), label=f"dropped: {reason}")
        bottom = [b + h for b, h in zip(bottom, heights)]
    for x, (k, total) in enumerate(zip(kept, bottom)):
        ax.annotate(f"{k} of {total}", (x, total), ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(bottom + [1]) * 1.12)  # room for the labels above the bars
    ax.set_ylabel("rows")
    ax.set_title(TITLES[FUNNEL])
    ax.legend(fontsize=7, loc="upper right", framealpha=0.8)
    return _save(fig, path)


def _dropped(manifest: dict[str, Any], reason: str, shown: list[str]) -> int:
    dropped = manifest.get("dropped") or {}
    if reason == "other":
        return sum(int(n or 0) for r, n in dropped.items() if r not in shown)
    return int(dropped.get(reason) or 0)


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(1, n + 1)]  # tab10's 0 is close to the kept colour


def lengths(values: list[int], path: Path, note: str = "") -> Path:
    fig, ax = _figure()
    ax.hist(values, bins=min(40, max(5, len(set(values)))), color="#3a6ea5")
    ax.set_xlabel("tokens per document")
    ax.set_ylabel("documents")
    ax.set_title(f"{TITLES[LENGTHS]}: {len(values)} documents{note}")
    return _save(fig, path)


def languages(counts: Counter, path: Path, note: str = "") -> Path:
    total = sum(counts.values())
    top = counts.most_common(MAX_LANGUAGES)
    rest = total - sum(n for _, n in top)
    names = [lang for lang, _ in top] + (["other"] if rest else [])
    shares = [100.0 * n / total for _, n in top] + ([100.0 * rest / total] if rest else [])
    fig, ax = _figure(7.0, max(2.5, 0.4 * len(names) + 1.5))
    ax.barh(names[::-1], shares[::-1], color="#c9733b")
    for y, share in enumerate(shares[::-1]):
        ax.annotate(f"{share:.1f}%", (share, y), va="center", fontsize=8, xytext=(3, 0),
                    textcoords="offset points")
    ax.set_xlabel("% of documents")
    ax.set_xlim(0, 110)
    ax.set_title(f"{TITLES[LANGUAGES]}: {total} documents{note}")
    return _save(fig, path)


def shard_tokens(per_file: dict[str, int], path: Path) -> Path:
    names = list(per_file)
    fig, ax = _figure(max(6.0, 0.35 * len(names) + 3.0))
    colors = ["#3a6ea5" if n.startswith("train") else "#c9733b" for n in names]
    ax.bar(names, [per_file[n] for n in names], color=colors)
    ax.set_ylabel("tokens")
    ax.set_title(f"{TITLES[SHARD_TOKENS]}: {sum(per_file.values())} tokens in {len(names)} files")
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    return _save(fig, path)


# ---------------------------------------------------------------- data from the versions' files

def parquet_column(version_uri: str, column: str) -> tuple[list, str]:
    """One column of a version's kept rows (its top-level ``part-*.parquet``), and a note when only
    the first ``MAX_FILES`` files were read. Empty when the column or the files are missing."""
    import io

    import pyarrow.parquet as pq

    base = str(version_uri).rstrip("/")
    parts = [f for f in storage.list_files(base, suffix=".parquet")
             if f.rsplit("/", 1)[0] == base and f.rsplit("/", 1)[-1].startswith("part-")]
    values: list = []
    for uri in parts[:MAX_FILES]:
        source = io.BytesIO(storage.read_bytes(uri)) if storage.is_s3(uri) else uri
        table = pq.ParquetFile(source)
        if column not in table.schema_arrow.names:
            return [], ""
        values += table.read(columns=[column]).column(column).to_pylist()
    note = f" (first {MAX_FILES} of {len(parts)} files)" if len(parts) > MAX_FILES else ""
    return values, note


def tokens_per_shard(manifest: dict[str, Any]) -> dict[str, int]:
    """Tokens in each shard file: its size over the token width (``dtype``)."""
    import numpy as np

    width = np.dtype(manifest.get("dtype") or "uint16").itemsize
    out = {}
    for split in ("train", "val"):
        for name in (manifest.get("splits") or {}).get(split, {}).get("files") or []:
            out[name] = storage.size(storage.join(manifest["uri"], name)) // width
    return out


def draw_all(chain: list[dict[str, Any]], folder: str | Path) -> dict[str, str]:
    """Every figure the data is there for, as PNGs in ``folder``: ``{file name: title}``."""
    folder = Path(folder)
    head = chain[0]
    drawn = {FUNNEL: funnel(chain, folder / FUNNEL)}
    doc_tokens, note = parquet_column(head["uri"], "n_tokens") if head.get("stage") == "shards" else ([], "")
    if doc_tokens:
        drawn[LENGTHS] = lengths([int(n) for n in doc_tokens if n is not None], folder / LENGTHS, note)
    corpus = chain[1] if len(chain) > 1 else head
    langs, note = parquet_column(corpus["uri"], "lang")
    if langs:
        drawn[LANGUAGES] = languages(Counter(lang or "unknown" for lang in langs), folder / LANGUAGES, note)
    per_file = tokens_per_shard(head) if head.get("splits") else {}
    if per_file:
        drawn[SHARD_TOKENS] = shard_tokens(per_file, folder / SHARD_TOKENS)
    return {path.name: TITLES[path.name] for path in drawn.values()}
