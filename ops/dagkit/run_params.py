"""The Params a training run ends up with: the corpus event's shards and overrides, cross-field
checks a JSON schema cannot express, and the confs end_to_end triggers its DAGs with."""
from __future__ import annotations

from typing import Any

from ops.lake.datasets import DatasetVersion

# Keys of the corpus Asset event extra, read by the pretrain DAG.
EXTRA_SHARDS_URI = "shards_uri"
EXTRA_PRETRAIN = "pretrain"


def training_overrides(params: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Params with the asset event's overrides on top (only keys the Params already have)."""
    merged = dict(params)
    for key, value in (overrides or {}).items():
        if key in merged and value is not None:
            merged[key] = value
    return merged


def resolve_pretrain(params: dict[str, Any], run_type: str, event_extra: dict[str, Any] | None,
                     data_root: str) -> tuple[dict[str, Any], str]:
    """The Params and shards a pretrain run uses.

    An asset-triggered run trains on the shards its corpus event names, with the overrides the
    refresh carried; a manual run uses its Params, and without ``shards_uri`` the newest
    complete shards version under the data root.
    """
    from ops.lake.datasets import latest_version

    shards = params.get("shards_uri")
    if run_type == "asset_triggered":
        extra = event_extra or {}
        shards = shards or extra.get(EXTRA_SHARDS_URI)
        params = training_overrides(params, extra.get(EXTRA_PRETRAIN))
    if not shards:
        version = latest_version(data_root, "shards")
        if version is None:
            raise RuntimeError(f"no complete shards under {data_root}/shards: run the data_refresh DAG "
                               "(or `crawl2model tokenize`) first, or pass shards_uri")
        shards = DatasetVersion(data_root, "shards", version).uri
    return params, shards


def check_training_params(p: dict[str, Any]) -> None:
    """Cross-field checks a per-field JSON schema cannot express; raised before any launch."""
    if p.get("task") in ("classification", "tagging") and not p.get("data"):
        raise ValueError(f"task={p['task']!r} has no built-in data set: set the 'data' Param to a folder "
                         "with train/val/test .jsonl")
    subsets = {"sentiment": ("sentences", "reviews"), "pos": ("oanc", "wsj")}
    if p.get("subset") and p["subset"] not in subsets.get(p.get("task"), ()):
        raise ValueError(f"subset={p['subset']!r} does not belong to task {p.get('task')!r}; "
                         f"valid: {list(subsets.get(p.get('task'), ())) or 'none'}")
    if p.get("lr_min") is not None and p.get("lr_max") is not None and p["lr_min"] >= p["lr_max"]:
        raise ValueError(f"lr_min={p['lr_min']} must be below lr_max={p['lr_max']}")


def end_to_end_confs(p: dict[str, Any], version: str, data_root: str) -> dict[str, dict[str, Any]]:
    """The confs end_to_end triggers data_refresh, pretrain and finetune with.

    data_refresh writes ``version`` and does not publish the corpus Asset (so pretrain is not
    started twice); pretrain gets that version's shards explicitly.
    """
    refresh = {**dict(p.get("refresh_conf") or {}), "seeds": list(p["seeds"]), "max_pages": p["max_pages"],
               "version": version, "publish": False}
    pretrain = {**dict(p.get("pretrain_conf") or {}), "model": p["model"], "max_steps": p["max_steps"],
                "shards_uri": DatasetVersion(data_root, "shards", version).uri}
    finetune = {**dict(p.get("finetune_conf") or {}), "task": p["task"], "epochs": p["epochs"]}
    return {"data_refresh": refresh, "pretrain": pretrain, "finetune": finetune}
