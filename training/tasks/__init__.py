"""Fine-tuning tasks: classification, tagging and generation, behind one small interface.

A task object owns its data (splits, labels, tokenisation) and answers what the loop,
evaluation, HPO and compression ask: ``size(split)``, ``build_model(backbone)``,
``loss(model, indices)``, ``evaluate(model, split, dist)`` and ``primary_metric``. It
is made either from a config and a base model (fine-tuning) or from a registered task
model's ``model_config.json`` (evaluation, compression, re-scoring a champion), so a
model is always scored on text tokenised exactly as it was trained.

Importing this package (and ``training.tasks.config``) loads no torch: the Airflow side
reads the task names from the config module when it builds the DAG forms.
"""

from __future__ import annotations

import hashlib
import json

from training.tasks.config import TASKS


def _module(task: str):
    if TASKS[task] == "generation":
        from training.tasks import generation

        return generation
    if TASKS[task] == "classification":
        from training.tasks import classification

        return classification
    from training.tasks import tagging

    return tagging


def load_data(task: str, subset: str = "", data: str = "", max_examples: int = 0, train_examples: int = 0):
    """The task's splits; ``train_examples`` > 0 keeps that many training examples (val and test whole)."""
    return limit_train(_module(task).load_data(task, subset, data, max_examples), train_examples)


def _digest(item) -> str:
    return hashlib.sha1(json.dumps(item, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def limit_train(data, n: int):
    """Keep ``n`` training examples (0 = all), the first ``n`` in the order of a hash of their
    content: the same examples for every seed and start (pretrained or random), a smaller ``n`` a
    subset of a larger one (a learning curve), the classes mixed whatever the source file's order.
    Validation and test stay whole, so scores compare with runs on the whole training split."""
    if n <= 0:
        return data
    if hasattr(data, "texts"):  # classification: parallel texts and targets
        rows = zip(data.texts["train"], data.targets["train"])
        keep = sorted(rows, key=lambda row: _digest(list(row)))[:n]
        data.texts["train"], data.targets["train"] = [t for t, _ in keep], [y for _, y in keep]
    else:  # tagging sentences, generation pairs
        data.splits["train"] = sorted(data.splits["train"], key=lambda item: _digest(repr(item)))[:n]
    return data


def make_task(
    task: str,
    data,
    tokenizer_path,
    eos_id: int,
    pad_id: int,
    max_len: int,
    dropout: float = 0.1,
    crf: bool = False,
    decoding: dict | None = None,
    pooling: str = "",
    ngram_buckets: int = 0,
):
    """``decoding`` (generation only): max_new_tokens, top_k, temperature, seed; ``pooling``
    (classification only): last | mean, "" = the backbone's default; ``ngram_buckets``
    (classification only): rows of hashed n-gram weights beside the pooled state, 0 = none."""
    module = _module(task)
    if module.__name__.endswith("generation"):
        encoder = module.PairEncoder(tokenizer_path, eos_id, pad_id, max_len)
        return module.GenerationTask(data, encoder, dropout, **(decoding or {}))
    if module.__name__.endswith("classification"):
        encoder = module.Encoder(tokenizer_path, eos_id, pad_id, max_len)
        return module.ClassificationTask(data, encoder, dropout, pooling, ngram_buckets)
    return module.TaggingTask(data, module.WordEncoder(tokenizer_path, pad_id, max_len), dropout, crf)


def task_for_model(bundle, data=None, max_examples: int = 0, data_dir: str | None = None):
    """The task a registered task model was trained on, tokenised with its own tokenizer.

    ``data`` reuses already loaded splits (they must carry the model's labels); otherwise
    the model's recorded task/subset/data folder are loaded (``data_dir`` overrides the folder).
    """
    c = bundle.config
    if c.get("kind") not in ("gpt-classifier", "gpt-tagger", "gpt-generator") or "task" not in c:
        raise ValueError(
            f"{bundle.local_dir} is a {c.get('kind')!r} model without a recorded task; "
            "evaluate task models registered by training.finetune (or pass an LM to --shards)"
        )
    if data is None:
        data = load_data(
            c["task"],
            c.get("subset", ""),
            data_dir if data_dir is not None else c.get("data", ""),
            max_examples,
            c.get("train_examples", 0),
        )
    if list(data.labels) != list(c.get("labels", [])):
        raise ValueError(
            f"the data's labels {list(data.labels)} differ from the model's {c['labels']}; "
            "evaluate on the data set the model was trained on"
        )
    return make_task(
        c["task"],
        data,
        bundle.tokenizer_path,
        c.get("eos_id", c["pad_id"]),
        c["pad_id"],
        c["max_len"],
        c.get("dropout", 0.1),
        c.get("crf", False),
        {k: c[k] for k in ("max_new_tokens", "top_k", "temperature", "seed") if k in c},
        c.get("pooling", "last"),  # models registered before pooling was recorded read the last token
        c.get("ngram_buckets", 0),
    )


def split_digest(task, split: str) -> str:
    """Identifies a split's examples and labels (not their tokenisation): the gate's "same test set"."""
    h = hashlib.sha256()
    if task.kind == "generation":
        items = ([p.prompt, p.completion] for p in task.data.splits[split])
    elif task.kind == "classification":
        rows = zip(task.data.texts[split], task.data.targets[split])
        items = ([text, task.labels[t]] for text, t in rows)
    else:
        items = ([list(s.tokens), list(s.tags)] for s in task.data.splits[split])
    for item in items:
        h.update(json.dumps(item).encode("utf-8"))
    return f"{task.data.name}:{split}:{h.hexdigest()[:16]}"
