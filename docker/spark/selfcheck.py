"""Build-time check of the Spark image: versions, s3a classes on the classpath, a local job.

Run by the Dockerfile as the image's own user; a failure fails the build with the reason.
"""
from __future__ import annotations

import os
import sys


def main() -> None:
    import pyspark
    from pyspark.sql import SparkSession

    want = os.environ["PYSPARK_VERSION"]
    if pyspark.__version__ != want:
        sys.exit(f"pyspark is {pyspark.__version__}, expected {want} (something overwrote it, "
                 "e.g. pyspark-client; see ARCHITECTURE.md §4)")
    jars = os.listdir(os.path.join(os.environ["SPARK_HOME"], "jars"))
    hadoop = os.environ["HADOOP_VERSION"]
    if f"hadoop-client-api-{hadoop}.jar" not in jars:
        sys.exit(f"pyspark {want} does not bundle Hadoop {hadoop}; set HADOOP_VERSION to the version "
                 f"of its hadoop-client-api jar: {[j for j in jars if j.startswith('hadoop-client-api')]}")
    spark = (SparkSession.builder.master("local[1]").appName("c2m-image-selfcheck")
             .config("spark.ui.enabled", "false").getOrCreate())
    try:
        jvm = spark.sparkContext._jvm
        # The SDK v2 bundle in production; the SDK v1 test pair when built with S3A_JARS=local.
        sdk = ("com.amazonaws.services.s3.AmazonS3Client" if any(j.startswith("aws-java-sdk-bundle")
                                                                 for j in jars)
               else "software.amazon.awssdk.services.s3.S3Client")
        for cls in ("org.apache.hadoop.fs.s3a.S3AFileSystem", sdk,
                    "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"):
            jvm.java.lang.Class.forName(cls)
        rows = spark.range(10).selectExpr("sum(id) AS s").collect()
        assert rows[0]["s"] == 45, rows
    finally:
        spark.stop()
    import ops.launch.local  # noqa: F401  (the package is installed and importable)
    import spark_jobs.jobs  # noqa: F401
    print(f"[selfcheck] pyspark {want}, Hadoop {hadoop} with s3a, Kubernetes backend: OK")


if __name__ == "__main__":
    main()
