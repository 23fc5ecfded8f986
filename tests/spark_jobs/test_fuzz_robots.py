"""Property-based tests of the robots.txt rules (spark_jobs/crawl/robots.py): any status and
body, any URL, give a yes/no and a non-negative Crawl-delay (``inf`` for values past any cap, which
the crawl skips as ``crawl_delay_too_long``), never an exception."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark_jobs.crawl.robots import RobotsRules

_directive = st.sampled_from(["User-agent", "user-agent", "Disallow", "Allow", "Crawl-delay", "crawl-delay",
                              "Request-rate", "Sitemap", "Host", "", "#"])
_sane = st.sampled_from(["*", "c2m", "/", "/private/", "/*.php$", "0", "1.5", "86400", "99999999999999",
                         "-5", "1/0", "0/0", "\u0663", "nan", "inf", "1e400"])
# digit strings RobotFileParser cannot turn into a number (see the xfail below)
_absurd = st.one_of(st.sampled_from(["9" * 400, "9" * 5000, "\u00b2", "\u2460"]),
                    st.integers(10 ** 309, 10 ** 320).map(str))


def _bodies(values):
    line = st.tuples(_directive, st.sampled_from([":", ": ", " :", ""]),
                     st.one_of(values, st.text(max_size=20))).map("".join)
    text = st.tuples(st.sampled_from(["", "User-agent: *\n", "User-agent: c2m\n"]),
                     st.lists(line, max_size=12).map("\n".join)).map("".join)
    return st.one_of(text.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=300))
_urls = st.one_of(st.just("http://h.test/private/x"),
                  st.text(max_size=30).map(lambda t: "http://h.test/" + t))


def _check(rules: RobotsRules, url: str) -> None:
    assert rules.can_fetch("c2m", url) in (True, False)
    delay = rules.crawl_delay("c2m")
    assert isinstance(delay, float) and not math.isnan(delay) and delay >= 0


@given(status=st.one_of(st.none(), st.integers(100, 599)), body=_bodies(_sane), url=_urls)
def test_any_fetch_outcome_gives_rules(status, body, url):
    _check(RobotsRules.from_fetch(status, body), url)


# Values RobotFileParser alone cannot take: it turns any str.isdigit() value into int(), so "²" and
# more than 4300 digits raise ValueError, and 400 digits overflow float().
@given(body=_bodies(_absurd), url=_urls)
def test_absurd_crawl_delay_values_give_rules(body, url):
    _check(RobotsRules.from_fetch(200, body), url)


@pytest.mark.parametrize("value", ["9" * 400, "9" * 5000, "\u00b2"])
def test_absurd_crawl_delay_values(value):
    _check(RobotsRules.from_fetch(200, f"User-agent: *\nCrawl-delay: {value}\n".encode()), "http://h.test/")
