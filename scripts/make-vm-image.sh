#!/usr/bin/env bash
# Build the VM base image for the libvirt platform, offline (Debian mirror only): a bootable Debian trixie
# root filesystem made with debootstrap, with a kernel, systemd, openssh-server and the tier's packages
# (postgresql-17, pgbackrest, redis-server, openssl, ...) baked in, booted by DIRECT KERNEL BOOT (the kernel
# and initrd are extracted next to the disk; no bootloader inside the image).
#
# Baked in on purpose: nothing that must differ between clones.
#   - no PostgreSQL cluster (create_main_cluster = false before postgresql-17 is installed): every clone
#     would otherwise share one database system identifier;
#   - no SSH host keys (hlvm-ssh-keygen.service makes them at first boot, before ssh.service);
#   - an empty /etc/machine-id (systemd makes one at first boot); no hostname (systemd.hostname= on the
#     kernel command line); no root password and no authorized_keys (the key comes as the systemd
#     credential ssh.authorized_keys.root, from SMBIOS OEM strings: components/platform/libvirt/domain.ts);
#   - postgresql.service, redis-server.service and prometheus-node-exporter.service disabled: the platform runs the tier's own units.
#
# Output, cached under ${HOMELAB_CACHE_DIR:-~/.cache/homelab-data}/vm/<content-hash>/:
#   base.qcow2  vmlinuz  initrd.img  info
# and copied into ${HLVM_IMAGE_DIR:-/var/lib/libvirt/images}/hlvm-base-<content-hash>/ (qemu runs as
# libvirt-qemu and cannot read /root). The content hash covers this script, the suite, the architecture,
# the mirror, the package list and the disk size: same inputs -> a fast no-op (prints "cached").
# Prints timings and sizes on stderr and ONE JSON line on stdout:
#   {"hash":..,"dir":..,"base":..,"kernel":..,"initrd":..,"root":"/dev/vda","source":"debootstrap"}
#
# Usage: scripts/make-vm-image.sh [--refresh] [--print-hash]
# Env:
#   DEBIAN_MIRROR        mirror URL (default: the host's first /debian mirror, else http://deb.debian.org/debian)
#   HLVM_SUITE           Debian suite (default trixie: PostgreSQL 17, pgBackRest 2.55, systemd 257)
#   HLVM_ROOT_SIZE       root filesystem size (default 4G; the qcow2 only holds what is used)
#   HLVM_EXTRA_PACKAGES  more packages to bake in (space separated)
#   HLVM_IMAGE_DIR       where qemu reads images (default /var/lib/libvirt/images)
#   HOMELAB_CACHE_DIR    cache root (default ~/.cache/homelab-data)
#   HLVM_BASE_SOURCE     debootstrap (default) | cloud. `cloud` (needs internet; NOT tested here): download
#                        the official Debian cloud image (HLVM_CLOUD_IMAGE_URL, default trixie genericcloud
#                        amd64), check it against the SHA512SUMS next to it, and use it as base.qcow2. It
#                        boots with its own bootloader (no kernel/initrd: the JSON has "kernel":null) and
#                        has cloud-init but not the tier's packages: the platform installs those.
set -euo pipefail

log() { printf '[make-vm-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
size_of() { du -h --apparent-size "$1" | cut -f1; }
alloc_of() { du -h "$1" | cut -f1; }

REFRESH=0
PRINT_HASH=0
for arg in "$@"; do
  case "$arg" in
    --refresh) REFRESH=1 ;;
    --print-hash) PRINT_HASH=1 ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) die "unknown argument $arg (accepted: --refresh, --print-hash, --help)" ;;
  esac
done

SUITE="${HLVM_SUITE:-trixie}"
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
ROOT_SIZE="${HLVM_ROOT_SIZE:-4G}"
SOURCE="${HLVM_BASE_SOURCE:-debootstrap}"
IMAGE_DIR="${HLVM_IMAGE_DIR:-/var/lib/libvirt/images}"
CACHE_ROOT="${HOMELAB_CACHE_DIR:-${HOME}/.cache/homelab-data}/vm"
CLOUD_URL="${HLVM_CLOUD_IMAGE_URL:-https://cloud.debian.org/images/cloud/trixie/latest/debian-13-genericcloud-amd64.qcow2}"

detect_mirror() {
  {
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) print $i }'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }'
  } | sed 's:/*$::' | grep -E '/debian$' | head -n1
}
MIRROR="${DEBIAN_MIRROR:-$(detect_mirror || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

# What the VM needs to boot and be reached, then the tier (the same packages as the container images:
# components/postgres/image/Dockerfile, components/redis/image/Dockerfile).
BOOT_PACKAGES="linux-image-amd64 initramfs-tools systemd systemd-sysv udev dbus e2fsprogs openssh-server ca-certificates iproute2 procps less"
TIER_PACKAGES="postgresql-17 pgbackrest redis-server openssl prometheus-node-exporter"
PACKAGES="$BOOT_PACKAGES $TIER_PACKAGES ${HLVM_EXTRA_PACKAGES:-}"

case "$SOURCE" in
  debootstrap) HASH_INPUT="$(printf 'debootstrap\n%s\n%s\n%s\n%s\n%s\n' "$SUITE" "$ARCH" "$MIRROR" "$PACKAGES" "$ROOT_SIZE"; cat "$0")" ;;
  cloud) HASH_INPUT="$(printf 'cloud\n%s\n' "$CLOUD_URL"; cat "$0")" ;;
  *) die "HLVM_BASE_SOURCE=$SOURCE: accepted values are debootstrap, cloud" ;;
esac
HASH="$(printf '%s' "$HASH_INPUT" | sha256sum | cut -c1-16)"
if [ "$PRINT_HASH" = 1 ]; then echo "$HASH"; exit 0; fi

CACHE="$CACHE_ROOT/$HASH"
DEST="$IMAGE_DIR/hlvm-base-$HASH"

emit_json() {
  local kernel=null initrd=null
  if [ -f "$DEST/vmlinuz" ]; then kernel="\"$DEST/vmlinuz\""; initrd="\"$DEST/initrd.img\""; fi
  printf '{"hash":"%s","dir":"%s","base":"%s","kernel":%s,"initrd":%s,"root":"/dev/vda","source":"%s"}\n' \
    "$HASH" "$DEST" "$DEST/base.qcow2" "$kernel" "$initrd" "$SOURCE"
}

# Copy the cache into the directory qemu reads (world-readable; the base is a read-only backing file).
publish() {
  local t0; t0="$(now)"
  mkdir -p "$DEST"; chmod 0755 "$DEST"
  local f
  for f in base.qcow2 vmlinuz initrd.img info; do
    [ -f "$CACHE/$f" ] || continue
    if [ ! -f "$DEST/$f" ] || [ "$(stat -c %s "$CACHE/$f")" != "$(stat -c %s "$DEST/$f")" ]; then
      cp --reflink=auto "$CACHE/$f" "$DEST/$f.tmp" && mv -f "$DEST/$f.tmp" "$DEST/$f"
    fi
    chmod 0644 "$DEST/$f"
  done
  log "published to $DEST in $(elapsed "$t0")"
}

T_ALL="$(now)"
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
flock 9   # one build at a time; a second caller waits, then finds the cache

if [ "$REFRESH" = 0 ] && [ -f "$CACHE/info" ] && [ -f "$CACHE/base.qcow2" ]; then
  log "cached: $CACHE (base.qcow2 $(size_of "$CACHE/base.qcow2"))"
  publish
  log "ready in $(elapsed "$T_ALL")"
  emit_json
  exit 0
fi

[ "$(id -u)" = 0 ] || die "building the image needs root (debootstrap, chroot)"
command -v qemu-img >/dev/null || die "qemu-img not installed (apt-get install qemu-utils)"

if [ "$SOURCE" = cloud ]; then
  command -v curl >/dev/null || die "curl not installed"
  rm -rf "$CACHE"; mkdir -p "$CACHE"
  t0="$(now)"
  log "downloading $CLOUD_URL"
  curl -fL --retry 3 -o "$CACHE/base.qcow2.tmp" "$CLOUD_URL"
  want="$(curl -fsSL "${CLOUD_URL%/*}/SHA512SUMS" | awk -v f="${CLOUD_URL##*/}" '$2==f {print $1}')"
  [ -n "$want" ] || die "no checksum for ${CLOUD_URL##*/} in ${CLOUD_URL%/*}/SHA512SUMS"
  [ "$(sha512sum "$CACHE/base.qcow2.tmp" | cut -d' ' -f1)" = "$want" ] || die "checksum mismatch for $CLOUD_URL"
  mv "$CACHE/base.qcow2.tmp" "$CACHE/base.qcow2"
  printf 'source=cloud\nurl=%s\ncreated=%s\n' "$CLOUD_URL" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$CACHE/info"
  log "downloaded in $(elapsed "$t0"): base.qcow2 $(size_of "$CACHE/base.qcow2")"
  publish; emit_json; exit 0
fi

command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not installed (apt-get install e2fsprogs)"
[ -f "/usr/share/debootstrap/scripts/$SUITE" ] || die "this debootstrap does not know suite '$SUITE'"

WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/hlvm-image.XXXXXX")"
ROOT="$WORK/rootfs"
cleanup() {
  local m
  for m in dev/pts dev sys proc; do mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
keyring_opt=(); [ -f "$KEYRING" ] && keyring_opt=(--keyring="$KEYRING")

t0="$(now)"
log "$SUITE: debootstrap --variant=minbase from $MIRROR"
if ! debootstrap --variant=minbase --arch="$ARCH" "${keyring_opt[@]}" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -n 30 "$WORK/debootstrap.log" >&2
  [ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
  die "$SUITE: debootstrap failed"
fi
T_DEBOOTSTRAP="$(elapsed "$t0")"
log "$SUITE: debootstrap done in $T_DEBOOTSTRAP"

mount -t proc proc "$ROOT/proc"; mount -t sysfs sys "$ROOT/sys"
# A private /dev, never a bind of the host's: package scripts in the chroot (udev, systemd's tmpfiles) chgrp
# device nodes to the CHROOT's group ids, and on a bound /dev that re-owned the host's /dev/kvm to a gid
# that is no group on the host, so libvirt-qemu lost access and libvirt re-probed qemu on every virsh call.
mount -t tmpfs -o mode=0755,nosuid hlvm-dev "$ROOT/dev"
while read -r node major minor; do mknod -m 0666 "$ROOT/dev/$node" c "$major" "$minor"; done <<'DEVICES'
null 1 3
zero 1 5
full 1 7
random 1 8
urandom 1 9
tty 5 0
DEVICES
mkdir -m 0755 "$ROOT/dev/pts"; mkdir -m 1777 "$ROOT/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$ROOT/dev/pts"
ln -s pts/ptmx "$ROOT/dev/ptmx"; ln -s /proc/self/fd "$ROOT/dev/fd"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

# No service may start inside the chroot (invoke-rc.d asks policy-rc.d); removed before the image is made.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
rm -f "$ROOT/etc/apt/sources.list"
cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
mkdir -p "$ROOT/etc/dpkg/dpkg.cfg.d"
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/hlvm-slim" <<'EOF'
# homelab-data scripts/make-vm-image.sh: no docs, man pages or translations
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
# The initrd only needs to find a virtio disk: a small initrd boots faster under emulation.
mkdir -p "$ROOT/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=zstd\n' >"$ROOT/etc/initramfs-tools/conf.d/hlvm.conf"
printf 'virtio_pci\nvirtio_blk\nvirtio_net\ncrc32c_generic\next4\n' >>"$ROOT/etc/initramfs-tools/modules"

t0="$(now)"
in_root apt-get update -qq >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log" >&2; die "apt-get update in the chroot failed"; }
# postgresql-common first, so that postgresql-17's postinst creates no cluster.
in_root apt-get install -y -q --no-install-recommends postgresql-common >>"$WORK/apt.log" 2>&1 \
  || { tail -20 "$WORK/apt.log" >&2; die "installing postgresql-common failed"; }
sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' "$ROOT/etc/postgresql-common/createcluster.conf"
grep -q '^create_main_cluster = false' "$ROOT/etc/postgresql-common/createcluster.conf" || die "could not turn off create_main_cluster"
# systemd-networkd is its own package from trixie on; part of systemd before.
NET_PKG=""; in_root apt-cache show systemd-networkd >/dev/null 2>&1 && NET_PKG=systemd-networkd
# shellcheck disable=SC2086
in_root apt-get install -y -q --no-install-recommends $PACKAGES $NET_PKG zstd >>"$WORK/apt.log" 2>&1 \
  || { tail -30 "$WORK/apt.log" >&2; die "apt-get install failed (packages: $PACKAGES $NET_PKG)"; }
T_PACKAGES="$(elapsed "$t0")"
log "packages installed in $T_PACKAGES"

# --- first-boot identity and the guest's configuration -----------------------------------------------
# no cluster: also the directories a cluster would have left (there must be none: checked here)
[ -z "$(ls -A "$ROOT/etc/postgresql" 2>/dev/null)" ] || die "a PostgreSQL cluster was created in the image: $(ls "$ROOT/etc/postgresql")"
[ ! -e "$ROOT/var/lib/postgresql/17/main" ] || die "a PostgreSQL data directory was created in the image"
rm -f "$ROOT"/etc/ssh/ssh_host_*
cat >"$ROOT/etc/systemd/system/hlvm-ssh-keygen.service" <<'EOF'
[Unit]
Description=SSH host keys of this VM (made at first boot, never baked into the image)
Before=ssh.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/hlvm-ssh-keygen.service "$ROOT/etc/systemd/system/multi-user.target.wants/hlvm-ssh-keygen.service"
# the key is the only way in (ssh.authorized_keys.root credential -> /root/.ssh/authorized_keys by tmpfiles)
mkdir -p "$ROOT/etc/ssh/sshd_config.d"
printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n' >"$ROOT/etc/ssh/sshd_config.d/hlvm.conf"
# DHCP on the first Ethernet interface, from the libvirt network's dnsmasq
mkdir -p "$ROOT/etc/systemd/network"
printf '[Match]\nType=ether\n\n[Network]\nDHCP=ipv4\n\n[DHCPv4]\nUseHostname=no\n' >"$ROOT/etc/systemd/network/10-hlvm.network"
in_root systemctl enable systemd-networkd.service >/dev/null 2>&1 || die "systemd-networkd is missing"
in_root systemctl disable postgresql.service redis-server.service prometheus-node-exporter.service >/dev/null 2>&1 || true
in_root systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1 || true
printf 'LABEL=hlvm-root / ext4 errors=remount-ro 0 1\n' >"$ROOT/etc/fstab"
: >"$ROOT/etc/machine-id"; rm -f "$ROOT/var/lib/dbus/machine-id"
rm -f "$ROOT/etc/hostname" "$ROOT/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
passwd -R "$ROOT" -l root >/dev/null 2>&1 || in_root passwd -l root >/dev/null

# --- kernel, initrd, then the disk -------------------------------------------------------------------
KERNEL="$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n1)"
INITRD="$(find "$ROOT/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n1)"
[ -n "$KERNEL" ] && [ -n "$INITRD" ] || die "no kernel/initrd under /boot in the image"
KVER="${KERNEL##*/vmlinuz-}"
PG_VERSION="$(in_root dpkg-query -W -f '${Version}' postgresql-17)"
PGBR_VERSION="$(in_root dpkg-query -W -f '${Version}' pgbackrest)"
REDIS_VERSION="$(in_root dpkg-query -W -f '${Version}' redis-server)"
SYSTEMD_VERSION="$(in_root dpkg-query -W -f '${Version}' systemd)"

rm -f "$ROOT/usr/sbin/policy-rc.d"
in_root apt-get clean
for m in dev/pts dev sys proc; do umount -l "$ROOT/$m"; done
rm -rf "$ROOT/var/lib/apt/lists/"* "$ROOT/var/cache/apt/"*.bin "$ROOT/var/log/"*.log "$ROOT/var/log/apt/"* \
       "$ROOT/tmp/"* "$ROOT/var/tmp/"* "$ROOT/debootstrap"

t0="$(now)"
rm -rf "$CACHE"; mkdir -p "$CACHE.tmp"
cp "$KERNEL" "$CACHE.tmp/vmlinuz"; cp "$INITRD" "$CACHE.tmp/initrd.img"
truncate -s "$ROOT_SIZE" "$WORK/root.raw"
mkfs.ext4 -q -L hlvm-root -d "$ROOT" "$WORK/root.raw" || die "mkfs.ext4 -d failed"
qemu-img convert -q -f raw -O qcow2 "$WORK/root.raw" "$CACHE.tmp/base.qcow2"
T_DISK="$(elapsed "$t0")"
cat >"$CACHE.tmp/info" <<EOF
source=debootstrap
suite=$SUITE
arch=$ARCH
mirror=$MIRROR
kernel=$KVER
postgresql-17=$PG_VERSION
pgbackrest=$PGBR_VERSION
redis-server=$REDIS_VERSION
systemd=$SYSTEMD_VERSION
root_size=$ROOT_SIZE
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
time_debootstrap=$T_DEBOOTSTRAP
time_packages=$T_PACKAGES
time_disk=$T_DISK
EOF
mv "$CACHE.tmp" "$CACHE"
log "disk made in $T_DISK: base.qcow2 $(alloc_of "$CACHE/base.qcow2") (root fs $ROOT_SIZE), vmlinuz $(size_of "$CACHE/vmlinuz"), initrd.img $(size_of "$CACHE/initrd.img")"
log "kernel $KVER, postgresql-17 $PG_VERSION, pgbackrest $PGBR_VERSION, redis-server $REDIS_VERSION, systemd $SYSTEMD_VERSION"
publish
log "built in $(elapsed "$T_ALL") (cache $CACHE)"
emit_json
