"""Which pretraining and fine-tuning recipe beats a task's baseline and a random start, via the CLIs.

Two steps, both through the training CLIs against a file-backed MLflow (sqlite):

1. ``shards``: token shards in the tokenize stage's format from the pages of Python's HTML
   docs (what the demo crawls from Debian's ``python3.11-doc``; text extracted by
   ``bench/corpus.py`` instead of the crawl/extract/clean/dedup stages, which take minutes
   of Spark), optionally with the task's own *unlabelled* training texts appended
   (``--task-text``: the sentiment sentences; ``--text-jsonl DIR/train.jsonl``: any
   ``--data`` folder's train split; a corpus closer to the task, never the val/test texts;
   ``--pages -1`` leaves the docs out, so the vocabulary is the task's own). BPE, 4,096
   tokens, 128 per row, one document in 20 held out, as the demo's refresh does.
2. ``run``: one ``training.pretrain`` (if ``--pretrain`` is given) then ``training.finetune``
   per variant on ``--task`` (default sentiment; ``--data DIR`` for a task from outside), each
   line of the table: the variant, its test primary metric, the baseline's, the lift, the
   picked recipe, wall seconds and the 1-minute load average before and after. A variant with
   ``--compare-init random --seeds N`` fine-tunes from the base and from a random start of the
   same architecture per seed; its line gives both means, their spread and the lift.

    .venv-jobs/bin/python -m bench.finetune_recipe shards --out /tmp/r/shards --pages 150
    .venv-jobs/bin/python -m bench.finetune_recipe run --root /tmp/r --shards /tmp/r/shards/... \\
        --pretrain "--objective mlm --max-steps 600" --variant "mean=--pooling mean" ...
    .venv-jobs/bin/python -m bench.finetune_recipe run --root /tmp/r --base-model models:/NAME@champion \\
        --task pos --variant "pos200=--train-examples 200 --compare-init random --seeds 3"

Results go to ``bench/results/finetune_recipe.json`` (appended, one record per variant).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results" / "finetune_recipe.json"


def make_shards(out: Path, docs: list[str], vocab_size: int = 4096, seq_len: int = 128,
                val_every: int = 20, version: str = "bench") -> str:
    """A shards/v=version folder per the shard contract (as tests/training/training_test_data.py)."""
    from ops.lake.datasets import DatasetVersion, new_generation
    from ops.lake.vocab import describe
    from spark_jobs.tokens.trainers import train_tokenizer

    dv = DatasetVersion(str(out), "shards", version)
    generation = new_generation()
    folder = Path(dv.generation_uri(generation))
    folder.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(iter(docs), "bpe", vocab_size, extra_ids=16)
    (folder / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    vocab = describe(tok)
    eos, pad = vocab["special_tokens"]["eos"], vocab["special_tokens"]["pad"]
    ids = {"train": [], "val": []}
    for i, enc in enumerate(tok.encode_batch(docs, add_special_tokens=False)):
        ids["val" if i % val_every == 0 else "train"] += enc.ids + [eos]
    meta = {}
    for split, seq in ids.items():
        rows = len(seq) // seq_len
        name = f"{split}-00000.bin"
        np.asarray(seq[: rows * seq_len], dtype="<u2").tofile(folder / name)
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        meta[split] = {"files": [name], "sha256": {name: digest}, "sequences": rows, "tokens": rows * seq_len}
    dv.write_manifest(
        rows_in=len(docs), rows_out=len(docs), dropped={}, parents=[], config={"seq_len": seq_len},
        extra={"seq_len": seq_len, "dtype": "uint16", "vocab_size": tok.get_vocab_size(), "eos_id": eos,
               "pad_id": pad, "tokens_dropped": 0, "splits": meta, **vocab,
               "tokenizer_sha256": hashlib.sha256(tok.to_str().encode()).hexdigest(), "parent": ""},
        generation=generation,
    )
    print(f"shards {dv.uri}: train {meta['train']['tokens']:,} tokens, val {meta['val']['tokens']:,}")
    return dv.uri


def review_docs() -> list[str]:
    """The full movie reviews the demo's reviews site serves (ops/stack/reviews_site.py), unlabelled:
    text from the task's domain, the reviews subset's train split only, none holding a val or test
    sentence of the sentence task."""
    from ops.stack.reviews_site import site_reviews

    return site_reviews().texts


def jsonl_docs(path: str, per_doc: int = 50) -> list[str]:
    """A task's unlabelled texts from a ``{"text"}`` or ``{"tokens"}`` JSON-lines file (its
    train split), ``per_doc`` lines to a document."""
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    texts = [r["text"] if "text" in r else " ".join(r["tokens"]) for r in rows]
    return [" ".join(texts[i:i + per_doc]) for i in range(0, len(texts), per_doc)]


def corpus_docs(pages: int, task_text: bool, reviews: bool = False) -> list[str]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_corpus", ROOT / "bench" / "corpus.py")
    corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpus)
    python_doc_files, python_docs = corpus.python_doc_files, corpus.python_docs

    from training.data import polarity

    files = [] if pages < 0 else python_doc_files()[:pages] if pages else python_doc_files()
    docs = [d["text"] for d in python_docs(files)]
    if reviews:
        docs += review_docs()
    if task_text:  # the task's unlabelled train texts, 50 sentences a document
        train = [e.text for e in polarity.load_splits("sentences")["train"]]
        docs += [" ".join(train[i:i + 50]) for i in range(0, len(train), 50)]
    return docs


def _env(root: Path) -> dict:
    from mlflow import MlflowClient

    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in ("pretrain", "finetune"):
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name, artifact_location=str(root / "artifacts" / name))
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT), "C2M_DATA_ROOT": str(root)}


def _job(module: str, args: list[str], env: dict, result: Path) -> tuple[dict, float, float, float]:
    load0, t0 = os.getloadavg()[0], time.time()
    cmd = [sys.executable, "-m", module, *args, "--result-file", str(result)]
    print("$", " ".join(shlex.quote(a) for a in cmd[1:]), flush=True)
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{module} failed ({proc.returncode})")
    return json.loads(result.read_text()), time.time() - t0, load0, os.getloadavg()[0]


def result_row(label: str, res: dict) -> tuple[dict, str]:
    """The fields kept from one fine-tuning's result file, and its table line (less time and load).

    A ``--compare-init`` variant's result holds per-start means instead of one score: its line
    gives pretrained and random (mean ± std over the seeds), the lift and the baseline."""
    if "compare" in res:
        c = res["compare"]
        m = c["metric"]
        fields = {"metric": m, "seeds": c["seeds"], "rows": res["rows"],
                  **{f"compare_{k}": c[k] for k in ("pretrained_mean", "pretrained_std", "random_mean",
                                                    "random_std", "lift_mean", "lift_std")}}
        baseline = res.get(f"baseline_{m}")
        if baseline is not None:
            fields[f"baseline_{m}"] = baseline
        line = (f"| {label} | {m}: pretrained {c['pretrained_mean']:.4f} ± {c['pretrained_std']:.4f}, "
                f"random {c['random_mean']:.4f} ± {c['random_std']:.4f} | lift {c['lift_mean']:+.4f} ± "
                f"{c['lift_std']:.4f} over {c['seeds']} seeds | baseline "
                f"{'-' if baseline is None else f'{baseline:.4f}'} |")
        parts = res.get("compare_transformer_only")  # a classifier with its n-gram bag
        if parts:
            fields["compare_transformer_only"] = parts
            line += f" transformer alone: lift {parts['lift_mean']:+.4f} ± {parts['lift_std']:.4f} |"
        return fields, line
    m = res["metric"]
    fields = {"metric": m, m: res[m], f"baseline_{m}": res[f"baseline_{m}"], f"lift_{m}": res[f"lift_{m}"],
              f"val_{m}": res.get(f"val_{m}"), "best_epoch": res["best_epoch"], "steps": res["steps"]}
    line = (f"| {label} | {m} {res[m]:.4f} | {res[f'baseline_{m}']:.4f} | {res[f'lift_{m}']:+.4f} | "
            f"epoch {res['best_epoch']}, {res['steps']} steps |")
    return fields, line


def run(args) -> None:
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    env = _env(root)
    base = args.base_model
    record = {"shards": args.shards, "pretrain": args.pretrain, "machine": os.uname().nodename,
              "cpus": os.cpu_count()}
    if args.pretrain:
        name = "bench-base-" + hashlib.sha1(f"{args.shards} {args.pretrain}".encode()).hexdigest()[:8]
        pre, secs, l0, l1 = _job("training.pretrain", [
            "--shards", args.shards, "--checkpoint-dir", str(root / "ckpt" / name), "--register-name", name,
            "--run-name", name, "--promote", "always", *shlex.split(args.pretrain)],
            env, root / f"{name}.json")
        base = f"models:/{name}@champion"
        keep = ("steps", "tokens_seen", "val_loss", "tokens_per_s")
        record["pretrain_result"] = {k: pre.get(k) for k in keep}
        print(f"pretrain: {pre.get('steps')} steps, {pre.get('tokens_seen')} tokens, val loss "
              f"{pre.get('val_loss'):.3f}, {secs:.0f} s (load {l0:.1f} -> {l1:.1f})", flush=True)
    for spec in args.variant:
        label, _, flags = spec.partition("=")
        data = ["--data", args.data] if args.data else []
        res, secs, l0, l1 = _job("training.finetune", [
            "--base-model", base, "--task", args.task, *data, "--promote", "never", "--run-name", label,
            *shlex.split(flags)], env, root / f"ft-{label}.json")
        fields, line = result_row(label, res)
        row = {**record, "task": args.task, "data": args.data, "variant": label, "flags": flags,
               "base_model": base, **fields,
               "seconds": round(secs, 1), "load_before": l0, "load_after": l1, "time": time.time()}
        print(f"{line} {secs:.0f} s | load {l0:.1f}-{l1:.1f} |", flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("shards")
    s.add_argument("--out", required=True)
    s.add_argument("--pages", type=int, default=150, help="Python doc pages (0 = all, -1 = none)")
    s.add_argument("--reviews", action="store_true",
                   help="append the reviews the demo's reviews site serves (1,215 of the archive's 1,500), unlabelled")
    s.add_argument("--task-text", action="store_true", help="append the task's unlabelled train texts")
    s.add_argument("--text-jsonl", action="append", default=[],
                   help="append a task's unlabelled texts from this train.jsonl (text or tokens)")
    s.add_argument("--vocab-size", type=int, default=4096)
    s.add_argument("--version", default="bench")
    r = sub.add_parser("run")
    r.add_argument("--root", required=True, help="MLflow db, artefacts, checkpoints and results")
    r.add_argument("--shards", default="")
    r.add_argument("--pretrain", default="", help="training.pretrain flags; empty = use --base-model")
    r.add_argument("--base-model", default="")
    r.add_argument("--variant", action="append", default=[], help="label=finetune flags")
    r.add_argument("--task", default="sentiment", help="finetune --task")
    r.add_argument("--data", default="", help="finetune --data (a folder of train/val/test.jsonl)")
    args = p.parse_args(argv)
    if args.cmd == "shards":
        docs = corpus_docs(args.pages, args.task_text, args.reviews)
        docs += [d for path in args.text_jsonl for d in jsonl_docs(path)]
        make_shards(Path(args.out), docs, vocab_size=args.vocab_size, version=args.version)
    else:
        run(args)


if __name__ == "__main__":
    main()
