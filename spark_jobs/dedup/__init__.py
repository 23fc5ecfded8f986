"""Exact deduplication on normalised text."""
