"""Fine-tune a registered base model on a labelled task: ``python -m training.finetune --task sentiment``.

Tasks: ``sentiment`` (movie-review polarity), ``ner`` (Twitter NER, BIO tags), ``pos``
(OANC/WSJ part-of-speech), ``generation`` (prompt -> completion, scored with BLEU; built-in:
Python-docs signature -> first sentence), or ``classification``/``tagging``/``generation``
on a JSONL folder (``--data``).
The base (``models:/c2m-base@champion`` by default; a GPT, or for classification and tagging
an MLM-pretrained BERT such as ``models:/c2m-bert@champion``) brings weights, config and
tokenizer; a head is added and the whole model trained, optionally with the first k layers
frozen and lower rates for lower layers. Epochs, lr, warmup and early-stopping patience that
are not given are picked from the number of training examples (training/tasks/recipe.py).
After every epoch the validation split is scored and the best weights are kept; those are tested and
registered as ``c2m-<task>``, and the promotion gate moves ``champion`` only if the test
metric beats the current champion's. Launched like pretraining (``horovodrun -np K`` or
one process): each rank takes its slice of every global batch and evaluation counts are
summed over ranks. Rank 0 logs to MLflow and writes the result file.

The test scores sit beside the task's cheap baseline on the same split (training/baselines.py:
``baseline_<metric>``, ``lift_<metric>``), and the gate never promotes a model below it unless
``--promote always``. ``--compare-init random --seeds N`` measures transfer instead of training
one model (training/tasks/transfer.py).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from ops.lake.jobconfig import add_arguments, from_args
from training import baselines, distributed, registry_gate, run_report
from training.job_result import finish
from training.job_settings import FINETUNE_SETTINGS
from training.tasks import export, load_data, make_task, recipe, split_digest, task_for_model
from training.tasks.backbone import build_backbone, count_parameters, freeze_layers
from training.tasks.config import FINETUNE_OPTIM, FINETUNE_OPTIM_DEFAULTS, SIZE_DEFAULTS, TaskConfig
from training.tasks.loop import StopTraining, fit


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.finetune", description=__doc__.splitlines()[0])
    return add_arguments(p, FINETUNE_SETTINGS).parse_args(argv)


def build_config(args: argparse.Namespace) -> TaskConfig:
    """The task config from parsed flags (finetune's or hpo's). Of epochs, lr, warmup steps and
    patience, those left empty are listed in ``size_defaults`` for the recipe to pick from the
    training-set size (training/tasks/recipe.py); until then they hold the class defaults."""
    run_name = args.run_name or (f"{args.task}-{args.subset}" if args.subset else args.task)
    picked = tuple(k for k in SIZE_DEFAULTS if getattr(args, k, None) is None)
    placeholders = {"epochs": TaskConfig.epochs, "patience": TaskConfig.patience, **FINETUNE_OPTIM_DEFAULTS}
    ns = argparse.Namespace(**{**vars(args), **{k: placeholders[k] for k in picked}})
    return from_args(TaskConfig, ns, optim=from_args(FINETUNE_OPTIM, ns), run_name=run_name,
                     size_defaults=picked)


def prepare(cfg: TaskConfig, bundle, data=None):
    """(task, model): the task's data tokenised as the base was, and base + new head."""
    block_size = bundle.config["model"]["block_size"]
    if cfg.max_len > block_size:
        raise ValueError(f"--max-len {cfg.max_len} exceeds the base model's context of {block_size} tokens")
    data = data or load_data(cfg.task, cfg.subset, cfg.data, cfg.max_examples, cfg.train_examples)
    task = make_task(
        cfg.task,
        data,
        bundle.tokenizer_path,
        bundle.config["eos_id"],
        bundle.config["pad_id"],
        cfg.max_len or block_size,
        cfg.dropout,
        cfg.crf,
        decoding={
            "max_new_tokens": cfg.max_new_tokens,
            "top_k": cfg.top_k,
            "temperature": cfg.temperature,
            "seed": cfg.seed,
        },
        pooling=cfg.pooling,
        ngram_buckets=cfg.ngram_buckets,
    )
    model = task.build_model(build_backbone(bundle, cfg.dropout, pretrained=cfg.init == "pretrained"))
    freeze_layers(model.backbone, cfg.freeze_layers)
    return task, model


def registered_config(cfg: TaskConfig, task, bundle) -> dict:
    return {
        **task.model_config(),
        "model": {**bundle.config["model"], "dropout": cfg.dropout},
        "task": cfg.task,
        "subset": cfg.subset,
        "data": cfg.data,
        "train_examples": cfg.train_examples,
        "base_model": cfg.base_model,
        "base_model_version": bundle.version,
        "init": cfg.init,
    }


def rescorer(task, split: str = "test"):
    """Scores another registered version of this task on the same split (for the gate)."""

    def score(model_uri: str) -> float:
        from training import tracking

        bundle = tracking.load_model_bundle(model_uri)
        other = task_for_model(bundle, data=task.data)
        return other.evaluate(export.load_module(bundle), split)[task.primary_metric]

    return score


def start_run(
    cfg: TaskConfig, task, model, bundle, sizes: dict, dist: distributed.Distributed, nested: bool
):
    """Rank 0: start the MLflow run, log the config and task data, print a banner; the run's MetricBuffer."""
    import mlflow

    from training import tracking

    total, trainable = count_parameters(model)
    mlflow.set_experiment(cfg.experiment)
    run = mlflow.start_run(
        run_name=cfg.run_name, nested=nested, tags={"c2m.job": "finetune", "c2m.task": cfg.task}
    )
    tracking.log_config(
        {
            **cfg.to_dict(),
            "base_model_version": bundle.version,
            "data": sizes,
            "parameters": total,
            "trainable_parameters": trainable,
        }
    )
    digest = tracking.digest_json([split_digest(task, s) for s in sizes])
    tracking.log_dataset(str(task.data.source), name=task.data.name, digest=digest)
    print(
        f"[finetune] {dist.backend} x{dist.size}: {cfg.task} on {task.data.name} from {cfg.base_model} "
        f"(v{bundle.version}, {cfg.init}), {sizes['train']} train examples, "
        f"{trainable}/{total} parameters trainable",
        flush=True,
    )
    return tracking.MetricBuffer(run.info.run_id)


def train(
    cfg: TaskConfig,
    dist: distributed.Distributed,
    *,
    register: bool = True,
    on_epoch=None,
    nested: bool = False,
    data=None,
) -> tuple[dict, torch.nn.Module, object]:
    """Fine-tune, test the best weights, log (rank 0) and, with ``register``, register and gate.

    Returns (result, model, task). ``nested`` starts the MLflow run under the active one
    (HPO trials); ``on_epoch(epoch, val)`` is called after each validation.
    """
    import mlflow

    from training import tracking  # every rank needs the base model's files from MLflow

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    bundle = tracking.load_model_bundle(cfg.base_model)
    task, model = prepare(cfg, bundle, data)
    sizes = {split: task.size(split) for split in ("train", "val", "test")}
    cfg = recipe.resolve(cfg, sizes["train"], dist.size)
    metrics = start_run(cfg, task, model, bundle, sizes, dist, nested) if dist.is_main else None
    recorder = run_report.Recorder(metrics.add) if metrics is not None else None  # curves for the report
    if metrics is not None and cfg.size_defaults:
        print(f"[finetune] {recipe.describe_picked(cfg, sizes['train'])}", flush=True)
    try:
        fitted = fit(cfg, task, model, dist, log=recorder.add if recorder else None, on_epoch=on_epoch)
        test = task.evaluate(model, "test", dist)
        primary = task.primary_metric
        result = {
            **test,
            "metric": primary,
            "metric_value": test[primary],
            **{f"val_{k}": v for k, v in fitted.best_val.items()},
            "best_epoch": fitted.best_epoch,
            "selected_on": fitted.selected_on,
            "stopped_early": fitted.stopped_early,
            "steps": fitted.steps,
            "steps_per_s": fitted.steps / fitted.seconds if fitted.seconds else 0.0,
            "base_model_version": bundle.version,
            "world_size": dist.size,
            "examples": sizes,
            "truncated": task.truncated,
            "dropped": task.data.dropped,
            "task": cfg.task,
        }
        if metrics:
            result.update(baseline_scores(task, test))
            mlflow.set_tag("c2m.selected_on", f"val/{fitted.selected_on}")
            mlflow.set_tag("c2m.baseline", result["baseline"])
            scored = {**test, **{k: v for k, v in result.items() if k.startswith(("baseline_", "lift_"))}}
            metrics.add(
                fitted.steps, best_epoch=fitted.best_epoch, **{f"test/{k}": v for k, v in scored.items()}
            )
            metrics.flush()
            result["run_id"] = metrics.run_id
            result.update(log_report(cfg, task, model, result, recorder))
            if register:
                baseline = registry_gate.Baseline(result["baseline"], result[f"baseline_{primary}"])
                result.update(register_and_gate(cfg, task, model, bundle, test[primary], baseline))
            describe_run(cfg, task, bundle, result, sizes)
            tracking.end_run()
        return result, model, task
    except BaseException as exc:
        if metrics:
            tracking.end_run(status="KILLED" if isinstance(exc, StopTraining) else "FAILED")
        raise


def baseline_scores(task, test: dict[str, float], split: str = "test") -> dict:
    """The task's cheap baseline on the same split, beside the model's scores (rank 0)."""
    scores = baselines.for_task(task, split)
    name = baselines.name_for(task.kind)
    out = baselines.beside(test, scores, name)
    primary = task.primary_metric
    print(f"[finetune] {baselines.describe(primary, test[primary], scores[primary], name)}", flush=True)
    return out


def log_report(cfg: TaskConfig, task, model, result: dict, recorder) -> dict:
    """The run's evaluation report under ``report/`` (rank 0): {"report": its page's artefact path}.

    A report that cannot be drawn does not fail a trained model: the tag ``c2m.report`` says why."""
    import mlflow

    title = f"{cfg.run_name}: {cfg.task} from {cfg.base_model} ({cfg.init})"
    try:
        data = run_report.report_data(title, result, recorder, run_report.task_extras(task, model))
        page = run_report.log_report(data)
    except Exception as exc:  # noqa: BLE001 - reported on the run and in the log, not raised
        mlflow.set_tag("c2m.report", f"failed: {type(exc).__name__}: {exc}"[:500])
        print(f"[finetune] the evaluation report failed ({type(exc).__name__}: {exc}); the model is kept",
              flush=True)
        return {}
    mlflow.set_tag("c2m.report", page)
    print(f"[finetune] evaluation report: artefact {page} of run {result['run_id']}", flush=True)
    return {"report": page}


def describe_run(cfg: TaskConfig, task, bundle, result: dict, sizes: dict) -> None:
    """The run page's description: task and base model, the task data, the test result and the gate."""
    from training import tracking

    metric = result["metric"]
    outcome = f"test {metric} {result['metric_value']:.4f} (best epoch {result['best_epoch']})"
    if "model_version" in result:
        outcome += "; " + tracking.registration_words(cfg.register_name, result["model_version"],
                                                      result["promoted"], result["gate"])
    tracking.describe_run(
        f"Fine-tuning for the {task.kind} task {cfg.task!r} from {cfg.base_model} (v{bundle.version}), "
        f"{result['steps']} steps on {result['world_size']} rank(s)",
        f"{task.data.name} ({task.data.source}): {sizes['train']} train, {sizes['val']} val, "
        f"{sizes['test']} test examples",
        outcome,
    )


def register_and_gate(
    cfg: TaskConfig, task, model, bundle, value: float, baseline: registry_gate.Baseline | None = None
) -> dict:
    """Register the tested model, then let the gate decide whether it becomes champion.

    The gate also gets the task's baseline on the test split (computed here when the caller,
    e.g. HPO's final model, did not bring it), so no path promotes a model below it.
    """
    from training.tasks.serving import example_texts, log_model

    if baseline is None:
        scores = baselines.for_task(task, "test")
        baseline = registry_gate.Baseline(baselines.name_for(task.kind), scores[task.primary_metric])
    split_id = split_digest(task, "test")
    logged = log_model(
        model,
        registered_config(cfg, task, bundle),
        bundle.tokenizer_path,
        registered_name=cfg.register_name,
        example_texts=example_texts(task),
    )
    describe_version(cfg, task, bundle, logged["model_version"])
    decision = registry_gate.gate(
        cfg.register_name,
        logged["model_version"],
        task.primary_metric,
        value,
        split_id,
        cfg.gate_margin,
        cfg.promote,
        rescore=rescorer(task),
        baseline=baseline,
    )
    print(
        f"[finetune] {cfg.register_name} v{logged['model_version']}: "
        f"{'champion' if decision.promoted else 'not promoted'} ({decision.reason})",
        flush=True,
    )
    return {**logged, "promoted": decision.promoted, "gate": decision.reason}


def describe_version(cfg: TaskConfig, task, bundle, version: int) -> None:
    """Registry description and lineage tags: the task data, and the base model's corpus and tokenizer."""
    import mlflow

    from training import tracking

    digest = tracking.digest_json([split_digest(task, s) for s in ("train", "val", "test")])
    tags = {
        **tracking.inherited_lineage(cfg.base_model, bundle),
        **tracking.task_data_tags(str(task.data.source), task.data.name, digest),
        "c2m.base_model": cfg.base_model,
        "c2m.base_model_version": str(bundle.version),
        "c2m.run_id": mlflow.active_run().info.run_id,
    }
    tracking.describe_registration(
        cfg.register_name,
        version,
        model_description=(
            f"{cfg.register_name}: a crawl2model {task.kind} model for the task {cfg.task!r}, fine-tuned "
            "(training.finetune) from a pretrained c2m base model. "
            f"Consume models:/{cfg.register_name}@champion; "
            f"the champion alias moves only when a version beats it on the test {task.primary_metric} "
            "(tags c2m.gate.*). Versions name their task data (c2m.task_data.*), the base model's corpus "
            "(c2m.corpus.*) and the tokenizer (c2m.tokenizer_sha256)."
        ),
        version_description=(
            f"{cfg.task} on {task.data.name} ({task.data.source}) from {cfg.base_model} "
            f"(v{bundle.version}, corpus {tags.get(tracking.TAG_CORPUS_URI, '?')}); "
            f"MLflow run {tags['c2m.run_id']}"
        ),
        tags=tags,
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    dist = distributed.init(num_threads=args.threads or None)
    try:
        if args.compare_init:
            from training.tasks.transfer import compare

            result = compare(build_config(args), dist, args.compare_init, args.seeds, train)
        else:
            result, _, _ = train(build_config(args), dist)
        return finish(dist, "finetune", result, args.result_file)
    finally:
        dist.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
