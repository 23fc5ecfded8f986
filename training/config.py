"""One typed config tree per training job.

Each component owns its nested config (model, optimiser, loop), validated on
construction so that a bad value fails before any process starts training. The whole
tree flattens to ``{"model.n_layer": 2, ...}`` for MLflow params and round-trips through
``to_dict``/``from_dict`` for checkpoints. Named model sizes are functions of a name,
not an ever-growing CLI (torchtitan style).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ops.lake.jobconfig import setting

SCHEDULES = ("cosine", "linear", "constant")
ARCHS = ("gpt", "bert")
OPTIMIZERS = ("adamw", "lamb")
PRECISIONS = ("fp32", "bf16", "fp16")
OBJECTIVES = ("clm", "mlm", "span", "contrastive", "mixture")
PROMOTE_MODES = ("gate", "always", "never")
# torch.compile backends: inductor generates kernels (the fast one, slow to compile);
# aot_eager traces forward and backward graphs but runs them eagerly (cheap: tests, debugging).
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass
class ModelConfig:
    """A transformer: a GPT decoder (``arch="gpt"``) or a BERT/RoBERTa encoder (``"bert"``).

    Named configurations set the maximum ``block_size``; a training job shrinks it to
    the positions its data needs (the vocab and sequence length come from the shards).
    """

    vocab_size: int = 4096
    block_size: int = 128  # longest sequence the position table covers
    n_layer: int = 2
    n_head: int = 2
    d_model: int = 64
    dropout: float = 0.0
    bias: bool = True  # biases in Linear/LayerNorm; False is slightly faster and as good
    arch: str = "gpt"

    def __post_init__(self):
        _require(self.arch in ARCHS, f"model.arch={self.arch!r}: choose one of {', '.join(ARCHS)}")
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


# Named configurations are functions (torchtitan style): one place per model family and
# size, overridable field by field. "tiny" trains at tens of steps/s on one CPU core.
def gpt_tiny_cpu(**overrides: Any) -> ModelConfig:
    return ModelConfig(**{**dict(n_layer=2, n_head=2, d_model=64, block_size=1024), **overrides})


def gpt_small(**overrides: Any) -> ModelConfig:
    """GPT-mini (~10M parameters at a 4k vocabulary)."""
    return ModelConfig(**{**dict(n_layer=6, n_head=6, d_model=384, block_size=1024), **overrides})


def gpt_124m(**overrides: Any) -> ModelConfig:
    """GPT-2 small: 12 layers, 12 heads, 768 wide, 1024 positions (vocab padded to 50304)."""
    return ModelConfig(
        **{**dict(n_layer=12, n_head=12, d_model=768, block_size=1024, vocab_size=50304), **overrides}
    )


def gpt_350m(**overrides: Any) -> ModelConfig:
    """GPT-2 medium: 24 layers, 16 heads, 1024 wide."""
    return ModelConfig(
        **{**dict(n_layer=24, n_head=16, d_model=1024, block_size=1024, vocab_size=50304), **overrides}
    )


def gpt_1b(**overrides: Any) -> ModelConfig:
    """~1.3B parameters: 24 layers, 16 heads, 2048 wide, 2048 positions, no biases."""
    return ModelConfig(
        **{
            **dict(n_layer=24, n_head=16, d_model=2048, block_size=2048, vocab_size=50304, bias=False),
            **overrides,
        }
    )


def bert_tiny_cpu(**overrides: Any) -> ModelConfig:
    return ModelConfig(
        **{**dict(arch="bert", n_layer=2, n_head=2, d_model=64, block_size=512, dropout=0.1), **overrides}
    )


def bert_base(**overrides: Any) -> ModelConfig:
    """BERT-base / RoBERTa-base: 12 layers, 12 heads, 768 wide, 512 positions, dropout 0.1."""
    return ModelConfig(
        **{
            **dict(
                arch="bert", n_layer=12, n_head=12, d_model=768, block_size=512, vocab_size=30522, dropout=0.1
            ),
            **overrides,
        }
    )


def bert_large(**overrides: Any) -> ModelConfig:
    return ModelConfig(
        **{
            **dict(
                arch="bert",
                n_layer=24,
                n_head=16,
                d_model=1024,
                block_size=512,
                vocab_size=30522,
                dropout=0.1,
            ),
            **overrides,
        }
    )


NAMED_CONFIGS = {
    "tiny": gpt_tiny_cpu,  # the original names, used by the DAG and older commands
    "small": gpt_small,
    "gpt_tiny_cpu": gpt_tiny_cpu,
    "gpt_small": gpt_small,
    "gpt_124m": gpt_124m,
    "gpt_350m": gpt_350m,
    "gpt_1b": gpt_1b,
    "bert_tiny_cpu": bert_tiny_cpu,
    "bert_base": bert_base,
    "bert_large": bert_large,
}
MODEL_SIZES = NAMED_CONFIGS  # the former name of the table


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The named model configuration with overrides (vocab_size, block_size from the data)."""
    if name not in NAMED_CONFIGS:
        raise ValueError(f"unknown model size {name!r}; choose a named config: {', '.join(NAMED_CONFIGS)}")
    return NAMED_CONFIGS[name](**overrides)


def fit_to_data(cfg: ModelConfig, positions: int, vocab_size: int) -> ModelConfig:
    """``cfg`` with the data's vocab and exactly the ``positions`` it needs; fails with the field named.

    A named config's ``block_size`` is the most positions it supports; asking for more is an
    impossible shape, caught here before any process starts training.
    """
    if positions > cfg.block_size:
        raise ValueError(
            f"model.block_size={cfg.block_size}: the data needs {positions} positions per sequence; "
            "pick a model config with more positions or tokenize with a shorter --seq-len"
        )
    return replace(cfg, vocab_size=vocab_size, block_size=positions)


@dataclass
class OptimConfig:
    """AdamW or LAMB with linear warmup then cosine (or linear) decay to ``min_lr_ratio * lr``."""

    lr: float = setting(1e-3, "peak learning rate", title="Learning rate", exclusive_minimum=0,
                        form_maximum=1)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = setting(0.1, "weight decay, applied to matrices only, never to norms or biases",
                                  minimum=0)
    eps: float = 1e-8
    warmup_steps: int = setting(10, "steps of linear warmup", minimum=0)
    schedule: str = setting("cosine", "decay after warmup", choices=SCHEDULES)
    min_lr_ratio: float = 0.1
    grad_clip: float = setting(1.0, "max global grad norm (0 = off)", minimum=0)
    name: str = setting("adamw", "adamw, or lamb (layer-wise trust ratio, for very large batches)",
                        flag="--optimizer", choices=OPTIMIZERS, param="optimizer")

    def __post_init__(self):
        _require(self.name in OPTIMIZERS, f"optim.name={self.name!r}: choose one of {', '.join(OPTIMIZERS)}")
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

    max_steps: int = setting(200, "optimizer steps", minimum=1, maximum=10_000_000)
    batch_size: int = setting(16, "sequences per rank per micro-step", minimum=1, maximum=65_536)
    grad_accum: int = setting(1, "micro-steps per optimizer step", minimum=1)
    seed: int = setting(1337, "random seed", minimum=0, maximum=2**31 - 1)
    eval_every: int = setting(50, "steps between evaluations", minimum=1)
    eval_batches: int = setting(4, "batches per evaluation", minimum=1)
    log_every: int = setting(10, "steps between log lines", minimum=1)
    checkpoint_every: int = setting(100, "steps between checkpoints (0 = only the final one)", minimum=0)
    keep_last: int = setting(2, "checkpoints kept", minimum=1)
    precision: str = setting("fp32", "fp32; bf16 autocast; fp16 autocast with a GradScaler (its state is "
                             "checkpointed)", choices=PRECISIONS)
    early_stop_patience: int = setting(0, "stop after this many evaluations without a better val loss "
                                       "(0 = never)", minimum=0)
    early_stop_min_delta: float = setting(0.0, "an improvement must beat the best val loss by more than this",
                                          minimum=0)
    compile: bool = setting(False, "torch.compile the model (worth it on GPUs)")
    compile_backend: str = setting(
        "inductor", "torch.compile backend: inductor (fast kernels, slow to compile) or aot_eager (cheap "
        "graph capture of forward and backward, for tests); used only with --compile",
        choices=COMPILE_BACKENDS)
    activation_checkpointing: bool = setting(False, "recompute blocks in backward: less memory, ~30% more "
                                             "compute")
    verify_shards: bool = setting(True, "check each shard's sha256 against the manifest before reading "
                                  "(--no-verify-shards skips it)")
    promote: str = setting("gate", "champion alias: gate (only if the new model beats the champion: bits "
                           "per byte on the same held-out text for a GPT, val loss for a BERT), always, "
                           "never",
                           title="Promotion", choices=PROMOTE_MODES)
    promote_margin: float = setting(0.0, "the gate promotes only a win by more than this (bits per byte for "
                                    "a GPT, val loss for a BERT)", minimum=0)
    bpb_max_bytes: int = setting(300_000, "UTF-8 bytes of held-out raw text that bits per byte is measured "
                                 "on", minimum=1)
    time_budget_min: float = setting(0.0, "minutes of wall time: pick model size, batch and steps for it from "
                                     "measured throughput (training/budget.py; overrides --model, "
                                     "--batch-size and --max-steps; 0 = off)", flag="--time-budget",
                                     minimum=0, param=False)

    def __post_init__(self):
        _require(
            self.precision in PRECISIONS,
            f"train.precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}",
        )
        _require(
            self.compile_backend in COMPILE_BACKENDS,
            f"train.compile_backend={self.compile_backend!r}: choose one of {', '.join(COMPILE_BACKENDS)}",
        )
        _require(
            self.early_stop_patience >= 0,
            f"train.early_stop_patience={self.early_stop_patience}: must be >= 0 (0 disables)",
        )
        _require(
            self.early_stop_min_delta >= 0,
            f"train.early_stop_min_delta={self.early_stop_min_delta}: must be >= 0",
        )
        _require(
            self.promote in PROMOTE_MODES,
            f"train.promote={self.promote!r}: choose one of {', '.join(PROMOTE_MODES)}",
        )
        _require(self.promote_margin >= 0, f"train.promote_margin={self.promote_margin}: must be >= 0")
        _require(
            self.bpb_max_bytes > 0,
            f"train.bpb_max_bytes={self.bpb_max_bytes}: must be positive (try 300000)",
        )
        _require(self.max_steps > 0, f"train.max_steps={self.max_steps}: must be positive")
        _require(
            self.time_budget_min >= 0,
            f"train.time_budget_min={self.time_budget_min}: must be >= 0 minutes (0 = no budget)",
        )
        _require(self.batch_size > 0, f"train.batch_size={self.batch_size}: must be positive")
        _require(self.grad_accum > 0, f"train.grad_accum={self.grad_accum}: must be positive")
        _require(self.eval_every > 0, f"train.eval_every={self.eval_every}: must be positive")
        _require(self.eval_batches > 0, f"train.eval_batches={self.eval_batches}: must be positive")
        _require(self.log_every > 0, f"train.log_every={self.log_every}: must be positive")
        _require(self.checkpoint_every >= 0, f"train.checkpoint_every={self.checkpoint_every}: must be >= 0")
        _require(self.keep_last > 0, f"train.keep_last={self.keep_last}: keep at least one checkpoint")


# Which architecture each objective trains. Span corruption is a prefix LM on the decoder
# (T5's objective without a separate encoder), so one GPT can also mix it with causal LM.
OBJECTIVE_ARCHS = {
    "clm": ("gpt",),
    "span": ("gpt",),
    "mixture": ("gpt",),
    "mlm": ("bert",),
    "contrastive": ("bert",),
}
MIXABLE = ("clm", "span", "mlm")


@dataclass
class ObjectiveConfig:
    """The pretraining objective and its knobs (see training/data/collators.py)."""

    name: str = setting("clm", "pretraining objective: clm (GPT), span (T5 span corruption on the GPT), "
                        "mixture (clm/span/mlm by weight on the GPT), mlm or contrastive (BERT)",
                        flag="--objective", choices=OBJECTIVES, param="objective")
    mlm_probability: float = setting(0.15, "mlm: share of tokens that get a label (80% [MASK], 10% random, "
                                     "10% kept)", exclusive_minimum=0, maximum=1)
    whole_word: bool = setting(False, "mlm: mask all pieces of a chosen word", flag="--whole-word-mask")
    noise_density: float = setting(0.15, "span: share of tokens corrupted", exclusive_minimum=0, maximum=1)
    mean_span: float = setting(3.0, "span: mean corrupted span length", minimum=1)
    temperature: float = setting(0.05, "contrastive: InfoNCE temperature over cosine similarities",
                                 exclusive_minimum=0)
    crop_len: int = setting(0, "contrastive: independent random windows of this length (0 = dropout views "
                            "only)", minimum=0)
    mixture: str = setting("clm=0.5,span=0.5", "mixture: objective=weight, drawn per batch, e.g. "
                           "clm=0.5,span=0.3,mlm=0.2")

    def __post_init__(self):
        _require(
            self.name in OBJECTIVES, f"objective.name={self.name!r}: choose one of {', '.join(OBJECTIVES)}"
        )
        _require(
            0 < self.mlm_probability < 1,
            f"objective.mlm_probability={self.mlm_probability}: must be in (0, 1)",
        )
        _require(
            0 < self.noise_density < 1, f"objective.noise_density={self.noise_density}: must be in (0, 1)"
        )
        _require(self.mean_span >= 1, f"objective.mean_span={self.mean_span}: must be >= 1")
        _require(self.temperature > 0, f"objective.temperature={self.temperature}: must be positive")
        _require(self.crop_len >= 0, f"objective.crop_len={self.crop_len}: must be >= 0")
        if self.name == "mixture":
            names = [p.split("=")[0].strip() for p in self.mixture.split(",") if p.strip()]
            _require(
                bool(names) and set(names) <= set(MIXABLE),
                f"objective.mixture={self.mixture!r}: give weights for {', '.join(MIXABLE)}, "
                "e.g. clm=0.5,span=0.5",
            )


@dataclass
class JobConfig:
    """Everything one training job needs; saved in checkpoints and logged to MLflow."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    model_size: str = "tiny"
    data_uri: str = ""
    checkpoint_dir: str = ""
    experiment: str = "pretrain"
    register_name: str = "c2m-base"
    run_name: str = ""

    def __post_init__(self):
        allowed = OBJECTIVE_ARCHS[self.objective.name]
        _require(
            self.model.arch in allowed,
            f"model.arch={self.model.arch!r} cannot train objective {self.objective.name!r}; "
            f"it needs {' or '.join(allowed)} "
            f"(e.g. --model {'bert_tiny_cpu' if 'bert' in allowed else 'tiny'})",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobConfig":
        return _from_dict(
            cls,
            data,
            {"model": ModelConfig, "optim": OptimConfig, "train": TrainConfig, "objective": ObjectiveConfig},
        )


def model_diff(saved: dict[str, Any], current: ModelConfig) -> dict[str, tuple[Any, Any]]:
    """Fields where a checkpoint's model config differs from this run's: {field: (saved, now)}.

    Fields missing from an older checkpoint take their defaults, so adding a field does not
    make old checkpoints unreadable.
    """
    before = asdict(ModelConfig(**saved))
    now = asdict(current)
    return {k: (before[k], now[k]) for k in now if before[k] != now[k]}


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

