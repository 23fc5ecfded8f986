"""HTML → main text, title and language: WARC reader plus plain-Python steps."""
