# shellcheck shell=bash
# Shared by the entrypoint and the helper commands of the homelab/postgres image.
# Installed as /usr/local/lib/homelab/common.sh. Never enable `set -x` here: secrets pass through.

HOMELAB_ETC="${HOMELAB_ETC:-/etc/homelab}"
HOMELAB_RUN="${HOMELAB_RUN:-/run/homelab}"
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
PG_HOME=/var/lib/postgresql
PG_SOCKET_DIR=/var/run/postgresql
TLS_DIR=/etc/ssl/homelab                 # installed copies of /etc/homelab/tls/*, owned by postgres
PGBR_CONF=/etc/pgbackrest/pgbackrest.conf
PGBR_REPO=/var/lib/pgbackrest
PGBR_CRONTAB=/etc/pgbackrest/crontab
PASSFILE="${PG_HOME}/.pgpass"
READY_FILE="${HOMELAB_RUN}/ready"
START_REQUEST_FILE="${HOMELAB_RUN}/start-requested"

log() { printf '%s homelab[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "${HOMELAB_ROLE:-?}" "$*" >&2; }
warn() { log "WARNING: $*"; }
die() { log "FATAL: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# Run a command as the postgres OS user (drops privileges when we are root). AS_POSTGRES is a plain
# command prefix, so `"${AS_POSTGRES[@]}" cmd &` makes $! the pid of cmd itself (setpriv and env exec),
# which is what signals must reach; a shell function in the background would be a subshell in between.
if [ "$(id -u)" = 0 ]; then
  AS_POSTGRES=(setpriv --reuid=postgres --regid=postgres --init-groups --inh-caps=-all
               env HOME="$PG_HOME" USER=postgres LOGNAME=postgres)
else
  AS_POSTGRES=()
fi
as_postgres() { "${AS_POSTGRES[@]}" "$@"; }

# install SRC DST OWNER GROUP MODE, atomically (temp file + rename in the same directory)
install_file() {
  local src="$1" dst="$2" owner="$3" group="$4" mode="$5" tmp
  tmp="$(dirname "$dst")/.$(basename "$dst").homelab-tmp"
  install -o "$owner" -g "$group" -m "$mode" "$src" "$tmp"
  mv -f "$tmp" "$dst"
}

# Is PGDATA a usable cluster, empty, or something else?
#   prints: cluster | empty | partial | foreign
pgdata_state() {
  [ -d "$PGDATA" ] || { echo empty; return; }
  if [ -f "$PGDATA/PG_VERSION" ]; then
    if [ -f "$PGDATA/global/pg_control" ]; then echo cluster; else echo partial; fi
    return
  fi
  if [ -z "$(find "$PGDATA" -mindepth 1 -maxdepth 1 -print -quit)" ]; then echo empty; else echo foreign; fi
}

ensure_runtime_dirs() {
  install -d -o root -g postgres -m 0750 "$HOMELAB_RUN"
  install -d -o postgres -g postgres -m 2775 "$PG_SOCKET_DIR"
  install -d -o postgres -g postgres -m 0750 /var/log/pgbackrest /var/spool/pgbackrest
  install -d -o root -g root -m 0755 /etc/pgbackrest /etc/pgbackrest/conf.d
  install -d -o postgres -g postgres -m 0755 "$PG_HOME"
}

# PGDATA (a volume) must belong to postgres with mode 0700 (or 0750, group access). Only touches what is
# wrong, so it is cheap on an existing cluster.
fix_pgdata_ownership() {
  mkdir -p "$PGDATA"
  if [ "$(stat -c %U "$PGDATA")" != postgres ] || [ "$(stat -c %G "$PGDATA")" != postgres ]; then
    chown postgres:postgres "$PGDATA"
  fi
  case "$(stat -c %a "$PGDATA")" in
    700|750) ;;
    *) chmod 0700 "$PGDATA" ;;
  esac
  find "$PGDATA" -xdev \( ! -user postgres -o ! -group postgres \) -exec chown -h postgres:postgres {} + 2>/dev/null || true
}

# /etc/homelab/tls/{ca.crt,node.crt,node.key} -> /etc/ssl/homelab/ (postgres-owned; key 0600 as both
# PostgreSQL and pgBackRest want).
install_tls() {
  local src="$HOMELAB_ETC/tls"
  [ -d "$src" ] || { log "no $src: TLS material not installed"; return 0; }
  install -d -o postgres -g postgres -m 0750 "$TLS_DIR"
  local f
  for f in ca.crt node.crt; do
    [ -f "$src/$f" ] && install_file "$src/$f" "$TLS_DIR/$f" postgres postgres 0644
  done
  [ -f "$src/node.key" ] && install_file "$src/node.key" "$TLS_DIR/node.key" postgres postgres 0600
  log "TLS material installed in $TLS_DIR ($(cd "$TLS_DIR" && ls | tr '\n' ' '))"
}

install_pgbackrest_conf() {
  if [ -f "$HOMELAB_ETC/pgbackrest.conf" ]; then
    install_file "$HOMELAB_ETC/pgbackrest.conf" "$PGBR_CONF" root postgres 0640
    log "installed $PGBR_CONF"
  else
    log "no $HOMELAB_ETC/pgbackrest.conf: pgBackRest not configured"
  fi
}

# repo2 (ADR 0013): /etc/homelab/repo2/sftp.key (repository host only) -> the SFTP login key pgBackRest
# reads (postgres-owned 0600), /etc/homelab/repo2/cipher.conf (repo2-cipher-pass; every host that reads or
# writes repo2) -> /etc/pgbackrest/conf.d/, which pgBackRest merges into pgbackrest.conf (config-include-path).
install_repo2_secrets() {
  local src="$HOMELAB_ETC/repo2"
  if [ -f "$src/sftp.key" ]; then
    install -d -o postgres -g postgres -m 0750 "$TLS_DIR"
    install_file "$src/sftp.key" "$TLS_DIR/repo2-sftp.key" postgres postgres 0600
  fi
  if [ -f "$src/cipher.conf" ]; then
    install_file "$src/cipher.conf" /etc/pgbackrest/conf.d/repo2-cipher.conf root postgres 0640
    log "repo2: SFTP key and cipher passphrase installed"
  else
    rm -f /etc/pgbackrest/conf.d/repo2-cipher.conf
  fi
}

# ~postgres/.pgpass with one line per /etc/homelab/secrets/<role>.password ("*:*:*:<role>:<password>"),
# used by outgoing connections of the postgres OS user (replication, pg_rewind, drills).
install_passfile() {
  local dir="$HOMELAB_ETC/secrets" f role pw tmp
  [ -d "$dir" ] || return 0
  tmp="$(mktemp "$PG_HOME/.pgpass.XXXXXX")"
  chmod 0600 "$tmp"
  for f in "$dir"/*.password; do
    [ -f "$f" ] || continue
    role="$(basename "$f" .password)"
    pw="$(cat "$f")"
    pw="${pw%$'\r'}"
    [ -n "$pw" ] || { warn "secret file for role '$role' is empty, skipped"; continue; }
    # .pgpass escaping: backslash and colon
    pw="${pw//\\/\\\\}"; pw="${pw//:/\\:}"
    printf '*:*:*:%s:%s\n' "$role" "$pw" >>"$tmp"
  done
  unset pw
  chown postgres:postgres "$tmp"
  mv -f "$tmp" "$PASSFILE"
}

# /etc/homelab/postgresql.conf -> $PGDATA/postgresql.conf, /etc/homelab/pg_hba.conf -> $PGDATA/pg_hba.conf.
# Absent files leave what PGDATA already has (e.g. the copy that came with a restored backup).
install_pgdata_config() {
  if [ -f "$HOMELAB_ETC/postgresql.conf" ]; then
    if grep -Eq '^[[:space:]]*(data_directory|hba_file|ident_file|external_pid_file)[[:space:]]*=' "$HOMELAB_ETC/postgresql.conf"; then
      die "$HOMELAB_ETC/postgresql.conf must not set data_directory/hba_file/ident_file/external_pid_file"
    fi
    install_file "$HOMELAB_ETC/postgresql.conf" "$PGDATA/postgresql.conf" postgres postgres 0600
    log "installed $PGDATA/postgresql.conf"
  else
    warn "no $HOMELAB_ETC/postgresql.conf: keeping $PGDATA/postgresql.conf as it is"
  fi
  if [ -f "$HOMELAB_ETC/pg_hba.conf" ]; then
    install_file "$HOMELAB_ETC/pg_hba.conf" "$PGDATA/pg_hba.conf" postgres postgres 0600
    log "installed $PGDATA/pg_hba.conf"
  else
    warn "no $HOMELAB_ETC/pg_hba.conf: keeping $PGDATA/pg_hba.conf as it is"
  fi
}

pgbackrest_server_configured() {
  [ -f "$PGBR_CONF" ] && grep -Eq '^[[:space:]]*tls-server-cert-file[[:space:]]*=' "$PGBR_CONF"
}

# Port of the running postmaster (line 4 of postmaster.pid), else 5432.
running_port() {
  local p=""
  [ -f "$PGDATA/postmaster.pid" ] && p="$(sed -n 4p "$PGDATA/postmaster.pid" 2>/dev/null || true)"
  echo "${p:-5432}"
}

# Status line of postmaster.pid (PG 10+): starting | stopping | ready | standby. Reading it costs no
# connection attempt, so polling it does not flood the log with "the database system is starting up".
postmaster_status() {
  [ -f "$PGDATA/postmaster.pid" ] || { echo none; return; }
  sed -n 8p "$PGDATA/postmaster.pid" 2>/dev/null | tr -d ' ' || echo none
}

# as postgres: peer auth would log a failed attempt for root
local_pg_isready() {
  as_postgres pg_isready -q -h "$PG_SOCKET_DIR" -p "$(running_port)" -U postgres -d postgres
}

valid_name() { [[ "$1" =~ ^[A-Za-z0-9._-]+$ ]]; }
