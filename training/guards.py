"""Stopping rules of the training loop: divergence (NaN/Inf) and early stopping on val loss.

Both decide from values that are identical on every rank (all-reduced losses, the norm
of the averaged gradients, the all-reduced val loss), so all ranks stop at the same step
and none is left waiting in a collective.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


class TrainingDiverged(RuntimeError):
    """A loss or gradient norm became NaN or infinite; training stops at that step."""

    def __init__(self, step: int, what: str, value: float, last_checkpoint: str | None = None):
        self.step, self.what, self.value = step, what, value
        resume = (
            f" The newest checkpoint is {last_checkpoint}; it holds finite weights."
            if last_checkpoint
            else ""
        )
        super().__init__(
            f"training diverged at step {step}: {what} is {value}. Lower --lr (or raise --warmup-steps), "
            f"keep --grad-clip on, or use --precision bf16/fp32 instead of fp16.{resume}"
        )


def first_non_finite(values: list[tuple[int, float]]) -> tuple[int, float] | None:
    """The first (step, value) that is NaN or infinite, or None."""
    return next(((s, v) for s, v in values if not math.isfinite(v)), None)


@dataclass
class EarlyStopping:
    """Stop after ``patience`` evaluations in a row without a val loss below ``best - min_delta``.

    ``patience`` 0 never stops. The state is checkpointed, so a resumed job counts on.
    """

    patience: int = 0
    min_delta: float = 0.0
    best: float = math.inf
    bad_evals: int = 0
    stopped: bool = False

    def update(self, val_loss: float) -> bool:
        """Record one evaluation; True when training should stop now."""
        if val_loss < self.best - self.min_delta:
            self.best, self.bad_evals = val_loss, 0
        else:
            self.bad_evals += 1
        self.stopped = bool(self.patience) and self.bad_evals >= self.patience
        return self.stopped

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_evals = float(state["best"]), int(state["bad_evals"])
        self.stopped = bool(state["stopped"])
