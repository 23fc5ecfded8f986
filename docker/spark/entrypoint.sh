#!/usr/bin/env bash
# Entrypoint of the crawl2model Spark image.
#
# Spark on Kubernetes starts executor pods from this image with the single argument
# `executor` and describes the executor through SPARK_* environment variables; `driver` is
# the cluster-mode equivalent. Anything else runs as given, so the same image serves
# `crawl2model <stage> ...` (client-mode driver pods) and one-off commands. tini reaps
# children and forwards signals, so pods stop promptly.
set -euo pipefail

: "${SPARK_HOME:?SPARK_HOME must point at the pyspark install folder}"
SPARK_CLASSPATH="${SPARK_CONF_DIR:-$SPARK_HOME/conf}:${SPARK_HOME}/jars/*${SPARK_CLASSPATH:+:$SPARK_CLASSPATH}"

# Spark passes per-executor JVM options as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ... in order.
java_opts() {
    local name
    JAVA_OPTS=()
    for name in $(compgen -v SPARK_JAVA_OPT_ | sort -t_ -k4 -n); do
        JAVA_OPTS+=("${!name}")
    done
}

case "${1:-}" in
    driver)
        shift
        CMD=("$SPARK_HOME/bin/spark-submit"
             --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:-0.0.0.0}"
             --deploy-mode client "$@")
        ;;
    executor)
        shift
        java_opts
        CMD=("${JAVA_HOME}/bin/java" "${JAVA_OPTS[@]}"
             "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}"
             -cp "$SPARK_CLASSPATH"
             org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend
             --driver-url "$SPARK_DRIVER_URL"
             --executor-id "$SPARK_EXECUTOR_ID"
             --cores "$SPARK_EXECUTOR_CORES"
             --app-id "$SPARK_APPLICATION_ID"
             --hostname "$SPARK_EXECUTOR_POD_IP"
             --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID"
             --podName "$SPARK_EXECUTOR_POD_NAME")
        ;;
    "")
        CMD=("$SPARK_HOME/bin/spark-submit" --version)
        ;;
    *)
        CMD=("$@")
        ;;
esac

exec /usr/bin/tini -s -- "${CMD[@]}"
