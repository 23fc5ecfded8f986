"""The crawler's HTTP connections: checked where they really go, and cut at the deadline.

Two things a requests session cannot do by itself, done in urllib3's connection classes:

* **The peer address is checked after connecting.** ``safety.check_host`` resolves a name
  before each request, but urllib3 resolves it again to connect, so a DNS server that answers
  with a public address first and 127.0.0.1 or 169.254.169.254 next (DNS rebinding) would get
  the request through. Here the connected socket's peer is checked before a byte is sent (and
  before TLS), and a private peer closes the connection with :class:`PrivatePeer`, which the
  fetcher names ``private_address``. ``--allow-private`` admits private and loopback peers;
  link-local and cloud metadata peers stay refused (:func:`safety.is_allowed_ip`).
* **Each response read reports its socket** to the thread's current attempt, so the attempt's
  timer can shut it at the deadline (:mod:`spark_jobs.crawl.watchdog`).

``requests`` and ``urllib3`` are imported inside :func:`mount`, as in the fetcher: these modules
travel to Spark's workers, which load the HTTP stack only when a session is made.
"""
from __future__ import annotations

from spark_jobs.crawl import safety, watchdog


class PrivatePeer(ConnectionError):
    """A connection reached a private, loopback or link-local address (after DNS said otherwise)."""


def mount(session, allow_private: bool) -> None:
    """Route ``session``'s http:// and https:// requests through the checked connections."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Checked:
        # urllib3 2.x opens the TCP connection in _new_conn (HTTPS wraps TLS around it afterwards);
        # a urllib3 that renamed it would fail test_crawl_retry's private-address test, not pass silently.
        def _new_conn(self):  # the TCP connection, before any request byte or TLS handshake
            sock = super()._new_conn()
            peer = sock.getpeername()[0]
            if not safety.is_allowed_ip(peer, allow_private):
                sock.close()
                raise PrivatePeer(f"{self.host} resolved to {peer} when connecting: a refused address")
            return sock

        def getresponse(self, *args, **kwargs):  # reads the status line and the headers
            attempt = watchdog.current_attempt()
            if attempt is not None:
                attempt.reading(self.sock)
            return super().getresponse(*args, **kwargs)

    class Conn(Checked, HTTPConnection):
        """http://: the peer check and deadline reporting on urllib3's connection."""

    class SConn(Checked, HTTPSConnection):
        """https://: the same, the peer checked before the TLS handshake."""

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
