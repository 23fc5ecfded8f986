"""hadoop-aws jars for testing Spark's direct ``s3a://`` path on this machine.

Maven Central is not reachable here, but PyPI's ``sagemaker-pyspark==1.4.5`` sdist ships
``hadoop-aws-3.3.1.jar`` and the AWS SDK v1 bundle it was built against. That pair runs on
pyspark 4.3's Hadoop 3.5 client once a few settings are adjusted
(:data:`spark_jobs.staging.HADOOP_AWS_33_COMPAT`), which is enough to run the real stages
against a local S3 server in tests. Production does not use these jars: the Spark image bakes
in hadoop-aws 3.5.0 and the SDK v2 bundle (docker/spark/fetch_s3a_jars.sh).

The sdist (181 MB) is downloaded once with pip, the two jars are extracted into
``$C2M_CACHE/s3a-jars/`` (default ``~/.cache/crawl2model``) through a temp folder renamed
into place, and the sdist is deleted. Reruns with the jars present do nothing.

    python -m ops.lake.s3a_test_jars          # prints the cache folder
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "sagemaker-pyspark==1.4.5"
JARS = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")
MEMBER_DIR = "sagemaker_pyspark-1.4.5/deps/jars/"


def cache_dir() -> Path:
    return Path(os.environ.get("C2M_CACHE") or Path.home() / ".cache" / "crawl2model") / "s3a-jars"


def cached_jars() -> list[str] | None:
    """The two jars' paths when the cache holds them, else None."""
    paths = [cache_dir() / name for name in JARS]
    return [str(p) for p in paths] if all(p.is_file() and p.stat().st_size > 0 for p in paths) else None


def fetch(pip: list[str] | None = None) -> list[str]:
    """Download the sdist once, extract the two jars atomically, delete the sdist; return the paths."""
    jars = cached_jars()
    if jars:
        return jars
    dest = cache_dir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    pip = pip or [sys.executable, "-m", "pip"]
    with tempfile.TemporaryDirectory(prefix=".s3a-jars-", dir=dest.parent) as work:
        download = Path(work, "download")
        cmd = [*pip, "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", str(download), PACKAGE]
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(f"could not download {PACKAGE} from the package index ({' '.join(cmd)}); "
                             "check the network or PIP_INDEX_URL, then rerun")
        sdist = next(download.glob("*.tar.gz"), None)
        if sdist is None:
            raise SystemExit(f"pip downloaded no sdist of {PACKAGE} into {download}")
        staged = Path(work, "jars")
        staged.mkdir()
        with tarfile.open(sdist) as tar:
            for name in JARS:
                try:
                    member = tar.getmember(MEMBER_DIR + name)
                except KeyError:
                    raise SystemExit(f"{sdist.name} has no {MEMBER_DIR + name}; "
                                     "the package changed") from None
                with tar.extractfile(member) as src, open(staged / name, "wb") as out:
                    shutil.copyfileobj(src, out, length=8 << 20)
        sdist.unlink()  # 181 MB we no longer need
        if dest.exists():  # a partial folder from an older layout: replace it whole
            shutil.rmtree(dest)
        os.rename(staged, dest)
    return cached_jars() or []


if __name__ == "__main__":
    fetch()
    print(cache_dir())
