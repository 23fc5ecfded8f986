"""How Spark stages move data on ``s3://`` roots: staged through the driver, or ``s3a://`` directly.

Two paths, chosen by configuration (``C2M_SPARK_S3_IO``, else the Spark conf
``spark.crawl2model.s3.io``, else ``stage``):

- ``stage`` (default; what runs where Spark has no hadoop-aws jars, as on a laptop): inputs
  are downloaded with boto3 and outputs assembled in a local folder that is uploaded when
  the version is published (:mod:`spark_jobs.staging`). On a cluster that folder must be a
  volume every executor mounts (``C2M_STAGING_DIR``).
- ``s3a`` (clusters; :func:`ops.launch.kubernetes.spark.spark_conf` sets it with ``s3a://`` roots):
  Spark reads ``s3a://`` inputs and writes its output to a staging prefix in the bucket;
  files that executors write themselves are uploaded by those executors, and publishing
  copies objects server-side. Nothing needs a shared volume.

The env variable wins over the Spark conf because SparkSubmitOperator in client mode
passes no env to the driver, while a developer can still override a cluster setting.

Hadoop settings for ``s3a`` mode (:func:`hadoop_settings`) come from the environment the
boto3 side uses too (``AWS_ENDPOINT_URL``, ``AWS_REGION``/``AWS_DEFAULT_REGION``); keys
are never put into the conf by this module: credentials come from the provider chain
(environment variables, or the cluster's identity). A key already in the Spark conf
(``spark.hadoop.fs.s3a.*``, e.g. from the cluster launcher) is left as it is.

``C2M_SPARK_S3A_COMPAT=hadoop-aws-3.3`` is for tests and local use only: it adds the cached
hadoop-aws 3.3.1 + SDK v1 jars (``make s3a-jars``) and the settings they need on Spark's
Hadoop 3.5 client. The production image bakes in hadoop-aws 3.5.0 with the SDK v2 bundle
and needs none of this.
"""
from __future__ import annotations

import os

STAGE, S3A = "stage", "s3a"
MODE_ENV = "C2M_SPARK_S3_IO"
MODE_CONF = "spark.crawl2model.s3.io"
COMPAT_ENV = "C2M_SPARK_S3A_COMPAT"
COMPAT_33 = "hadoop-aws-3.3"

# Hadoop 3.5 writes these defaults as duration/size strings ("60s", "64M"); hadoop-aws 3.3.1
# reads them as plain numbers and fails. Values are 3.5's defaults in 3.3.1's units.
HADOOP_AWS_33_COMPAT = {
    "fs.s3a.threads.keepalivetime": "60",
    "fs.s3a.connection.establish.timeout": "30000",
    "fs.s3a.connection.timeout": "200000",
    "fs.s3a.multipart.purge.age": "86400",
    "fs.s3a.connection.ttl": "300000",
    "fs.s3a.connection.request.timeout": "0",
    "fs.s3a.connection.acquisition.timeout": "60000",
    "fs.s3a.connection.idle.time": "60000",
    "fs.s3a.retry.interval": "500",
    "fs.s3a.retry.throttle.interval": "100",
    "fs.s3a.assumed.role.session.duration": "1800",
    "fs.s3a.multipart.size": "67108864",
    "fs.s3a.multipart.threshold": "134217728",
    "fs.s3a.block.size": "33554432",
    "fs.s3a.readahead.range": "65536",
    # 3.5's default chain names SDK v2 classes; the SDK v1 class reads AWS_ACCESS_KEY_ID/SECRET.
    "fs.s3a.aws.credentials.provider": "com.amazonaws.auth.EnvironmentVariableCredentialsProvider",
}


def mode() -> str:
    """``stage`` or ``s3a`` (see the module docstring for where it comes from)."""
    value = (os.environ.get(MODE_ENV) or _spark_conf(MODE_CONF) or STAGE).strip().lower()
    if value not in (STAGE, S3A):
        raise ValueError(f"{MODE_ENV}={value!r}: use 'stage' (upload through the driver) or 's3a' "
                         "(Spark reads and writes s3a:// directly; needs hadoop-aws on Spark's classpath)")
    return value


def direct(root: str) -> bool:
    """True when Spark reads and writes this root's objects itself (an S3 root in ``s3a`` mode)."""
    from ops.lake import storage

    return storage.is_s3(root) and mode() == S3A


def _spark_conf(key: str) -> str | None:
    """A value of the running SparkContext's conf (None without one, or without pyspark)."""
    try:
        from pyspark import SparkContext
    except ImportError:
        return None
    sc = SparkContext._active_spark_context
    return sc.getConf().get(key, None) if sc is not None else None


def compat_jars() -> list[str]:
    """The cached hadoop-aws 3.3.1 jars when ``C2M_SPARK_S3A_COMPAT`` asks for them, else []."""
    wanted = os.environ.get(COMPAT_ENV, "").strip()
    if not wanted:
        return []
    if wanted != COMPAT_33:
        raise ValueError(f"{COMPAT_ENV}={wanted!r}: the only value is {COMPAT_33!r} (tests and local use)")
    from ops.lake.s3a_test_jars import cache_dir, cached_jars

    jars = cached_jars()
    if not jars:
        raise RuntimeError(f"{COMPAT_ENV}={COMPAT_33} needs the hadoop-aws 3.3.1 jars in {cache_dir()}; "
                           "run `make s3a-jars` (or python -m ops.lake.s3a_test_jars)")
    return jars


def hadoop_settings() -> dict[str, str]:
    """``fs.s3a.*`` settings for ``s3a`` mode from the environment (no credentials among them)."""
    from ops.lake import storage

    settings = {"fs.s3a.path.style.access": "true"}  # as ops.lake.storage: works with every S3 server
    endpoint = storage.endpoint_url()
    if endpoint:
        settings["fs.s3a.endpoint"] = endpoint
        settings["fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https://")).lower()
    region = storage.region()
    if region:
        settings["fs.s3a.endpoint.region"] = region
    if os.environ.get(COMPAT_ENV):
        settings.update(HADOOP_AWS_33_COMPAT)
        settings["fs.s3a.etag.checksum.enabled"] = "false"
    return settings


def configure(spark) -> None:
    """In ``s3a`` mode, give the session's Hadoop conf :func:`hadoop_settings`, except keys the
    Spark conf sets already (``spark.hadoop.<key>``: the launcher's values win)."""
    if mode() != S3A:
        return
    sc = spark.sparkContext
    conf = sc.getConf()
    hadoop = sc._jsc.hadoopConfiguration()
    for key, value in hadoop_settings().items():
        if not conf.contains(f"spark.hadoop.{key}"):
            hadoop.set(key, value)
