"""Polite BFS crawler: robots.txt, per-host delay, scope, SSRF guard, WARC output."""
