"""Crawler pieces without Spark or network: URLs, scope, robots, address guard, links, WARC."""
from __future__ import annotations

import io

import pytest

from spark_jobs.crawl import safety
from spark_jobs.crawl.links import extract_links
from spark_jobs.crawl.robots import ALLOW_ALL, DISALLOW_ALL, PARSED, RobotsRules
from spark_jobs.crawl.urls import host_key, in_scope, normalize_url, parse_allowed


@pytest.mark.parametrize("raw, expected", [
    ("HTTP://Example.COM:80/a/./b/../c.html#frag", "http://example.com/a/c.html"),
    ("https://example.com:443/?b=2&a=1&a=0", "https://example.com/?a=0&a=1&b=2"),
    ("http://example.com", "http://example.com/"),
    ("http://user:pw@example.com:8080/x", "http://example.com:8080/x"),
    ("http://example.com/a b", "http://example.com/a%20b"),
    ("ftp://example.com/file", None),
    ("javascript:alert(1)", None),
    ("mailto:a@example.com", None),
    ("http://example.com:99999/", None),
])
def test_normalize_url(raw, expected):
    assert normalize_url(raw) == expected


def test_normalize_relative_links_against_base():
    assert normalize_url("../b.html?z=1#x", "http://h.test/dir/a.html") == "http://h.test/b.html?z=1"
    assert normalize_url("//other.test/p", "https://h.test/") == "https://other.test/p"


def test_scope_host_and_port_rules():
    allowed = parse_allowed(["example.com", "127.0.0.1:8000"])
    assert in_scope("http://example.com/", allowed)
    assert in_scope("https://docs.example.com/x", allowed)  # subdomain of a bare host
    assert not in_scope("http://badexample.com/", allowed)
    assert in_scope("http://127.0.0.1:8000/a", allowed)
    assert not in_scope("http://127.0.0.1:8001/a", allowed)  # host:port means exactly that port
    assert host_key("http://127.0.0.1:8000/a") == "127.0.0.1:8000"


def test_robots_rules_and_crawl_delay():
    rules = RobotsRules.from_fetch(200, b"User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n")
    ua = "crawl2model/0.1"
    assert rules.mode == PARSED
    assert rules.can_fetch(ua, "http://h.test/public.html")
    assert not rules.can_fetch(ua, "http://h.test/private/x.html")
    assert rules.crawl_delay(ua) == 2.0
    assert RobotsRules.from_fetch(404, None).mode == ALLOW_ALL  # RFC 9309: 4xx = no rules
    assert RobotsRules.from_fetch(503, None).mode == DISALLOW_ALL  # 5xx = disallow everything
    assert RobotsRules.from_fetch(None, None).mode == DISALLOW_ALL  # unreachable
    import pickle

    assert pickle.loads(pickle.dumps(rules)).can_fetch(ua, "http://h.test/ok") is True


@pytest.mark.parametrize("address, refused", [
    ("127.0.0.1", safety.PRIVATE_ADDRESS), ("10.1.2.3", safety.PRIVATE_ADDRESS),
    ("192.168.0.1", safety.PRIVATE_ADDRESS), ("169.254.169.254", safety.PRIVATE_ADDRESS),
    ("::1", safety.PRIVATE_ADDRESS), ("0.0.0.0", safety.PRIVATE_ADDRESS), ("8.8.8.8", None),
])
def test_private_addresses_are_refused(address, refused):
    assert safety.check_host(address, 80) == refused
    # allow_private admits private and loopback hosts, never link-local/metadata or unspecified ones
    always = address in ("169.254.169.254", "0.0.0.0")
    assert safety.check_host(address, 80, allow_private=True) == (safety.PRIVATE_ADDRESS if always else None)


def test_localhost_name_is_resolved_then_refused():
    assert safety.check_host("localhost", 80) == safety.PRIVATE_ADDRESS


def test_extract_links_base_nofollow_and_dedup():
    html = b"""<html><head><base href="http://h.test/docs/"></head><body>
      <a href="a.html">a</a><a href="a.html#x">again</a><a href="/b.html" rel="nofollow">b</a>
      <a href="mailto:x@y">mail</a><area href="c.html"><a>no href</a></body></html>"""
    expected = ["http://h.test/docs/a.html", "http://h.test/docs/c.html"]
    assert extract_links(html, "http://h.test/index.html") == expected
    meta = b'<html><head><meta name="robots" content="noindex, nofollow"></head><a href="/x">x</a></html>'
    assert extract_links(meta, "http://h.test/") == []
    assert extract_links(b"", "http://h.test/") == []


def test_warc_sink_roundtrip(tmp_path):
    from warcio.archiveiterator import ArchiveIterator

    from spark_jobs.crawl.warc import WarcSink

    sink = WarcSink(str(tmp_path), max_records=2)
    for i in range(3):
        sink.write({"final_url": f"http://h.test/{i}", "status": 200, "fetched_at": "2026-01-01T00:00:00Z",
                    "headers": [("Content-Type", "text/html")], "body": f"<p>page {i}</p>".encode()})
    sink.close()
    assert sink.files == ["part-00000.warc.gz", "part-00001.warc.gz"]
    bodies = []
    for name in sink.files:
        with open(tmp_path / name, "rb") as fh:
            for rec in ArchiveIterator(io.BytesIO(fh.read())):
                if rec.rec_type == "response":
                    bodies.append(rec.content_stream().read())
    assert bodies == [b"<p>page 0</p>", b"<p>page 1</p>", b"<p>page 2</p>"]
