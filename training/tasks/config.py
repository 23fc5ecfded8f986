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

from training.config import OptimConfig

# task -> (kind, built-in data set). "classification"/"tagging" need --data (JSONL splits).
TASKS = {
    "sentiment": "classification",
    "classification": "classification",
    "ner": "tagging",
    "pos": "tagging",
    "tagging": "tagging",
    "generation": "generation",  # prompt -> completion (built-in: Python docs signatures)
}
PROMOTE = ("gate", "always", "never")
# What picks the best epoch: the task's primary metric, or the validation loss. Generation
# defaults to loss: BLEU on a small validation split is noisy (one run picked epoch 1 at
# perplexity 110 over epoch 4 at 85.8), while the completion loss moves smoothly.
SELECT_ON = ("metric", "loss")
INIT = ("pretrained", "random")
POOLING = ("last", "mean")
# Fields that training/tasks/recipe.py may pick from the number of training examples.
SIZE_DEFAULTS = ("epochs", "lr", "warmup_steps", "patience")


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass
class TaskConfig:
    """One fine-tuning run; validated on construction so a bad value fails before training."""

    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=3e-4, warmup_steps=10, weight_decay=0.01)
    )
    base_model: str = "models:/c2m-base@champion"
    task: str = "sentiment"
    subset: str = ""  # sentiment: sentences|reviews; pos: oanc|wsj; "" = the task's default
    data: str = ""  # folder with train/val/test .jsonl; overrides the built-in data set
    epochs: int = 3
    batch_size: int = 16  # examples per rank per step
    max_examples: int = 0  # 0 = all; otherwise a deterministic subset (tests and smoke runs)
    max_len: int = 0  # tokens per example; 0 = the base model's block_size
    seed: int = 1337
    freeze_layers: int = 0  # freeze the embeddings and the first k blocks (0 = train all)
    layer_lr_decay: float = 1.0  # block i from the top trains at lr * decay**i (1 = one lr)
    dropout: float = 0.1  # in the backbone and before the head
    pooling: str = ""  # classification: last | mean token state; "" = mean for a BERT base, last for a GPT
    # Fields left for the recipe to pick from the training-set size (CLI: the flags not given);
    # replaced by the picked values before training, so the logged config holds what ran.
    size_defaults: tuple[str, ...] = ()
    crf: bool = False  # tagging only: a linear-chain CRF over the head's scores
    patience: int = 0  # stop after this many epochs without a better selection score (0 = never)
    select_on: str = ""  # metric | loss: what picks the best epoch; "" = loss for generation, else metric
    init: str = "pretrained"  # "random": same architecture from scratch (the baseline)
    promote: str = "gate"  # champion alias: gate (only if better), always, never
    gate_margin: float = 0.0  # the new test metric must beat the champion's by more than this
    checkpoint_dir: str = ""  # best-so-far weights are also written here (best.pt) when set
    experiment: str = "finetune"
    register_name: str = ""  # "" = c2m-<task>
    run_name: str = ""
    # generation only: decoding for validation/test (greedy unless temperature > 0)
    max_new_tokens: int = 32
    top_k: int = 0  # sample from the k likeliest tokens (0 = all) when temperature > 0
    temperature: float = 0.0  # 0 = greedy; > 0 samples, seeded per example from ``seed``

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
