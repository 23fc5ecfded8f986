"""The data card: the tokenize stage's MLflow run with the whole chain of manifests."""
from __future__ import annotations

from pathlib import Path

import pytest

from ops.lake.datasets import DatasetVersion
from spark_jobs import lineage

mlflow = pytest.importorskip("mlflow")


def _data_files(dv: DatasetVersion, stage: str) -> None:
    """The files the pictures read: the corpus's ``lang`` column, the shards' document index and
    shard files (40 and 8 uint16 tokens)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(dv.uri)
    folder.mkdir(parents=True, exist_ok=True)
    if stage == "corpus":
        pq.write_table(pa.table({"id": list("abcde"), "lang": ["en", "en", "en", "de", None]}),
                       folder / "part-00000.parquet")
    if stage == "shards":
        pq.write_table(pa.table({"id": list("abcd"), "split": ["train"] * 3 + ["val"],
                                 "n_tokens": [5, 12, 12, 40]}), folder / "part-00000.parquet")
        (folder / "train-00000.bin").write_bytes(bytes(80))
        (folder / "val-00000.bin").write_bytes(bytes(16))


def _chain(root: str) -> dict:
    """raw → extracted → clean → corpus(dedup) → shards, as the stages write them."""
    specs = [("raw", 12, 10, {"robots_disallowed": 2}, []),
             ("extracted", 10, 9, {"empty_after_extract": 1}, ["raw"]),
             ("clean", 9, 6, {"gopher_short_doc": 2, "c4_lorem_ipsum": 1}, ["extracted"]),
             ("corpus", 6, 5, {"near_duplicate": 1}, ["clean"]),
             ("shards", 5, 5, {}, ["corpus"])]
    uris: dict[str, str] = {}
    manifest = {}
    for stage, rows_in, rows_out, dropped, parents in specs:
        dv = DatasetVersion(root, stage, "7")
        extra = {}
        if stage == "shards":
            extra = {"tokenizer_sha256": "ab" * 32, "tokenizer_type": "bpe", "vocab_size": 512, "seq_len": 16,
                     "dtype": "uint16",
                     "splits": {"train": {"tokens": 800, "sequences": 50, "docs": 4,
                                          "files": ["train-00000.bin"]},
                                "val": {"tokens": 160, "sequences": 10, "docs": 1,
                                        "files": ["val-00000.bin"]}}}
        _data_files(dv, stage)
        manifest = dv.write_manifest(rows_in=rows_in, rows_out=rows_out, dropped=dropped,
                                     parents=[uris[p] for p in parents], config={"seq_len": 16, "lang": ["en"]},
                                     extra=extra)
        uris[stage] = dv.uri
    return DatasetVersion(root, "shards", "7").read_manifest()


def test_lineage_walks_back_to_the_first_stage(tmp_path):
    chain = lineage.lineage(_chain(str(tmp_path / "lake")))
    assert [m["stage"] for m in chain] == ["shards", "corpus", "clean", "extracted", "raw"]
    metrics = lineage.card_metrics(chain)
    assert metrics["clean/dropped/gopher_short_doc"] == 2 and metrics["raw/rows_in"] == 12
    assert metrics["tokens/train"] == 800 and metrics["sequences/val"] == 10
    card = lineage.card_markdown(chain)
    assert card.index("| raw |") < card.index("| clean |") < card.index("| shards |")
    assert "c4_lorem_ipsum: 1" in card and "sha256 `" + "ab" * 32 in card


def test_data_card_run_logs_the_shards_as_training_does(tmp_path, monkeypatch):
    from training.tracking import digest_json

    manifest = _chain(str(tmp_path / "lake"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # what the job sees; never mlflow.set_tracking_uri,
    client = mlflow.MlflowClient(uri)               # which would outlive this test in the process
    client.create_experiment(lineage.EXPERIMENT, artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = lineage.log_data_card(manifest, tokenizer_json='{"model": {}}')
    assert run_id
    run = client.get_run(run_id)
    assert run.data.metrics["corpus/dropped/near_duplicate"] == 1
    assert run.data.tags["c2m.tokenizer_sha256"] == "ab" * 32
    assert run.data.params["tokenize.seq_len"] == "16" and "tokenize.lang" not in run.data.params
    inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    shards = inputs[lineage.shards_dataset_name(manifest["uri"])]
    assert shards.digest == digest_json(manifest)[:36]  # the digest every pretrain run logs
    assert "corpus-v=7" in inputs
    files = {f.path for f in client.list_artifacts(run_id, "data_card")}
    assert files == {"data_card/data_card.md", "data_card/lineage.json", "data_card/tokenizer.json",
                     "data_card/funnel.png", "data_card/doc_length.png", "data_card/languages.png",
                     "data_card/shard_tokens.png"}
    note = run.data.tags["mlflow.note.content"]  # the run page's description
    assert note.startswith(f"Data card of shards version 7 ({manifest['uri']}) from the corpus version")
    assert "raw 10 → extracted 9 → clean 6 → corpus 5 → shards 5" in note
    assert "800 train tokens" in note


def _png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature; then decoded whole."""
    import struct

    from matplotlib import image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    pixels = image.imread(path)  # the whole file decodes
    assert pixels.ndim == 3 and pixels.std() > 0, f"{path} is blank"
    return struct.unpack(">II", data[16:24])


def test_card_pictures_are_valid_pngs_linked_from_the_card(tmp_path):
    from spark_jobs import card_plots

    chain = lineage.lineage(_chain(str(tmp_path / "lake")))
    out = tmp_path / "card"
    out.mkdir()
    figures = lineage.draw_figures(chain, str(out))
    assert list(figures) == ["funnel.png", "doc_length.png", "languages.png", "shard_tokens.png"]
    for name in figures:
        width, height = _png_size(out / name)
        assert width >= 300 and height >= 200
    card = lineage.card_markdown(chain, figures)
    for name, title in figures.items():
        assert f"![{title}]({name})" in card
    assert card_plots.tokens_per_shard(chain[0]) == {"train-00000.bin": 40, "val-00000.bin": 8}
    assert card_plots.parquet_column(chain[1]["uri"], "lang")[0] == ["en", "en", "en", "de", None]
    assert card_plots.parquet_column(chain[2]["uri"], "lang") == ([], "")  # no files: left out


def test_a_chain_without_data_files_still_gets_its_funnel(tmp_path):
    dv = DatasetVersion(str(tmp_path / "lake"), "clean", "1")
    manifest = dv.write_manifest(rows_in=5, rows_out=3, dropped={"too_short": 2}, parents=[], config={})
    figures = lineage.draw_figures([manifest], str(tmp_path))
    assert list(figures) == ["funnel.png"] and _png_size(tmp_path / "funnel.png")[0] >= 300


@pytest.mark.timeout(60)  # MLflow's own client would retry a dead server for minutes
def test_no_tracking_uri_or_a_dead_server_never_fails_or_stalls_the_stage(tmp_path, monkeypatch, capsys):
    manifest = _chain(str(tmp_path / "lake"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert lineage.log_data_card(manifest) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert lineage.log_data_card(manifest) is None
    assert "no MLflow server answers at http://127.0.0.1:9" in capsys.readouterr().out
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/a-file/x.db")  # a store that fails
    assert lineage.log_data_card(manifest) is None
    assert "could not log the data card" in capsys.readouterr().out
