"""The plain helpers behind the DAGs: versions, job flags, manifest summaries."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ops import dag_support as ds
from ops.datasets import DatasetVersion, check_version


def test_version_from_a_weekly_logical_date():
    assert ds.derive_version(datetime(2026, 11, 29, tzinfo=timezone.utc), "scheduled__x") == "2026-11-29"
    assert ds.derive_version(datetime(2026, 11, 29, 5, 4, 3, tzinfo=timezone.utc), "m") == "2026-11-29T050403"


def test_version_from_a_manual_run_id_is_valid_and_stable():
    run_id = "manual__2026-11-29T05:04:00.678525+00:00"
    v = ds.derive_version(None, run_id)
    assert check_version(v) == v
    assert v == ds.derive_version(None, run_id)
    long = "asset_triggered__" + "x" * 100 + "__tail123"
    assert ds.derive_version(None, long).endswith("tail123")


def test_crawl_args_default_the_scope_to_the_seed_hosts():
    params = {"seeds": ["http://127.0.0.1:28000/", "http://127.0.0.1:28000/b"], "allow_domains": [],
              "max_pages": 5, "max_depth": 1, "delay": 0.5, "allow_private": True}
    args = ds.stage_args("crawl", params, "/data", "v1")
    assert args[args.index("--allow-domains") + 1] == "127.0.0.1:28000"
    assert args[args.index("--seeds") + 1] == "http://127.0.0.1:28000/,http://127.0.0.1:28000/b"
    assert "--allow-private" in args and args[:4] == ["--root", "/data", "--version", "v1"]


def test_later_stages_read_the_same_version():
    params = {"vocab_size": 512, "seq_len": 32}
    expected = ["--root", "/d", "--version", "v", "--input-version", "v"]
    assert ds.stage_args("clean", params, "/d", "v") == expected
    tok = ds.stage_args("tokenize", params, "/d", "v")
    assert tok[-4:] == ["--vocab-size", "512", "--seq-len", "32"]


def test_seed_must_be_absolute():
    with pytest.raises(ValueError, match="absolute"):
        ds.seed_hosts(["/relative"])


def test_manifest_summary_reads_counts_and_tokens(tmp_path):
    v = DatasetVersion(str(tmp_path), "shards", "v1")
    (tmp_path / "shards" / "v=v1").mkdir(parents=True)
    (tmp_path / "shards" / "v=v1" / "train-00000.bin").write_bytes(b"\0" * 8)
    v.write_manifest(rows_in=3, rows_out=3, dropped={}, parents=[], config={}, extra={
        "splits": {"train": {"tokens": 100, "sequences": 3}, "val": {"tokens": 10, "sequences": 1}},
        "vocab_size": 512, "seq_len": 32})
    out = ds.manifest_summary(str(tmp_path), "tokenize", "v1")
    assert out["uri"] == v.uri and out["rows_out"] == 3
    assert out["tokens"] == {"train": 100, "val": 10} and out["vocab_size"] == 512


def test_overrides_only_touch_known_params():
    params = {"max_steps": 300, "model": "tiny", "np": 2}
    merged = ds.training_overrides(params, {"max_steps": 10, "bogus": 1, "np": None})
    assert merged == {"max_steps": 10, "model": "tiny", "np": 2}


def _shards(root, version):
    v = DatasetVersion(str(root), "shards", version)
    (root / "shards" / f"v={version}").mkdir(parents=True)
    v.write_manifest(rows_in=1, rows_out=1, dropped={}, parents=[], config={})
    return v.uri


def test_asset_triggered_pretrain_uses_the_event_shards_and_overrides(tmp_path):
    params = {"shards_uri": None, "max_steps": 300, "np": 2}
    extra = {ds.EXTRA_SHARDS_URI: "/d/shards/v=7", ds.EXTRA_PRETRAIN: {"max_steps": 10}}
    p, shards = ds.resolve_pretrain(params, "asset_triggered", extra, str(tmp_path))
    assert shards == "/d/shards/v=7" and p["max_steps"] == 10 and p["np"] == 2


def test_manual_pretrain_defaults_to_the_latest_shards(tmp_path):
    _shards(tmp_path, "v1")
    newest = _shards(tmp_path, "v2")
    params = {"shards_uri": None, "max_steps": 300}
    p, shards = ds.resolve_pretrain(params, "manual", {ds.EXTRA_PRETRAIN: {"max_steps": 1}}, str(tmp_path))
    assert shards == newest and p["max_steps"] == 300
    assert ds.resolve_pretrain({"shards_uri": "/x"}, "manual", None, str(tmp_path))[1] == "/x"


def test_pretrain_without_shards_says_what_to_run(tmp_path):
    with pytest.raises(RuntimeError, match="data_refresh"):
        ds.resolve_pretrain({"shards_uri": None}, "manual", None, str(tmp_path))


def test_training_args(tmp_path):
    p = {"model": "tiny", "max_steps": 10, "batch_size": None, "extra_args": ["--lr", "0.001"]}
    args = ds.pretrain_args(p, "/d/shards/v=1", "/d", "run_1", tmp_path / "r.json")
    assert args[:2] == ["--shards", "/d/shards/v=1"] and args[-2:] == ["--lr", "0.001"]
    assert "--batch-size" not in args
    assert args[args.index("--checkpoint-dir") + 1] == "/d/checkpoints/pretrain/run_1"
    ft = {"base_model": "models:/c2m-base@champion", "task": "sentiment", "epochs": 1}
    f = ds.finetune_args(ft, tmp_path)
    assert f[f.index("--register-name") + 1] == "c2m-sentiment"
