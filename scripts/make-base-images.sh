#!/usr/bin/env bash
# Make the Debian base images (debian:trixie-slim, debian:bookworm-slim) locally, without a container
# registry: `debootstrap --variant=minbase` from the Debian mirror, slimmed like the official -slim images,
# then `docker import`.
#
# Idempotent:
#   - an image already present in the engine is left alone (pulled, imported earlier, whatever);
#   - the rootfs tarball is cached under ${HOMELAB_CACHE_DIR:-~/.cache/homelab-data}/debootstrap/ and
#     reused when present (it is a plain snapshot of the distribution: safe to cache; apt-get update in
#     the Dockerfiles brings the package lists up to date anyway).
#
# Usage: scripts/make-base-images.sh [--refresh] [suite ...]      (default suites: trixie bookworm)
#   --refresh        rebuild the cached tarball and re-import, even if the image exists
# Env:
#   DEBIAN_MIRROR            mirror URL (default: the first Debian mirror in the host's apt sources,
#                            else http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR   security mirror URL (default: from host sources, else
#                            http://deb.debian.org/debian-security)
#   HOMELAB_CACHE_DIR        cache root (default ~/.cache/homelab-data)
#   BASE_IMAGE_REPO          repository part of the image names (default debian -> debian:<suite>-slim)
set -euo pipefail

log() { printf '[make-base-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

REFRESH=0
SUITES=()
for arg in "$@"; do
  case "$arg" in
    --refresh) REFRESH=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) die "unknown option $arg" ;;
    *) SUITES+=("$arg") ;;
  esac
done
[ "${#SUITES[@]}" -gt 0 ] || SUITES=(trixie bookworm)

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "docker engine not reachable (is dockerd running? DOCKER_HOST=${DOCKER_HOST:-unset})"

CACHE_DIR="${HOMELAB_CACHE_DIR:-${HOME}/.cache/homelab-data}/debootstrap"
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"

# Read the mirror the host itself uses (deb822 .sources files and one-line .list files).
host_uris() {
  {
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) print $i }'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }'
  } | sed 's:/*$::'
}
detect_mirror() {
  host_uris | grep -E '/debian$' | head -n1
}
detect_security_mirror() {
  host_uris | grep -E '/debian-security$' | head -n1
}
MIRROR="${DEBIAN_MIRROR:-$(detect_mirror || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SEC_MIRROR="${DEBIAN_SECURITY_MIRROR:-$(detect_security_mirror || true)}"
SEC_MIRROR="${SEC_MIRROR:-http://deb.debian.org/debian-security}"

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

build_rootfs_tarball() {
  local suite="$1" tarball="$2"
  command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  [ -f "/usr/share/debootstrap/scripts/${suite}" ] || die "this debootstrap does not know suite '${suite}'"
  local keyring_opt=()
  [ -f "$KEYRING" ] && keyring_opt=(--keyring="$KEYRING")

  local work
  work="$(mktemp -d "${TMPDIR:-/var/tmp}/homelab-debootstrap-${suite}.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  local root="$work/rootfs"

  local t0; t0="$(now)"
  log "${suite}: debootstrap --variant=minbase from ${MIRROR} (takes a minute or two)"
  if ! debootstrap --variant=minbase --arch="$ARCH" "${keyring_opt[@]}" \
        "$suite" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
    die "${suite}: debootstrap failed"
  fi
  log "${suite}: debootstrap done in $(elapsed "$t0")"

  # --- make it look like the official -slim image -------------------------------------------------
  # apt sources: suite, suite-updates, suite-security (deb822, like the official images)
  rm -f "$root/etc/apt/sources.list"
  mkdir -p "$root/etc/apt/sources.list.d"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${MIRROR}
Suites: ${suite} ${suite}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${SEC_MIRROR}
Suites: ${suite}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # dpkg: never install docs, man pages, translations (what "slim" means)
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d" "$root/etc/apt/apt.conf.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# Made by homelab-data scripts/make-base-images.sh (same idea as the official -slim images)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-gzip-indexes" <<'EOF'
Acquire::GzipIndexes "true";
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests" <<'EOF'
Apt::AutoRemove::SuggestsImportant "false";
EOF
  # remove what the excludes would not have installed, plus caches and logs
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$root/usr/share/groff/"* "$root/usr/share/info/"* "$root/usr/share/linda/"* \
         "$root/usr/share/lintian/"* "$root/usr/share/man/"*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/apt/archives/"*.deb \
         "$root/var/log/"*.log "$root/var/log/apt/"* "$root/debootstrap" "$root/tmp/"* "$root/var/tmp/"*
  : >"$root/etc/machine-id"
  rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
  [ -f "$root/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n' >"$root/etc/hosts"

  mkdir -p "$(dirname "$tarball")"
  local t1; t1="$(now)"
  tar --numeric-owner --xattrs -C "$root" -czf "${tarball}.tmp" .
  mv -f "${tarball}.tmp" "$tarball"
  printf 'suite=%s\narch=%s\nmirror=%s\nsecurity_mirror=%s\ncreated=%s\n' \
    "$suite" "$ARCH" "$MIRROR" "$SEC_MIRROR" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"${tarball%.tar.gz}.info"
  log "${suite}: cached rootfs $(du -h "$tarball" | cut -f1) at ${tarball} (tar $(elapsed "$t1"))"
}

import_tarball() {
  local suite="$1" tarball="$2" image="$3"
  local t0; t0="$(now)"
  local created; created="$(sed -n 's/^created=//p' "${tarball%.tar.gz}.info" 2>/dev/null || true)"
  docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL org.homelab-data.base.suite=${suite} org.homelab-data.base.created=${created:-unknown} org.homelab-data.base.source=debootstrap-minbase" \
    --message "debootstrap --variant=minbase ${suite} (homelab-data make-base-images.sh)" \
    "$tarball" "$image" >/dev/null
  log "${suite}: imported ${image} in $(elapsed "$t0")"
}

T_ALL="$(now)"
for suite in "${SUITES[@]}"; do
  image="${BASE_IMAGE_REPO:-debian}:${suite}-slim"
  tarball="${CACHE_DIR}/${suite}-minbase-${ARCH}.tar.gz"
  t0="$(now)"
  if [ "$REFRESH" = 0 ] && image_present "$image"; then
    log "${suite}: ${image} already present in the engine, nothing to do"
    continue
  fi
  if [ "$REFRESH" = 1 ] || [ ! -s "$tarball" ]; then
    build_rootfs_tarball "$suite" "$tarball"
  else
    log "${suite}: reusing cached rootfs ${tarball}"
  fi
  import_tarball "$suite" "$tarball" "$image"
  log "${suite}: ${image} ready in $(elapsed "$t0")"
done
log "all base images ready in $(elapsed "$T_ALL")"
