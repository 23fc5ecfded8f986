"""Secrets on their way to jobs: which environment variables jobs get, which of them are
secret, how secrets are masked in printed text, and the 0600 file that carries them to
Horovod ranks.

Rules (README, "Secrets"): a secret reaches a job through the environment (an allow-listed
name) or a 0600 file, never through argv, a log line, XCom or MLflow params.

- :func:`job_environment` keeps only the names a job needs (:data:`ALLOWED_NAMES`,
  :data:`ALLOWED_PREFIXES`); the Airflow task's own settings (``AIRFLOW__*``: metadata DB
  connection, Fernet key, JWT secret) never reach a job.
- :func:`mask` hides URL passwords and the values of secret-named variables in any text
  that is printed (launch commands, error messages).
- Horovod's Gloo launcher writes each exported variable into the command line of every
  rank (``env NAME=value … python …``, through ``ssh`` for a remote rank), which ``ps``
  shows. So secrets are never in horovodrun's environment: each rank starts as
  ``python -m ops.lake.secret_env MODULE ARGS``, which loads them into its own environment and
  runs MODULE. Locally, :func:`split_secrets` takes the secrets out of horovodrun's
  environment and :func:`write_env_file` puts them in a 0600 file in a 0700 folder, named by
  :data:`ENV_FILE_VAR`. On Kubernetes (an MPIJob's workers, ops/launch/kubernetes/pods.py) a Secret
  is mounted as a folder with one file per variable, named by :data:`ENV_DIR_VAR`. Neither
  variable's name looks like a secret's, so both travel as plain environment.
"""
from __future__ import annotations

import json
import os
import re
import runpy
import sys
import tempfile
from pathlib import Path

ENV_FILE_VAR = "C2M_RANK_ENV_FILE"  # a JSON file of secrets (write_env_file)
ENV_DIR_VAR = "C2M_RANK_ENV_DIR"  # a folder of files named after variables (a mounted Secret)
MASK = "***"

# Variables a job may inherit from the task or CLI environment, by exact name or by prefix.
# PYTHONPATH and VIRTUAL_ENV are not among them: the Airflow venv's packages must not leak into
# the jobs venv's interpreter.
ALLOWED_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "TMPDIR", "LANG", "LANGUAGE",
    "HOSTNAME", "JAVA_HOME", "GLIBC_TUNABLES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS",
    "TOKENIZERS_PARALLELISM", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",  # spark-submit to k8s from a pod
})
ALLOWED_PREFIXES = ("C2M_", "SPARK_", "PYSPARK_", "HOROVOD_", "MLFLOW_", "AWS_", "OMP_", "MKL_",
                    "NCCL_", "GLOO_", "HF_", "TORCH_", "LC_", "XDG_", "MALLOC_", "HADOOP_")

# Names whose values are secrets: the allowed ones travel by environment or 0600 file only.
_SECRET_NAME = re.compile(
    r"(^|_)(SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIALS?|FERNET_KEY|PRIVATE_KEY|ACCESS_KEY(_ID)?|API_KEY"
    r"|SQL_ALCHEMY_CONN|CONN)(_|$)|^C2M_OPTUNA_STORAGE$")
# scheme://user:password@host -> the password
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)(?P<pw>[^\s@/'\"]+)(?=@)")
_ASSIGNMENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=([^\s&;,'\"]+)")


def is_secret_name(name: str) -> bool:
    """Whether a variable's name says its value is a secret (AWS keys, passwords, tokens, DB URLs)."""
    return bool(_SECRET_NAME.search(name.upper()))


def is_secret(name: str, value: str) -> bool:
    """A secret-named variable, or any value that carries a URL password."""
    return is_secret_name(name) or bool(_URL_PASSWORD.search(value or ""))


def allowed(name: str) -> bool:
    """Whether a job may inherit ``name`` (never the Airflow task's own ``AIRFLOW*`` settings)."""
    if name.startswith("AIRFLOW"):
        return False
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def job_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of ``environ`` (default: this process's environment)."""
    environ = dict(os.environ if environ is None else environ)
    return {k: v for k, v in environ.items() if allowed(k)}


def secret_values(env: dict[str, str]) -> list[str]:
    """The values of ``env``'s secrets (whole values and URL passwords), longest first."""
    values = set()
    for name, value in env.items():
        if not value:
            continue
        if is_secret_name(name) and len(value) >= 8:  # shorter ones would mask ordinary words
            values.add(value)
        values.update(m.group("pw") for m in _URL_PASSWORD.finditer(value))
    return sorted(values, key=len, reverse=True)


def masker(env: dict[str, str] | None = None):
    """A function that hides URL passwords, ``NAME=value`` of secret names and ``env``'s secret values."""
    values = secret_values(env or {})

    def hide(text: str) -> str:
        for value in values:
            text = text.replace(value, MASK)
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
        return _ASSIGNMENT.sub(lambda m: f"{m.group(1)}={MASK}" if is_secret_name(m.group(1)) else m.group(0),
                               text)

    return hide


def mask(text: str, env: dict[str, str] | None = None) -> str:
    """``text`` with its secrets hidden (see :func:`masker`)."""
    return masker(env)(text)


def split_secrets(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(``env`` without its secrets, the secrets)."""
    secret = {k: v for k, v in env.items() if is_secret(k, v)}
    return {k: v for k, v in env.items() if k not in secret}, secret


def write_env_file(secrets: dict[str, str]) -> Path:
    """Write ``secrets`` as JSON to a new 0600 file in a new 0700 folder; the caller removes it."""
    folder = Path(tempfile.mkdtemp(prefix="c2m-secrets-"))  # mkdtemp makes it 0700
    path = folder / "env.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(secrets, f)
    return path


def remove_env_file(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


def load_env_file(path: str | os.PathLike, environ=None) -> list[str]:
    """Set the variables of a :func:`write_env_file` file in ``environ``; returns their names."""
    environ = os.environ if environ is None else environ
    with open(path) as f:
        values = json.load(f)
    environ.update({str(k): str(v) for k, v in values.items()})
    return sorted(values)


_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_env_dir(path: str | os.PathLike, environ=None) -> list[str]:
    """Set one variable per file of ``path`` (a mounted Kubernetes Secret: the file's name is the
    variable, its content the value, as a ``secretKeyRef`` would give it) in ``environ``; returns
    their names. The volume's own entries (``..data`` and the like) are skipped."""
    environ = os.environ if environ is None else environ
    folder = Path(path)
    if not folder.is_dir():
        raise SystemExit(f"${ENV_DIR_VAR}={path} is not a folder: mount the job's Secret there "
                         "(ops/launch/kubernetes/pods.py does) or unset the variable")
    names = []
    for entry in sorted(folder.iterdir()):
        if _VAR_NAME.fullmatch(entry.name) and entry.is_file():
            environ[entry.name] = entry.read_bytes().decode()
            names.append(entry.name)
    return names


def main(argv: list[str]) -> None:
    """``python -m ops.lake.secret_env MODULE ARGS``: load $C2M_RANK_ENV_FILE and $C2M_RANK_ENV_DIR,
    then run MODULE as __main__."""
    if not argv:
        raise SystemExit("usage: python -m ops.lake.secret_env MODULE [ARGS...]")
    path = os.environ.pop(ENV_FILE_VAR, "")
    if path:
        load_env_file(path)
    folder = os.environ.pop(ENV_DIR_VAR, "")
    if folder:
        load_env_dir(folder)
    sys.argv = [argv[0], *argv[1:]]
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
