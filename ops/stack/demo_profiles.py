"""The demo's sizes: a :class:`Profile` is the conf ``crawl2model demo`` gives data_refresh (with
pretrain overrides) and finetune; :data:`PROFILES` holds the full demo and the integration
tests' tiny one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ops.launch.settings import Settings


@dataclass(frozen=True)
class Profile:
    """Sizes for one demo run: conf for data_refresh (with pretrain overrides) and finetune.

    ``sites`` name the Settings URLs the crawl starts from, one seed each (empty: the
    data_refresh default, the docs site); each site is its own host, so with
    ``crawl_shards`` set to their number they are crawled side by side."""

    data: dict[str, Any]
    finetune: dict[str, Any]
    timeout_s: float = 3600.0
    sites: tuple[str, ...] = ()

    def refresh_conf(self, s: Settings) -> dict[str, Any]:
        seeds = [f"{getattr(s, site)}/" for site in self.sites]
        return {**self.data, "seeds": seeds} if seeds else dict(self.data)


PROFILES = {
    # Two sites crawled side by side (one shard each, 150 pages each at most): ~150 of the ~530
    # Python doc pages and the movie-review site (ops/stack/reviews_site.py, ~120 pages), text of
    # the sentiment task's domain. robots.txt's Crawl-delay (1 s) sets the pace. The sites are on
    # 127.0.0.1, so the crawl must allow private addresses (off by default in data_refresh).
    "demo": Profile(
        # dedup_against=none: each demo run is a self-contained corpus, so a second `make demo`
        # on the same data root is not emptied by cross-refresh dedup against the first.
        # objective mlm: a BERT, registered as c2m-bert (README "Recipes, measured").
        data={"max_pages": 300, "crawl_shards": 2, "max_depth": 3, "delay": 1.0, "vocab_size": 4096,
              "seq_len": 128, "dedup_against": "none", "allow_private": True,
              "pretrain": {"objective": "mlm", "max_steps": 750}},
        # No epochs: the job picks epochs, lr and warmup from the training-set size and stops
        # early on validation (training/tasks/recipe.py; README "Recipes, measured").
        finetune={"base_model": "models:/c2m-bert@champion"},
        sites=("site_url", "reviews_url"),
    ),
    # For the integration test: a handful of pages, a few steps.
    "tiny": Profile(
        data={"max_pages": 20, "max_depth": 2, "delay": 0.0, "vocab_size": 512, "seq_len": 32,
              "val_fraction": 0.2, "dedup_against": "none", "allow_private": True,
              "pretrain": {"max_steps": 10, "batch_size": 4}},
        finetune={"epochs": 1, "extra_args": ["--max-examples", "256"]},
        timeout_s=1800.0,
    ),
}
