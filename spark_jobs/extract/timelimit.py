"""A wall-clock limit for one page's extraction, so a pathological page cannot stall a task.

trafilatura's time grows faster than linearly on some markup (one 5.4 MB page took 9.6 s
on the reference machine), and a Spark task that stalls on one page holds up its whole
partition. :func:`time_limit` arms a one-shot ``SIGALRM`` timer that raises
:class:`PageTimeout` in the code that is running; the extract step turns that into the
drop reason ``extract_timeout``.

Why a signal and not a thread or a child process: a thread cannot be stopped, and a
child per page (or a pool that must be killed and restarted) costs IPC and a second copy
of trafilatura on every worker. PySpark runs ``mapInPandas`` functions in the Python
worker's main thread, where signals are delivered. Limits of this choice:

- the signal is handled between Python bytecodes, so a single long C call (one lxml
  parse) finishes before the page is abandoned; the page byte cap bounds those calls;
- outside the main thread (a threaded caller) there is no limit, and
  :func:`time_limit` says so by yielding False.

:class:`PageTimeout` derives from BaseException so that the ``except Exception`` blocks
inside trafilatura do not swallow it.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


class PageTimeout(BaseException):
    """A page took longer than its extraction time limit."""


def _can_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float | None) -> Iterator[bool]:
    """Raise :class:`PageTimeout` if the block runs longer than ``seconds``; yields whether it is armed."""
    if not seconds or seconds <= 0 or not _can_alarm():
        yield False
        return

    def on_alarm(signum, frame):
        raise PageTimeout(f"page extraction exceeded {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)  # one shot: nothing can fire after it is disarmed
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
