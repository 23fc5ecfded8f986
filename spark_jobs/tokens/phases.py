"""Wall seconds per phase of the tokenize job, printed with its summary.

Spark is lazy, so a phase is named after the action that runs it ("encode + cache + stats"
is the first action over the encoding). One line per run makes a slow phase visible
without a profiler, and keeps timings out of the manifest, which must stay deterministic.
"""
from __future__ import annotations

import time


class PhaseClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        """Close ``phase``: the time since the previous lap (or the clock's start)."""
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now

    def line(self) -> str:
        return ", ".join(f"{phase} {s:.2f}" for phase, s in self.seconds.items())
