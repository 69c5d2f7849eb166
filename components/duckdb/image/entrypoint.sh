#!/bin/sh
# homelab/duckdb entrypoint. The service never runs as root; this script may, for one reason:
# the platform delivers /etc/homelab/* as a tar stream whose entries are root-owned (mode 0600 for
# secrets), so when started as root it hands the password file to the service user, makes sure the
# data volume belongs to it, then drops to uid/gid 10001 for good (setpriv, no new privileges) and
# execs the service, which becomes PID 1 and gets SIGTERM directly.
# Started as a non-root user (docker run --user 10001:10001, Kubernetes runAsUser), it execs the
# service as is: the files must then already be readable by that user.
# Never print the secret; never `set -x`.
set -eu

SERVICE_UID=10001
SERVICE_GID=10001
PASSWORD_FILE="${HOMELAB_SOURCE_PASSWORD_FILE:-/etc/homelab/secrets/source.password}"
DATA_DIR="${HOMELAB_DATA_DIR:-/var/lib/duckdb}"

if [ "$(id -u)" = 0 ]; then
  if [ -f "$PASSWORD_FILE" ]; then
    chown "$SERVICE_UID:$SERVICE_GID" "$PASSWORD_FILE"
    chmod 0400 "$PASSWORD_FILE"
  fi
  mkdir -p "$DATA_DIR"
  [ "$(stat -c %u "$DATA_DIR")" = "$SERVICE_UID" ] || chown "$SERVICE_UID:$SERVICE_GID" "$DATA_DIR"
  chmod 0750 "$DATA_DIR"
  exec setpriv --reuid="$SERVICE_UID" --regid="$SERVICE_GID" --clear-groups --no-new-privs -- "$@"
fi
exec "$@"
