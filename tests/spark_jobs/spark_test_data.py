"""Text and HTML generators shared by the spark_jobs tests (a module, not conftest,
so that tests/training's conftest cannot shadow it)."""
from __future__ import annotations

import random

_WORDS = ("the model reads every page of the manual and learns how modules import their "
          "functions while each example shows a small program that prints useful values "
          "for readers who study python classes strings numbers files and errors").split()


def english(seed: int, sentences: int = 12) -> str:
    """Deterministic English-like prose: lines of full sentences ending in periods."""
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 14))]
        lines.append(" ".join(words).capitalize() + ".")
    return "\n".join(lines)


def html_page(title: str, body_text: str, links: list[str] = ()) -> bytes:
    paras = "".join(f"<p>{line}</p>\n" for line in body_text.split("\n"))
    nav = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><nav><ul>{nav}</ul></nav><main><article><h1>{title}</h1>\n{paras}"
            f"</article></main><footer>Copyright footer</footer></body></html>").encode("utf-8")
