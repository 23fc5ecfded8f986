"""Storage over local paths and ``s3://bucket/prefix`` URIs.

Stages and trainers only ever see URIs. Local paths are plain files; ``s3://`` (and
``s3a://``, the Hadoop connector's name for the same objects) goes through boto3.

Configuration comes from the environment, never from code: ``AWS_ENDPOINT_URL``,
``AWS_REGION``/``AWS_DEFAULT_REGION`` and ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
(or whatever else boto3's credential chain finds; :func:`env_from_airflow_connection`
turns an Airflow connection into those variables). ``C2M_S3_MAX_ATTEMPTS`` (default 8)
bounds botocore's *standard* retries, which back off with jitter on throttling
(SlowDown, 503) and on 5xx and connection errors. ``C2M_S3_MULTIPART_MB`` (default 8)
is the size above which transfers go multipart, in parts of that size, 10 at a time.

Writes are atomic: local files are written to a temp name and renamed; an S3 PUT or a
completed multipart upload is atomic per object (a failed multipart upload is aborted,
so no half object is ever visible), and dataset versions are only trusted once their
manifest exists (see :mod:`ops.lake.datasets`).

Failures surface as :class:`StorageError` with the endpoint, the bucket and what to do;
credentials never appear in them. An object key or listed name is joined onto a local folder
only through :func:`safe_join`, which refuses keys that would land outside it.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_MULTIPART_MB = 8  # boto3's own default; it grows parts itself past 10,000 parts


class StorageError(RuntimeError):
    """An object-store operation failed in a way the user must act on."""


class MissingObject(StorageError, FileNotFoundError):
    """The object or file does not exist (also a FileNotFoundError, as locally)."""


class UnsafeKey(StorageError, ValueError):
    """An object key or listed name would land outside the local folder it is joined onto."""


def is_s3(uri: str) -> bool:
    """s3:// (boto3) and s3a:// (the Hadoop connector's name for the same objects)."""
    return str(uri).startswith(("s3://", "s3a://"))


def to_s3a(uri: str) -> str:
    """``s3://b/k`` -> ``s3a://b/k``, the scheme Hadoop's connector serves; anything else unchanged."""
    return "s3a://" + uri[len("s3://"):] if str(uri).startswith("s3://") else str(uri)


def join(base: str, *parts: str) -> str:
    """Join path segments onto a local path or an s3:// URI."""
    base = str(base)
    if is_s3(base):
        return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts])
    return str(Path(base, *parts))


def safe_join(folder: str | Path, rel: str) -> Path:
    """``folder/rel`` for a relative name taken from an object key or a listing, checked first.

    Anyone who can write the bucket chooses its keys, so a key is refused (:class:`UnsafeKey`)
    when any ``/``-segment is empty, ``.`` or ``..``, when it is absolute or holds a NUL or a
    backslash, and when the joined path (symlinks resolved) leaves ``folder``.
    """
    rel = str(rel)
    parts = rel.split("/")
    bad = (not rel or rel.startswith("/") or "\\" in rel or "\0" in rel
           or any(p in ("", ".", "..") for p in parts))
    if not bad:
        base = Path(folder).resolve()
        target = base.joinpath(*parts)
        bad = not target.resolve().is_relative_to(base)
    if bad:
        raise UnsafeKey(f"refusing the object key or file name {rel!r}: it has an empty, '.', '..' or "
                        f"absolute segment, or leaves {folder}; delete or rename that object")
    return target


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    rest = str(uri).split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket; write s3://bucket/prefix")
    return bucket, key


_split_s3 = split_s3  # older call sites


def endpoint_url() -> str | None:
    """The configured S3 endpoint (``AWS_ENDPOINT_URL``, else ``AWS_ENDPOINT_URL_S3``), or None for AWS's."""
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or None


def region() -> str | None:
    """The configured region (``AWS_REGION``, else ``AWS_DEFAULT_REGION``), or None."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def endpoint() -> str:
    """The S3 endpoint in use, for messages ("AWS default" when none is configured)."""
    return endpoint_url() or "AWS default endpoint"


def _client_key() -> tuple:
    """What a cached client depends on: a changed environment gets a new client."""
    names = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
             "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
             "C2M_S3_MAX_ATTEMPTS")
    return tuple(os.environ.get(n) for n in names)


def s3_client():
    """A boto3 S3 client configured from the environment (cached per configuration)."""
    return _cached_client(_client_key())


@functools.lru_cache(maxsize=8)
def _cached_client(key: tuple):
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise RuntimeError("s3:// paths need boto3: pip install 'crawl2model[spark]'") from exc
    config = Config(
        retries={"mode": "standard",  # total_max_attempts counts the first try too
                 "total_max_attempts": int(os.environ.get("C2M_S3_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))},
        connect_timeout=10, read_timeout=60,
        # Path-style works with every S3 server (SeaweedFS, MinIO, moto) and with AWS.
        s3={"addressing_style": "path"},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url(),
                                          region_name=region() or "us-east-1", config=config)


_s3_client = s3_client  # older call sites

_ACCESS_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                 "InvalidToken", "403"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


def _translate(exc: Exception, op: str, bucket: str, key: str = "") -> StorageError:
    """Turn a boto/botocore failure into a StorageError that says what to do."""
    from botocore.exceptions import (ClientError, EndpointConnectionError, NoCredentialsError,
                                     PartialCredentialsError)

    where = f"s3://{bucket}/{key}" if key else f"bucket {bucket!r}"
    at = f"at {endpoint()}"
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageError(f"{op} {where} {at}: no S3 credentials found; set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY (or an Airflow connection `c2m_s3`)")
    if isinstance(exc, EndpointConnectionError):
        return StorageError(f"{op} {where}: cannot reach the S3 endpoint {endpoint()}; is the server up "
                            "(`crawl2model up --s3`) and AWS_ENDPOINT_URL right?")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return StorageError(f"{op} {where} {at}: bucket {bucket!r} does not exist; create it "
                                "(`crawl2model up --s3` does) or fix the URI")
        if code in _MISSING_CODES:
            return MissingObject(f"{op} {where} {at}: no such object")
        if code in _ACCESS_CODES or status == 403:
            return StorageError(f"{op} {where} {at}: access denied ({code or status}); check the "
                                "credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the bucket policy")
        return StorageError(f"{op} {where} {at} failed after retries: {code or status} "
                            f"{err.get('Message', '')}".rstrip())
    return StorageError(f"{op} {where} {at} failed: {type(exc).__name__}: {exc}")


@contextmanager
def _s3_errors(op: str, bucket: str, key: str = "") -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, op, bucket, key) from None
    except Exception as exc:  # the transfer manager wraps ClientError in its own types
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (ClientError, BotoCoreError)):
            raise _translate(cause, op, bucket, key) from None
        if type(exc).__module__.startswith(("boto3", "s3transfer")):
            raise StorageError(f"{op} s3://{bucket}/{key} at {endpoint()} failed: {exc}") from None
        raise


# ---- reads ---------------------------------------------------------------------------------

def exists(uri: str) -> bool:
    """True when the file, the object, or anything under the prefix exists."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with _s3_errors("list", bucket, key):
            resp = s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return resp.get("KeyCount", 0) > 0
    return Path(uri).exists()


def is_file(uri: str) -> bool:
    """True when exactly this file or object exists (:func:`exists` also matches a prefix)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        from botocore.exceptions import ClientError

        try:
            s3_client().head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise _translate(exc, "stat", bucket, key) from None
        except Exception as exc:
            raise _translate(exc, "stat", bucket, key) from None
    return Path(uri).is_file()


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with _s3_errors("read", bucket, key):
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError:
        raise MissingObject(f"read {uri}: no such file") from None


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def open_read(uri: str) -> BinaryIO:
    """A binary stream over a file or object (S3: the streaming body, not read into memory)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with _s3_errors("read", bucket, key):
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"]
    try:
        return open(uri, "rb")
    except FileNotFoundError:
        raise MissingObject(f"read {uri}: no such file") from None


def size(uri: str) -> int:
    """Size in bytes of one file or object."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with _s3_errors("stat", bucket, key):
            return int(s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"])
    try:
        return Path(uri).stat().st_size
    except FileNotFoundError:
        raise MissingObject(f"stat {uri}: no such file") from None


def list_files(uri: str, suffix: str = "", *, name_prefix: bool = False) -> list[str]:
    """All files under a prefix (recursively, every page of the listing), sorted, as URIs.

    With ``name_prefix`` the last segment of ``uri`` is the start of a name rather than a
    folder: ``list_files("s3://b/clean/_tmp-v=1-", name_prefix=True)`` finds every
    ``_tmp-v=1-*`` folder's files.
    """
    if is_s3(uri):
        bucket, key = split_s3(uri)
        prefix = key if name_prefix else (key.rstrip("/") + "/" if key else "")
        scheme = str(uri).split("://", 1)[0]
        out: list[str] = []
        with _s3_errors("list", bucket, prefix):
            for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                out += [f"{scheme}://{bucket}/{o['Key']}" for o in page.get("Contents", [])
                        if o["Key"].endswith(suffix)]
        return sorted(out)
    if name_prefix:
        parent = Path(uri).parent
        roots = sorted(parent.glob(f"{Path(uri).name}*")) if parent.is_dir() else []
    else:
        roots = [Path(uri)] if Path(uri).exists() else []
    out = []
    for root in roots:
        if root.is_file():
            out += [str(root)] if str(root).endswith(suffix) else []
        else:
            out += [str(p) for p in root.rglob(f"*{suffix}") if p.is_file()]
    return sorted(out)


def download_file(uri: str, dest: str | Path) -> Path:
    """Copy a file or object to a local path, atomically (temp file, then rename)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            with _s3_errors("download", bucket, key):
                s3_client().download_file(bucket, key, tmp, Config=_transfer_config())
        else:
            try:
                shutil.copyfile(uri, tmp)
            except FileNotFoundError:
                raise MissingObject(f"download {uri}: no such file") from None
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest


# ---- writes --------------------------------------------------------------------------------

def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object atomically (temp file + rename locally, one PUT on S3)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with _s3_errors("write", bucket, key):
            s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    with _atomic_local(Path(uri)) as fh:
        fh.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def upload_tree(local_dir: str | Path, uri: str) -> None:
    """Upload every file under ``local_dir`` to ``uri`` with the same relative names
    (:func:`upload_file` each: multipart, retried; locally an atomic copy)."""
    root = Path(local_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        upload_file(path, join(uri, path.relative_to(root).as_posix()))


def upload_file(src: str | Path, uri: str) -> None:
    """Copy a local file to a URI: multipart above ``C2M_S3_MULTIPART_MB`` on S3, atomic locally."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with _s3_errors("upload", bucket, key):
            s3_client().upload_file(str(src), bucket, key, Config=_transfer_config())
        return
    with open(src, "rb") as inp, _atomic_local(Path(uri)) as out:
        shutil.copyfileobj(inp, out, length=8 << 20)


@contextmanager
def open_write(uri: str) -> Iterator[BinaryIO]:
    """Write a stream that only becomes visible, whole, when the block ends without error.

    Locally the stream is a temp file renamed into place; on S3 it is spooled to a local
    temp file and uploaded (multipart when large) on exit.
    """
    if not is_s3(uri):
        with _atomic_local(Path(uri)) as fh:
            yield fh
        return
    with tempfile.NamedTemporaryFile(prefix="c2m-upload-", suffix=".part") as spool:
        yield spool
        spool.flush()
        upload_file(spool.name, uri)


def remove_tree(uri: str) -> None:
    """Delete everything under a prefix; used before a rerun replaces a version."""
    if is_s3(uri):
        remove_files(list_files(uri))
        return
    shutil.rmtree(uri, ignore_errors=True)


def remove_files(uris: list[str]) -> None:
    """Delete these files or objects (on S3 in batches of 1000; already gone is fine)."""
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            by_bucket.setdefault(bucket, []).append(key)
        else:
            Path(uri).unlink(missing_ok=True)
    client = s3_client() if by_bucket else None
    for bucket, keys in by_bucket.items():
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            with _s3_errors("delete", bucket, batch[0]["Key"]):
                resp = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise StorageError(f"delete s3://{bucket}/{first.get('Key')} at {endpoint()}: "
                                   f"{first.get('Code')} {first.get('Message', '')}")


def copy(src: str, dest: str) -> None:
    """Copy one file or object. S3 to S3 is a server-side copy (multipart above
    ``C2M_S3_MULTIPART_MB``): the bytes never pass through this machine. Atomic per object."""
    if is_s3(src) and is_s3(dest):
        src_bucket, src_key = split_s3(src)
        bucket, key = split_s3(dest)
        with _s3_errors("copy", src_bucket, src_key):
            s3_client().copy({"Bucket": src_bucket, "Key": src_key}, bucket, key, Config=_transfer_config())
    elif is_s3(dest):
        upload_file(src, dest)
    else:
        download_file(src, dest)


def remove(uri: str) -> None:
    """Delete one file or object (no error when it is already gone)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with _s3_errors("delete", bucket, key):
            s3_client().delete_object(Bucket=bucket, Key=key)
        return
    Path(uri).unlink(missing_ok=True)


def ensure_bucket(bucket: str) -> None:
    """Create a private bucket when it does not exist (never public: no ACL grants, public access blocked)."""
    client = s3_client()
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status != 404 and exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise _translate(exc, "check", bucket) from None
    except Exception as exc:
        raise _translate(exc, "check", bucket) from None
    region = client.meta.region_name
    location = {} if region in (None, "", "us-east-1") else {  # AWS refuses the default region here
        "CreateBucketConfiguration": {"LocationConstraint": region}}
    with _s3_errors("create", bucket):
        client.create_bucket(Bucket=bucket, ACL="private", **location)
    try:  # not every S3 server implements the public-access block; AWS does
        client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True,
            "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    except ClientError:
        pass


def env_from_airflow_connection(conn) -> dict[str, str]:
    """AWS_* variables for a job, from an Airflow connection (type aws): login/password = keys,
    extra ``endpoint_url`` and ``region_name``. The values go into the job's environment only."""
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else {}
    env = {}
    if conn.login:
        env["AWS_ACCESS_KEY_ID"] = conn.login
    if conn.password:
        env["AWS_SECRET_ACCESS_KEY"] = conn.password
    if extra.get("endpoint_url"):
        env["AWS_ENDPOINT_URL"] = extra["endpoint_url"]
    if extra.get("region_name"):
        env["AWS_DEFAULT_REGION"] = extra["region_name"]
    return env


# ---- helpers -------------------------------------------------------------------------------

def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    part = int(float(os.environ.get("C2M_S3_MULTIPART_MB", DEFAULT_MULTIPART_MB)) * (1 << 20))
    part = max(part, 5 << 20)  # S3's minimum part size
    return TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=10,
                          use_threads=True)


@contextmanager
def _atomic_local(path: Path) -> Iterator[BinaryIO]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _new_temp(path: Path) -> tuple[int, str]:
    """A new temp file next to ``path``, opened for writing with mode 0666 less the umask (as a
    published file should be), so no chmod and no process-wide umask change is needed."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temp file next to {path}")
