"""Stopping rules of the training loop: divergence (NaN/Inf), early stopping on val loss, and
a fault-injection hook that lets tests kill a rank on cue (fail-fast checks).

The two stopping rules decide from values that are identical on every rank (all-reduced losses, the norm
of the averaged gradients, the all-reduced val loss), so all ranks stop at the same step
and none is left waiting in a collective.
"""

from __future__ import annotations

import math
import os
import signal
import sys
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


def raise_if_diverged(
    steps: list[tuple[int, float, float, float]], check_norm: bool, last_checkpoint: str | None = None
) -> None:
    """Raise TrainingDiverged for the first of ``steps`` (step, loss, lr, grad norm) that is not finite.

    The loop reads losses and norms once per log interval, not once per step (a per-step
    read makes a GPU wait for every step), and calls this before anything is evaluated,
    saved or logged: a diverged step never reaches a checkpoint, and the error names the
    step where it happened. Within a step the norm is checked first, as it explains the
    loss that follows; ``check_norm`` False (fp16, whose scaler skips inf-norm steps)
    checks losses only.
    """
    for step, loss, _, norm in steps:
        if check_norm and not math.isfinite(norm):
            raise TrainingDiverged(step, "the gradient norm", norm, last_checkpoint)
        if not math.isfinite(loss):
            raise TrainingDiverged(step, "the training loss", loss, last_checkpoint)


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


FAULT_ENV = "C2M_TEST_FAULT"  # "RANK:STEP:MODE", for fault-injection tests only
FAULT_MODES = ("exit", "freeze")


def inject_fault(step: int, rank: int) -> None:
    """Make this rank die at ``step`` when ``$C2M_TEST_FAULT`` asks for it (tests of fail-fast only).

    ``exit`` ends the process at once (``os._exit``: no cleanup, no goodbye to the other
    ranks, like an OOM kill); ``freeze`` stops it with SIGSTOP (a hung host: its sockets
    stay open, so only the collective timeout can tell). A real component cannot be
    asked to fail on cue, hence this hook; unset, it costs one dict lookup per step.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    try:
        want_rank, want_step, mode = spec.split(":")
        want_rank, want_step = int(want_rank), int(want_step)
    except ValueError:
        raise ValueError(f"{FAULT_ENV}={spec!r}: expected RANK:STEP:MODE, e.g. 1:3:exit") from None
    if mode not in FAULT_MODES:
        raise ValueError(f"{FAULT_ENV}={spec!r}: mode must be one of {', '.join(FAULT_MODES)}")
    if rank != want_rank or step != want_step:
        return
    print(f"[fault] rank {rank} {mode} at step {step} ({FAULT_ENV})", file=sys.stderr, flush=True)
    if mode == "exit":
        os._exit(17)
    os.kill(os.getpid(), signal.SIGSTOP)
