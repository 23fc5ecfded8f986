"""Generation fine-tuning: prompt masking, truncation counts, decoding, BLEU plumbing and the gate.

The end-to-end test registers an untrained tiny base GPT on the test shards' tokenizer
(as test_finetune_tasks.py does) and fine-tunes it on a synthetic JSONL task a model can
only solve by reading its prompt: ``"<subject> <verb>"`` -> the object that verb always
takes and the ending that subject always takes (5-7 words, so 4-gram BLEU is defined).
BLEU must climb and the version must be registered with its BLEU beside the
nearest-prompt baseline's; as every test prompt also occurs in train, that baseline is
exact, so the gate refuses a weak version even with no champion; a forced champion is
then kept against a version that does not beat it by the margin.
"""

import json
import random
from pathlib import Path

import pytest
import torch

from test_finetune_tasks import base_in_mlflow, finetune_args
from training_test_data import ENDINGS, OBJECTS, SUBJECTS, VERBS

VERB_OBJECT = dict(zip(VERBS, OBJECTS + OBJECTS[:1]))
SUBJECT_ENDING = dict(zip(SUBJECTS, ENDINGS + ENDINGS[:1]))


@pytest.fixture(scope="module")
def tok(shards_uri):
    from training.data.shards import read_shard_info

    return read_shard_info(shards_uri)


def encoder(info, max_len=32):
    from training.tasks.generation import PairEncoder

    return PairEncoder(info.tokenizer_path, info.eos_id, info.pad_id, max_len)


def write_generation_jsonl(folder: Path, n: int = 240, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("val", n // 6), ("test", n // 6)):
        rows = []
        for _ in range(count):
            s, v = rng.choice(SUBJECTS), rng.choice(VERBS)
            rows.append({"prompt": f"{s} {v}", "completion": f" {VERB_OBJECT[v]} {SUBJECT_ENDING[s]}"})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_collator_masks_the_prompt_and_supervises_eos(tok):
    from training.tasks.generation import IGNORE, collate

    enc = encoder(tok)
    a, b = enc.encode("the cat sees", " the red ball"), enc.encode("a dog", " likes a quiet river")
    prompt_ids = enc.tok.encode("the cat sees").ids
    assert a.ids[: a.n_prompt] == prompt_ids and a.ids[-1] == tok.eos_id
    assert not (a.prompt_cut or a.completion_cut)
    ids, labels = collate([a, b], tok.pad_id)
    assert ids.shape == labels.shape == (2, max(len(a.ids), len(b.ids)))
    for row, e in enumerate((a, b)):
        assert labels[row, : e.n_prompt].eq(IGNORE).all()  # no loss on the prompt
        assert labels[row, e.n_prompt : len(e.ids)].tolist() == e.ids[e.n_prompt :]  # completion + eos
        assert labels[row, len(e.ids) :].eq(IGNORE).all() and ids[row, len(e.ids) :].eq(tok.pad_id).all()
    assert labels[0, len(a.ids) - 1] == tok.eos_id


def test_overlong_examples_are_cut_from_the_left_of_the_prompt_and_counted(tok):
    from training.tasks.generation import GenerationData, GenerationTask
    from training.data.pydoc_pairs import Pair

    enc = encoder(tok, max_len=12)
    long_prompt = " ".join(["the cat sees the red ball"] * 4)
    e = enc.encode(long_prompt, " a dog")
    full = enc.tok.encode(long_prompt).ids
    assert e.prompt_cut and not e.completion_cut and len(e.ids) == 12
    assert e.ids[: e.n_prompt] == full[-e.n_prompt :]  # the prompt's end, next to the completion, is kept
    cut = enc.encode("a dog", " " + " ".join(["the tall tree"] * 10))
    assert cut.completion_cut and cut.n_prompt == 1 and len(cut.ids) == 12 and cut.ids[-1] != tok.eos_id
    pairs = [Pair("a dog", " sees"), Pair(long_prompt, " a dog"), Pair("a dog", " " + "the tall tree " * 10)]
    data = GenerationData("t", {"train": pairs, "val": pairs[:1], "test": pairs[:1]}, Path("."))
    task = GenerationTask(data, enc)
    assert task.truncated == {"train": 2, "val": 0, "test": 0} and task.completions_cut["train"] == 1


def _overfit_one(tok, prompt, completion, steps=150):
    """A tiny real GPT trained until it says ``completion`` + eos after ``prompt``."""
    from training.config import model_config
    from training.models.gpt import GPT
    from training.tasks.generation import GenerationLM, collate

    torch.manual_seed(0)
    model = GenerationLM(GPT(model_config("tiny", vocab_size=tok.vocab_size, block_size=32, dropout=0.0)))
    enc = encoder(tok)
    e = enc.encode(prompt, completion)
    ids, labels = collate([e], tok.pad_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        logits = model(ids)[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), enc, e


def test_greedy_decoding_stops_at_eos_and_is_deterministic(tok):
    from training.tasks.generation import generate

    model, enc, e = _overfit_one(tok, "the cat sees", " the red ball")
    prompt, target = e.ids[: e.n_prompt], e.ids[e.n_prompt : -1]
    args = (20, tok.eos_id, tok.pad_id, 32)
    out = generate(model, [prompt, prompt + target], *args)
    assert out[0] == target  # then eos: stopped long before 20 tokens
    assert out[1] == []  # already complete: the first token it picks is eos
    assert generate(model, [prompt], *args) == [out[0]]  # same again, and batching does not change it
    sampled = [generate(model, [prompt], *args, top_k=5, temperature=1.5, seeds=[s]) for s in (1, 1, 2)]
    assert sampled[0] == sampled[1]  # a seed fixes a sample
    assert generate(model, [prompt], 2, tok.eos_id, tok.pad_id, 32) == [target[:2]]  # max_new_tokens


def test_corpus_bleu_and_chrf_from_summed_rank_statistics():
    from training import metrics as M

    hyps = ["the cat sat on the mat", "a dog", "", "Return the square root of x."]
    refs = ["the cat sat on a mat", "a dog runs", "nothing here", "Return the square root of x."]
    halves = [M.bleu_stats(hyps[i::2], refs[i::2]).sum(0) for i in (0, 1)]  # two "ranks"
    assert M.bleu_from_stats(halves[0] + halves[1]) == pytest.approx(M.bleu(hyps, refs))
    chrf = sum(M.chrf_stats(hyps[i::2], refs[i::2]).sum(0) for i in (0, 1))
    assert M.chrf_from_stats(chrf) == pytest.approx(M.chrf(hyps, refs))
    assert M.bleu(refs, refs) == pytest.approx(100.0) and M.bleu_from_stats([0] * M.BLEU_STATS) == 0.0
    assert M.sentence_bleu(hyps[1], refs[1]) < M.sentence_bleu(hyps[3], refs[3])


def test_builtin_python_docs_pairs_are_real_stable_and_accounted():
    from training.data import pydoc_pairs as P

    d = P.load_splits()
    sizes = {k: len(v) for k, v in d.splits.items()}
    assert sum(sizes.values()) > 4000 and sizes["train"] > 6 * sizes["test"] > 0
    everything = {p.prompt: p.completion for v in d.splits.values() for p in v}
    dumps = (
        "json.dumps(obj, *, skipkeys=False, ensure_ascii=True, check_circular=True, allow_nan=True, "
        "cls=None, indent=None, separators=None, default=None, sort_keys=False, **kw)\n"
    )
    assert everything[dumps] == "Serialize obj to a JSON formatted str using this conversion table."
    assert everything["cmath.sqrt(x)\n"] == "Return the square root of x."
    assert not any("`" in c or ":func:" in c for c in everything.values())  # reST markup is gone
    assert set(d.dropped) <= {P.NO_DESCRIPTION, P.TOO_SHORT, P.TOO_LONG, P.DUPLICATE}
    small = P.load_splits(max_examples=300)
    assert sum(map(len, small.splits.values())) == 300
    assert small.splits == P.load_splits(max_examples=300).splits  # deterministic
    test_prompts = {p.prompt for p in d.splits["test"]}
    assert {p.prompt for p in small.splits["train"]}.isdisjoint(test_prompts)


def test_clean_rst_and_first_sentence():
    from training.data.pydoc_pairs import clean_rst, first_sentence

    raw = "Return a :class:`list` of *n* items (see :ref:`the table <tbl>`), e.g. ``[1]``.  Then more."
    assert first_sentence(clean_rst(raw)) == "Return a list of n items (see the table), e.g. [1]."
    assert clean_rst(":func:`~os.path.join` and :meth:`!str.split`") == "join and str.split"


@pytest.fixture(scope="module")
def base(mlflow_uri, shards_uri, tmp_path_factory):
    root = tmp_path_factory.mktemp("generation")
    with base_in_mlflow(mlflow_uri, shards_uri, root, "c2m-base-generation", "finetune-test",
                        "evaluate-test") as uri:
        yield uri, root


def _finetune(base_uri, data, *extra):
    from training import finetune

    return finetune.main(
        finetune_args(
            base_uri, "c2m-generation-test", "--task", "generation", "--data", str(data),
            "--max-new-tokens", "12", "--batch-size", "16", *extra,
        )
    )


def test_generation_finetunes_registers_bleu_and_gates_on_it(base, mlflow_uri, monkeypatch, tmp_path):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training import evaluate

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    data = write_generation_jsonl(tmp_path / "gen")
    weak = _finetune(base[0], data, "--epochs", "1", "--lr", "1e-5")
    assert weak["metric"] == "bleu" and weak["model_version"] == 1
    # Every test prompt also occurs in train, so the nearest training prompt's completion is the
    # reference itself: the baseline scores BLEU 100, and the weak model is refused even with no
    # champion to beat.
    assert weak["baseline"] == "nearest-prompt" and weak["baseline_bleu"] == pytest.approx(100.0)
    assert weak["lift_bleu"] == pytest.approx(weak["bleu"] - 100.0)
    assert not weak["promoted"] and "< nearest-prompt baseline 100.0000" in weak["gate"]
    v1 = client.get_model_version("c2m-generation-test", "1")
    assert v1.tags["c2m.gate"] == "below-baseline"
    assert float(v1.tags["c2m.gate.baseline"]) == pytest.approx(100.0)
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("c2m-generation-test", "champion")
    strong = _finetune(base[0], data, "--epochs", "6", "--promote", "always")
    assert strong["bleu"] >= 80 > weak["bleu"] + 5, (weak["bleu"], strong["bleu"])
    assert strong["promoted"] and 1.0 <= strong["perplexity"] < weak["perplexity"]
    assert {"chrf", "loss", "val_bleu", "baseline_chrf", "lift_chrf"} <= set(strong)
    v2 = client.get_model_version("c2m-generation-test", str(strong["model_version"]))
    assert float(v2.tags["c2m.test.bleu"]) == pytest.approx(strong["bleu"])
    reached = strong["bleu"] >= strong["baseline_bleu"] - 1e-6  # the gate's tie: equal up to rounding
    assert v2.tags["c2m.gate"] == ("promoted" if reached else "forced")
    # Generation selects the epoch on validation loss by default, and says so.
    assert strong["selected_on"] == "loss"
    run = client.get_run(strong["run_id"])
    assert run.data.tags["c2m.selected_on"] == "val/loss" and run.data.params["select_on"] == "loss"
    assert run.data.metrics["test/baseline_bleu"] == pytest.approx(100.0)
    history = client.get_metric_history(strong["run_id"], "val/loss")
    assert len(history) == 6 and min(m.value for m in history) == pytest.approx(strong["val_loss"])
    best = [m.step for m in history if m.value == pytest.approx(strong["val_loss"])]
    assert [m.value for m in client.get_metric_history(strong["run_id"], "epoch") if m.step in best] == [
        strong["best_epoch"]
    ]

    same = _finetune(base[0], data, "--epochs", "6", "--gate-margin", "5")  # no better: stays challenger
    assert not same["promoted"] and "does not beat" in same["gate"]
    champion = client.get_model_version_by_alias("c2m-generation-test", "champion")
    assert str(champion.version) == str(strong["model_version"])

    result = evaluate.main(
        ["--experiment", "evaluate-test", "--model", "models:/c2m-generation-test@champion", "--worst-k", "4"]
    )
    assert result["bleu"] == pytest.approx(strong["bleu"]) and result["examples"] == 40
    assert result["baseline_bleu"] == pytest.approx(100.0)
    assert result["lift_bleu"] == pytest.approx(result["bleu"] - 100.0)
    worst = result["worst"]
    assert len(worst) == 4 and worst[0]["sentence_bleu"] <= worst[-1]["sentence_bleu"]
    assert {"prompt", "reference", "generated", "nll_per_token"} <= set(worst[0])
    paths = {f.path for f in client.list_artifacts(result["run_id"], "eval")}
    assert "eval/worst_examples.json" in paths


def test_generation_config_and_data_errors_are_clear(tmp_path):
    from training.tasks.config import TaskConfig
    from training.tasks.generation import load_data

    assert TaskConfig(task="generation").register_name == "c2m-generation"
    with pytest.raises(ValueError, match="temperature"):
        TaskConfig(task="generation", temperature=-1)
    folder = tmp_path / "bad"
    folder.mkdir()
    for split in ("train", "val", "test"):
        rows = [{"prompt": "a", "completion": ""}, {"prompt": "a", "completion": "b"}]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = load_data("generation", data=str(folder))
    assert d.dropped == {"empty_text": 3} and all(len(v) == 1 for v in d.splits.values())
    (folder / "test.jsonl").write_text('{"prompt": "a"}\n')
    with pytest.raises(ValueError, match="keys"):
        load_data("generation", data=str(folder))
    with pytest.raises(ValueError, match="pydocs"):
        load_data("generation", subset="reviews")
