"""How one run fans out into mapped tasks: crawl shards (seeds kept together per host, scopes
that never overlap) and HPO trial slots. Deterministic, so a retry plans the same tasks."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ops.dagkit.versions import shard_version


def seed_hosts(seeds: list[str]) -> list[str]:
    """``host[:port]`` of each seed URL, in order, without repeats."""
    hosts: list[str] = []
    for url in seeds:
        netloc = urlsplit(url).netloc
        if not netloc:
            raise ValueError(f"seed {url!r} is not an absolute http(s) URL")
        if netloc not in hosts:
            hosts.append(netloc)
    return hosts


def _seed_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.port or {"https": 443}.get(parts.scheme, 80)


def _parse_entry(entry: str) -> tuple[str, int | None]:
    parts = urlsplit(entry if "//" in entry else f"//{entry}")
    return (parts.hostname or "").lower(), parts.port


def _covers(entry: tuple[str, int | None], host: str, port: int | None) -> bool:
    """The crawler's scope rule (spark_jobs.crawl.urls.in_scope): a bare host admits its
    subdomains on any port, ``host:port`` exactly that."""
    e_host, e_port = entry
    if e_port is not None:
        return host == e_host and port == e_port
    return host == e_host or host.endswith("." + e_host)


def _scope_units(seeds: list[str], allowed: list[str]) -> tuple[dict, dict, list[str]]:
    """Seeds grouped into units no two shards may share: ``(unit -> seeds, unit -> scope, loose)``.

    Without ``allowed`` a unit is one seed host (its scope is that host). With it, a unit is a
    set of allowed entries that overlap (one admits another's host), so no host is in the
    scope of two shards; a seed joins the unit whose entry admits it. ``loose`` are seeds no
    entry admits: the crawler skips them whatever shard they are in. Units without seeds
    (entries only reachable by links) have an empty seed list.
    """
    if not allowed:
        units: dict[str, list[str]] = {}
        for url in seeds:
            units.setdefault(seed_hosts([url])[0], []).append(url)
        return units, {host: [host] for host in units}, []
    entries = [_parse_entry(e) for e in allowed]
    group = list(range(len(allowed)))  # union-find over overlapping entries

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, a in enumerate(entries):
        for j, b in enumerate(entries):
            if i != j and _covers(a, *b) and root(i) != root(j):
                group[root(j)] = root(i)
    scope: dict[str, list[str]] = {}
    for i, entry in enumerate(allowed):
        scope.setdefault(allowed[root(i)], []).append(entry)
    units = {key: [] for key in scope}
    loose = []
    for url in seeds:
        host, port = _seed_host_port(url)
        hit = next((i for i, e in enumerate(entries) if _covers(e, host, port)), None)
        if hit is None:
            loose.append(url)
        else:
            units[allowed[root(hit)]].append(url)
    return units, scope, loose


def crawl_shards(params: dict[str, Any], version: str) -> list[dict[str, Any]]:
    """Split this run's crawl into at most ``crawl_shards`` shards, one mapped task each.

    Seeds stay together per host (per-host politeness: no host is crawled by two shards at
    once, and scopes never overlap), units are sorted and dealt round-robin (deterministic,
    so a retry plans the same shards), ``max_pages`` is shared out so the total is unchanged
    and every shard fetches at least one page. One shard is exactly today's crawl: all seeds,
    the same scope and ``version`` itself as the raw version.
    """
    seeds = list(params["seeds"])
    allowed = list(params.get("allow_domains") or [])
    units, scope, loose = _scope_units(seeds, allowed)
    seeded = sorted(key for key, urls in units.items() if urls)
    n = max(1, min(int(params.get("crawl_shards") or 1), len(seeded), int(params["max_pages"])))
    if n == 1:
        return [{"index": 0, "version": version, "seeds": seeds,
                 "allow_domains": allowed or seed_hosts(seeds), "max_pages": int(params["max_pages"])}]
    members: list[list[str]] = [[] for _ in range(n)]
    for k, key in enumerate(seeded):
        members[k % n].append(key)
    for k, key in enumerate(sorted(key for key, urls in units.items() if not urls)):
        members[k % n].append(key)  # link-only entries: each in exactly one shard's scope
    pages = split_trials(int(params["max_pages"]), n)
    shards = []
    for k, keys in enumerate(members):
        own = {url for key in keys for url in units[key]}
        shard_seeds = [url for url in seeds if url in own or (k == 0 and url in loose)]
        shards.append({"index": k, "version": shard_version(version, k), "seeds": shard_seeds,
                       "allow_domains": [d for key in keys for d in scope[key]], "max_pages": pages[k]})
    return shards


def split_trials(n_trials: int, slots: int) -> list[int]:
    """``n_trials`` over at most ``slots`` mapped tasks, as evenly as possible (no empty slot)."""
    slots = max(1, min(slots, n_trials))
    return [n_trials // slots + (1 if i < n_trials % slots else 0) for i in range(slots)]
