"""The pretrain champion gate compares bits per byte on the same raw text, across tokenizers.

The weekly refresh trains a new tokenizer, so a per-token val loss of the new model and
of the champion measure different things. These tests pin down:

- bpb itself on a case small enough to compute by hand;
- that the gate decides on bpb even when per-token loss points the other way (two
  uniform language models, one per tokenizer, whose per-token losses and bpb disagree
  by construction), with promotion, non-promotion and margin against a real MLflow;
- a real pretraining run on a second corpus version with a new tokenizer: the champion
  (another tokenizer) is re-scored on the challenger's raw val text, the run logs
  ``val/bpb``, and the version carries the comparison, its corpus and tokenizer tags.
"""

import hashlib
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from training import bpb, tracking
from training.config import ModelConfig
from training.models.gpt import GPT
from training_test_data import synthetic_docs, train_tokenizer

EXPERIMENT = "pretrain-gate-test"


def uniform_gpt(vocab_size: int, block_size: int = 64) -> GPT:
    """A real GPT with every weight zero: all logits 0, so every next token has probability 1/V."""
    model = GPT(ModelConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=1, d_model=8))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model.eval()


def char_tokenizer(docs: list[str], path: Path):
    """One token per character (id 0 is the end-of-text token), saved like a tokenize-stage tokenizer."""
    from tokenizers import Tokenizer, decoders, models

    chars = sorted(set("".join(docs)))
    vocab = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.decoder = decoders.Fuse()
    tok.save(str(path))
    return tok


# --- bpb itself -------------------------------------------------------------------------------------


def test_bits_per_byte_of_a_known_tiny_case(tmp_path):
    tok = char_tokenizer(["abé"], tmp_path / "tok.json")  # 4 ids: eos, a, b, é
    score = bpb.score_docs(uniform_gpt(4), tok, ["abé"], bos_id=0, block_size=8)
    # 3 tokens each at -ln(1/4) nats; "abé" is 4 UTF-8 bytes: 3 ln 4 / (4 ln 2) = 1.5 bits per byte.
    assert (score.tokens, score.n_bytes, score.lossless_docs) == (3, 4, 1)
    assert score.nll_nats == pytest.approx(3 * math.log(4))
    assert score.bpb == pytest.approx(1.5)
    # Windows shorter than the document must score every token once: same total with block 2.
    assert bpb.score_docs(uniform_gpt(4), tok, ["abé"], 0, block_size=2).bpb == pytest.approx(1.5)
    assert bpb.bits_per_byte(8 * math.log(2), 1) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="empty text"):
        bpb.bits_per_byte(1.0, 0)


def test_eval_text_digest_and_decoded_fallback(shards_uri):
    from training.data.shards import read_shard_info

    info = read_shard_info(shards_uri)  # made without a corpus version: the val shards are decoded
    text = bpb.load_eval_text(info, max_bytes=2_000)
    assert text.source == bpb.SOURCE_DECODED and 0 < text.n_bytes <= 2_000
    assert all(doc.strip().endswith(".") for doc in text.docs)  # each piece ends where a document did
    assert bpb.load_eval_text(info, max_bytes=2_000).digest == text.digest
    assert bpb.load_eval_text(info, max_bytes=4_000).digest != text.digest


# --- the gate on a real MLflow ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(mlflow_uri, tmp_path_factory):
    import mlflow
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("gate-artifacts")
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    if client.get_experiment_by_name(EXPERIMENT) is None:
        client.create_experiment(EXPERIMENT, artifact_location=str(root))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        mlflow.set_tracking_uri(mlflow_uri)
        mlflow.set_registry_uri(mlflow_uri)
        try:
            yield client
        finally:  # MLflow keeps these in module globals, which would outlive this module's tests
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


def register(name: str, model: GPT, tokenizer_path: Path, set_champion: bool = False) -> int:
    import mlflow

    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run():
        config = {"kind": "gpt-lm", "model": asdict(model.cfg), "eos_id": 0, "pad_id": 0}
        version, _ = tracking.log_and_register_model(
            model,
            registered_name=name,
            tokenizer_path=tokenizer_path,
            model_config=config,
            signature=tracking.lm_signature(model.cfg.vocab_size),
            set_champion=set_champion,
        )
    return version


def test_gate_decides_on_bits_per_byte_not_per_token_loss(registry, tmp_path):
    """Uniform models: per-token loss is ln V whatever the tokenizer, bpb is ln V x tokens/byte / ln 2.

    The character model has the lower per-token loss (ln 64 < ln 512) but needs one token
    per byte; the BPE model needs about a third of a token per byte, so its bpb is lower.
    A per-token gate would keep the character model; the bpb gate must promote BPE.
    """
    from tokenizers import Tokenizer

    from training.pretrain_tracker import gate_on_bpb

    docs = synthetic_docs(120, seed=3)
    text = bpb.EvalText(tuple(docs[:40]), bpb.SOURCE_CORPUS, "test")
    char_path, bpe_path = tmp_path / "char.json", tmp_path / "bpe.json"
    char_tok = char_tokenizer(docs, char_path)
    train_tokenizer(docs, 400, bpe_path)
    bpe_tok = Tokenizer.from_file(str(bpe_path))
    char_model, bpe_model = uniform_gpt(64), uniform_gpt(512)
    char_score = bpb.score_docs(char_model, char_tok, text.docs, 0, 64)
    bpe_score = bpb.score_docs(bpe_model, bpe_tok, text.docs, 0, 64)
    assert char_score.nll_nats / char_score.tokens == pytest.approx(math.log(64))
    assert bpe_score.nll_nats / bpe_score.tokens == pytest.approx(math.log(512))
    assert char_score.bpb == pytest.approx(6.0)  # ASCII text, one token per byte: log2(64)
    assert bpe_score.bpb == pytest.approx(9.0 * bpe_score.tokens / bpe_score.n_bytes)
    assert bpe_score.bpb < char_score.bpb - 1.0  # the orders disagree, by a wide margin

    name = "c2m-gate-bpb-test"
    champion = register(name, char_model, char_path, set_champion=True)
    challenger = register(name, bpe_model, bpe_path)
    decision = gate_on_bpb(name, challenger, bpe_score.bpb, text, margin=0.0, mode="gate", client=registry)
    assert decision.promoted and decision.champion_version == champion
    assert decision.champion_value == pytest.approx(char_score.bpb, rel=1e-6)  # re-scored from the registry
    assert int(registry.get_model_version_by_alias(name, "champion").version) == challenger
    tags = registry.get_model_version(name, str(challenger)).tags
    assert tags["c2m.gate"] == "promoted" and tags["c2m.gate.metric"] == "bpb"
    assert float(tags["c2m.gate.value"]) == pytest.approx(bpe_score.bpb)
    assert float(tags["c2m.gate.champion_value"]) == pytest.approx(char_score.bpb, rel=1e-6)
    assert tags["c2m.gate.split"] == text.digest and float(tags["c2m.gate.margin"]) == 0.0
    old = registry.get_model_version(name, str(champion)).tags  # the re-score is recorded on it
    assert old["c2m.test.split"] == text.digest
    assert float(old["c2m.test.bpb"]) == pytest.approx(char_score.bpb)

    # The character model again: lower per-token loss than the champion, worse bpb -> not promoted.
    again = register(name, char_model, char_path)
    kept = gate_on_bpb(name, again, char_score.bpb, text, margin=0.0, mode="gate", client=registry)
    assert not kept.promoted and "does not beat" in kept.reason
    assert float(kept.champion_value) == pytest.approx(bpe_score.bpb)  # read from the tags, not re-scored
    assert int(registry.get_model_version_by_alias(name, "champion").version) == challenger
    assert int(registry.get_model_version_by_alias(name, "challenger").version) == again

    # A slightly better BPE model (V=500 instead of 512): promoted with no margin, kept under a larger one.
    better = bpb.score_docs(uniform_gpt(500), bpe_tok, text.docs, 0, 64)
    gain = bpe_score.bpb - better.bpb
    assert 0 < gain < 0.1
    close = register(name, uniform_gpt(500), bpe_path)
    held = gate_on_bpb(name, close, better.bpb, text, margin=0.1, mode="gate", client=registry)
    assert not held.promoted and "margin 0.1" in held.reason
    assert float(registry.get_model_version(name, str(close)).tags["c2m.gate.margin"]) == 0.1
    assert gate_on_bpb(name, close, better.bpb, text, margin=0.0, mode="gate", client=registry).promoted


# --- a real pretraining run on a new corpus version with a new tokenizer ----------------------------


def write_corpus_and_shards(root: Path, version: str, docs: list[str], vocab_size: int, seq_len: int = 33):
    """corpus/v=V (parquet id, text) and shards/v=V made from it, as the tokenize stage lays them out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ops.lake.datasets import DatasetVersion
    from ops.lake.vocab import describe
    from spark_jobs.tokens.pack import Packer, split_of

    ids = [hashlib.sha1(f"{version}/{i}".encode()).hexdigest() for i in range(len(docs))]
    corpus = DatasetVersion(str(root), "corpus", version)
    Path(corpus.uri).mkdir(parents=True)
    pq.write_table(pa.table({"id": ids, "text": docs}), corpus.path("part-00000.parquet"))
    corpus.write_manifest(rows_in=len(docs), rows_out=len(docs), dropped={}, parents=[], config={})

    shards = DatasetVersion(str(root), "shards", version)
    out = Path(shards.uri)
    out.mkdir(parents=True)
    tok = train_tokenizer(docs, vocab_size, out / "tokenizer.json")
    vocab = describe(tok)
    eos = vocab["special_tokens"]["eos"]
    split = [split_of(i, 0.1) for i in ids]
    encoded = [tok.encode(d, add_special_tokens=False).ids for d in docs]
    pq.write_table(
        pa.table({"id": ids, "split": split, "n_tokens": [len(e) for e in encoded]}),
        out / "part-00000.parquet",
    )
    meta = {}
    for name in ("train", "val"):
        with open(out / f"{name}-00000.bin", "wb") as fh:
            packer = Packer(fh, seq_len, eos, np.dtype("<u2"))
            for doc_id, s, e in sorted(zip(ids, split, encoded)):
                if s == name:
                    packer.add(e)
            packer.close()
        data = (out / f"{name}-00000.bin").read_bytes()
        meta[name] = {
            "files": [f"{name}-00000.bin"],
            "sha256": {f"{name}-00000.bin": hashlib.sha256(data).hexdigest()},
            "sequences": packer.sequences,
            "tokens": packer.sequences * seq_len,
        }
    shards.write_manifest(
        rows_in=len(docs),
        rows_out=len(docs),
        dropped={},
        parents=[corpus.uri],
        config={"seq_len": seq_len},
        extra={
            "seq_len": seq_len,
            "dtype": "uint16",
            "vocab_size": tok.get_vocab_size(),
            "eos_id": eos,
            "pad_id": vocab["special_tokens"]["pad"],
            "splits": meta,
            **vocab,
            "tokenizer_sha256": hashlib.sha256(tok.to_str().encode()).hexdigest(),
            "parent": corpus.uri,
        },
    )
    return shards.uri, corpus.uri, [d for d, s in zip(docs, split) if s == "val"]


def _pretrain(shards: str, tmp: Path, name: str, *extra: str) -> dict:
    from training import pretrain

    return pretrain.main(
        [
            "--shards", shards, "--max-steps", "16", "--batch-size", "8", "--lr", "3e-3",
            "--warmup-steps", "3", "--eval-every", "8", "--eval-batches", "2", "--log-every", "8",
            "--checkpoint-dir", str(tmp / f"ckpt-{name}"), "--experiment", EXPERIMENT,
            "--run-name", name, "--register-name", REFRESHED, *extra,
        ]
    )  # fmt: skip


REFRESHED = "c2m-base-refresh-test"


@pytest.fixture(scope="module")
def refreshed(registry, tmp_path_factory):
    """Pretrain on corpus v1 (a 300-token BPE), then on v2 with a new 500-token BPE."""
    tmp = tmp_path_factory.mktemp("refresh")
    v1, _, _ = write_corpus_and_shards(tmp, "1", synthetic_docs(500, seed=1), vocab_size=300)
    v2, corpus2, val2 = write_corpus_and_shards(tmp, "2", synthetic_docs(500, seed=2), vocab_size=500)
    first = _pretrain(v1, tmp, "refresh-v1")
    second = _pretrain(v2, tmp, "refresh-v2")
    return first, second, v2, corpus2, val2, tmp


def test_weekly_refresh_with_a_new_tokenizer_is_gated_on_bpb(registry, refreshed):
    from training.data.shards import read_shard_info

    name = REFRESHED
    first, second, v2, corpus2, val2, _ = refreshed
    assert first["promoted"] and first["champion_bpb"] is None  # nothing to beat yet
    info = read_shard_info(v2)
    text = bpb.load_eval_text(info)
    assert text.source == bpb.SOURCE_CORPUS and text.origin == corpus2
    assert sorted(text.docs) == sorted(val2)  # the raw val documents of the new corpus version
    champion_bpb = bpb.score_registered(f"models:/{name}/{first['model_version']}", text).bpb
    assert second["champion_bpb"] == pytest.approx(champion_bpb, rel=1e-5)
    assert second["promoted"] == (second["val_bpb"] < champion_bpb)  # the gate's rule, margin 0

    run = registry.get_run(second["run_id"])
    assert run.data.metrics["val/bpb"] == pytest.approx(second["val_bpb"])
    assert run.data.tags["c2m.bpb.text_digest"] == text.digest
    tags = registry.get_model_version(name, str(second["model_version"])).tags
    assert tags["c2m.gate.split"] == text.digest and tags["c2m.gate.metric"] == "bpb"
    assert float(tags["c2m.gate.champion_value"]) == pytest.approx(champion_bpb, rel=1e-5)
    assert tags["c2m.gate.champion_version"] == str(first["model_version"])
    # Issue 7: every version names its corpus version and tokenizer; the model has a description.
    assert tags["c2m.corpus.uri"] == corpus2 and tags["c2m.corpus.version"] == "2"
    assert tags["c2m.corpus.digest"] == tracking.digest_json(info.manifest)
    assert tags["c2m.shards.uri"] == v2 and tags["c2m.tokenizer_sha256"] == info.manifest["tokenizer_sha256"]
    assert "bits per byte" in registry.get_registered_model(name).description
    assert corpus2 in registry.get_model_version(name, str(second["model_version"])).description
    # A model made from it (fine-tuned, compressed) inherits that lineage.
    bundle = tracking.load_model_bundle(f"models:/{name}/{second['model_version']}")
    inherited = tracking.inherited_lineage(f"models:/{name}/{second['model_version']}", bundle)
    assert {k: inherited[k] for k in ("c2m.corpus.uri", "c2m.corpus.version", "c2m.tokenizer_sha256")} == {
        k: tags[k] for k in ("c2m.corpus.uri", "c2m.corpus.version", "c2m.tokenizer_sha256")
    }


def test_finetuned_and_compressed_versions_inherit_the_corpus_lineage(registry, refreshed, mlflow_uri):
    from test_finetune_tasks import ensure_experiments, finetune_args, write_classification_jsonl

    from training import compress, finetune

    _, second, _, corpus2, _, tmp = refreshed
    base_tags = registry.get_model_version(REFRESHED, str(second["model_version"])).tags
    lineage = ("c2m.corpus.uri", "c2m.corpus.version", "c2m.corpus.digest", "c2m.tokenizer_sha256")
    ensure_experiments(mlflow_uri, tmp, "finetune-test", "compress-test")
    data = write_classification_jsonl(tmp / "cls", n=64)
    base_uri = f"models:/{REFRESHED}/{second['model_version']}"
    tuned = finetune.main(
        finetune_args(
            base_uri, "c2m-lineage-test", "--task", "classification", "--data", str(data), "--epochs", "1"
        )
    )
    version = registry.get_model_version("c2m-lineage-test", str(tuned["model_version"]))
    assert {k: version.tags[k] for k in lineage} == {k: base_tags[k] for k in lineage}
    assert version.tags["c2m.corpus.uri"] == corpus2 and version.tags["c2m.base_model"] == base_uri
    assert version.tags["c2m.task_data.uri"] == str(data) and version.tags["c2m.task_data.digest"]
    assert "fine-tuned" in registry.get_registered_model("c2m-lineage-test").description
    assert corpus2 in version.description

    small = compress.main(
        ["--model", f"models:/c2m-lineage-test/{tuned['model_version']}", "--method", "quantize",
         "--experiment", "compress-test", "--latency-repeats", "1",
         "--register-name", "c2m-lineage-test-int8"]
    )  # fmt: skip
    version = registry.get_model_version("c2m-lineage-test-int8", str(small["model_version"]))
    assert {k: version.tags[k] for k in lineage} == {k: base_tags[k] for k in lineage}
    assert version.tags["c2m.task_data.digest"] == registry.get_model_version(
        "c2m-lineage-test", str(tuned["model_version"])
    ).tags["c2m.task_data.digest"]
    assert "quantize-compressed" in registry.get_registered_model("c2m-lineage-test-int8").description
