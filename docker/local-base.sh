#!/usr/bin/env bash
# Print the base image to build kbqa on: BASE (default python:3.11-slim-bookworm) itself, or, when
# its root directory is not world-readable, a copy re-imported with a normal root (tag
# kbqa-base:local). Why: ../shared/tools/local-docker.sh imports a tar of a `mktemp -d` folder, so
# its base has a 0700 root, and the image's non-root user could not exec anything; a later layer's
# `chmod /` does not change the root of an image, but `docker export | docker import` makes a
# fresh one (0755). Idempotent: an existing kbqa-base:local made from the same base is reused.
#   docker build --network host --build-arg BASE_IMAGE="$(bash docker/local-base.sh)" -f docker/Dockerfile .
set -euo pipefail
base=${1:-python:3.11-slim-bookworm}
fixed=kbqa-base:local
mode=$(docker run --rm --user 0 --entrypoint stat "$base" -c %a /)
if [ "$mode" = 755 ]; then echo "$base"; exit 0; fi
source_id=$(docker image inspect -f '{{.Id}}' "$base")
if [ "$(docker image inspect -f '{{index .Config.Labels "kbqa.base"}}' "$fixed" 2>/dev/null)" = "$source_id" ]; then
  echo "$fixed"; exit 0
fi
echo "local-base: $base has a root of mode $mode; re-importing it as $fixed" >&2
cid=$(docker create "$base" /bin/true)
trap 'docker rm "$cid" >/dev/null' EXIT
docker export "$cid" | docker import --change "LABEL kbqa.base=$source_id" - "$fixed" >/dev/null
echo "$fixed"
