"""Property-based tests of the crawler's URL normaliser (spark_jobs/crawl/urls.py): any string,
against any base, gives None or a canonical http(s) URL that normalises to itself."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spark_jobs.crawl.urls import host_key, in_scope, normalize_url

_url_parts = st.lists(st.one_of(
    st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "//", "[", "]", "::1", ":", ":80", ":99999",
                     "@", "user:pw@", "%", "%2e", "..", ".", "/", "?", "&", "=", "#", "xn--", "\u0430",
                     "\u3002", "\ufffd", " ", "\t", "\x00", "example.com", "a.b.c."]),
    st.text(max_size=10)), max_size=12).map("".join)



@given(url=st.one_of(_url_parts, st.text(max_size=60)),
       base=st.one_of(st.none(), st.just("http://a.test/dir/page"), _url_parts))
def test_url_normaliser_never_raises_and_is_stable(url, base):
    out = normalize_url(url, base)
    if out is None:
        return
    assert out.startswith(("http://", "https://")) and "#" not in out
    assert normalize_url(out) == out
    host_key(out)
    in_scope(out, [("example.com", None), ("127.0.0.1", 8080)])


@given(url=st.one_of(_url_parts, st.text(max_size=60)))
def test_url_normaliser_without_a_base_never_raises_and_is_stable(url):
    out = normalize_url(url)
    if out is not None:
        assert out.startswith(("http://", "https://")) and normalize_url(out) == out


def test_a_bracketed_href_is_not_a_url():
    """urljoin itself raises "Invalid IPv6 URL" here; link extraction and redirects must not."""
    assert normalize_url("http://[", "http://a.test/") is None
