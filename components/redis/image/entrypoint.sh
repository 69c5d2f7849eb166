#!/usr/bin/env bash
# homelab/redis entrypoint. Root part: install /etc/homelab/redis.conf and /etc/homelab/users.acl with the
# right owner/mode, fix the data volume's ownership; then exec redis-server as the redis user, so Redis
# itself is PID 1 and handles SIGTERM (final AOF fsync / RDB save, exit 0).
# Enforced on the command line (they win over redis.conf): daemonize no, supervised no, logfile "" (stdout
# -> docker logs), dir /var/lib/redis, aclfile /etc/redis/users.acl (when /etc/homelab/users.acl exists).
# Other /etc/homelab/*.conf files go to /etc/redis/ (redis:redis 0600) for `include /etc/redis/<name>.conf`.
# Never `set -x`: secrets pass through here.
set -Eeuo pipefail

ETC=/etc/homelab
DATA=/var/lib/redis
CONF=/etc/redis/redis.conf
ACL=/etc/redis/users.acl
TLS_DIR=/etc/redis/tls

log() { printf '%s homelab[redis]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

if [ "$#" -gt 0 ]; then exec "$@"; fi
[ "$(id -u)" = 0 ] || die "the entrypoint must start as root (it fixes ownership, then drops to redis)"

install_file() {  # SRC DST OWNER GROUP MODE (atomic)
  local tmp
  tmp="$(dirname "$2")/.$(basename "$2").homelab-tmp"
  install -o "$3" -g "$4" -m "$5" "$1" "$tmp"
  mv -f "$tmp" "$2"
}

install -d -o redis -g redis -m 2770 /etc/redis
# secrets are for root (the healthcheck) only; tighten when we can (read-only mounts: leave them)
if [ -d "$ETC/secrets" ]; then
  chmod 0700 "$ETC/secrets" 2>/dev/null || true
  find "$ETC/secrets" -type f -exec chmod 0600 {} + 2>/dev/null || true
fi

[ -f "$ETC/redis.conf" ] || die "$ETC/redis.conf is missing"
if grep -Eq '^[[:space:]]*(include|rename-command)[[:space:]]' "$ETC/redis.conf"; then
  log "note: redis.conf uses include/rename-command; make sure the paths/commands exist in the container"
fi
# 0600: a replica's redis.conf carries masterauth
install_file "$ETC/redis.conf" "$CONF" redis redis 0600
log "installed $CONF"
# other /etc/homelab/*.conf (e.g. a masterauth line to `include`) -> /etc/redis/<name>, readable by redis
for f in "$ETC"/*.conf; do
  [ -f "$f" ] && [ "$f" != "$ETC/redis.conf" ] || continue
  install_file "$f" "/etc/redis/$(basename "$f")" redis redis 0600
  log "installed /etc/redis/$(basename "$f")"
done

args=("$CONF" --daemonize no --supervised no --logfile "" --dir "$DATA")
if [ -f "$ETC/users.acl" ]; then
  install_file "$ETC/users.acl" "$ACL" redis redis 0600      # writable by redis: ACL SAVE
  args+=(--aclfile "$ACL")
  log "installed $ACL"
else
  log "WARNING: no $ETC/users.acl: access control is whatever redis.conf says"
fi

if [ -d "$ETC/tls" ]; then
  install -d -o redis -g redis -m 0750 "$TLS_DIR"
  for f in ca.crt node.crt; do [ -f "$ETC/tls/$f" ] && install_file "$ETC/tls/$f" "$TLS_DIR/$f" redis redis 0644; done
  [ -f "$ETC/tls/node.key" ] && install_file "$ETC/tls/node.key" "$TLS_DIR/node.key" redis redis 0600
  log "TLS material installed in $TLS_DIR"
fi

install -d -o redis -g redis -m 0750 "$DATA"
if [ "$(stat -c %U:%G "$DATA")" != redis:redis ]; then chown redis:redis "$DATA"; fi
find "$DATA" -xdev \( ! -user redis -o ! -group redis \) -exec chown -h redis:redis {} + 2>/dev/null || true

log "starting $(redis-server --version | awk '{print $3}') as redis"
exec setpriv --reuid=redis --regid=redis --init-groups --inh-caps=-all env HOME="$DATA" USER=redis \
  redis-server "${args[@]}"
