"""The demo website: a local copy of Python's HTML docs, served on 127.0.0.1 only.

The demo and the tests need a real site to crawl, and nothing outside this machine is
reachable, so Debian's ``python3.11-doc`` pages (about 530 of them) stand in for the web.
The generated ``/robots.txt`` disallows one subtree and sets a Crawl-delay, so the crawler's
politeness rules are exercised on every run. Tests point ``--root`` at a tiny generated site.

Run it directly: ``python -m ops.stack.demo_site --port 28000 [--root DIR] [--crawl-delay 1]``.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Where Debian installs Python's HTML docs; the first that holds the library reference wins.
DOC_ROOTS = (
    "/usr/share/doc/python3.11/html", "/usr/share/doc/python3/html", "/usr/share/doc/python3-doc/html",
)
DISALLOWED = "/whatsnew/"
DEFAULT_CRAWL_DELAY = 1  # seconds; an integer, because urllib.robotparser ignores fractions


class SiteMissing(RuntimeError):
    """The docs to serve are not installed (or the given root is empty)."""


def find_docs_root() -> Path:
    """The installed Python docs, or a clear error saying how to install them."""
    for candidate in DOC_ROOTS:
        root = Path(candidate)
        if (root / "library" / "index.html").is_file():
            return root
    raise SiteMissing(
        "Python's HTML docs are not installed (looked in " + ", ".join(DOC_ROOTS) + "). "
        "Install them with `apt-get install -y python3-doc` (or python3.11-doc), "
        "or point the site at another folder with C2M_SITE_ROOT=DIR."
    )


def resolve_root(root: str | os.PathLike | None) -> Path:
    if not root:
        return find_docs_root()
    path = Path(root)
    if not path.is_dir() or not any(path.iterdir()):
        raise SiteMissing(f"site root {path} does not exist or is empty; "
                          "set C2M_SITE_ROOT to a folder of HTML pages")
    return path


def robots_txt(crawl_delay: int = DEFAULT_CRAWL_DELAY, disallow: str = DISALLOWED) -> str:
    return f"User-agent: *\nDisallow: {disallow}\nCrawl-delay: {int(crawl_delay)}\n"


class _Handler(SimpleHTTPRequestHandler):
    """Static files plus a generated robots.txt; quiet access log (one line per request)."""

    robots: str = robots_txt()

    def do_GET(self):  # noqa: N802 - http.server naming
        if self.path.split("?", 1)[0] == "/robots.txt":
            body = self.robots.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def do_HEAD(self):  # noqa: N802
        if self.path.split("?", 1)[0] == "/robots.txt":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            return
        super().do_HEAD()

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))


def make_server(host: str, port: int, root: Path,
                crawl_delay: int = DEFAULT_CRAWL_DELAY) -> ThreadingHTTPServer:
    """A threaded server for ``root``; bind errors surface as OSError to the caller."""
    handler = type("DemoSiteHandler", (_Handler,), {"robots": robots_txt(crawl_delay)})
    server = ThreadingHTTPServer((host, port), functools.partial(handler, directory=str(root)))
    server.daemon_threads = True
    return server


def serve_until_interrupted(server) -> int:
    """Serve until interrupted (Ctrl-C), then close the listening socket."""
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a person stops it
            server.serve_forever()
    finally:
        server.server_close()
    return 0


def run_site(label: str, host: str, port: int, port_setting: str, build, missing: type[Exception]) -> int:
    """Build a site's server and serve it until interrupted. ``build()`` returns the server and a
    line saying what it serves; its data missing (``missing``) or a busy port ends the run with
    exit status 2 and what to do."""
    try:
        server, serving = build()
    except missing as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{label}: cannot listen on {host}:{port} ({exc}); set {port_setting} to a free port",
              file=sys.stderr)
        return 2
    print(f"{label}: {serving}", flush=True)
    return serve_until_interrupted(server)


def main(argv: list[str] | None = None) -> int:
    from ops.launch.settings import get_settings

    s = get_settings()
    p = argparse.ArgumentParser(prog="python -m ops.stack.demo_site", description=__doc__.splitlines()[0])
    p.add_argument("--host", default=s.host)
    p.add_argument("--port", type=int, default=s.site_port)
    p.add_argument("--root", default=os.environ.get("C2M_SITE_ROOT") or None,
                   help="folder to serve (default: Python's docs from python3-doc)")
    p.add_argument("--crawl-delay", type=int,
                   default=int(os.environ.get("C2M_SITE_CRAWL_DELAY", DEFAULT_CRAWL_DELAY)))
    a = p.parse_args(argv)

    def build():
        root = resolve_root(a.root)
        return make_server(a.host, a.port, root, a.crawl_delay), (
            f"serving {root} at http://{a.host}:{a.port}/ (robots: Disallow {DISALLOWED}, "
            f"Crawl-delay {a.crawl_delay})")

    return run_site("demo site", a.host, a.port, "C2M_SITE_PORT", build, SiteMissing)


if __name__ == "__main__":
    sys.exit(main())
