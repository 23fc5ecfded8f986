"""robots.txt rules per host, following RFC 9309.

The driver fetches each host's robots.txt once per crawl and caches the rules; the
fetch tasks get the text with the URLs. Outcomes: 2xx parses the file; 4xx means no
rules (crawl everything); 5xx or an unreachable server means "disallow everything"
(RFC 9309 §2.3.1.4), because a broken server is no permission. ``Crawl-delay`` is
honoured when it is larger than the crawl's own ``--delay``.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.robotparser import RobotFileParser

ALLOW_ALL = "allow_all"
DISALLOW_ALL = "disallow_all"
PARSED = "parsed"
MAX_ROBOTS_BYTES = 500 * 1024  # RFC 9309: parse at least 500 KiB


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
            parser.parse(self.text.splitlines())
            object.__setattr__(self, "_cached", parser)
        return parser

    def can_fetch(self, user_agent: str, url: str) -> bool:
        if self.mode == ALLOW_ALL:
            return True
        if self.mode == DISALLOW_ALL:
            return False
        return self._parser().can_fetch(user_agent, url)

    def crawl_delay(self, user_agent: str) -> float:
        if self.mode != PARSED:
            return 0.0
        delay = self._parser().crawl_delay(user_agent)
        try:
            return max(0.0, float(delay)) if delay is not None else 0.0
        except (TypeError, ValueError):
            return 0.0

    def __getstate__(self):
        return {"mode": self.mode, "text": self.text}

    def __setstate__(self, state):
        object.__setattr__(self, "mode", state["mode"])
        object.__setattr__(self, "text", state["text"])
