"""Storage helpers on local paths and on S3 (moto server on 127.0.0.1)."""
import os

import pytest

from ops.lake import storage


def test_local_write_is_atomic_and_listable(tmp_path):
    target = tmp_path / "a" / "b.txt"
    storage.write_text(str(target), "hello")
    assert target.read_text() == "hello"
    assert [p for p in os.listdir(target.parent) if p.endswith(".tmp")] == []
    assert storage.list_files(str(tmp_path)) == [str(target)]
    storage.remove_tree(str(tmp_path / "a"))
    assert not storage.exists(str(target))


def test_join():
    assert storage.join("s3://b/p/", "x", "/y") == "s3://b/p/x/y"


@pytest.fixture
def s3(monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import boto3

    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket="lake")
    yield "s3://lake/root"
    server.stop()


def test_s3_round_trip(s3):
    uri = storage.join(s3, "clean", "v=1", "_manifest.json")
    assert not storage.exists(uri)
    storage.write_text(uri, "{}")
    assert storage.exists(uri) and storage.read_text(uri) == "{}"
    assert storage.list_files(s3) == [uri]
    storage.remove_tree(s3)
    assert storage.list_files(s3) == []


def test_s3_missing_bucket_named(s3):
    with pytest.raises(ValueError, match="no bucket"):
        storage.read_bytes("s3:///key")


def test_local_writes_follow_the_umask_without_changing_it(tmp_path, monkeypatch):
    """A published file gets 0666 less the umask, and the process umask is never touched:
    os.umask is process-wide, so setting it even briefly races other threads' file creation."""
    import stat

    def no_umask(mask):
        raise AssertionError(f"os.umask({mask:o}) called: it changes the umask of every thread")

    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", no_umask)
        storage.write_text(str(tmp_path / "a" / "x.json"), "{}")
        with storage.open_write(str(tmp_path / "a" / "y.bin")) as fh:
            fh.write(b"y")
        storage.upload_file(tmp_path / "a" / "y.bin", str(tmp_path / "b" / "z.bin"))
    finally:
        monkeypatch.undo()
        os.umask(old)
    for name in ("a/x.json", "a/y.bin", "b/z.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
    assert not [p for p in tmp_path.rglob("*.tmp")]
