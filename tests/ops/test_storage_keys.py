"""Object keys and listed names are checked before they are joined onto a local folder."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops.lake import storage

SEGMENTS = st.sampled_from(["a", "b.parquet", "..", ".", "", "x..y", "/", "\\", "c\x00", "v=1", "g=2"])


@pytest.mark.parametrize("key", ["../x", "a/../../x", "a//b", "/etc/passwd", "a/./b", "", "a/", "..",
                                 "a\\..\\..\\x", "a\x00b"])
def test_keys_with_dot_dot_empty_or_absolute_segments_are_refused(tmp_path, key):
    with pytest.raises(storage.UnsafeKey, match="refusing the object key"):
        storage.safe_join(tmp_path, key)


def test_plain_nested_keys_land_inside_the_folder(tmp_path):
    assert storage.safe_join(tmp_path, "removed/too_short/part-0.parquet") == \
        tmp_path / "removed" / "too_short" / "part-0.parquet"
    assert storage.safe_join(tmp_path, "x..y/..z") == tmp_path / "x..y" / "..z"  # dots inside names are fine


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "inside").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "inside" / "link")
    with pytest.raises(storage.UnsafeKey):
        storage.safe_join(tmp_path / "inside", "link/x")


@settings(max_examples=300, deadline=None)
@given(st.lists(SEGMENTS, max_size=6))
def test_any_key_is_refused_or_stays_inside(tmp_path_factory, segments):
    folder = tmp_path_factory.getbasetemp() / "keys"
    folder.mkdir(exist_ok=True)
    key = "/".join(segments)
    try:
        path = storage.safe_join(folder, key)
    except storage.UnsafeKey:
        return
    resolved = os.path.realpath(path)
    assert resolved.startswith(os.path.realpath(folder) + os.sep)
    assert ".." not in key.split("/") and "" not in key.split("/")
