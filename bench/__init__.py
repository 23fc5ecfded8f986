"""Benchmarks against the reference tools; run each from the repository root as a module,
``.venv-jobs/bin/python -m bench.<name>`` (see bench/README.md)."""
