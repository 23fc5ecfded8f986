#!/usr/bin/env bash
# Download hadoop-aws and the AWS SDK v2 bundle that this Hadoop release was built against,
# from Maven Central, into DEST. Used at image build time only (docker/spark/Dockerfile).
#
# Usage: fetch_s3a_jars.sh DEST
# Environment (set from the Dockerfile's pinned ARGs):
#   HADOOP_VERSION          Hadoop that pyspark bundles (hadoop-client-api-<v>.jar), e.g. 3.5.0
#   AWS_SDK_BUNDLE_VERSION  optional: the bundle version; must equal what Hadoop's POM declares
#   HADOOP_AWS_SHA256, AWS_SDK_BUNDLE_SHA256  optional: pinned sha256 of each jar
#   MAVEN_CENTRAL           repository base URL
#
# "Matching" is read from the source of truth rather than guessed: hadoop-project-<v>.pom
# declares <aws-java-sdk-v2.version>, the SDK that hadoop-aws was compiled and tested with.
# Every download is checked against Maven Central's published .sha1; when the *_SHA256 pins
# are set they are checked too, and the build prints the sha256 values to pin next time.
set -euo pipefail

DEST=${1:?usage: fetch_s3a_jars.sh DEST}
: "${HADOOP_VERSION:?set HADOOP_VERSION}"
MAVEN_CENTRAL=${MAVEN_CENTRAL:-https://repo1.maven.org/maven2}
mkdir -p "$DEST"

fetch() {  # fetch URL FILE: download and check the .sha1 Maven Central publishes beside it
    local url=$1 out=$2 want
    curl -fsSL --retry 3 -o "$out" "$url"
    want=$(curl -fsSL --retry 3 "$url.sha1" | cut -c1-40)
    echo "$want  $out" | sha1sum -c --status \
        || { echo "sha1 mismatch for $url (Maven Central says $want)" >&2; exit 1; }
}

pin_check() {  # pin_check FILE SHA256-or-empty NAME
    local got
    got=$(sha256sum "$1" | cut -c1-64)
    if [[ -n "$2" && "$got" != "$2" ]]; then
        echo "sha256 of $(basename "$1") is $got but $3 pins $2" >&2
        exit 1
    fi
    echo "[fetch_s3a_jars] $(basename "$1") sha256=$got${2:+ (pinned)}"
}

POM="$DEST/hadoop-project-$HADOOP_VERSION.pom"
fetch "$MAVEN_CENTRAL/org/apache/hadoop/hadoop-project/$HADOOP_VERSION/hadoop-project-$HADOOP_VERSION.pom" "$POM"
DECLARED=$(sed -n 's:.*<aws-java-sdk-v2.version>\([^<]*\)</aws-java-sdk-v2.version>.*:\1:p' "$POM" | head -n1)
rm -f "$POM"
[[ -n "$DECLARED" ]] || { echo "no <aws-java-sdk-v2.version> in hadoop-project-$HADOOP_VERSION.pom" >&2; exit 1; }
if [[ -n "${AWS_SDK_BUNDLE_VERSION:-}" && "$AWS_SDK_BUNDLE_VERSION" != "$DECLARED" ]]; then
    echo "AWS_SDK_BUNDLE_VERSION=$AWS_SDK_BUNDLE_VERSION but Hadoop $HADOOP_VERSION declares $DECLARED;" \
         "set --build-arg AWS_SDK_BUNDLE_VERSION=$DECLARED (or leave it empty)" >&2
    exit 1
fi
echo "[fetch_s3a_jars] hadoop-aws $HADOOP_VERSION with AWS SDK v2 bundle $DECLARED"

fetch "$MAVEN_CENTRAL/org/apache/hadoop/hadoop-aws/$HADOOP_VERSION/hadoop-aws-$HADOOP_VERSION.jar" \
      "$DEST/hadoop-aws-$HADOOP_VERSION.jar"
fetch "$MAVEN_CENTRAL/software/amazon/awssdk/bundle/$DECLARED/bundle-$DECLARED.jar" \
      "$DEST/bundle-$DECLARED.jar"
pin_check "$DEST/hadoop-aws-$HADOOP_VERSION.jar" "${HADOOP_AWS_SHA256:-}" HADOOP_AWS_SHA256
pin_check "$DEST/bundle-$DECLARED.jar" "${AWS_SDK_BUNDLE_SHA256:-}" AWS_SDK_BUNDLE_SHA256
