#!/usr/bin/env bash
# Build homelab/duckdb:1: install the locked node_modules on this host (npm install --omit=dev of the
# versions in package-lock.json), then `docker build` with them in the context. See README.md "Build".
#
# Usage: components/duckdb/image/build.sh [--tag TAG] [--base-image IMAGE]
# Env:   BASE_IMAGE (default debian:bookworm-slim), IMAGE_TAG (default homelab/duckdb:1)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE_IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
IMAGE_TAG="${IMAGE_TAG:-homelab/duckdb:1}"
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) IMAGE_TAG="$2"; shift 2 ;;
    --base-image) BASE_IMAGE="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { printf '[duckdb/build] %s\n' "$*" >&2; }

docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
  || { log "base image $BASE_IMAGE is not in the engine: make it with scripts/make-base-images.sh"; exit 1; }

# The binding is a prebuilt linux-x64 glibc library: the host's npm must pick that one.
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) log "this host is $(uname -s)-$(uname -m): build on linux/x86_64 (the image is linux/amd64)"; exit 1 ;;
esac

start=$(date +%s)
# `npm install`, not `npm ci`: the lockfile holds only the linux-x64 DuckDB bindings (the registry
# these machines reach does not serve the other platforms' 1.5.6-r.1 builds), and npm ci refuses a
# lockfile without every optional platform package. With the lockfile present, npm install still
# installs exactly the locked versions and checks their integrity hashes; --no-save leaves it as is.
log "npm install --omit=dev (locked versions) in $HERE"
if ! out="$(cd "$HERE" && npm install --omit=dev --no-save --no-audit --no-fund --loglevel=error 2>&1)"; then
  printf '%s\n' "$out" | grep -v 'Unknown user config' >&2
  log "npm install failed"; exit 1
fi
(cd "$HERE" && npm ls --omit=dev --all >/dev/null) || { log "node_modules does not match package-lock.json"; exit 1; }
test -f "$HERE/node_modules/@duckdb/node-bindings-linux-x64/libduckdb.so" || { log "the linux-x64 DuckDB binding was not installed"; exit 1; }
log "docker build -t $IMAGE_TAG (BASE_IMAGE=$BASE_IMAGE)"
docker build --force-rm --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE_TAG" "$HERE"
log "built $IMAGE_TAG in $(( $(date +%s) - start ))s, $(docker image inspect -f '{{.Size}}' "$IMAGE_TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
