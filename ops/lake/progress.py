"""Progress lines for long jobs: what is done, of how much, how fast, and when it ends.

One :class:`Progress` per process, started by the job (:func:`start`), prints a line at least
every ``C2M_PROGRESS_EVERY`` seconds (10 by default; 0 turns it off) from a daemon thread, so
a job that is busy in one long call still says what it is doing:

    [progress] crawl: 40/150 pages (27%), 1.9 pages/s, ETA 58 s; stage 3: 0/1 tasks, 1 running; 21 s

The job feeds it with :func:`update` (``done``, ``total``, ``unit`` and free-form facts such as
a loss), a cheap assignment that never prints; ``extra`` adds a live part computed at print
time (Spark's stage and task counts, :mod:`spark_jobs.progress`). Every line starts with
``[progress]``: ``crawl2model demo`` relays the newest one from the task log. In an interactive
terminal the same numbers drive a tqdm bar instead of lines; ``C2M_PROGRESS_FILE`` names a
file that always holds the newest line. Standard library only (tqdm when present).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, TextIO

PREFIX = "[progress]"
EVERY_ENV = "C2M_PROGRESS_EVERY"
FILE_ENV = "C2M_PROGRESS_FILE"
DEFAULT_EVERY = 10.0

_current: "Progress | None" = None
_lock = threading.Lock()


class StopProgress(Exception):
    """Raised by an ``extra`` callback when what it watches has ended: the ticker stops quietly."""


def interval() -> float:
    """Seconds between lines (``C2M_PROGRESS_EVERY``; 0 or less: no lines)."""
    try:
        return float(os.environ.get(EVERY_ENV, DEFAULT_EVERY))
    except ValueError:
        return DEFAULT_EVERY


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


class Progress:
    """What one job has done; :meth:`line` says it, the ticker thread prints it."""

    def __init__(self, job: str, unit: str = "", total: int | None = None,
                 extra: Callable[[], str] | None = None, stream: TextIO | None = None,
                 every: float | None = None):
        self.job, self.unit, self.total, self.extra = job, unit, total, extra
        self.stream = stream or sys.stdout
        self.every = interval() if every is None else every
        self.done: int | None = None
        self.facts: dict[str, Any] = {}
        self.started = time.monotonic()
        self._first: tuple[float, int] | None = None  # (time, done) of the first update: the rate's origin
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None

    def update(self, done: int | None = None, total: int | None = None, unit: str | None = None,
               **facts: Any) -> None:
        """Record progress (no printing here: the ticker prints)."""
        if unit is not None:
            self.unit = unit
        if total is not None:
            self.total = total
        if done is not None:
            self.done = int(done)
            if self._first is None:
                self._first = (time.monotonic(), self.done)
        self.facts.update(facts)

    def rate(self) -> float | None:
        """Units per second since the first update."""
        if self._first is None or self.done is None:
            return None
        seconds = time.monotonic() - self._first[0]
        return (self.done - self._first[1]) / seconds if seconds > 0 and self.done > self._first[1] else None

    def counts(self) -> str:
        """``40/150 pages (27%), 1.9 pages/s, ETA 58 s`` from what is known."""
        if self.done is None:
            return ""
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.done:,}/{self.total:,}{unit}" if self.total else f"{self.done:,}{unit}"
        if self.total:
            text += f" ({100.0 * self.done / self.total:.0f}%)"
        rate = self.rate()
        if rate:
            text += f", {rate:.3g} {self.unit or 'items'}/s"
            if self.total and self.total > self.done:
                text += f", ETA {duration((self.total - self.done) / rate)}"
        return text

    def line(self, counts: bool = True) -> str:
        """The progress line; without ``counts`` (a bar shows them) only the facts and the live part."""
        facts = [f"{k.replace('_', ' ')} {_number(v)}" for k, v in self.facts.items() if v is not None]
        head = ", ".join(p for p in [self.counts() if counts else "", *facts] if p)
        live = ""
        if self.extra is not None:
            try:
                live = self.extra()
            except StopProgress:
                raise
            except Exception as exc:  # a progress line never fails the job
                live = f"({type(exc).__name__}: {exc})"
        body = "; ".join(p for p in (head, live) if p) or "working"
        return f"{PREFIX} {self.job}: {body}; {duration(time.monotonic() - self.started)}"

    def emit(self) -> str:
        """Print the line now (or move the bar), and write it to ``C2M_PROGRESS_FILE`` if set."""
        text = self.line()
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.n = self.done or 0
            self._bar.set_postfix_str(self.line(counts=False).split(": ", 1)[-1][:80], refresh=True)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()
        path = os.environ.get(FILE_ENV)
        if path:
            _write_atomic(path, text + "\n")
        return text

    # ------------------------------------------------------------ the ticker thread
    def start(self) -> "Progress":
        if self.every <= 0 or self._thread is not None:
            return self
        if _interactive(self.stream):
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=self.total, unit=f" {self.unit}" if self.unit else "it",
                                 desc=self.job, file=self.stream, dynamic_ncols=True)
            except ImportError:
                self._bar = None
        self._thread = threading.Thread(target=self._run, name=f"progress-{self.job}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every if self._bar is None else 1.0):
            try:
                self.emit()
            except StopProgress:
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _interactive(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError:
        pass  # a progress file is a convenience; the job goes on


def start(job: str, unit: str = "", total: int | None = None, extra: Callable[[], str] | None = None,
          stream: TextIO | None = None, every: float | None = None) -> Progress:
    """The process's progress, started (a second call replaces and stops the first)."""
    global _current
    with _lock:
        if _current is not None:
            _current.stop()
        _current = Progress(job, unit, total, extra, stream, every).start()
        return _current


def current() -> Progress | None:
    return _current


def update(done: int | None = None, total: int | None = None, unit: str | None = None, **facts: Any) -> None:
    """Record progress on the process's :class:`Progress`; nothing happens when none was started."""
    p = _current
    if p is not None:
        p.update(done, total, unit, **facts)


def stop() -> None:
    global _current
    with _lock:
        if _current is not None:
            _current.stop()
        _current = None
