#!/usr/bin/env bash
# Build every homelab-data image on the local (or DOCKER_HOST) engine:
#   homelab/postgres:17  components/postgres/image  (BASE_IMAGE debian:trixie-slim)
#   homelab/redis:7      components/redis/image     (BASE_IMAGE debian:bookworm-slim)
#   homelab/duckdb:1     components/duckdb/image    (BASE_IMAGE debian:bookworm-slim), when its Dockerfile exists
#   homelab/sftp:1       components/pgbackrest/sftp-image (BASE_IMAGE debian:bookworm-slim): repo2's stand-in NAS
#   homelab/monitoring:1 components/monitoring/image (BASE_IMAGE debian:trixie-slim): Prometheus + exporters
#   homelab/postgres-ha:17 components/postgres/ha-image (BASE_IMAGE homelab/postgres:17): Patroni, etcd, HAProxy
#                        for postgres.ha: patroni (ADR 0017); built only when asked: postgres-ha
# The base images are made first when missing (scripts/make-base-images.sh: debootstrap + docker import).
# Re-runs are fast no-ops thanks to docker's layer cache. Prints timings and sizes.
#
# Usage: scripts/build-images.sh [--no-cache] [--pull-base] [postgres|redis|duckdb|sftp|monitoring|postgres-ha ...]
#   --no-cache    rebuild every layer (security updates from the Debian mirror)
#   --pull-base   use registry base images instead (docker pull debian:*-slim) when a registry is reachable
# Env: TRIXIE_BASE / BOOKWORM_BASE override the base image names; HOMELAB_IMAGE_NAMESPACE (default homelab)
#      tags the images <namespace>/postgres:17 ... (components/plan.ts IMAGES reads the same variable).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TRIXIE_BASE="${TRIXIE_BASE:-debian:trixie-slim}"
BOOKWORM_BASE="${BOOKWORM_BASE:-debian:bookworm-slim}"
NS="${HOMELAB_IMAGE_NAMESPACE:-homelab}"

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
size_of() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }

NO_CACHE=()
PULL_BASE=0
WANT=()
for arg in "$@"; do
  case "$arg" in
    --no-cache) NO_CACHE=(--no-cache) ;;
    --pull-base) PULL_BASE=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    postgres|redis|duckdb|sftp|monitoring|postgres-ha) WANT+=("$arg") ;;
    *) die "unknown argument '$arg'" ;;
  esac
done
[ "${#WANT[@]}" -gt 0 ] || WANT=(postgres redis duckdb sftp monitoring)
wants() { local w; for w in "${WANT[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

docker info >/dev/null 2>&1 || die "docker engine not reachable (DOCKER_HOST=${DOCKER_HOST:-unset})"

T_ALL="$(now)"

# ------------------------------------------------------------------------------------------- base images
suites=()
if wants postgres || wants monitoring || wants postgres-ha; then suites+=(trixie); fi
if wants redis || wants duckdb || wants sftp; then suites+=(bookworm); fi
if [ "$PULL_BASE" = 1 ]; then
  for s in "${suites[@]}"; do
    b="debian:${s}-slim"
    t="$(now)"; docker pull -q "$b" >/dev/null || die "docker pull $b failed"; log "pulled $b in $(elapsed "$t")"
  done
elif [ "${#suites[@]}" -gt 0 ]; then
  # only the default names can be made by debootstrap; custom BASE names must already exist
  [ "$TRIXIE_BASE" = debian:trixie-slim ] || docker image inspect "$TRIXIE_BASE" >/dev/null 2>&1 || die "base image $TRIXIE_BASE not found"
  [ "$BOOKWORM_BASE" = debian:bookworm-slim ] || docker image inspect "$BOOKWORM_BASE" >/dev/null 2>&1 || die "base image $BOOKWORM_BASE not found"
  "$ROOT/scripts/make-base-images.sh" "${suites[@]}"
fi

# ------------------------------------------------------------------------------------------- images
SUMMARY=()
build() {  # build NAME TAG CONTEXT BASE
  local name="$1" tag="$2" ctx="$3" base="$4" t before after
  t="$(now)"
  before="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
  log "$name: docker build -t $tag (BASE_IMAGE=$base) $ctx"
  local out="${TMPDIR:-/tmp}/homelab-build-$name.$$.log"
  if ! docker build --force-rm "${NO_CACHE[@]}" --build-arg "BASE_IMAGE=$base" -t "$tag" "$ctx" >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    rm -f "$out"
    die "$name: docker build failed (last 40 lines above)"
  fi
  rm -f "$out"
  after="$(docker image inspect -f '{{.Id}}' "$tag")"
  local what="built"
  [ "$before" != "$after" ] || what="up to date"
  log "$name: $tag $what in $(elapsed "$t") ($(size_of "$tag"), ${after:7:12})"
  SUMMARY+=("$(printf '%-20s %-11s %8s  %s' "$tag" "$what" "$(elapsed "$t")" "$(size_of "$tag")")")
}

if wants postgres; then
  build postgres "$NS/postgres:17" "$ROOT/components/postgres/image" "$TRIXIE_BASE"
fi
if wants postgres-ha; then
  docker image inspect "$NS/postgres:17" >/dev/null 2>&1 || build postgres "$NS/postgres:17" "$ROOT/components/postgres/image" "$TRIXIE_BASE"
  build postgres-ha "$NS/postgres-ha:17" "$ROOT/components/postgres/ha-image" "$NS/postgres:17"
fi
if wants redis; then
  build redis "$NS/redis:7" "$ROOT/components/redis/image" "$BOOKWORM_BASE"
fi
if wants sftp; then
  build sftp "$NS/sftp:1" "$ROOT/components/pgbackrest/sftp-image" "$BOOKWORM_BASE"
fi
if wants monitoring; then
  build monitoring "$NS/monitoring:1" "$ROOT/components/monitoring/image" "$TRIXIE_BASE"
fi
if wants duckdb; then
  DDIR="$ROOT/components/duckdb/image"
  if [ ! -f "$DDIR/Dockerfile" ]; then
    log "duckdb: no $DDIR/Dockerfile: skipped"
  elif [ -f "$DDIR/node_modules/@duckdb/node-api/package.json" ] || [ ! -x "$DDIR/build.sh" ]; then
    # node_modules already installed in the context (or no build.sh): plain docker build, cache-friendly
    build duckdb "$NS/duckdb:1" "$DDIR" "$BOOKWORM_BASE"
  else
    # the DuckDB image wants node_modules in its context: its own build.sh installs them first
    t="$(now)"
    log "duckdb: no node_modules in the context: delegating to components/duckdb/image/build.sh"
    BASE_IMAGE="$BOOKWORM_BASE" IMAGE_TAG="$NS/duckdb:1" "$DDIR/build.sh" || die "duckdb: build.sh failed"
    SUMMARY+=("$(printf '%-20s %-11s %8s  %s' "$NS/duckdb:1" "built" "$(elapsed "$t")" "$(size_of "$NS/duckdb:1")")")
  fi
fi

log "done in $(elapsed "$T_ALL")"
for line in "${SUMMARY[@]}"; do printf '  %s\n' "$line" >&2; done
