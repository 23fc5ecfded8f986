"""Ends a fetch attempt whose status line or headers are still arriving at its deadline.

http.client reads the status line and headers itself, with only the socket timeout per read,
so a server that sends a header byte every few seconds would hold the crawler far past the
attempt's deadline (the body has its own cut, in ``fetcher._read_body``). The session's
connections record their socket whenever they start reading a response; a timer armed for the
attempt's time limit shuts that socket down, the blocked read fails at once, and the fetcher
names the failure after the deadline (``fetch_deadline`` or ``budget_exhausted``).

``requests`` and ``urllib3`` are imported inside :func:`mount`, as in the fetcher: these modules
travel to Spark's workers, which load the HTTP stack only when a session is made.
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


def mount(session) -> None:
    """Make ``session``'s HTTP and HTTPS connections report to the thread's current attempt."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Reporting:
        def getresponse(self, *args, **kwargs):  # reads the status line and the headers
            attempt = getattr(_CURRENT, "attempt", None)
            if attempt is not None:
                attempt.reading(self.sock)
            return super().getresponse(*args, **kwargs)

    class Conn(Reporting, HTTPConnection):
        pass

    class SConn(Reporting, HTTPSConnection):
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Conn

    class SPool(HTTPSConnectionPool):
        ConnectionCls = SConn

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": SPool}

    adapter = Adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
