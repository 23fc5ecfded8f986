"""Training throughput, kept apart from the loop: tokens/s (and MFU) per log interval and per run.

Time spent evaluating, checkpointing and logging is not training: it is measured with
``pause(what)``, left out of tokens/s, and reported apart (``eval_seconds`` and so on).
"""

from __future__ import annotations

import contextlib
import time

PAUSES = ("eval", "checkpoint", "log")


class StepTimer:
    """Counts optimiser steps and the wall time they take.

    ``tokens_per_step`` counts all ranks together. With ``peak_flops`` (all ranks together,
    FLOP/s) and ``flops_per_token``, each interval also reports the model FLOPs utilisation.
    """

    def __init__(self, tokens_per_step: int, flops_per_token: float = 0.0, peak_flops: float = 0.0):
        self.tokens_per_step = tokens_per_step
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self.paused = {what: 0.0 for what in PAUSES}
        self.steps = 0
        self._start = self._interval_start = time.perf_counter()
        self._interval_steps, self._interval_paused = 0, 0.0

    def step(self) -> None:
        self.steps += 1
        self._interval_steps += 1

    @contextlib.contextmanager
    def pause(self, what: str):
        """Time the block as ``what`` (eval, checkpoint or log) instead of training."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.paused[what] += time.perf_counter() - t0

    def interval(self) -> dict[str, float]:
        """Throughput of the steps since the last call, as metrics; starts the next interval."""
        now, paused = time.perf_counter(), sum(self.paused.values())
        seconds = now - self._interval_start - (paused - self._interval_paused)
        tokens_s = self._interval_steps * self.tokens_per_step / seconds if seconds > 0 else 0.0
        self._interval_start, self._interval_paused, self._interval_steps = now, paused, 0
        perf = {"perf/tokens_per_s": tokens_s}
        if self.peak_flops:
            perf["perf/mfu"] = tokens_s * self.flops_per_token / self.peak_flops
        return perf

    def summary(self) -> dict[str, float]:
        """The run's steps/s and tokens/s over training time only, and the seconds paused by kind."""
        seconds = time.perf_counter() - self._start - sum(self.paused.values())
        steps_per_s = self.steps / seconds if self.steps and seconds > 0 else 0.0
        return {
            "steps_per_s": steps_per_s,
            "tokens_per_s": steps_per_s * self.tokens_per_step,
            **{f"{what}_seconds": round(s, 3) for what, s in self.paused.items()},
        }
