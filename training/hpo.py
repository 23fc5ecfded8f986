"""Hyperparameter search for fine-tuning: ``python -m training.hpo --task sentiment --trials 20``.

Optuna's TPE sampler proposes values from a declared search space (:data:`SEARCH_SPACE`:
lr, warmup, weight decay, batch size, dropout, frozen layers); the median pruner stops a
trial whose validation metric after an epoch is below the median of earlier trials at
that epoch. Trials optimise the *validation* value of the task's own primary metric, in
its direction (:func:`objective`: accuracy, entity F1 or BLEU up; a lower-is-better metric
such as perplexity down); a trial's value is that metric at the epoch its run selected
(generation selects on val loss by default, so its BLEU is the lowest-loss epoch's). The
test split is touched once, by the final model. The study lives in an Optuna RDB storage
(SQLite locally, Postgres on a cluster), so several processes (Airflow mapped tasks) can
add trials to one study; pass ``--parent-run-id`` to hang all their trials under one
MLflow parent run.

MLflow: one parent run per search, one nested run per trial (its params, per-epoch
metrics; pruned trials end KILLED). Finally the best trial's params and model are
logged on the parent, registered, and handed to the promotion gate. When the best trial
ran in another process, its params are retrained here (same seed) rather than copied.
``--trials 0`` does just that final step, for the fan-in task after a fan-out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from ops.lake import roots
from ops.lake.jobconfig import add_arguments
from ops.lake.secret_env import mask
from training import distributed
from training.job_result import finish
from training.job_settings import HPO_LR_RANGE, HPO_SETTINGS

# name -> (kind, low, high) or ("categorical", choices). freeze_layers' high is capped at the base's depth.
SEARCH_SPACE: dict[str, tuple] = {
    "lr": ("log_float", *HPO_LR_RANGE),
    "warmup_steps": ("int", 0, 100),
    "weight_decay": ("float", 0.0, 0.1),
    "batch_size": ("categorical", [8, 16, 32]),
    "dropout": ("float", 0.0, 0.3),
    "freeze_layers": ("int", 0, 6),
}
OPTIM_KEYS = ("lr", "warmup_steps", "weight_decay")
STORAGE_ENV = "C2M_OPTUNA_STORAGE"  # the storage URL, which may hold a DB password


def _optuna():
    try:
        import optuna
    except ImportError as exc:
        raise RuntimeError(
            "HPO needs optuna: `pip install 'optuna>=4'` into .venv-jobs (it is in the `train` extra)"
        ) from exc
    return optuna


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(prog="python -m training.hpo", description=__doc__.splitlines()[0])
    return add_arguments(p, HPO_SETTINGS).parse_args(argv)


def load_space(
    text: str, max_freeze: int, lr_min: float | None = None, lr_max: float | None = None
) -> dict[str, tuple]:
    """The default space with ``--space`` (and ``--lr-min/--lr-max``) overrides; unknown names are errors."""
    space = dict(SEARCH_SPACE)
    if lr_min is not None or lr_max is not None:
        low, high = lr_min or SEARCH_SPACE["lr"][1], lr_max or SEARCH_SPACE["lr"][2]
        if not 0 < low < high:
            raise ValueError(f"--lr-min {low} must be positive and below --lr-max {high}")
        space["lr"] = ("log_float", low, high)
    if text:
        override = json.loads(Path(text).read_text() if text.endswith(".json") else text)
        unknown = set(override) - set(SEARCH_SPACE)
        if unknown:
            raise ValueError(f"--space names {sorted(unknown)}; searchable: {sorted(SEARCH_SPACE)}")
        space.update({k: tuple(v) for k, v in override.items()})
    for name, spec in space.items():
        if spec[0] not in ("log_float", "float", "int", "categorical", "fixed"):
            raise ValueError(
                f"--space {name}: kind {spec[0]!r} is not log_float, float, int, categorical or fixed"
            )
    if space["freeze_layers"][0] == "int":
        space["freeze_layers"] = (
            "int",
            space["freeze_layers"][1],
            min(space["freeze_layers"][2], max_freeze),
        )
    return space


def suggest(trial, space: dict[str, tuple]) -> dict:
    out = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "log_float":
            out[name] = trial.suggest_float(name, spec[1], spec[2], log=True)
        elif kind == "float":
            out[name] = trial.suggest_float(name, spec[1], spec[2])
        elif kind == "int":
            out[name] = trial.suggest_int(name, spec[1], spec[2])
        elif kind == "categorical":
            out[name] = trial.suggest_categorical(name, list(spec[1]))
        else:  # fixed: recorded, not searched
            out[name] = spec[1]
    return out


def trial_config(base_cfg, params: dict, number: int):
    optim = replace(base_cfg.optim, **{k: params[k] for k in OPTIM_KEYS if k in params})
    rest = {k: v for k, v in params.items() if k not in OPTIM_KEYS}
    picked = tuple(k for k in base_cfg.size_defaults if k not in params)  # a searched value is kept
    return replace(
        base_cfg, optim=optim, run_name=f"trial-{number:03d}", checkpoint_dir="", size_defaults=picked, **rest
    )


def objective(task) -> tuple[str, str]:
    """(metric, "maximize" | "minimize"): what trials are pruned and ranked on, from the task itself.

    The task object knows its primary metric (a tagging task's depends on its labels), and
    ``training.metrics`` knows which way is better, so a new task needs no change here.
    """
    from training.metrics import higher_is_better

    metric = task.primary_metric
    return metric, "maximize" if higher_is_better(metric) else "minimize"


def better(value: float, best: float | None, direction: str) -> bool:
    """Whether a trial's ``value`` beats ``best`` (None: no trial yet) in the study's direction."""
    return best is None or (value > best if direction == "maximize" else value < best)


def pruning_callback(trial, metric: str):
    """Report each epoch's val metric; raise StopTraining when the pruner says so."""
    from training.tasks.loop import StopTraining

    def on_epoch(epoch: int, val: dict) -> None:
        trial.report(val[metric], epoch)
        if trial.should_prune():
            raise StopTraining(f"trial {trial.number} pruned after epoch {epoch}: {metric} {val[metric]:.4f}")

    return on_epoch


class Search:
    """Runs trials in this process and remembers the best model it trained itself."""

    def __init__(self, base_cfg, space, dist, data, metric: str, direction: str):
        self.base_cfg, self.space, self.dist, self.data = base_cfg, space, dist, data
        self.best = None  # (trial number, result, model, task)
        # The task's primary metric and its direction (see objective()): trials are pruned and ranked on it.
        self.metric, self.direction = metric, direction

    def objective(self, trial) -> float:
        optuna = _optuna()
        from training.finetune import train
        from training.tasks.loop import StopTraining

        params = suggest(trial, self.space)
        cfg = trial_config(self.base_cfg, params, trial.number)
        try:
            result, model, task = train(
                cfg,
                self.dist,
                register=False,
                nested=True,
                data=self.data,
                on_epoch=pruning_callback(trial, self.metric),
            )
        except StopTraining as exc:
            print(f"[hpo] {exc}", flush=True)
            raise optuna.TrialPruned(str(exc)) from exc
        metric = result["metric"]
        if metric != self.metric:
            raise RuntimeError(
                f"trial {trial.number} reported {metric!r}, but the study ranks on {self.metric!r}"
            )
        value = result[f"val_{metric}"]
        trial.set_user_attr("run_id", result.get("run_id", ""))
        trial.set_user_attr(f"test_{metric}", result[metric])
        if better(value, self.best[1][f"val_{metric}"] if self.best else None, self.direction):
            self.best = (trial.number, result, model, task)
        print(f"[hpo] trial {trial.number}: val {metric} {value:.4f} with {params}", flush=True)
        return value


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    dist = distributed.init(num_threads=args.threads or None)
    if dist.size > 1:
        raise RuntimeError(
            "run HPO as one process per worker (trials are independent); launch several "
            "processes on one --storage instead of horovodrun -np > 1"
        )
    return finish(dist, "hpo", run(args, dist), args.result_file)


def make_sampler(args, seed: int):
    optuna = _optuna()
    if args.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=args.startup_trials)


def storage_url(flag: str) -> str:
    """``--storage``, else ``$C2M_OPTUNA_STORAGE`` (the DAG's way), else SQLite under the data root."""
    return flag or os.environ.get(STORAGE_ENV) or default_storage()


def default_storage() -> str:
    path = Path(roots.data_root()) / "hpo" / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_study(args, storage: str, study_name: str, metric: str, direction: str, seed: int):
    """The Optuna study to optimise ``val metric`` in ``direction``: created, or joined when it exists."""
    optuna = _optuna()
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=args.prune_warmup_epochs)
        if args.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction,
        load_if_exists=True,
        sampler=make_sampler(args, seed),
        pruner=pruner,
    )
    if study.direction.name.lower() != direction:  # an existing study keeps its own direction
        raise ValueError(
            f"study {study_name!r} in {mask(storage)} was created to {study.direction.name.lower()}, but "
            f"val {metric} must be {direction}d; pass a new --study-name"
        )
    if study.trials:  # a process joining a study: a different seed, so it does not replay the first trials
        study.sampler = make_sampler(args, seed + len(study.trials))
    return study


def run(args, dist) -> dict:
    import mlflow

    from training import finetune, tracking
    from training.tasks import load_data

    base_cfg = finetune.build_config(args)
    bundle = tracking.load_model_bundle(base_cfg.base_model)
    space = load_space(args.space, bundle.config["model"]["n_layer"], args.lr_min, args.lr_max)
    data = load_data(base_cfg.task, base_cfg.subset, base_cfg.data, base_cfg.max_examples,
                     base_cfg.train_examples)
    task, _ = finetune.prepare(base_cfg, bundle, data)  # the task names its metric (tagging: by labels)
    metric, direction = objective(task)
    del task
    study_name = args.study_name or f"finetune-{base_cfg.task}"
    storage = storage_url(args.storage)
    shown = mask(storage)  # what MLflow, the result (XCom) and messages get: never the password
    study = open_study(args, storage, study_name, metric, direction, base_cfg.seed)
    search = Search(base_cfg, space, dist, data, metric, direction)
    print(f"[hpo] study {study_name}: {direction} val {metric}", flush=True)

    mlflow.set_experiment(base_cfg.experiment)
    parent = (
        mlflow.start_run(run_id=args.parent_run_id)
        if args.parent_run_id
        else mlflow.start_run(
            run_name=args.run_name or f"hpo-{study_name}",
            tags={"c2m.job": "hpo", "c2m.task": base_cfg.task, "c2m.study": study_name},
        )
    )
    try:
        if not args.parent_run_id:
            tracking.log_config(
                {
                    "study": study_name,
                    "storage": shown,
                    "space": json.dumps(space),
                    "base": base_cfg.to_dict(),
                    "objective": f"{direction} val/{metric}",
                }
            )
        if args.n_trials:
            study.optimize(
                search.objective,
                n_trials=args.n_trials,
                timeout=args.timeout or None,
                catch=(),
                gc_after_trial=True,
            )
        summary = summarize(study)
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, (int, float))})
        result = {
            "study": study_name,
            "storage": shown,
            "run_id": parent.info.run_id,
            "parent_run_id": parent.info.run_id,
            **summary,
        }
        if not args.no_finalize and summary.get("best_trial") is not None:
            result.update(finalize(study.best_trial, search, base_cfg, bundle, dist))
        describe_parent(base_cfg, study_name, metric, direction, result)
        mlflow.end_run()
        return result
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise


def describe_parent(base_cfg, study_name: str, metric: str, direction: str, result: dict) -> None:
    """The parent run's description: the study, the task data, the best trial and the gate."""
    from training import tracking

    outcome = (f"{result['trials']} trials ({result['complete']} complete, {result['pruned']} pruned, "
               f"{result['failed']} failed)")
    if result.get("best_trial") is not None:
        outcome += (f"; best trial {result['best_trial']} with val {metric} {result['best_value']:.4f}, "
                    f"params {json.dumps(result.get('best_params'), sort_keys=True)}")
    if "model_version" in result:
        outcome += "; " + tracking.registration_words(base_cfg.register_name, result["model_version"],
                                                      result["promoted"], result["gate"])
    tracking.describe_run(
        f"Hyperparameter search (Optuna study {study_name!r}, {direction} val {metric}) for the task "
        f"{base_cfg.task!r} from {base_cfg.base_model}",
        f"{base_cfg.task} task data as each trial's finetune run logs it (same split for every trial)",
        outcome,
    )


def summarize(study) -> dict:
    states = [t.state.name for t in study.trials]
    out = {
        "trials": len(states),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
    }
    try:
        best = study.best_trial
    except ValueError:  # no completed trial yet
        return {**out, "best_trial": None}
    return {**out, "best_trial": best.number, "best_value": best.value, "best_params": dict(best.params)}


def finalize(best, search: Search, base_cfg, bundle, dist) -> dict:
    """Log the best trial's params and model on the parent run, register it and let the gate decide."""
    import mlflow

    from training import finetune

    mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
    if search.best is not None and search.best[0] == best.number:
        _, result, model, task = search.best
        cfg = trial_config(base_cfg, best.params, best.number)
    else:  # the best trial ran elsewhere: retrain its params here (same seed, same data)
        cfg = replace(
            trial_config(base_cfg, best.params, best.number), run_name=f"best-retrain-{best.number:03d}"
        )
        result, model, task = finetune.train(cfg, dist, register=False, nested=True, data=search.data)
    metric = result["metric"]
    mlflow.log_metrics({f"best/test_{metric}": result[metric], f"best/val_{metric}": result[f"val_{metric}"]})
    cfg = replace(cfg, register_name=base_cfg.register_name, promote=base_cfg.promote)
    registered = finetune.register_and_gate(cfg, task, model, bundle, result[metric])
    return {"best_" + metric: result[metric], "best_val_" + metric: result[f"val_{metric}"], **registered}


if __name__ == "__main__":
    main(sys.argv[1:])
