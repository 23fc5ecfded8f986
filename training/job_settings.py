"""Every training job's settings, each declared once (:mod:`ops.lake.jobconfig`).

The saved config trees (training/config.py, training/tasks/config.py) declare their own
fields; the classes here hold what a job takes besides them (which data, where results go,
how the process runs). Each ``*_SETTINGS`` tuple is one job's whole command line: its
argparse, the DAG's Params (:mod:`ops.dagkit.dag_params`) and the flags the DAG passes
(:mod:`ops.dagkit.flags`) are derived from it. Pure Python: the Airflow venv imports
this module to build the forms.
"""

from __future__ import annotations

from dataclasses import dataclass

from ops.lake.jobconfig import Part, setting
from training.config import NAMED_CONFIGS, PROMOTE_MODES, ObjectiveConfig, OptimConfig, TrainConfig
from training.tasks.config import FINETUNE_OPTIM, INIT, MODEL_URI_PATTERN, TaskConfig

DATA_URI_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]{1,62}/\S*|/\S+)$"
MODEL_NAME_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,127})?$"
STUDY_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,99})?$"
COMPRESS_METHODS = ("distill", "quantize", "prune")
HPO_LR_RANGE = (1e-5, 3e-3)  # the search space's learning rates (log scale)


@dataclass
class PretrainRun:
    """training.pretrain besides its config tree: which data and model, where checkpoints, MLflow
    runs and the result go, and how the process runs."""

    shards_uri: str | None = setting(
        None, "shards dataset version folder ({root}/shards/v=V, a path or s3://); the pretrain DAG "
        "defaults it to the corpus event's, else the newest complete version", title="Shards",
        flag="--shards", required=True, pattern=DATA_URI_PATTERN)
    model: str | None = setting(
        None, "named model config in training/config.py; empty = tiny for GPT objectives, bert_tiny_cpu "
        "for mlm/contrastive", title="Model config", choices=tuple(NAMED_CONFIGS))
    checkpoint_dir: str = setting("", "checkpoint folder or s3:// prefix; default: "
                                  "{data root}/checkpoints/pretrain/<run-name>")
    run_name: str = setting("", "MLflow run name; default: <model>-shards-<version> (stable, so retries "
                            "resume)")
    experiment: str = setting("pretrain", "MLflow experiment")
    register_name: str = setting("", "registered model name; default: c2m-base for a GPT, c2m-bert for a "
                                 "BERT")
    result_file: str = setting("", "rank 0 writes a JSON summary here")
    threads: int = setting(1, "torch threads per rank (0 = torch's default)", minimum=0)
    peak_tflops: float = setting(0.0, "per-rank peak TFLOP/s for MFU (e.g. 989 for an H100's dense bf16); "
                                 "0 = don't log MFU", minimum=0)


@dataclass
class FinetuneRun:
    """training.finetune (and hpo) besides the task config."""

    compare_init: str = setting("", "measure transfer: also fine-tune from this start and report the "
                                "per-seed lift (no registering)", choices=("", *INIT))
    seeds: int = setting(1, "--compare-init: seeds (from --seed upwards)", minimum=1)
    result_file: str = setting("", "rank 0 writes a JSON summary here")
    threads: int = setting(1, "torch threads per rank (0 = torch's default)", minimum=0)


@dataclass
class HpoSettings:
    """training.hpo: the study, its sampler and pruner, and this process's share of the trials."""

    n_trials: int = setting(8, "trials this process runs (0 = finalize only); the hpo DAG shares them out "
                            "over its parallel trial tasks", title="Trials", flag="--trials",
                            aliases=("--n-trials",), minimum=0, exclusive_minimum=0, maximum=1000)
    sampler: str = setting("tpe", "Optuna sampler", choices=("tpe", "random"))
    pruner: str = setting("median", "stop bad trials early (median of earlier trials per epoch)",
                          choices=("median", "none"))
    lr_min: float = setting(HPO_LR_RANGE[0], "smallest learning rate tried (log scale)",
                            title="LR lower bound", exclusive_minimum=0, form_maximum=1)
    lr_max: float = setting(HPO_LR_RANGE[1], "largest learning rate tried (log scale)",
                            title="LR upper bound", exclusive_minimum=0, form_maximum=1)
    timeout: float = setting(0.0, "stop starting trials after this many seconds (0 = no limit)", minimum=0)
    study_name: str = setting("", "reuse a study to add trials; default: finetune-<task> (the hpo DAG: "
                              "<task>-<run id>)", pattern=STUDY_PATTERN)
    storage: str = setting(
        "", "Optuna RDB URL; default $C2M_OPTUNA_STORAGE, else sqlite:///{data root}/hpo/optuna.db. A URL "
        "with a password belongs in $C2M_OPTUNA_STORAGE: a flag is visible to every `ps`", param=False)
    space: str = setting("", "JSON (or a .json file) replacing parts of the search space")
    startup_trials: int = setting(5, "random trials before TPE models the space", minimum=0)
    prune_warmup_epochs: int = setting(0, "never prune before this many epochs", minimum=0)
    parent_run_id: str = setting("", "attach trials to this MLflow run (fan-out)")
    no_finalize: bool = setting(False, "run trials only; register nothing")


@dataclass
class CompressSettings:
    """training.compress: which model, which method and its knobs, how it is measured and gated."""

    model: str = setting("", "registered task model, e.g. models:/c2m-sentiment@champion", title="Model",
                         required=True, pattern=MODEL_URI_PATTERN)
    method: str = setting("", "distill (smaller student), quantize (dynamic int8) or prune", required=True,
                          choices=COMPRESS_METHODS)
    register_name: str = setting("", "registered model name; default: <model name>-<method>",
                                 title="Register as", pattern=MODEL_NAME_PATTERN)
    max_examples: int = setting(0, "a fixed subset of the task data (0 = all)", minimum=0)
    student_layers: int = setting(0, "distill: blocks in the student (0 = half)", minimum=0, maximum=256)
    temperature: float = setting(2.0, "distill: softmax temperature of the soft targets",
                                 exclusive_minimum=0, maximum=20)
    alpha: float = setting(0.5, "distill: weight of the soft-target loss against the hard labels",
                           title="Soft-target weight", minimum=0, maximum=1)
    sparsity: float = setting(0.5, "prune: share of weights set to zero", title="Target sparsity",
                              minimum=0, maximum=0.99)
    structured: bool = setting(False, "prune whole output rows (L2) instead of single weights",
                               title="Structured pruning")
    finetune_epochs: int = setting(1, "distill/prune: training epochs after compressing",
                                   title="Recovery epochs", minimum=0, maximum=100)
    batch_size: int = setting(16, "examples per step of the recovery training", minimum=1)
    lr: float = setting(1e-3, "learning rate of the recovery training", exclusive_minimum=0, form_maximum=1)
    latency_repeats: int = setting(30, "timed forward passes per batch size", minimum=1)
    decode_tokens: int = setting(32, "generation: new tokens per timed greedy decode", minimum=1)
    promote: str = setting("gate", "champion alias: gate (only if better), always or never",
                           choices=PROMOTE_MODES)
    gate_margin: float = setting(0.0, "the gate promotes only a win by more than this", minimum=0)
    seed: int = setting(1337, "random seed", minimum=0)
    experiment: str = setting("compress", "MLflow experiment")
    run_name: str = setting("", "MLflow run name; default <method>-<registered name>")
    result_file: str = setting("", "rank 0 writes a JSON summary here")
    threads: int = setting(1, "torch threads (latency is measured with these)", minimum=0)


@dataclass
class EvaluateSettings:
    """training.evaluate: a registered model on a task split, LM shards or a generation set."""

    model: str = setting("", "MLflow model URI, e.g. models:/c2m-sentiment@champion", required=True)
    split: str = setting("test", "split to evaluate", choices=("train", "val", "test"))
    max_examples: int = setting(0, "task data: a fixed subset (0 = all)", minimum=0)
    data: str | None = setting(None, "JSONL folder instead of the model's recorded data set")
    shards: str = setting("", "LM: shards/v=V folder to measure perplexity on")
    max_batches: int = setting(0, "LM: at most this many batches (0 = the split)", minimum=0)
    generation: str = setting("", "LM: JSONL of {prompt, target} for BLEU")
    max_new_tokens: int = setting(32, "generation: decode budget", minimum=1)
    batch_size: int = setting(32, "examples per batch", minimum=1)
    worst_k: int = setting(25, "examples in the error analysis", minimum=0)
    experiment: str = setting("evaluate", "MLflow experiment")
    run_name: str = setting("", "MLflow run name")
    no_tag: bool = setting(False, "do not tag the model version with the test metric")
    result_file: str = setting("", "write a JSON summary here")
    threads: int = setting(0, "torch threads (0 = torch's default)", minimum=0)


# Each job's whole command line, in --help order.
PRETRAIN_SETTINGS = (PretrainRun, TrainConfig, OptimConfig, ObjectiveConfig)
FINETUNE_SETTINGS = (Part(TaskConfig, defaults={"epochs": None, "patience": None}), FINETUNE_OPTIM, FinetuneRun)
# HPO trials are fine-tuning runs: fewer epochs each, in their own MLflow experiment.
HPO_SETTINGS = (Part(TaskConfig, defaults={"experiment": "hpo", "epochs": 2}), FINETUNE_OPTIM, FinetuneRun,
                HpoSettings)
COMPRESS_SETTINGS = (CompressSettings,)
EVALUATE_SETTINGS = (EvaluateSettings,)
JOB_SETTINGS = {"training.pretrain": PRETRAIN_SETTINGS, "training.finetune": FINETUNE_SETTINGS,
                "training.hpo": HPO_SETTINGS, "training.compress": COMPRESS_SETTINGS,
                "training.evaluate": EVALUATE_SETTINGS}
