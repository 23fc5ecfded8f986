"""Polite, resumable BFS crawler: robots.txt, per-host delay, retries with backoff, scope,
SSRF guard, WARC output; progress checkpointed per round (see crawl/state.py)."""
