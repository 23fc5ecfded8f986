"""robots.txt rules per host, following RFC 9309.

The driver fetches each host's robots.txt once per crawl and caches the rules; the
fetch tasks get the text with the URLs. Outcomes (RFC 9309 §2.3.1): 2xx parses the file;
"unavailable" (4xx) means no rules (crawl everything); "unreachable" (5xx, 429, a network
error) means "disallow everything", because a broken server is no permission. Redirects
are followed, across hosts too, for at most :data:`MAX_ROBOTS_REDIRECTS` hops (§2.3.1.2):
the file reached is the initial host's rules; a longer chain or a loop counts as
unavailable (:func:`spark_jobs.crawl.bfs.fetch_robots`).

``Crawl-delay`` is read as seconds (fractions kept; negative, NaN or unparsable values are
ignored; huge ones stay huge) and honoured when larger than the crawl's own ``--delay``; a
host asking for more than ``--max-crawl-delay`` is skipped (:mod:`spark_jobs.crawl.bfs`).
``Request-rate`` is not used. The standard library's parser converts both with ``int()``,
which raises on digits such as ``²`` and on values with thousands of digits, and parses rule
paths with ``urlparse``, which raises on ``//[x``; such lines are rewritten before it sees
them (:func:`_safe_line`).
"""
from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass
from urllib.robotparser import RobotFileParser

ALLOW_ALL = "allow_all"
DISALLOW_ALL = "disallow_all"
PARSED = "parsed"
MAX_ROBOTS_BYTES = 500 * 1024  # RFC 9309: parse at least 500 KiB
MAX_ROBOTS_REDIRECTS = 5  # RFC 9309 §2.3.1.2: follow at least five consecutive redirects
_LONGEST_DELAY_MS = 10 ** 15  # a Crawl-delay beyond any cap, still an exact integer for the parser


def parse_seconds(text: str) -> float | None:
    """A robots.txt number of seconds: a float >= 0 (``inf`` for absurdly large values), or
    None when it is not a number, negative or NaN."""
    try:
        value = float(text.strip())
    except (ValueError, OverflowError):
        return None
    if math.isnan(value) or value < 0:
        return None
    return value


def _safe_line(line: str) -> str:
    """The line as the standard parser may read it: Crawl-delay in integer milliseconds (or no
    value when unusable), Request-rate without a value, an Allow/Disallow path that urllib cannot
    parse (``//[x``) as a comment. Keeping the key keeps the group structure; a comment line does
    too, where an empty line would end the group."""
    key, sep, value = line.split("#", 1)[0].partition(":")
    key = key.strip().lower()
    if sep and key in ("allow", "disallow"):
        try:
            urllib.parse.urlparse(urllib.parse.unquote(value.strip()))
        except ValueError:
            return "# a rule whose path cannot be parsed"
        return line
    if not sep or key not in ("crawl-delay", "request-rate"):
        return line
    if key == "request-rate":
        return "Request-rate:"
    seconds = parse_seconds(urllib.parse.unquote(value))
    if seconds is None:
        return "Crawl-delay:"
    millis = round(seconds * 1000) if seconds * 1000 < _LONGEST_DELAY_MS else _LONGEST_DELAY_MS
    return f"Crawl-delay: {millis}"


@dataclass(frozen=True)
class RobotsRules:
    """What one host's robots.txt allows; picklable so it can travel to fetch tasks."""

    mode: str
    text: str = ""

    @classmethod
    def from_fetch(cls, status: int | None, body: bytes | None) -> "RobotsRules":
        if status is None or status >= 500:
            return cls(DISALLOW_ALL)
        if 200 <= status < 300:
            return cls(PARSED, (body or b"")[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace"))
        return cls(ALLOW_ALL)

    def _parser(self) -> RobotFileParser:
        parser = getattr(self, "_cached", None)
        if parser is None:
            parser = RobotFileParser()
            parser.parse([_safe_line(line) for line in self.text.splitlines()])
            object.__setattr__(self, "_cached", parser)
        return parser

    def can_fetch(self, user_agent: str, url: str) -> bool:
        if self.mode == ALLOW_ALL:
            return True
        if self.mode == DISALLOW_ALL:
            return False
        return self._parser().can_fetch(user_agent, url)

    def crawl_delay(self, user_agent: str) -> float:
        """Seconds this host asks between requests (0.0 without a usable Crawl-delay)."""
        if self.mode != PARSED:
            return 0.0
        delay_ms = self._parser().crawl_delay(user_agent)
        if delay_ms is None:
            return 0.0
        return math.inf if delay_ms >= _LONGEST_DELAY_MS else delay_ms / 1000

    def __getstate__(self):
        return {"mode": self.mode, "text": self.text}

    def __setstate__(self, state):
        object.__setattr__(self, "mode", state["mode"])
        object.__setattr__(self, "text", state["text"])
