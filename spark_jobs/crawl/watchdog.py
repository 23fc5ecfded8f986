"""Ends a fetch attempt whose status line or headers are still arriving at its deadline.

http.client reads the status line and headers itself, with only the socket timeout per read,
so a server that sends a header byte every few seconds would hold the crawler far past the
attempt's deadline. The same cut ends a body that drips. The session's
connections (:mod:`spark_jobs.crawl.connections`) record their socket whenever they start
reading a response; a timer armed for the attempt's time limit shuts that socket down, the
blocked read fails at once, and the fetcher names the failure after the deadline
(``fetch_deadline`` or ``budget_exhausted``).
"""
from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from typing import Iterator

_CURRENT = threading.local()  # the attempt the fetching thread is in, for its connections


class Attempt:
    """The socket an attempt is reading from, and whether its time is up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.expired = False

    def reading(self, sock: socket.socket | None) -> None:
        """A connection of this attempt is about to read a response from ``sock``."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            _shut(self._sock)


def _shut(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)  # the blocked recv returns; the pool drops the connection
    except OSError:
        pass  # already closed


@contextmanager
def time_limit(seconds: float) -> Iterator[Attempt]:
    """Within the block, responses this thread starts reading are cut ``seconds`` from now."""
    attempt = Attempt()
    previous = getattr(_CURRENT, "attempt", None)
    _CURRENT.attempt = attempt
    timer = threading.Timer(max(seconds, 0.0), attempt.expire)
    timer.daemon = True
    timer.start()
    try:
        yield attempt
    finally:
        timer.cancel()
        _CURRENT.attempt = previous


def current_attempt() -> Attempt | None:
    """The attempt this thread is in (:func:`time_limit`), for the connections it opens."""
    return getattr(_CURRENT, "attempt", None)
