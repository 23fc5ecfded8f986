"""When to try a URL again, and how long to wait first: pure functions, no I/O.

A 429, a 5xx, a timeout or a refused or reset connection is often momentary (an
overloaded server, a deploy, a restart), so the fetcher retries it after exponential
backoff with "equal jitter": attempt ``n`` waits between half and all of
``min(max_delay, base * 2**n)``. Half is guaranteed so a server
in trouble sees the pressure drop; the random half spreads retries of many crawlers
(or many URLs) apart. A ``Retry-After`` header (seconds or an HTTP-date, RFC 9110
§10.2.3) replaces the backoff: the server said when to come back.

Every URL has a total time budget (attempts and waits together). A wait that would end
past the budget is not started: the URL fails at once with ``budget_exhausted``, so one
unhealthy host cannot hold its Spark task for long. A name that does not resolve is not
retried: DNS answers are cached, and an unknown name is not a passing state.

The jitter comes from a ``random.Random`` seeded by the URL, so a schedule is
reproducible (tests, reruns) yet differs from URL to URL.
"""
from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 507, 508, 509, 520, 521, 522, 523, 524})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one URL. The defaults suit a polite crawl of public sites."""

    max_retries: int = 3  # attempts after the first
    base_delay: float = 1.0  # seconds; attempt n waits up to base_delay * 2**n
    max_delay: float = 60.0  # no single backoff wait exceeds this (Retry-After may)
    budget: float = 120.0  # seconds per URL, all attempts and waits together

    def __post_init__(self):
        finite = all(math.isfinite(v) for v in (self.base_delay, self.max_delay, self.budget))
        if (not finite or self.max_retries < 0 or self.base_delay < 0 or self.max_delay < self.base_delay
                or self.budget <= 0):
            raise ValueError("retry settings need finite numbers with --max-retries >= 0, "
                             f"0 <= --backoff-base <= --backoff-max and --retry-budget > 0; got {self}")


def rng_for(url: str, seed: int = 0) -> random.Random:
    """A jitter source that is the same for the same URL on every run."""
    return random.Random(zlib.crc32(url.encode("utf-8", "replace")) ^ seed)


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (attempt 0 = after the first try)."""
    ceiling = min(policy.max_delay, policy.base_delay * (2.0 ** min(attempt, 64)))  # 2.0**1100 overflows
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


def backoff_schedule(policy: RetryPolicy, rng: random.Random) -> list[float]:
    """Every backoff wait of a URL that fails every attempt (budget not applied)."""
    return [backoff_delay(n, policy, rng) for n in range(policy.max_retries)]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` (epoch) that a Retry-After value asks for; None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)  # thousands of digits give inf: past any budget, the URL is not retried
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # e.g. a year or zone out of range
        return None
    if when is None or when.tzinfo is None:
        return None  # RFC 9110 dates are GMT; a date without a zone is not one
    return max(0.0, when.timestamp() - now)


def next_wait(attempt: int, retry_after: str | None, policy: RetryPolicy, rng: random.Random,
              now: float) -> float:
    """The wait before the next attempt: the server's Retry-After if it sent one, else backoff."""
    asked = parse_retry_after(retry_after, now)
    return asked if asked is not None else backoff_delay(attempt, policy, rng)
