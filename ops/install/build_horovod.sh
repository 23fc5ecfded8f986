#!/usr/bin/env bash
# Build (or reuse a cached wheel of) Horovod 0.28.1 for PyTorch + Gloo, CPU only,
# into an existing virtual environment that already has torch installed.
#
# Usage: ops/install/build_horovod.sh <venv-dir>
#
# Horovod 0.28.1 (the last release) does not build against torch >= 2.1 as released;
# horovod-0.28.1.patch next to this script fixes that (C++17 for the torch extension and
# its Gloo, missing <stdexcept> includes, zero_grad(set_to_none=...)).
#
# The wheel is tied to the exact torch build, so it is cached under
#   ${C2M_CACHE:-$HOME/.cache/crawl2model}/horovod/hvd<ver>-torch<torch ver>-<cpython tag>-patch<hash>/
# Build logs go to the same folder (build-<timestamp>.log).
#
# Environment knobs: C2M_CACHE (cache root), HOROVOD_BUILD_JOBS (make -j, default 2),
# C2M_HOROVOD_GPU_OPERATIONS=NCCL (GPU build for the trainer image: needs nvcc and NCCL;
# HOROVOD_CUDA_HOME, HOROVOD_NCCL_HOME and HOROVOD_BUILD_CUDA_CC_LIST pass through).
set -euo pipefail

HVD_VERSION=0.28.1
# sha256 of horovod-0.28.1.tar.gz as published on PyPI.
HVD_SDIST_SHA256=92a43f5a94c43907a56805bad15f19700c62ffc83b7ca483f9e104e229f67ef0
RUNTIME_DEPS=(cloudpickle psutil pyyaml packaging cffi numpy)
GPU_OPS=${C2M_HOROVOD_GPU_OPERATIONS:-}

log() { echo "[build_horovod] $*"; }
die() { echo "[build_horovod] ERROR: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || { echo "Usage: $0 <venv-dir>" >&2; exit 2; }
VENV=$(cd "$1" 2>/dev/null && pwd) || die "venv directory '$1' does not exist"
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
[[ -x "$PY" ]] || die "$PY not found; is '$VENV' a virtual environment?"
[[ -z "$GPU_OPS" || "$GPU_OPS" == NCCL ]] || die "C2M_HOROVOD_GPU_OPERATIONS=$GPU_OPS: only NCCL (or empty for CPU) is supported"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PATCH="$SCRIPT_DIR/horovod-$HVD_VERSION.patch"
[[ -f "$PATCH" ]] || die "patch not found: $PATCH"

# Returns 0 when the venv has a working horovod.torch of the right version, with the patch.
hvd_ok() {
    "$PY" - "$HVD_VERSION" "$GPU_OPS" <<'EOF' >/dev/null 2>&1
import inspect, sys
import horovod, horovod.torch
from horovod.torch.optimizer import _DistributedOptimizer
assert horovod.__version__ == sys.argv[1], horovod.__version__
assert "set_to_none" in inspect.signature(_DistributedOptimizer.zero_grad).parameters
assert not sys.argv[2] or horovod.torch.nccl_built(), "built without NCCL"
EOF
}

# 1. Fast path: already installed and working.
if hvd_ok; then
    log "horovod $HVD_VERSION with PyTorch support is already installed in $VENV; nothing to do."
    exit 0
fi

# 2. Cache key: horovod + torch + python + patch.
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null) \
    || die "torch is not importable from $PY; install torch into the venv first."
PY_TAG=$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
PATCH_HASH=$(sha256sum "$PATCH" | cut -c1-12)
CACHE_ROOT="${C2M_CACHE:-$HOME/.cache/crawl2model}/horovod"
KEY="hvd${HVD_VERSION}-torch${TORCH_VERSION}-${PY_TAG}-patch${PATCH_HASH}${GPU_OPS:+-$GPU_OPS}"
KEY_DIR="$CACHE_ROOT/$KEY"
mkdir -p "$KEY_DIR" "$CACHE_ROOT/sdist"

# Serialise concurrent runs that share this cache entry.
exec 9>"$KEY_DIR/.lock"
flock 9

find_wheel() { compgen -G "$KEY_DIR/horovod-$HVD_VERSION-$PY_TAG-*.whl" | head -n1 || true; }

install_and_verify() {
    local wheel=$1
    log "installing $wheel"
    "${PIP[@]}" install --quiet --no-deps --force-reinstall "$wheel"
    "${PIP[@]}" install --quiet "${RUNTIME_DEPS[@]}"
    hvd_ok || die "horovod installed from $wheel but 'import horovod.torch' fails in $VENV
  (run: $PY -c 'import horovod.torch'). Remove $KEY_DIR to force a rebuild."
    local out
    out=$("$VENV/bin/horovodrun" --check-build 2>&1) || die "horovodrun --check-build failed:
$out"
    echo "$out"
    grep -q '\[X\] PyTorch' <<<"$out" || die "horovodrun --check-build does not list PyTorch"
    grep -q '\[X\] Gloo' <<<"$out" || die "horovodrun --check-build does not list Gloo"
    [[ -z "$GPU_OPS" ]] || grep -q '\[X\] NCCL' <<<"$out" || die "horovodrun --check-build does not list NCCL"
    log "OK: horovod $HVD_VERSION (torch $TORCH_VERSION, $PY_TAG) installed in $VENV"
}

WHEEL=$(find_wheel)
if [[ -n "$WHEEL" ]]; then
    log "using cached wheel for $KEY"
    install_and_verify "$WHEEL"
    exit 0
fi

# 3. Build from source. Check prerequisites first.
missing=()
command -v cmake >/dev/null || missing+=("cmake (>= 3.13): apt-get install -y cmake")
if command -v cmake >/dev/null; then
    cmake_ver=$(cmake --version | sed -n 's/^cmake version \([0-9.]*\).*/\1/p')
    "$PY" -c "import sys; v=tuple(int(x) for x in '$cmake_ver'.split('.')[:2]); sys.exit(v < (3, 13))" \
        || missing+=("cmake >= 3.13 (found $cmake_ver): apt-get install -y cmake")
fi
command -v g++ >/dev/null || missing+=("a C++17 compiler: apt-get install -y g++")
command -v make >/dev/null || missing+=("make: apt-get install -y make")
command -v patch >/dev/null || missing+=("patch: apt-get install -y patch")
"$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || missing+=("Python development headers for $("$PY" -c 'import sys; print(sys.version.split()[0])') (e.g. apt-get install -y python3-dev, or a Python built with headers)")
"$PY" -c 'import setuptools, packaging' 2>/dev/null \
    || missing+=("setuptools and packaging in the venv: $PY -m pip install setuptools packaging")
if ((${#missing[@]})); then
    echo "[build_horovod] ERROR: cannot build horovod $HVD_VERSION; missing build prerequisites:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/horovod-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
BUILD_LOG="$KEY_DIR/build-$(date +%Y%m%d-%H%M%S).log"

# Source tarball, cached and checked against the published hash.
SDIST="$CACHE_ROOT/sdist/horovod-$HVD_VERSION.tar.gz"
if [[ ! -f "$SDIST" ]] || ! echo "$HVD_SDIST_SHA256  $SDIST" | sha256sum -c --status; then
    log "downloading horovod $HVD_VERSION sdist"
    "${PIP[@]}" download --quiet --no-binary :all: --no-deps "horovod==$HVD_VERSION" -d "$WORK/dl" \
        || die "pip download of horovod==$HVD_VERSION failed (is the package index reachable?)"
    echo "$HVD_SDIST_SHA256  $WORK/dl/horovod-$HVD_VERSION.tar.gz" | sha256sum -c --status \
        || die "sha256 of the downloaded horovod-$HVD_VERSION.tar.gz does not match $HVD_SDIST_SHA256"
    cp "$WORK/dl/horovod-$HVD_VERSION.tar.gz" "$SDIST.tmp.$$" && mv -f "$SDIST.tmp.$$" "$SDIST"
fi

tar -xzf "$SDIST" -C "$WORK"
SRC="$WORK/horovod-$HVD_VERSION"
patch -p1 -d "$SRC" --forward --batch < "$PATCH" >"$WORK/patch.out" 2>&1 \
    || { cat "$WORK/patch.out" >&2; die "applying $PATCH failed"; }

# Only what we ask for: PyTorch, Gloo, and NCCL for GPU tensors when asked.
unset HOROVOD_WITH_TENSORFLOW HOROVOD_WITH_MXNET HOROVOD_WITH_MPI HOROVOD_WITHOUT_GLOO \
      HOROVOD_WITHOUT_PYTORCH HOROVOD_GPU HOROVOD_GPU_OPERATIONS HOROVOD_GPU_ALLREDUCE \
      HOROVOD_GPU_ALLGATHER HOROVOD_GPU_BROADCAST HOROVOD_GPU_ALLTOALL HOROVOD_GPU_REDUCESCATTER \
      HOROVOD_SKIP_COMPILE HOROVOD_DEBUG
export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
       HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=gloo
[[ -z "$GPU_OPS" ]] || export HOROVOD_GPU_OPERATIONS="$GPU_OPS"
export MAKEFLAGS="-j${HOROVOD_BUILD_JOBS:-2}"

log "building horovod $HVD_VERSION against torch $TORCH_VERSION ($PY_TAG), MAKEFLAGS=$MAKEFLAGS"
log "this takes roughly 2-12 minutes; log: $BUILD_LOG"
start=$SECONDS
if ! "${PIP[@]}" wheel -v --no-deps --no-build-isolation --no-cache-dir -w "$WORK/dist" "$SRC" \
        >"$BUILD_LOG" 2>&1; then
    echo "----- last 40 lines of $BUILD_LOG -----" >&2
    tail -n 40 "$BUILD_LOG" >&2
    echo "----- first errors -----" >&2
    grep -m 8 -E ' error: |error: #error|CMake Error|\*\*\* \[' "$BUILD_LOG" >&2 || true
    echo "---------------------------------------" >&2
    cat >&2 <<EOF
Horovod build failed; full log at $BUILD_LOG.
Look for the first 'error:' in the log. Common causes: a torch version whose C++ API the
patch does not cover (check $PATCH), a missing compiler or cmake, or running out of memory
(retry with HOROVOD_BUILD_JOBS=1). Re-run this script after fixing; nothing was cached.
EOF
    exit 1
fi
elapsed=$((SECONDS - start))
log "build finished in ${elapsed}s"

BUILT=$(compgen -G "$WORK/dist/horovod-$HVD_VERSION-*.whl" | head -n1 || true)
[[ -n "$BUILT" ]] || die "pip wheel reported success but produced no wheel; see $BUILD_LOG"
DEST="$KEY_DIR/$(basename "$BUILT")"
cp "$BUILT" "$DEST.tmp.$$"
mv -f "$DEST.tmp.$$" "$DEST"
log "cached wheel: $DEST"

install_and_verify "$DEST"
