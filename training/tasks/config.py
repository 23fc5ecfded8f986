"""The fine-tuning job's typed config: what to train on, from which base, and how gently.

Besides the base model, task and data, it holds the transfer-learning options of the task
modules: tagging tasks, frozen layers, layer-wise learning-rate decay, dropout, an optional
CRF, model selection on validation (the primary metric, or for generation the loss) and the
promotion gate. It lives next to the
tasks that read it and imports nothing heavy, so the DAGs can read ``TASKS`` at parse time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ops.lake.jobconfig import Part, setting
from training.config import PROMOTE_MODES, OptimConfig

# task -> (kind, built-in data set). "classification"/"tagging" need --data (JSONL splits).
TASKS = {
    "sentiment": "classification",
    "classification": "classification",
    "ner": "tagging",
    "pos": "tagging",
    "tagging": "tagging",
    "generation": "generation",  # prompt -> completion (built-in: Python docs signatures)
}
PROMOTE = PROMOTE_MODES
SUBSETS = ("sentences", "reviews", "oanc", "wsj")  # sentiment: sentences|reviews; pos: oanc|wsj
MODEL_URI_PATTERN = (r"^(models:/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9][A-Za-z0-9_-]*|/[0-9]+)"
                     r"|runs:/[0-9a-f]{32}/\S+)$")
DATA_DIR_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]{1,62}/\S*|/\S+)?$"
# What picks the best epoch: the task's primary metric, or the validation loss. Generation
# defaults to loss: BLEU on a small validation split is noisy (one run picked epoch 1 at
# perplexity 110 over epoch 4 at 85.8), while the completion loss moves smoothly.
SELECT_ON = ("metric", "loss")
INIT = ("pretrained", "random")
POOLING = ("last", "mean")
# Fields that training/tasks/recipe.py may pick from the number of training examples.
SIZE_DEFAULTS = ("epochs", "lr", "warmup_steps", "patience")
# A classifier's bag of hashed n-grams (training/models/heads.py): 2**18 rows, 1 MB per label. The
# demo's 3,207 training sentences hold 50,487 distinct token n-grams, 9% of them sharing a row;
# far larger training sets want more rows (README "Recipes, measured").
NGRAM_BUCKETS = 2**18


# Fine-tuning trains gently: a smaller lr and weight decay than pretraining.
# Fine-tuning's optimizer defaults (a gentler lr than pretraining's). On the finetune command line
# lr and warmup steps are empty by default: the recipe picks them from the training-set size.
FINETUNE_OPTIM_DEFAULTS = {"lr": 3e-4, "warmup_steps": 10, "weight_decay": 0.01}
FINETUNE_OPTIM = Part(OptimConfig, only=("name", "lr", "warmup_steps", "weight_decay"),
                      defaults={**FINETUNE_OPTIM_DEFAULTS, "lr": None, "warmup_steps": None})


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass
class TaskConfig:
    """One fine-tuning run; validated on construction so a bad value fails before training."""

    optim: OptimConfig = field(default_factory=lambda: OptimConfig(**FINETUNE_OPTIM_DEFAULTS))
    base_model: str = setting(
        "models:/c2m-base@champion", "registered model to start from: models:/<name>@<alias>, "
        "models:/<name>/<version> or runs:/<id>/<path>", title="Base model", pattern=MODEL_URI_PATTERN)
    task: str = setting("sentiment", "labelled task (generation: prompt -> completion, BLEU); "
                        "classification/tagging need a data folder", choices=tuple(TASKS))
    subset: str = setting("", "sentiment: sentences|reviews; pos: oanc|wsj; empty = the task's default",
                          pattern=f"^({'|'.join(SUBSETS)})?$")
    data: str = setting("", "folder of train/val/test .jsonl (text,label; tokens,tags; or "
                        "prompt,completion); "
                        "replaces the built-in data set", title="Task data", pattern=DATA_DIR_PATTERN)
    epochs: int = setting(3, "passes over the training split; on the finetune command line empty = picked "
                          "from the training-set size (training/tasks/recipe.py)", minimum=1, maximum=1000)
    batch_size: int = setting(16, "examples per rank per step", minimum=1, maximum=65_536)
    max_examples: int = setting(0, "use a fixed subset of this many examples (0 = all)", minimum=0)
    train_examples: int = setting(0, "train on this many training examples, a fixed subset; validation and "
                                  "test stay whole (0 = all; a label budget for learning curves)", minimum=0)
    max_len: int = setting(0, "tokens per example (0 = the base model's context)", minimum=0)
    seed: int = setting(1337, "random seed", minimum=0, maximum=2**31 - 1)
    freeze_layers: int = setting(0, "freeze the embeddings and the first k blocks (0 = train all)",
                                 title="Frozen layers", minimum=0, maximum=256)
    layer_lr_decay: float = setting(1.0, "discriminative lr: block i from the top trains at lr * decay**i "
                                    "(1 = one lr)", exclusive_minimum=0, maximum=1)
    dropout: float = setting(0.1, "dropout in the backbone and before the head", minimum=0)
    pooling: str = setting("", "classification: the last token's state or the mean of all; empty = mean for "
                           "a BERT base, last for a GPT", choices=("", *POOLING))
    ngram_buckets: int = setting(
        NGRAM_BUCKETS, "classification: rows of hashed token unigram+bigram weights, a bag of n-grams "
        "beside the transformer, their weight picked on val (0 = the transformer alone; other tasks "
        "ignore it)", title="N-gram buckets", minimum=0, maximum=2**24)
    # Fields the recipe picks from the training-set size (the finetune flags left empty); replaced
    # by the picked values before training, so the logged config holds what ran.
    size_defaults: tuple[str, ...] = ()
    crf: bool = setting(False, "tagging: a linear-chain CRF on top of the head")
    patience: int = setting(0, "early stop after k epochs without a better selection score (0 = never); on "
                            "the finetune command line empty = picked from the training-set size",
                            minimum=0)
    select_on: str = setting("", "what picks the best epoch: the task's primary metric or the val loss "
                             "(default: loss for generation, metric otherwise)", choices=("", *SELECT_ON))
    init: str = setting("pretrained", "random = same architecture, untrained (the baseline)", choices=INIT)
    promote: str = setting("gate", "champion alias: gate (only if the test metric beats the champion's), "
                           "always or never", title="Promotion", choices=PROMOTE)
    gate_margin: float = setting(0.0, "the new test metric must beat the champion's by more than this",
                                 minimum=0)
    checkpoint_dir: str = setting("", "also write the best weights here (best.pt; a folder or an s3:// "
                                  "prefix)")
    experiment: str = setting("finetune", "MLflow experiment")
    register_name: str = setting("", "registered model name; default c2m-<task>")
    run_name: str = setting("", "MLflow run name; default <task>[-<subset>]")
    # generation only: decoding for validation/test (greedy unless temperature > 0)
    max_new_tokens: int = setting(32, "generation: decode budget", minimum=1)
    top_k: int = setting(0, "generation: sample from the k likeliest tokens (0 = all)", minimum=0)
    temperature: float = setting(0.0, "generation: 0 = greedy; > 0 samples, seeded per example from --seed",
                                 minimum=0)

    def __post_init__(self):
        _require(self.task in TASKS, f"task={self.task!r}: choose one of {', '.join(TASKS)}")
        _require(
            self.task not in ("classification", "tagging") or bool(self.data),
            f"task={self.task!r} has no built-in data set; pass --data DIR with train/val/test .jsonl",
        )
        _require(
            self.init == "random"
            or self.base_model.startswith(("models:/", "runs:/"))
            or "/" in self.base_model,
            f"base_model={self.base_model!r}: give an MLflow model URI such as models:/c2m-base@champion",
        )
        _require(self.epochs > 0, f"epochs={self.epochs}: must be positive")
        _require(self.batch_size > 0, f"batch_size={self.batch_size}: must be positive")
        _require(self.max_examples >= 0, f"max_examples={self.max_examples}: must be >= 0 (0 = all)")
        _require(self.train_examples >= 0, f"train_examples={self.train_examples}: must be >= 0 (0 = all)")
        _require(
            self.max_len == 0 or self.max_len > 1,
            f"max_len={self.max_len}: need at least 2 tokens (0 = auto)",
        )
        _require(self.freeze_layers >= 0, f"freeze_layers={self.freeze_layers}: must be >= 0")
        _require(0 < self.layer_lr_decay <= 1, f"layer_lr_decay={self.layer_lr_decay}: must be in (0, 1]")
        _require(0 <= self.dropout < 1, f"dropout={self.dropout}: must be in [0, 1)")
        _require(
            self.pooling in ("", *POOLING), f"pooling={self.pooling!r}: choose one of {', '.join(POOLING)}"
        )
        if self.kind != "classification":
            self.ngram_buckets = 0  # only a classifier has a bag; the logged config says so
        self.size_defaults = tuple(self.size_defaults)
        _require(
            set(self.size_defaults) <= set(SIZE_DEFAULTS),
            f"size_defaults={self.size_defaults}: only {', '.join(SIZE_DEFAULTS)} are picked by data size",
        )
        _require(
            not self.crf or self.kind == "tagging", "crf: only tagging tasks (ner, pos) take a CRF layer"
        )
        _require(self.patience >= 0, f"patience={self.patience}: must be >= 0 (0 = never stop early)")
        if not self.select_on:
            self.select_on = "loss" if self.kind == "generation" else "metric"
        _require(
            self.select_on in SELECT_ON,
            f"select_on={self.select_on!r}: choose one of {', '.join(SELECT_ON)}",
        )
        _require(
            self.select_on == "metric" or self.kind == "generation",
            f"select_on='loss': only generation reports a validation loss; a {self.kind} task "
            "selects on its primary metric (--select-on metric)",
        )
        _require(self.init in INIT, f"init={self.init!r}: choose one of {', '.join(INIT)}")
        _require(self.promote in PROMOTE, f"promote={self.promote!r}: choose one of {', '.join(PROMOTE)}")
        _require(self.gate_margin >= 0, f"gate_margin={self.gate_margin}: must be >= 0")
        _require(self.max_new_tokens > 0, f"max_new_tokens={self.max_new_tokens}: must be positive")
        _require(self.top_k >= 0, f"top_k={self.top_k}: must be >= 0 (0 = no cut)")
        _require(self.temperature >= 0, f"temperature={self.temperature}: must be >= 0 (0 = greedy)")
        if not self.register_name:
            self.register_name = f"c2m-{self.task}"

    @property
    def kind(self) -> str:
        """``classification``, ``tagging`` or ``generation``: which task module trains this config."""
        return TASKS[self.task]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; expected {sorted(known)}")
        return cls(**{k: (OptimConfig(**v) if k == "optim" else v) for k, v in data.items()})
