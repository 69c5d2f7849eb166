#!/usr/bin/env bash
# homelab/sftp entrypoint (PID 1): install the stack's host key and pgBackRest's public key from
# /etc/homelab/ssh/ (placed at create time: host_key 0600, a Pulumi secret; authorized_keys), give the
# repository volume to the SFTP user, then run sshd in the foreground, logging to stderr (docker logs).
# Never `set -x`: the host key passes through here.
set -Eeuo pipefail
log() { printf '%s homelab[sftp]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

if [ "$#" -gt 0 ]; then exec "$@"; fi

SRC=/etc/homelab/ssh
USER_NAME=pgbackrest
REPO_DIR="${HOMELAB_SFTP_PATH:-/srv/pgbackrest}"
[ -s "$SRC/host_key" ] || die "no $SRC/host_key: the stack places its SFTP host key there"
[ -s "$SRC/authorized_keys" ] || die "no $SRC/authorized_keys: the stack places pgBackRest's public key there"
case "$REPO_DIR" in /*) ;; *) die "HOMELAB_SFTP_PATH must be absolute (got '$REPO_DIR')" ;; esac

install -o root -g root -m 0600 "$SRC/host_key" /etc/ssh/homelab_host_key
install -o root -g root -m 0644 "$SRC/authorized_keys" "/etc/ssh/authorized_keys/$USER_NAME"
install -d -o "$USER_NAME" -g "$USER_NAME" -m 0750 "$REPO_DIR"
if [ "$(stat -c %U "$REPO_DIR")" != "$USER_NAME" ]; then chown "$USER_NAME:$USER_NAME" "$REPO_DIR"; fi
find "$REPO_DIR" -xdev ! -user "$USER_NAME" -exec chown -h "$USER_NAME:$USER_NAME" {} + 2>/dev/null || true
install -d -m 0755 /run/sshd
/usr/sbin/sshd -t || die "sshd -t: the configuration or host key is not valid"
log "sshd: SFTP only, user $USER_NAME, repository $REPO_DIR ($(ssh-keygen -lf /etc/ssh/homelab_host_key 2>/dev/null | awk '{print $2, $4}'))"
exec /usr/sbin/sshd -D -e
