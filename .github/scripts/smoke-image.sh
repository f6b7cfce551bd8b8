#!/usr/bin/env bash
# Smoke test of one stage image (.github/workflows/images.yml): it runs as its non-root user
# (UID 10001, the pods' UID) with a read-only root filesystem and no capabilities, as on the
# cluster, and every stage it lists answers `saliencylab <stage> --help`.
# Usage: smoke-image.sh <image reference>
set -euo pipefail
image=${1:?usage: smoke-image.sh <image reference>}

user=$(docker image inspect --format '{{.Config.User}}' "$image")
if [ "$user" != "10001:10001" ]; then
  echo "::error::$image runs as '$user', expected the non-root 10001:10001" >&2
  exit 1
fi

# No --user: the image's own user must work. /tmp and /cache are the only writable paths, as in
# the pods (emptyDirs there).
run() {
  docker run --rm --read-only --tmpfs /tmp:mode=1777 --tmpfs /cache:mode=1777 \
    --cap-drop ALL --security-opt no-new-privileges "$image" "$@"
}

stages=$(run stages | cut -f1)
if [ -z "$stages" ]; then
  echo "::error::$image lists no stage (saliencylab stages)" >&2
  exit 1
fi
for stage in $stages merge outcome; do
  echo "saliencylab $stage --help"
  run "$stage" --help > /dev/null
done
echo "$image: $(echo "$stages" | wc -w) stages, merge and outcome answer --help as UID 10001 on a read-only root"
