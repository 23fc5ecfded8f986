"""--warc-glob on s3:// keys matches as a local glob does: * stays within a segment, ** spans them."""
from __future__ import annotations

import glob
import os
import tempfile

import pytest
from hypothesis import given, settings, strategies as st

from spark_jobs.extract.warc_reader import glob_match

TREE = ["raw/a.warc.gz", "raw/b.warc.gz", "raw/g=1/c.warc.gz", "raw/g=1/deep/d.warc.gz",
        "raw/x.txt", "other/a.warc.gz"]


@pytest.mark.parametrize("pattern,expected", [
    ("raw/*.warc.gz", {"raw/a.warc.gz", "raw/b.warc.gz"}),
    ("raw/**/*.warc.gz", {"raw/a.warc.gz", "raw/b.warc.gz", "raw/g=1/c.warc.gz", "raw/g=1/deep/d.warc.gz"}),
    ("raw/*/*.warc.gz", {"raw/g=1/c.warc.gz"}),
    ("*/a.warc.gz", {"raw/a.warc.gz", "other/a.warc.gz"}),
    ("raw/?.warc.gz", {"raw/a.warc.gz", "raw/b.warc.gz"}),
])
def test_an_s3_glob_takes_what_the_same_local_glob_takes(pattern, expected):
    keys = {k for k in TREE if glob_match(f"s3://bucket/{pattern}", f"s3://bucket/{k}")}
    assert keys == expected


SEGMENT = st.sampled_from(["*", "**", "?", "raw", "g=1", "deep", "*.warc.gz", "?.warc.gz", "[ab].warc.gz",
                           "a.warc.gz", "*.txt", "r*", "other"])


@settings(max_examples=150, deadline=None)
@given(st.lists(SEGMENT, min_size=1, max_size=4))
def test_generated_globs_agree_with_the_local_glob(segments):
    pattern = "/".join(segments)
    with tempfile.TemporaryDirectory() as root:
        for key in TREE:
            os.makedirs(os.path.dirname(os.path.join(root, key)), exist_ok=True)
            open(os.path.join(root, key), "w").close()
        local = {os.path.relpath(p, root) for p in glob.glob(os.path.join(root, pattern), recursive=True)
                 if os.path.isfile(p)}
    assert {k for k in TREE if glob_match(f"s3://b/{pattern}", f"s3://b/{k}")} == local
