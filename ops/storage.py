"""Storage over local paths and ``s3://bucket/prefix`` URIs.

Stages and trainers only ever see URIs. Local paths are plain files; ``s3://`` goes
through boto3 (endpoint, region and credentials from the environment:
``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``).
Writes are atomic: local files are written to a temp name and renamed; an S3 PUT is
atomic per object, and dataset versions are only trusted once their manifest exists
(see :mod:`ops.datasets`).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def is_s3(uri: str) -> bool:
    """s3:// (boto3) and s3a:// (the Hadoop connector's name for the same objects)."""
    return str(uri).startswith(("s3://", "s3a://"))


def join(base: str, *parts: str) -> str:
    """Join path segments onto a local path or an s3:// URI."""
    base = str(base)
    if is_s3(base):
        return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts])
    return str(Path(base, *parts))


def _split_s3(uri: str) -> tuple[str, str]:
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket; write s3://bucket/prefix")
    return bucket, key


def _s3_client():
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise RuntimeError("s3:// paths need boto3: pip install 'crawl2model[spark]'") from exc
    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        resp = _s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return resp.get("KeyCount", 0) > 0
    return Path(uri).exists()


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        return _s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return Path(uri).read_bytes()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object atomically (temp file + rename locally)."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        _s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; published files follow the umask
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def list_files(uri: str, suffix: str = "") -> list[str]:
    """All files under a prefix (recursively), sorted, as URIs."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        out: list[str] = []
        for page in _s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", []) if o["Key"].endswith(suffix)]
        return sorted(out)
    root = Path(uri)
    if not root.exists():
        return []
    return sorted(str(p) for p in root.rglob(f"*{suffix}") if p.is_file())


def remove_tree(uri: str) -> None:
    """Delete everything under a prefix; used before a rerun replaces a version."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        client = _s3_client()
        for obj_uri in list_files(uri):
            client.delete_object(Bucket=bucket, Key=_split_s3(obj_uri)[1])
        return
    shutil.rmtree(uri, ignore_errors=True)


def local_path(uri: str) -> Path:
    """The local path of a URI; S3 URIs must be staged first by the caller."""
    if is_s3(uri):
        raise ValueError(f"{uri} is on S3; stage it locally first")
    return Path(uri)
