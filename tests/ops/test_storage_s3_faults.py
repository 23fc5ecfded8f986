"""The storage layer against a real S3 API (moto's server on 127.0.0.1), with injected faults.

moto cannot throttle or fail one request on demand, so faults are injected at botocore's
``before-send`` hook: the request is answered with the error response S3 would send, and
everything after it (botocore's retry and backoff, the transfer manager's multipart logic,
our error translation) runs for real against the server.
"""
from __future__ import annotations

import hashlib
import os

import pytest

from ops.lake import storage

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")
from botocore.awsrequest import AWSResponse  # noqa: E402

FAKE_SECRET = "fake-secret-9f3c2a7d"


class _Raw:
    """The minimal urllib3-like body botocore reads from a response."""

    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_kw):
        yield self._body

    def read(self, *_a, **_kw):
        body, self._body = self._body, b""
        return body


def _s3_error(status: int, code: str, message: str = "injected") -> AWSResponse:
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message></Error>").encode()
    return AWSResponse("http://injected", status, {"Content-Type": "application/xml"}, _Raw(body))


class Faults:
    """Answer the next ``times`` calls of an operation with an S3 error, then let calls through."""

    def __init__(self, client, operation: str, status: int, code: str, times: int):
        self.status, self.code, self.left, self.fired = status, code, times, 0
        client.meta.events.register(f"before-send.s3.{operation}", self)

    def __call__(self, request, **_kw):
        if self.left == 0:
            return None
        self.left -= 1
        self.fired += 1
        return _s3_error(self.status, self.code)


@pytest.fixture
def lake(monkeypatch):
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("C2M_S3_MULTIPART_MB", "5")  # S3's minimum part size: 3 parts for 12 MB
    storage.ensure_bucket("lake")
    yield "s3://lake/root"
    server.stop()


def _payload(n_bytes: int) -> bytes:
    block = hashlib.sha256(b"seed").digest() * 64  # 2 KiB, not all one byte
    return (block * (n_bytes // len(block) + 1))[:n_bytes]


def test_throttling_is_retried_with_backoff(lake):
    uri = storage.join(lake, "a.txt")
    client = storage.s3_client()
    put_faults = Faults(client, "PutObject", 503, "SlowDown", times=3)
    get_faults = Faults(client, "GetObject", 503, "SlowDown", times=2)
    storage.write_text(uri, "hello")
    assert storage.read_text(uri) == "hello"
    assert (put_faults.fired, get_faults.fired) == (3, 2)


def test_throttling_that_never_stops_fails_clearly(lake, monkeypatch):
    monkeypatch.setenv("C2M_S3_MAX_ATTEMPTS", "2")
    faults = Faults(storage.s3_client(), "PutObject", 503, "SlowDown", times=100)
    with pytest.raises(storage.StorageError) as err:
        storage.write_text(storage.join(lake, "b.txt"), "x")
    assert faults.fired == 2  # one try and one retry, then a clear error
    msg = str(err.value)
    assert "s3://lake/root/b.txt" in msg and os.environ["AWS_ENDPOINT_URL"] in msg and "SlowDown" in msg
    assert FAKE_SECRET not in msg


def test_a_500_in_the_middle_of_a_multipart_upload_is_retried(lake, tmp_path):
    src = tmp_path / "big.bin"
    data = _payload(12 << 20)
    src.write_bytes(data)
    uri = storage.join(lake, "shards", "big.bin")
    faults = Faults(storage.s3_client(), "UploadPart", 500, "InternalError", times=1)
    storage.upload_file(src, uri)
    assert faults.fired == 1
    assert storage.size(uri) == len(data)
    got = storage.download_file(uri, tmp_path / "back.bin").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_a_multipart_upload_that_keeps_failing_leaves_no_object_and_no_parts(lake, tmp_path, monkeypatch):
    monkeypatch.setenv("C2M_S3_MAX_ATTEMPTS", "2")
    src = tmp_path / "big.bin"
    src.write_bytes(_payload(12 << 20))
    uri = storage.join(lake, "shards", "broken.bin")
    Faults(storage.s3_client(), "UploadPart", 500, "InternalError", times=1000)
    with pytest.raises(storage.StorageError, match="upload s3://lake/root/shards/broken.bin"):
        storage.upload_file(src, uri)
    assert not storage.exists(uri)
    raw = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    assert raw.list_multipart_uploads(Bucket="lake").get("Uploads", []) == []  # aborted, not left behind


def test_missing_object_is_a_clear_file_not_found(lake, tmp_path):
    uri = storage.join(lake, "nope", "x.bin")
    for call in (lambda: storage.read_bytes(uri), lambda: storage.size(uri),
                 lambda: storage.download_file(uri, tmp_path / "x.bin")):
        with pytest.raises(FileNotFoundError) as err:
            call()
        assert isinstance(err.value, storage.MissingObject)
        assert uri in str(err.value) and "no such object" in str(err.value)
    assert not (tmp_path / "x.bin").exists() and list(tmp_path.iterdir()) == []  # no temp file left


def test_is_file_is_exact_where_exists_matches_a_prefix(lake):
    storage.write_text(storage.join(lake, "ckpt", "step-50.pt.sha256"), "x")
    assert storage.exists(storage.join(lake, "ckpt", "step-50.pt"))  # a prefix of the digest's key
    assert not storage.is_file(storage.join(lake, "ckpt", "step-50.pt"))
    assert storage.is_file(storage.join(lake, "ckpt", "step-50.pt.sha256"))


def test_missing_bucket_says_how_to_create_it(lake):
    with pytest.raises(storage.StorageError, match="bucket 'other' does not exist"):
        storage.write_text("s3://other/x", "1")


def test_unreachable_endpoint_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("C2M_S3_MAX_ATTEMPTS", "1")
    with pytest.raises(storage.StorageError) as err:
        storage.read_bytes("s3://lake/x")
    assert "cannot reach the S3 endpoint http://127.0.0.1:9" in str(err.value)
    assert FAKE_SECRET not in str(err.value)


def test_listing_paginates_past_one_page(lake):
    from concurrent.futures import ThreadPoolExecutor

    client = storage.s3_client()  # boto3 clients are thread-safe: the puts go 8 at a time
    with ThreadPoolExecutor(8) as pool:  # list_objects_v2 returns at most 1000 keys a page
        list(pool.map(lambda i: client.put_object(Bucket="lake", Key=f"root/many/{i:05d}.txt", Body=b""),
                      range(1005)))
    listed = storage.list_files(storage.join(lake, "many"), suffix=".txt")
    assert len(listed) == 1005 and listed[0].endswith("00000.txt") and listed[-1].endswith("01004.txt")
    storage.remove_tree(storage.join(lake, "many"))  # batched DeleteObjects
    assert storage.list_files(storage.join(lake, "many")) == []


def test_streams_round_trip_and_publish_only_on_success(lake):
    uri = storage.join(lake, "stream.bin")
    with storage.open_write(uri) as out:
        out.write(b"abc" * 1000)
    with storage.open_read(uri) as body:
        assert body.read() == b"abc" * 1000
    failed = storage.join(lake, "failed.bin")
    with pytest.raises(RuntimeError):
        with storage.open_write(failed) as out:
            out.write(b"partial")
            raise RuntimeError("writer crashed")
    assert not storage.exists(failed)


def test_local_streams_are_atomic(tmp_path):
    target = tmp_path / "d" / "f.bin"
    with pytest.raises(RuntimeError):
        with storage.open_write(str(target)) as out:
            out.write(b"partial")
            raise RuntimeError("writer crashed")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with storage.open_write(str(target)) as out:
        out.write(b"whole")
    storage.upload_file(target, str(tmp_path / "copy.bin"))
    assert (tmp_path / "copy.bin").read_bytes() == b"whole"


def test_created_bucket_is_private(lake):
    acl = storage.s3_client().get_bucket_acl(Bucket="lake")
    public = [g for g in acl["Grants"] if "URI" in g.get("Grantee", {})]  # AllUsers/AuthenticatedUsers
    assert public == []
