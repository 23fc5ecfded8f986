#!/usr/bin/env bash
# Build the crawl2model images (airflow worker, spark, trainer CPU) with podman on this machine,
# from a Debian bookworm base made here with mmdebstrap instead of the public base images.
#
# Usage: ops/install/build_images.sh [base] [airflow] [spark] [trainer]   (default: the three images)
#
# 1. podman, runc, mmdebstrap and uidmap are installed with apt-get when missing (as root, or through
#    sudo where it needs no password);
#    without them, or when podman cannot start a container, the script prints "SKIP: <why>"
#    and exits 0, so callers can tell a skip from a failure (exit 1).
# 2. The base: `mmdebstrap --variant=minbase` with BASE_PACKAGES, cached as a tarball under
#    $C2M_CACHE/images/ keyed by a hash of the package list and this script's base recipe,
#    imported as localhost/c2m-base:<key>. A new key means a new base; an old one is reused.
# 3. Each image: `podman build --build-arg BASE_IMAGE=localhost/c2m-base:<key>` (the Dockerfiles
#    default to the public images), on the host network so pip and apt reach the registries.
#    podman's layer cache rebuilds only the layers after the first changed one. The three builds
#    run side by side (C2M_IMAGE_JOBS=1: one after another).
#
# Nothing from the host is baked in. The host's pip settings (`pip config list`, PIP_* included)
# are written to one pip.conf, and it, the CA bundle and every local file they name (find-links,
# file:// indexes, constraints) are bind-mounted read-only under /run/c2m-host for RUN steps only;
# so are the Horovod wheel cache ($C2M_CACHE/horovod) and the s3a jars ($C2M_CACHE/s3a-jars).
# tests/docker/test_images.py checks that no built image holds any of them.
#
# This sandbox needs `--runtime runc` (crun fails on its hybrid cgroups) and lowered rlimits
# (raising them is not permitted) for every container, RUN steps of a build included.
set -euo pipefail

C2M_CACHE=${C2M_CACHE:-$HOME/.cache/crawl2model}
IMAGE_CACHE="$C2M_CACHE/images"
TAG=${C2M_IMAGE_TAG:-0.1.0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd,procps
PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

log() { echo "[build_images] $*"; }
skip() { echo "[build_images] SKIP: $*" >&2; exit 0; }
die() { echo "[build_images] ERROR: $*" >&2; exit 1; }

install_tools() {
    local missing=() tool
    for tool in podman runc mmdebstrap newuidmap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    ((${#missing[@]})) || return 0
    local pkgs="podman runc mmdebstrap uidmap" sudo=()
    command -v apt-get >/dev/null || skip "${missing[*]} missing and no apt-get to install $pkgs"
    # As root, or through sudo when it needs no password (as the Makefile's system-deps does).
    if [[ $(id -u) != 0 ]]; then
        sudo -n true 2>/dev/null || skip "${missing[*]} missing and not root; run: sudo apt-get install -y $pkgs"
        sudo=(sudo -n)
    fi
    log "installing $pkgs (missing: ${missing[*]})"
    # shellcheck disable=SC2086  # $pkgs is a word list
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $pkgs >/dev/null || skip "apt-get could not install $pkgs"
}

# The base image: its tag is a content key of the suite, the package list and this recipe.
build_base() {
    local key tarball
    key=$(printf '%s\n' bookworm minbase "$BASE_PACKAGES" "rm EXTERNALLY-MANAGED" | sha256sum | cut -c1-12)
    BASE_IMAGE="localhost/c2m-base:$key"
    if "${PODMAN[@]}" image exists "$BASE_IMAGE"; then log "base $BASE_IMAGE exists"; return; fi
    tarball="$IMAGE_CACHE/c2m-base-$key.tar"
    if [[ ! -s $tarball ]]; then
        log "mmdebstrap bookworm ($BASE_PACKAGES) -> $tarball"
        mkdir -p "$IMAGE_CACHE"
        # pip installs into the image's own Python (as in python:3.11-slim), so PEP 668's marker goes.
        nice -n 10 mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
            --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
            --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
            bookworm "$tarball.tmp.tar" || die "mmdebstrap failed (is deb.debian.org reachable?)"
        mv -f "$tarball.tmp.tar" "$tarball"
    fi
    log "importing $tarball as $BASE_IMAGE"
    "${PODMAN[@]}" import --change 'CMD ["/bin/bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
}

# One pip.conf from the host's effective settings. Each local path it names (find-links, file://
# indexes, constraints) is mounted read-only at /run/c2m-host/files<path> and the setting rewritten,
# so no mount point lands in the image's own folders.
HOST_MOUNTS=()
host_pip_config() {
    local work=$1 line key value path out
    while IFS= read -r line; do
        key=${line%%=*}; value=${line#*=}; value=${value#\'}; value=${value%\'}
        if [[ $key == cert ]]; then
            cp "$value" "$work/ca.crt"; echo "cert = /run/c2m-host/conf/ca.crt"; continue
        fi
        out=()
        for path in $value; do
            local bare=${path#file://} src
            if [[ $bare == /* && -e $bare ]]; then
                # A file:// index links to its files relative to itself: mount the folder above it.
                src=$bare; [[ $path == file://* ]] && src=$(dirname "$bare")
                HOST_MOUNTS+=(-v "$src:/run/c2m-host/files$src:ro")
                path=${path/$bare//run/c2m-host/files$bare}
            fi
            out+=("$path")
        done
        echo "$key = ${out[*]}"
    done < <(pip config list 2>/dev/null | sed -e 's/^:env:\.//' -e 's/^global\.//' | sort -u -t= -k1,1) \
        >"$work/pip.conf.body"
    { echo "[global]"; cat "$work/pip.conf.body"; } >"$work/pip.conf"
    rm -f "$work/pip.conf.body"
    [[ -f $work/ca.crt ]] || cp /etc/ssl/certs/ca-certificates.crt "$work/ca.crt" 2>/dev/null || true
}

build_one() {  # build_one NAME DOCKERFILE TARGET EXTRA-ARGS...
    local name=$1 file=$2 target=$3 start=$SECONDS
    shift 3
    log "building localhost/crawl2model-$name:$TAG"
    # docker format: the OCI format drops SHELL, and the Dockerfiles run their steps in bash.
    nice -n 10 "${PODMAN[@]}" build --format docker --network=host "${ULIMITS[@]}" --layers \
        -v "$WORK:/run/c2m-host/conf:ro" "${HOST_MOUNTS[@]}" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg PIP_CONFIG_FILE=/run/c2m-host/conf/pip.conf \
        ${target:+--target "$target"} "$@" -f "$file" -t "localhost/crawl2model-$name:$TAG" "$ROOT" \
        || die "podman build of $name failed (see the step above)"
    log "built localhost/crawl2model-$name:$TAG in $((SECONDS - start))s"
}

# One image, by name; JOBS_ARGS and WORK are set by main.
build_image() {
    case $1 in
        airflow)  # its build runs as uid 50000: a writable copy of the wheel cache
            mkdir -p "$WORK/hvd" && cp -r "$C2M_CACHE/horovod" "$WORK/hvd/" && chmod -R a+rwX "$WORK/hvd"
            build_one airflow docker/airflow/Dockerfile worker "${JOBS_ARGS[@]}" \
                -v "$WORK/hvd/horovod:/run/c2m-hvd/horovod" ;;
        spark) build_one spark docker/spark/Dockerfile "" --build-arg S3A_JARS=local \
                   -v "$C2M_CACHE/s3a-jars:/run/c2m-s3a-jars:ro" ;;
        trainer) build_one trainer docker/trainer/Dockerfile "" --build-arg VARIANT=cpu \
                     "${JOBS_ARGS[@]}" -v "$C2M_CACHE/horovod:/run/c2m-hvd/horovod" ;;
        base) ;;
        *) die "unknown image '$1' (airflow, spark, trainer)" ;;
    esac
}

# The images build side by side (C2M_IMAGE_JOBS=1: one after another): their long steps are pip
# installs, which use one core each, so on 2 cores two builds finish in about the time of one.
# Each line of output starts with its image's name; any failed build fails the whole.
build_all() {
    local image pids=() failed=()
    if [[ ${C2M_IMAGE_JOBS:-0} == 1 ]]; then
        for image in "$@"; do build_image "$image"; done
        return
    fi
    for image in "$@"; do
        (build_image "$image" 2>&1 | sed -u "s/^/[$image] /") &
        pids+=($!)
    done
    local names=("$@") i
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("${names[$i]}"); done
    ((${#failed[@]} == 0)) || die "image builds failed: ${failed[*]} (see their lines above)"
}

main() {
    local images=("$@")
    ((${#images[@]})) || images=(airflow spark trainer)
    install_tools
    "${PODMAN[@]}" info >/dev/null 2>&1 \
        || skip "podman cannot run here: $("${PODMAN[@]}" info 2>&1 | tail -n1)"
    local start=$SECONDS
    build_base
    "${PODMAN[@]}" run --rm --network=host "${ULIMITS[@]}" "$BASE_IMAGE" python3 -c 'import venv' \
        || skip "podman cannot run a container from $BASE_IMAGE (runc, cgroups or rlimits; see above)"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/c2m-build.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    host_pip_config "$WORK"
    chmod -R a+rX "$WORK"  # RUN steps of the airflow image run as its uid 50000
    mkdir -p "$C2M_CACHE/horovod" "$C2M_CACHE/s3a-jars"
    # Images with a jobs venv: build_horovod.sh reuses (or adds) a wheel in the host's cache
    # when torch and Python match (`make images` builds it first, once, on the host).
    JOBS_ARGS=(--build-arg HOROVOD_CACHE=/run/c2m-hvd)
    # torch's CPU wheel: PyPI plus the host pip's find-links (a local torch-*+cpu wheel here);
    # C2M_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu where that index is reachable.
    JOBS_ARGS+=(--build-arg TORCH_INDEX_URL="${C2M_TORCH_INDEX_URL:-https://pypi.org/simple}")
    build_all "${images[@]}"
    log "done in $((SECONDS - start))s: ${images[*]}"
}

main "$@"
