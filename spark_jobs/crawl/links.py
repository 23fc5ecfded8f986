"""Outlinks of an HTML page, with lxml's parser (no regexes over HTML).

Honours ``<base href>``, ``rel=nofollow`` on a link and ``<meta name=robots
content=nofollow>`` on the page. Links come back normalised; scope is the driver's job.
"""
from __future__ import annotations

from spark_jobs.crawl.urls import normalize_url


def extract_links(body: bytes, page_url: str) -> list[str]:
    import lxml.html
    from lxml import etree

    if not body or not body.strip():
        return []
    try:
        doc = lxml.html.document_fromstring(body)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return []
    for meta in doc.iter("meta"):
        if (meta.get("name") or "").lower() == "robots" and "nofollow" in (meta.get("content") or "").lower():
            return []
    base = page_url
    for tag in doc.iter("base"):
        if tag.get("href"):
            base = normalize_url(tag.get("href"), page_url) or page_url
            break
    links: dict[str, None] = {}
    for el in doc.iter("a", "area"):
        href = el.get("href")
        if not href or "nofollow" in (el.get("rel") or "").lower().split():
            continue
        url = normalize_url(href, base)
        if url:
            links[url] = None
    return list(links)
