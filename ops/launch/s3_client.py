"""The local stack's S3 credentials and the client environment that points a process at its server.

The credentials are generated once per stack dir into ``{stack dir}/s3/credentials.json``
(mode 0600) and reach every component through the environment only: they are never printed,
logged or put on a command line. The launchers give them to jobs in S3 mode
(:func:`ops.launch.local.job_env`); the server itself is :mod:`ops.stack.s3_server`.
"""
from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ops.launch.settings import Settings

REGION = "us-east-1"
# Client-side variables that would override or break the local server's credentials.
_CLIENT_UNSET = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3")


class S3ServerError(RuntimeError):
    """The local S3 server cannot be configured or started; the message says what to do."""


def server_dir(s: Settings) -> Path:
    return s.stack_dir / "s3"


def credentials_file(s: Settings) -> Path:
    return server_dir(s) / "credentials.json"


def create_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 unless it exists (atomic: a concurrent creator wins cleanly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.link(tmp, path)  # fails if another process created it first: theirs is kept
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def credentials(s: Settings) -> tuple[str, str]:
    """(access key id, secret key) of this stack's server; generated on first use."""
    path = credentials_file(s)
    if not path.exists():
        create_private(path, json.dumps({"access_key_id": "c2m" + secrets.token_hex(8),
                                          "secret_access_key": secrets.token_urlsafe(30)}))
    try:
        data = json.loads(path.read_text())
        return data["access_key_id"], data["secret_access_key"]
    except (OSError, ValueError, KeyError):
        raise S3ServerError(f"{path} is unreadable or damaged; stop the stack, delete {server_dir(s)} "
                            "(this also deletes the local bucket's data) and start again") from None


def apply_client_env(env: dict[str, str], s: Settings) -> dict[str, str]:
    """Point ``env`` (a process environment) at this stack's server; returns ``env``.

    Boto3 (ops.lake.storage, jobs) and the MLflow server (``MLFLOW_S3_ENDPOINT_URL``) read these.
    """
    for name in _CLIENT_UNSET:
        env.pop(name, None)
    key_id, secret = credentials(s)
    env.update(AWS_ENDPOINT_URL=s.s3_endpoint, MLFLOW_S3_ENDPOINT_URL=s.s3_endpoint,
               AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret,
               AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION)
    return env


@contextmanager
def client_environment(s: Settings) -> Iterator[None]:
    """This process talks to the stack's server for the duration (ops.lake.storage reads os.environ)."""
    saved = dict(os.environ)
    apply_client_env(os.environ, s)  # type: ignore[arg-type]
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
