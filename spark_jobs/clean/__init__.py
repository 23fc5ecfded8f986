"""Normalise text, compute quality signals, filter with Gopher / C4 rules."""
