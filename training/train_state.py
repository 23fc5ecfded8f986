"""What a pretraining loop carries between steps and across a resume, as checkpointable parts.

``TrainState`` is the loop's own state (torchtitan's ``TrainState``): step, tokens seen,
the last losses, the MLflow run to continue and the RNG states. ``SavedConfig`` puts the
job config in the checkpoint and, on loading, refuses a checkpoint that another model,
objective or optimiser wrote. Both are handed to ``training.checkpoint.Checkpointer``
beside the model, optimiser, scaler, data position and early stopping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from training import checkpoint
from training.config import JobConfig, model_diff


@dataclass
class TrainState:
    """Step, tokens seen, the last train/val loss and the MLflow run; RNG states ride along.

    The RNG states are not fields: they are read when a checkpoint is written and set when
    one is loaded. All ranks seed alike, so their RNG states are equal and rank 0's saved
    state is each one's. ``tokens_per_step`` (all ranks together) and ``last_checkpoint``
    are not saved: the first is the run's shape, the second where this process last saved
    or resumed from (named in a divergence error).
    """

    tokens_per_step: int = 0
    step: int = 0
    tokens_seen: int = 0
    train_loss: float = math.nan
    val_loss: float = math.nan
    mlflow_run_id: str | None = None
    last_checkpoint: str | None = None

    def advance(self) -> None:
        """Count one optimiser step."""
        self.step += 1
        self.tokens_seen += self.tokens_per_step

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "mlflow_run_id": self.mlflow_run_id,
            "rng": checkpoint.rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        # A format-1 checkpoint did not count tokens; every step then had the same shape.
        self.tokens_seen = int(state.get("tokens_seen", self.step * self.tokens_per_step))
        self.train_loss, self.val_loss = float(state["train_loss"]), float(state["val_loss"])
        self.mlflow_run_id = state.get("mlflow_run_id")
        checkpoint.set_rng_state(state["rng"])


class SavedConfig:
    """The job config as a checkpoint part: saved as a dict; loading checks that it still fits.

    A checkpoint can resume this run only if it holds the same model shape, objective and
    optimiser (the weights, the collator's outputs and the optimiser state depend on them).
    Anything else (lr, steps, eval cadence) may change between a run and its resume.
    """

    def __init__(self, cfg: JobConfig):
        self.cfg = cfg

    def state_dict(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        diff = model_diff(saved["model"], self.cfg.model)
        if diff:
            fields = ", ".join(
                f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in sorted(diff.items())
            )
            raise checkpoint.CheckpointMismatch(
                f"holds a different model ({fields}); use a fresh --checkpoint-dir "
                "or the same --model and shards"
            )
        for what, before, now in (
            ("objective", saved.get("objective", {}).get("name", "clm"), self.cfg.objective.name),
            ("optimizer", saved.get("optim", {}).get("name", "adamw"), self.cfg.optim.name),
        ):
            if before != now:
                raise checkpoint.CheckpointMismatch(
                    f"was trained with {what} {before!r}, this run asks for {now!r}; "
                    "use a fresh --checkpoint-dir"
                )
