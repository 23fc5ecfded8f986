"""URL normalisation and crawl scope.

The frontier deduplicates on normalised URLs, so two spellings of one page are fetched
once: lowercase scheme and host, no fragment, no default port, no credentials, dot
segments removed, query parameters sorted. Scope is a list of ``host[:port]`` entries:
a bare host also admits its subdomains on any port; ``host:port`` admits exactly that.
"""
from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of an http(s) URL, or None for anything that is not one."""
    if not url:
        return None
    try:  # urljoin and urlsplit both raise on a malformed host such as "http://["
        url = urljoin(base, url.strip()) if base else url.strip()
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in SCHEMES or not host:
        return None
    try:
        host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
    except UnicodeError:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = quote(_remove_dot_segments(parts.path or "/"), safe=_PATH_SAFE)
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return urlunsplit((scheme, netloc, path, query, ""))


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if len(out) > 1:
                out.pop()
        elif seg != ".":
            out.append(seg)
    result = "/".join(out)
    if path.endswith(("/.", "/..")):
        result += "/"
    return result if result.startswith("/") else "/" + result


def host_key(url: str) -> str:
    """host[:port] of a normalised URL: the unit of politeness (robots, delay)."""
    return urlsplit(url).netloc


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def parse_allowed(entries: list[str]) -> list[tuple[str, int | None]]:
    """'example.com,127.0.0.1:28000' -> [('example.com', None), ('127.0.0.1', 28000)]."""
    allowed = []
    for entry in entries:
        entry = entry.strip().lower()
        if not entry:
            continue
        parts = urlsplit(entry if "//" in entry else f"//{entry}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"allowed domain {entry!r} has a bad port; write host or host:port") from None
        if not parts.hostname:
            raise ValueError(f"allowed domain {entry!r} has no host; write host or host:port")
        allowed.append((parts.hostname, port))
    return allowed


def in_scope(url: str, allowed: list[tuple[str, int | None]]) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    for a_host, a_port in allowed:
        if a_port is not None:
            if host == a_host and port == a_port:
                return True
        elif host == a_host or host.endswith("." + a_host):
            return True
    return False
