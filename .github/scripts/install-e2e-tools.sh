#!/usr/bin/env bash
# kind $KIND_VERSION and the argo CLI $ARGO_VERSION (linux/amd64) into DIR, each checked against
# the checksum its release publishes. Used by .github/workflows/e2e.yml; kubectl and jq come with
# the GitHub runner image. Usage: install-e2e-tools.sh DIR
set -euo pipefail
dir=${1:?usage: install-e2e-tools.sh DIR}
: "${KIND_VERSION:?KIND_VERSION=vX.Y.Z}" "${ARGO_VERSION:?ARGO_VERSION=vX.Y.Z}"
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() { curl --fail --silent --show-error --location --retry 3 -o "$2" "$1"; }
verify() {  # verify FILE EXPECTED_SHA256
  local actual
  actual=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$actual" != "$2" ]; then
    echo "::error::$1: sha256 $actual, the release says $2" >&2
    exit 1
  fi
}

kind=https://github.com/kubernetes-sigs/kind/releases/download/$KIND_VERSION/kind-linux-amd64
fetch "$kind" "$work/kind"
fetch "$kind.sha256sum" "$work/kind.sha256sum"
verify "$work/kind" "$(cut -d' ' -f1 "$work/kind.sha256sum")"
install -m 0755 "$work/kind" "$dir/kind"

argo=https://github.com/argoproj/argo-workflows/releases/download/$ARGO_VERSION
fetch "$argo/argo-linux-amd64.gz" "$work/argo-linux-amd64.gz"
fetch "$argo/argo-workflows-cli-checksums.txt" "$work/checksums.txt"
verify "$work/argo-linux-amd64.gz" "$(awk '$2 == "argo-linux-amd64.gz" {print $1}' "$work/checksums.txt")"
gunzip "$work/argo-linux-amd64.gz"
install -m 0755 "$work/argo-linux-amd64" "$dir/argo"

"$dir/kind" version
"$dir/argo" version --short
