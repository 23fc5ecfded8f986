"""A scriptable HTTP server on 127.0.0.1 for crawler tests: each path is a small function.

A route gets the request handler and how many times its path was asked for (1 = first),
so "503 twice, then 200" or "429 with Retry-After" are two lines. Every request is
recorded with its time, so tests can check what was (not) fetched and the spacing
between requests. Handlers that hang wait on ``release``, which ``stop()`` sets, so the
server shuts down at once.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

Route = Callable[[BaseHTTPRequestHandler, int], None]


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", ctype: str = "text/html",
         headers: dict[str, str] | None = None, length: bool = True) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if body:
        handler.wfile.write(body)


def page(body: bytes, status: int = 200, ctype: str = "text/html; charset=utf-8", **headers: str) -> Route:
    return lambda h, n: send(h, status, body, ctype, headers)


def redirect(location: str, status: int = 302) -> Route:
    return lambda h, n: send(h, status, b"", headers={"Location": location})


def reset_connection(handler: BaseHTTPRequestHandler) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed or overloaded server does."""
    handler.wfile.flush()
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True


def reset_first(failures: int, then: Route, mid_body: bool = False) -> Route:
    """Reset the first ``failures`` requests (before any byte, or after half the body), then ``then``."""
    def route(h, n):
        if n > failures:
            return then(h, n)
        if mid_body:
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.send_header("Content-Length", "2000")
            h.end_headers()
            h.wfile.write(b"<html><body><p>" + b"x" * 985)
        reset_connection(h)
    return route


def drip(release: threading.Event, every: float, size: int = 10_000) -> Route:
    """Headers at once, then one body byte every ``every`` seconds: each byte resets a socket
    timeout longer than ``every``, so only a deadline on the whole response ends it."""
    def route(h, n):
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(size))
        h.end_headers()
        h.wfile.flush()
        for _ in range(size):
            if release.wait(every):
                return
            h.wfile.write(b"x")
            h.wfile.flush()
    return route


def drip_headers(release: threading.Event, every: float) -> Route:
    """The status line at once, then one header byte every ``every`` seconds, never ending the
    headers: http.client reads them itself, so only a timer at the deadline can end the wait."""
    def route(h, n):
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        h.wfile.flush()
        while not release.wait(every):
            h.wfile.write(b"X")
            h.wfile.flush()
        h.close_connection = True
    return route


def refused_port() -> int:
    """A port on 127.0.0.1 that nobody listens on: bound (so it was free), then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def links_page(title: str, links: list[str], text: str = "") -> bytes:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return f"<html><head><title>{title}</title></head><body><p>{text}</p>{anchors}</body></html>".encode()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that time out or stop reading reset connections: expected here


class Site:
    """Start with ``with Site(routes) as site:``; ``site.url`` is its origin."""

    def __init__(self, routes: dict[str, Route]):
        self.routes = dict(routes)
        self.hits: Counter = Counter()
        self.requests: list[tuple[str, float]] = []  # (path, time.monotonic())
        self.release = threading.Event()
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server API
                path = self.path.split("?", 1)[0]
                with site._lock:
                    site.hits[path] += 1
                    n = site.hits[path]
                    site.requests.append((path, time.monotonic()))
                route = site.routes.get(path)
                try:
                    if route is None:
                        send(self, 404, b"<html>not found</html>")
                    else:
                        route(self, n)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client stopped reading (a byte cap): fine
                except OSError:
                    self.close_connection = True  # a route reset the connection itself

            def log_message(self, *args):
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "Site":
        serve = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                 daemon=True)
        serve.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def times(self, path: str) -> list[float]:
        return [t for p, t in self.requests if p == path]

    def page_hits(self) -> Counter:
        return Counter({p: n for p, n in self.hits.items() if p != "/robots.txt"})
