"""Evaluate a registered model on a split and log scores and an error analysis to MLflow.

    python -m training.evaluate --model models:/c2m-sentiment@champion

What is measured follows the model's kind (from its ``model_config.json``):

- classifier: accuracy, macro-F1, per-class scores, a confusion-matrix PNG;
- tagger: entity-level F1 with seqeval semantics (BIO tag sets) and token accuracy;
- generator (``--task generation``): corpus BLEU and chrF of its decoded continuations,
  and the perplexity of the reference completions;
- language model: perplexity on a shards split (``--shards``), and BLEU of greedy
  continuations against references (``--generation FILE.jsonl`` of prompt/target).

Task models are scored beside their cheap baseline (training/baselines.py: TF-IDF+LR,
most frequent tag per word, nearest training prompt), fitted on the model's train split
and scored on the same split: ``baseline_<metric>`` and ``lift_<metric>`` (model - baseline)
in the metrics, ``metrics.json`` and the result.

Every run also writes an error analysis: the worst-predicted examples (highest loss,
most wrong entities, highest perplexity, lowest sentence BLEU) as JSON and CSV. All of it
goes to one MLflow run in the ``evaluate`` experiment (metrics ``<split>/<name>``,
artefacts under ``eval/``); scoring a registry version on its full test split also tags
that version with the number, which is what the promotion gate compares against.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ops.lake import storage
from ops.lake.jobconfig import add_arguments
from training import baselines, report, run_report
from training import metrics as M
from training.job_settings import EVALUATE_SETTINGS

ARTIFACT_DIR = "eval"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    add_arguments(p, EVALUATE_SETTINGS)
    return p.parse_args(argv)


# --- per kind: (metrics, error rows, extra artefact writers) ------------------------------------


def eval_classifier(task, model, split: str, batch_size: int, worst_k: int, out: Path) -> tuple[dict, list]:
    probs = task.probabilities(model, split, batch_size=batch_size)
    targets = np.asarray(task.data.targets[split], dtype=np.int64)
    pred = probs.argmax(-1) if len(probs) else np.zeros(0, dtype=np.int64)
    confusion = M.confusion_matrix(targets, pred, len(task.labels))
    scores = M.classification_metrics(confusion, task.labels)
    M.save_confusion_png(confusion, task.labels, str(out / "confusion_matrix.png"), f"{split} split")
    (out / "confusion_matrix.json").write_text(
        json.dumps({"labels": list(task.labels), "counts": confusion.tolist()})
    )
    p_true = probs[np.arange(len(targets)), targets] if len(targets) else np.zeros(0)
    loss = -np.log(np.clip(p_true, 1e-12, 1.0))
    rows = [
        {
            "index": int(i),
            "text": task.data.texts[split][i],
            "label": task.labels[targets[i]],
            "predicted": task.labels[pred[i]],
            "p_label": round(float(p_true[i]), 6),
            "loss": round(float(loss[i]), 6),
        }
        for i in np.argsort(-loss, kind="stable")[:worst_k]
    ]
    return {
        **{k: v for k, v in scores.items() if k != "per_class"},
        **{f"{label}_f1": s["f1"] for label, s in scores["per_class"].items()},
        "examples": len(targets),
        "truncated": task.truncated[split],
    }, rows


def eval_tagger(task, model, split: str, batch_size: int, worst_k: int, out: Path) -> tuple[dict, list]:
    sents = task.data.splits[split]
    pred = task.predict(model, split, batch_size=batch_size)
    true = [list(s.tags) for s in sents]
    scores = {
        M.TOKEN_ACCURACY: M.token_accuracy(true, pred),
        "examples": len(sents),
        "truncated": task.truncated[split],
    }
    (out / "per_tag.json").write_text(json.dumps(report.per_tag_scores(true, pred), indent=2))
    if M.is_bio_tags(task.labels):
        ent = M.entity_scores(true, pred)
        scores.update({k: v for k, v in ent.items() if k != "per_type"})
        scores.update({f"{t}_f1": s["f1"] for t, s in ent["per_type"].items()})
        (out / "per_type.json").write_text(json.dumps(ent["per_type"], indent=2))
    rows = []
    for i, (s, t, p) in enumerate(zip(sents, true, pred)):
        te, pe = set(M.get_entities(t)), set(M.get_entities(p))
        rows.append(
            {
                "index": i,
                "text": s.text,
                "tags": " ".join(t),
                "predicted": " ".join(p),
                "missed_entities": len(te - pe),
                "spurious_entities": len(pe - te),
                "token_errors": sum(a != b for a, b in zip(t, p)),
            }
        )
    rows.sort(
        key=lambda r: (-(r["missed_entities"] + r["spurious_entities"]), -r["token_errors"], r["index"])
    )
    return scores, rows[:worst_k]


def eval_generator(task, model, split: str, batch_size: int, worst_k: int, out: Path) -> tuple[dict, list]:
    """Fine-tuned generation: BLEU, chrF, completion perplexity; worst rows by sentence BLEU."""
    return task.error_rows(model, split, worst_k, batch_size)


@torch.no_grad()
def eval_perplexity(
    model, bundle, shards_uri: str, split: str, batch_size: int, max_batches: int, worst_k: int
) -> tuple[dict, list]:
    from tokenizers import Tokenizer

    from training.data.shards import ShardDataset, causal_lm_batch, read_shard_info

    info = read_shard_info(shards_uri)
    if info.tokenizer_path.read_bytes() != bundle.tokenizer_path.read_bytes():
        raise ValueError(
            f"{shards_uri} was tokenised with another tokenizer than {bundle.local_dir}; "
            "measure perplexity on shards made with the model's own tokenizer"
        )
    data = ShardDataset(info, split)
    if len(data) == 0:
        raise ValueError(f"{shards_uri}: the {split} split is empty")
    block = bundle.config["model"]["block_size"]
    n_batches = math.ceil(len(data) / batch_size)
    n_batches = min(n_batches, max_batches) if max_batches else n_batches
    total_nll, tokens, per_seq = 0.0, 0, []
    for b in range(n_batches):
        rows = np.arange(b * batch_size, min((b + 1) * batch_size, len(data)))
        x, y = causal_lm_batch(data.rows(rows))
        x, y = x[:, :block], y[:, :block]
        nll = F.cross_entropy(model(x).transpose(1, 2), y, reduction="none")  # (B, T)
        total_nll += float(nll.sum())
        tokens += nll.numel()
        per_seq += [(int(r), float(v)) for r, v in zip(rows, nll.mean(1))]
    tok = Tokenizer.from_file(str(bundle.tokenizer_path))
    worst = sorted(per_seq, key=lambda rv: -rv[1])[:worst_k]
    rows = [
        {
            "index": r,
            "perplexity": round(math.exp(v), 4),
            "text": tok.decode(data.rows(np.array([r]))[0].tolist()),
        }
        for r, v in worst
    ]
    return {
        M.PERPLEXITY: M.perplexity(total_nll, tokens),
        "mean_nll": total_nll / tokens,
        "tokens": tokens,
        "sequences": len(per_seq),
    }, rows


@torch.no_grad()
def greedy_continue(model, ids: list[int], max_new: int, eos_id: int, block: int) -> list[int]:
    out = []
    for _ in range(max_new):
        context = (ids + out)[-block:]
        nxt = int(model(torch.tensor([context]))[0, -1].argmax())
        if nxt == eos_id:
            break
        out.append(nxt)
    return out


def eval_generation(model, bundle, path: str, max_new: int, worst_k: int) -> tuple[dict, list]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle.tokenizer_path))
    pairs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not pairs or any("prompt" not in p or "target" not in p for p in pairs):
        raise ValueError(f"{path}: need one JSON object per line with 'prompt' and 'target'")
    block, eos = bundle.config["model"]["block_size"], bundle.config["eos_id"]
    hyps = [
        tok.decode(greedy_continue(model, tok.encode(p["prompt"]).ids, max_new, eos, block)).strip()
        for p in pairs
    ]
    refs = [p["target"] for p in pairs]
    rows = [
        {"index": i, "prompt": p["prompt"], "target": r, "generated": h, "bleu": round(M.bleu([h], [r]), 4)}
        for i, (p, h, r) in enumerate(zip(pairs, hyps, refs))
    ]
    rows.sort(key=lambda r: (r["bleu"], r["index"]))
    return {M.BLEU: M.bleu(hyps, refs), "examples": len(pairs)}, rows[:worst_k]


# --- orchestration ----------------------------------------------------------------------------------


def write_rows(rows: list[dict], out: Path, stem: str = "worst_examples") -> None:
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    with open(out / f"{stem}.csv", "w", newline="", encoding="utf-8") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def score(args: argparse.Namespace, bundle, out: Path) -> tuple[dict, list, object]:
    """(metrics, worst rows, task or None) for the model in ``bundle``."""
    from training.tasks import export, task_for_model

    model = export.load_module(bundle)
    kind = bundle.config.get("kind")
    if kind == "gpt-lm":
        if not (args.shards or args.generation):
            raise ValueError("a language model needs --shards (perplexity) and/or --generation (BLEU)")
        scores, rows = {}, []
        if args.shards:
            s, rows = eval_perplexity(
                model, bundle, args.shards, args.split, args.batch_size, args.max_batches, args.worst_k
            )
            scores.update(s)
        if args.generation:
            s, gen_rows = eval_generation(model, bundle, args.generation, args.max_new_tokens, args.worst_k)
            scores.update(s)
            write_rows(gen_rows, out, "worst_generations")
        return scores, rows, None
    task = task_for_model(bundle, max_examples=args.max_examples, data_dir=args.data)
    fn = {"classification": eval_classifier, "generation": eval_generator}.get(task.kind, eval_tagger)
    scores, rows = fn(task, model, args.split, args.batch_size, args.worst_k, out)
    baseline = baselines.for_task(task, args.split)
    scores.update(baselines.beside(scores, baseline, baselines.name_for(task.kind)))
    return {**scores, "metric": task.primary_metric}, rows, task


def evaluate(args: argparse.Namespace) -> dict:
    import mlflow

    from training import registry_gate, tracking
    from training.tasks import split_digest

    bundle = tracking.load_model_bundle(args.model)
    if bundle.config.get("kind") == "gpt-lm" and args.split == "test":
        args.split = "val"  # the tokenize stage writes train and val shards only
    with tempfile.TemporaryDirectory(prefix="c2m-eval-") as tmp:
        out = Path(tmp)
        scores, rows, task = score(args, bundle, out)
        write_rows(rows, out)
        (out / "metrics.json").write_text(json.dumps(scores, indent=2, sort_keys=True))
        mlflow.set_experiment(args.experiment)
        name = args.run_name or f"eval-{args.model.removeprefix('models:/')}-{args.split}".replace("/", "-")
        tags = {"c2m.job": "evaluate", "c2m.model": args.model}
        if "baseline" in scores:
            tags["c2m.baseline"] = scores["baseline"]
        with mlflow.start_run(run_name=name, tags=tags) as run:
            tracking.log_config(
                {
                    "model": args.model,
                    "model_version": bundle.version,
                    "split": args.split,
                    "kind": bundle.config.get("kind"),
                    "max_examples": args.max_examples,
                    "shards": args.shards,
                    "generation": args.generation,
                }
            )
            numeric = {
                f"{args.split}/{k}": float(v) for k, v in scores.items() if isinstance(v, (int, float))
            }
            mlflow.log_metrics(numeric)
            if task is not None:
                tracking.log_dataset(
                    str(task.data.source),
                    name=task.data.name,
                    digest=tracking.digest_json(split_digest(task, args.split)),
                    context="evaluation",
                )
            mlflow.log_artifacts(str(out), artifact_path=ARTIFACT_DIR)
            if task is not None:
                scores["report"] = log_report(args, bundle, scores, out)
            describe_run(args, bundle, scores, task)
            run_id = run.info.run_id
    result = {
        **scores,
        "run_id": run_id,
        "model": args.model,
        "model_version": bundle.version,
        "split": args.split,
        "worst": rows[: min(5, len(rows))],
    }
    full_test = task is not None and args.split == "test" and not args.max_examples and args.data is None
    if full_test and bundle.version is not None and not args.no_tag and args.model.startswith("models:/"):
        name = args.model.removeprefix("models:/").split("@")[0].split("/")[0]
        registry_gate.record_metric(
            mlflow.MlflowClient(),
            name,
            bundle.version,
            task.primary_metric,
            scores[task.primary_metric],
            split_digest(task, "test"),
        )
        result["tagged_version"] = bundle.version
    return result


def log_report(args, bundle, scores: dict, out: Path) -> str:
    """The run's report under ``report/`` (training/report.py) from the scores and eval/ files."""
    extras = {}
    if (out / "confusion_matrix.json").exists():
        cm = json.loads((out / "confusion_matrix.json").read_text())
        extras = {"labels": cm["labels"], "confusion": cm["counts"]}
    elif (out / "per_tag.json").exists():
        extras = {"per_tag": json.loads((out / "per_tag.json").read_text())}
    title = f"Evaluation of {args.model} (v{bundle.version}) on the {args.split} split"
    return run_report.log_report(run_report.report_data(title, scores, extras=extras, split=args.split))


def describe_run(args, bundle, scores: dict, task) -> None:
    """The run page's description: which model, on which data and split, and its numbers."""
    from training import tracking

    data = f"{task.data.name} ({task.data.source})" if task is not None else f"shards {args.shards or '?'}"
    numbers = ", ".join(f"{k} {v:.4f}" for k, v in sorted(scores.items())
                        if isinstance(v, float))[:600] or "no numeric scores"
    tracking.describe_run(f"Evaluation of {args.model} (v{bundle.version}) on the {args.split} split",
                          f"{data}, {args.max_examples or 'all'} examples", numbers)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = evaluate(args)
    if args.result_file:
        storage.write_text(args.result_file, json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False))
    shown = {k: v for k, v in result.items() if k != "worst"}
    print(f"[evaluate] {json.dumps(shown, sort_keys=True)}", flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
