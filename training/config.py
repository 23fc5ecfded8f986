"""One typed config tree per training job.

Each component owns its nested config (model, optimiser, loop), validated on
construction so that a bad value fails before any process starts training. The whole
tree flattens to ``{"model.n_layer": 2, ...}`` for MLflow params and round-trips through
``to_dict``/``from_dict`` for checkpoints. Named model sizes are functions of a name,
not an ever-growing CLI (torchtitan style).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEDULES = ("cosine", "constant")


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass
class ModelConfig:
    """A decoder-only GPT; vocab and context length come from the shards' manifest."""

    vocab_size: int = 4096
    block_size: int = 128  # longest sequence the position table covers
    n_layer: int = 2
    n_head: int = 2
    d_model: int = 64
    dropout: float = 0.0
    bias: bool = True  # biases in Linear/LayerNorm; False is slightly faster and as good

    def __post_init__(self):
        _require(self.vocab_size > 0, f"model.vocab_size={self.vocab_size}: must be positive")
        _require(self.block_size > 1, f"model.block_size={self.block_size}: need at least 2 positions")
        _require(self.n_layer > 0, f"model.n_layer={self.n_layer}: need at least one layer")
        _require(self.n_head > 0, f"model.n_head={self.n_head}: need at least one head")
        _require(
            self.d_model % self.n_head == 0,
            f"model.d_model={self.d_model} is not divisible by n_head={self.n_head}; "
            "pick d_model as a multiple of n_head",
        )
        _require(0.0 <= self.dropout < 1.0, f"model.dropout={self.dropout}: must be in [0, 1)")


# Named sizes. "tiny" trains at tens of steps/s on one CPU core; "small" is GPT-mini.
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(n_layer=2, n_head=2, d_model=64),
    "small": dict(n_layer=6, n_head=6, d_model=384),
}


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The named model size with overrides (vocab_size, block_size from the data)."""
    if name not in MODEL_SIZES:
        raise ValueError(f"unknown model size {name!r}; choose one of {', '.join(MODEL_SIZES)}")
    return ModelConfig(**{**MODEL_SIZES[name], **overrides})


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr``."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1  # applied to matrices only, never to norms or biases
    eps: float = 1e-8
    warmup_steps: int = 10
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        _require(self.lr > 0, f"optim.lr={self.lr}: must be positive (try 1e-3 for tiny models)")
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"optim.betas={self.betas}: need two values in [0, 1)",
        )
        _require(self.weight_decay >= 0, f"optim.weight_decay={self.weight_decay}: must be >= 0")
        _require(self.warmup_steps >= 0, f"optim.warmup_steps={self.warmup_steps}: must be >= 0")
        _require(
            self.schedule in SCHEDULES,
            f"optim.schedule={self.schedule!r}: choose one of {', '.join(SCHEDULES)}",
        )
        _require(0 <= self.min_lr_ratio <= 1, f"optim.min_lr_ratio={self.min_lr_ratio}: must be in [0, 1]")
        _require(self.grad_clip >= 0, f"optim.grad_clip={self.grad_clip}: must be >= 0 (0 disables)")


@dataclass
class TrainConfig:
    """The loop: how long, how big a batch, and how often to evaluate, log and save."""

    max_steps: int = 200
    batch_size: int = 16  # sequences per rank per micro-step
    grad_accum: int = 1  # micro-steps per optimiser step
    seed: int = 1337
    eval_every: int = 50
    eval_batches: int = 4
    log_every: int = 10
    checkpoint_every: int = 100  # 0 disables periodic checkpoints (the final one is still written)
    keep_last: int = 2

    def __post_init__(self):
        _require(self.max_steps > 0, f"train.max_steps={self.max_steps}: must be positive")
        _require(self.batch_size > 0, f"train.batch_size={self.batch_size}: must be positive")
        _require(self.grad_accum > 0, f"train.grad_accum={self.grad_accum}: must be positive")
        _require(self.eval_every > 0, f"train.eval_every={self.eval_every}: must be positive")
        _require(self.eval_batches > 0, f"train.eval_batches={self.eval_batches}: must be positive")
        _require(self.log_every > 0, f"train.log_every={self.log_every}: must be positive")
        _require(self.checkpoint_every >= 0, f"train.checkpoint_every={self.checkpoint_every}: must be >= 0")
        _require(self.keep_last > 0, f"train.keep_last={self.keep_last}: keep at least one checkpoint")


@dataclass
class JobConfig:
    """Everything one training job needs; saved in checkpoints and logged to MLflow."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model_size: str = "tiny"
    data_uri: str = ""
    checkpoint_dir: str = ""
    experiment: str = "pretrain"
    register_name: str = "c2m-base"
    run_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobConfig":
        return _from_dict(cls, data, {"model": ModelConfig, "optim": OptimConfig, "train": TrainConfig})


TASKS = ("sentiment",)


@dataclass
class FinetuneConfig:
    """Fine-tuning a registered base model on a labelled task, for a few epochs."""

    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=3e-4, warmup_steps=10, weight_decay=0.01)
    )
    base_model: str = "models:/c2m-base@champion"
    task: str = "sentiment"
    subset: str = "sentences"  # polarity subset: short "sentences" or long "reviews"
    epochs: int = 3
    batch_size: int = 16  # examples per rank per step
    max_examples: int = 0  # 0 = all; otherwise a deterministic subset (for tests and smoke runs)
    max_len: int = 0  # tokens per example incl. eos; 0 = the base model's block_size
    seed: int = 1337
    experiment: str = "finetune"
    register_name: str = "c2m-sentiment"
    run_name: str = ""

    def __post_init__(self):
        _require(self.task in TASKS, f"task={self.task!r}: choose one of {', '.join(TASKS)}")
        _require(
            self.base_model.startswith(("models:/", "runs:/")) or "/" in self.base_model,
            f"base_model={self.base_model!r}: give an MLflow model URI such as models:/c2m-base@champion",
        )
        _require(self.epochs > 0, f"epochs={self.epochs}: must be positive")
        _require(self.batch_size > 0, f"batch_size={self.batch_size}: must be positive")
        _require(self.max_examples >= 0, f"max_examples={self.max_examples}: must be >= 0 (0 = all)")
        _require(
            self.max_len == 0 or self.max_len > 1,
            f"max_len={self.max_len}: need at least 2 tokens (0 = auto)",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneConfig":
        return _from_dict(cls, data, {"optim": OptimConfig})


def _from_dict(cls, data: dict[str, Any], nested: dict[str, type]):
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; expected {sorted(known)}")
    return cls(**{k: (nested[k](**v) if k in nested else v) for k, v in data.items()})


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"n_layer": 2}}`` -> ``{"model.n_layer": 2}`` (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out
