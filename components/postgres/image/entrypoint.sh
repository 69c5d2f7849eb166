#!/usr/bin/env bash
# homelab/postgres entrypoint (PID 1). One image, the role comes from HOMELAB_ROLE.
# The rule for database nodes (ADR 0011): the env says how an EMPTY data directory is bootstrapped, never
# which role the node has. On an existing cluster the data directory decides: standby.signal -> a standby
# (primary_conninfo as written in it), none -> a primary. So roles a failover moved survive any later
# re-creation of the container from the stack's plan (`pulumi up` after a config change).
#   database    what the stack's plan gives every PostgreSQL node: HOMELAB_BOOTSTRAP_FROM says how an empty
#               PGDATA is filled (auto | initdb | backup, as `primary` / `primary-from-backup` below; clone,
#               as `replica` below)
#   primary     initdb on an empty PGDATA, sync roles/databases from /etc/homelab/roles.json, run postgres
#   primary-from-backup  like primary, but an empty PGDATA is filled by `pgbackrest restore` (latest backup
#               + archived WAL to its end, then promotion) instead of initdb
#   replica     pg_basebackup from HOMELAB_PRIMARY_HOST on an empty PGDATA (physical slot), run as standby
#   repository  pgBackRest repository host: `pgbackrest server` (TLS) with the repo in /var/lib/pgbackrest,
#               plus /etc/homelab/crontab (scheduled backups) run by homelab-cron
#   restore     idle (for drills): `pgbackrest restore` into the empty PGDATA with docker exec, then
#               `homelab-start` makes this PID 1 start postgres on it (as `restored` would)
#   restored    run postgres on an existing PGDATA (restored or otherwise); never initialises
# Database roles also run `pgbackrest server` in the background so the repository host can reach them.
# Root part: install /etc/homelab/* with the right owners and modes; then postgres runs as `postgres`.
# SIGTERM/SIGINT -> postgres fast shutdown (HOMELAB_SHUTDOWN_MODE=smart|fast|immediate), clean exit.
# See README.md beside this file for the contract. Never `set -x`: secrets pass through here.
set -Eeuo pipefail
# shellcheck source=lib/common.sh
. /usr/local/lib/homelab/common.sh

if [ "$#" -gt 0 ]; then
  # `docker run IMAGE some command`: run it (handy for debugging: docker run --rm IMAGE bash)
  exec "$@"
fi

HOMELAB_ROLE="${HOMELAB_ROLE:-}"
HOMELAB_PRIMARY_PORT="${HOMELAB_PRIMARY_PORT:-5432}"
HOMELAB_REPLICATION_USER="${HOMELAB_REPLICATION_USER:-replicator}"
HOMELAB_PRIMARY_WAIT_SECONDS="${HOMELAB_PRIMARY_WAIT_SECONDS:-600}"
HOMELAB_SHUTDOWN_MODE="${HOMELAB_SHUTDOWN_MODE:-fast}"
HOMELAB_PGBACKREST_SERVER="${HOMELAB_PGBACKREST_SERVER:-auto}"   # auto | off
export HOMELAB_ROLE

is_root || die "the entrypoint must start as root (it fixes ownership, then drops to postgres)"

case "$HOMELAB_SHUTDOWN_MODE" in
  smart) PG_STOP_SIGNAL=TERM ;;
  fast) PG_STOP_SIGNAL=INT ;;
  immediate) PG_STOP_SIGNAL=QUIT ;;
  *) die "HOMELAB_SHUTDOWN_MODE must be smart, fast or immediate (got '$HOMELAB_SHUTDOWN_MODE')" ;;
esac

# ------------------------------------------------------------------------------------------ supervision
PG_PID=""
BR_PID=""
CRON_PID=""
NE_PID=""
STOPPING=0

on_signal() {
  local sig="$1"
  if [ "$STOPPING" = 0 ]; then
    log "received SIG$sig: stopping (postgres: $HOMELAB_SHUTDOWN_MODE shutdown)"
  fi
  STOPPING=1
  [ -n "$PG_PID" ] && kill "-$PG_STOP_SIGNAL" "$PG_PID" 2>/dev/null || true
  [ -n "$BR_PID" ] && kill -TERM "$BR_PID" 2>/dev/null || true
  [ -n "$CRON_PID" ] && kill -TERM "$CRON_PID" 2>/dev/null || true
  [ -n "$NE_PID" ] && kill -TERM "$NE_PID" 2>/dev/null || true
  rm -f "$READY_FILE"
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
trap 'on_signal QUIT' QUIT

start_pgbackrest_server() {
  if [ "$HOMELAB_PGBACKREST_SERVER" = off ]; then return 0; fi
  if ! pgbackrest_server_configured; then
    log "pgbackrest.conf has no tls-server-cert-file: not starting the pgBackRest TLS server"
    return 0
  fi
  "${AS_POSTGRES[@]}" /usr/bin/pgbackrest server &
  BR_PID=$!
  log "pgbackrest server started (pid $BR_PID)"
}

# repository host only: /etc/homelab/crontab (scheduled backups) run by homelab-cron as postgres
start_cron() {
  [ -f "$PGBR_CRONTAB" ] || return 0
  "${AS_POSTGRES[@]}" homelab-cron "$PGBR_CRONTAB" &
  CRON_PID=$!
  log "homelab-cron started for $PGBR_CRONTAB (pid $CRON_PID)"
}

# With HOMELAB_NODE_EXPORTER_PORT (the stack runs a monitoring node, ADR 0016): node_exporter with only the
# filesystem (data volumes filling) and textfile (homelab-pgbackrest-metrics on the repository host) collectors.
start_node_exporter() {
  [ -n "${HOMELAB_NODE_EXPORTER_PORT:-}" ] || return 0
  local dir="${HOMELAB_METRICS_DIR:-/var/lib/homelab/metrics}"
  install -d -o postgres -g postgres -m 0755 "$dir"
  # Go's collector at 50% heap growth on one thread, as the monitoring node's exporters (GO_RUNTIME_ENV in
  # components/monitoring/prometheus.ts, ADR 0016): ~2 MiB less resident.
  "${AS_POSTGRES[@]}" env GOGC=50 GOMAXPROCS=1 prometheus-node-exporter --web.listen-address=":$HOMELAB_NODE_EXPORTER_PORT" \
    --collector.disable-defaults --collector.filesystem --collector.textfile \
    --collector.textfile.directory="$dir" --log.level=warn &
  NE_PID=$!
  log "node_exporter started on :$HOMELAB_NODE_EXPORTER_PORT (pid $NE_PID)"
}

start_postgres() {
  "${AS_POSTGRES[@]}" postgres -D "$PGDATA" &
  PG_PID=$!
  log "postgres started (pid $PG_PID)"
}

# wait until postgres accepts local connections; false if it died or we are stopping
wait_postgres_ready() {
  while :; do
    [ "$STOPPING" = 0 ] || return 1
    kill -0 "$PG_PID" 2>/dev/null || return 1
    case "$(postmaster_status)" in
      ready|standby) if local_pg_isready; then return 0; fi ;;
    esac
    sleep 0.2
  done
}

# Wait for our children until the main one exits (postgres; on the repository, the pgBackRest server);
# restart a background helper (pgbackrest server, homelab-cron) that dies meanwhile. Exit with the main
# process' status (0 after a requested stop).
supervise() {
  local main_pid="$1" done_pid rc=0
  set +e
  while :; do
    done_pid=""
    wait -n -p done_pid
    rc=$?
    [ -n "${done_pid:-}" ] || continue         # interrupted by a trapped signal (wait unsets the var)
    if [ "$done_pid" = "$main_pid" ]; then
      break
    fi
    if [ "$done_pid" = "$BR_PID" ]; then
      BR_PID=""
      if [ "$STOPPING" = 0 ]; then
        warn "pgbackrest server exited (rc=$rc); restarting it in 2s"
        sleep 2
        start_pgbackrest_server
      fi
    elif [ "$done_pid" = "$NE_PID" ]; then
      NE_PID=""
      if [ "$STOPPING" = 0 ]; then
        warn "node_exporter exited (rc=$rc); restarting it in 10s"
        sleep 10
        start_node_exporter
      fi
    elif [ "$done_pid" = "$CRON_PID" ]; then
      CRON_PID=""
      if [ "$STOPPING" = 0 ]; then
        warn "homelab-cron exited (rc=$rc); restarting it in 10s"
        sleep 10
        start_cron
      fi
    fi
  done
  rm -f "$READY_FILE"
  local p
  for p in "$BR_PID" "$CRON_PID" "$NE_PID"; do
    [ -n "$p" ] && [ "$p" != "$main_pid" ] || continue
    kill -TERM "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [ "$STOPPING" = 1 ]; then
    log "stopped (main process rc=$rc)"
    # smart/fast shutdown exits 0; report a requested stop as clean unless postgres failed for real
    [ "$rc" -le 128 ] || rc=0
    exit "$rc"
  fi
  log "main process exited unexpectedly (rc=$rc)"
  [ "$rc" != 0 ] || rc=1
  exit "$rc"
}

# Run a command (not a shell function: see AS_POSTGRES) in the background and wait for it, so a SIGTERM
# to PID 1 is handled at once (the trap runs, the command is terminated). Returns the command's status.
run_interruptible() {
  local pid rc
  "$@" &
  pid=$!
  while :; do
    wait "$pid"
    rc=$?
    kill -0 "$pid" 2>/dev/null || break
    [ "$STOPPING" = 0 ] || kill -TERM "$pid" 2>/dev/null || true
  done
  return "$rc"
}

# ------------------------------------------------------------------------------------------ role steps
common_db_setup() {
  ensure_runtime_dirs
  rm -f "$READY_FILE"
  install_tls
  install_pgbackrest_conf
  install_repo2_secrets
  install_passfile
  fix_pgdata_ownership
}

initdb_primary() {
  local pwfile
  pwfile="$(mktemp "$HOMELAB_RUN/initdb-pw.XXXXXX")"
  # a superuser password that is never used over the network (local auth is peer); then thrown away
  head -c 32 /dev/urandom | base64 | tr -d '\n=+/' >"$pwfile"
  chown postgres:postgres "$pwfile"
  chmod 0600 "$pwfile"
  log "initialising a new cluster in $PGDATA (data checksums on)"
  # shellcheck disable=SC2086
  if ! as_postgres initdb -D "$PGDATA" --data-checksums --auth-local=peer --auth-host=scram-sha-256 \
        -U postgres --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
        --locale-provider=builtin --builtin-locale=C.UTF-8 ${HOMELAB_INITDB_ARGS:-} >&2; then
    rm -f "$pwfile"
    die "initdb failed"
  fi
  rm -f "$pwfile"
}

sync_roles() {
  if [ ! -f "$HOMELAB_ETC/roles.json" ]; then
    log "no $HOMELAB_ETC/roles.json: no roles to create"
    return 0
  fi
  local in_recovery waited=0
  while :; do
    in_recovery="$(as_postgres psql -X -Atq -h "$PG_SOCKET_DIR" -p "$(running_port)" -U postgres -d postgres \
                    -c 'select pg_is_in_recovery()')" || return 1
    [ "$in_recovery" = t ] || break
    if [ -f "$PGDATA/standby.signal" ] || [ ! -f "$PGDATA/recovery.signal" ]; then
      log "server is a standby: roles are not synced here"
      return 0
    fi
    # archive recovery (recovery.signal) that ends in promotion: sync once the server is writable
    [ "$waited" = 1 ] || log "archive recovery in progress: roles are synced after promotion"
    waited=1
    [ "$STOPPING" = 0 ] && kill -0 "$PG_PID" 2>/dev/null || return 1
    sleep 1
  done
  log "syncing roles and databases from $HOMELAB_ETC/roles.json"
  # the SQL (SCRAM verifiers, never plaintext) goes through a pipe, never to a log
  # synchronous_commit=local: in sync mode the standbys named in synchronous_standby_names cannot exist
  # yet (they bootstrap from this node once it is ready), so waiting for them here would deadlock.
  homelab-sync-roles "$HOMELAB_ETC/roles.json" \
    | as_postgres env PGOPTIONS="-c synchronous_commit=local" \
        psql -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$(running_port)" -U postgres -d postgres
}

# The stanza must exist before the first WAL segment is archived: otherwise archive-push fails, and
# PostgreSQL's archiver backs off for 60 s after three failures (pgarch.c), stalling archiving and
# `pgbackrest check` for a minute. stanza-create is idempotent and runs here, on the primary, against the
# repository host (repo1-host); the wait is bounded so a primary never stays down for its repository.
ensure_stanza() {
  [ -n "${HOMELAB_STANZA:-}" ] && [ -f "$PGBR_CONF" ] && grep -q '^repo1-host=' "$PGBR_CONF" || return 0
  # standbys never create stanzas (the primary does)
  [ "$(as_postgres psql -X -Atq -h "$PG_SOCKET_DIR" -p "$(running_port)" -U postgres -d postgres -c 'select pg_is_in_recovery()')" = f ] || return 0
  local deadline=$(( $(date +%s) + ${HOMELAB_STANZA_WAIT_SECONDS:-60} ))
  while :; do
    if as_postgres pgbackrest --stanza="$HOMELAB_STANZA" --log-level-console=warn stanza-create >/dev/null 2>&1; then
      log "pgBackRest stanza '$HOMELAB_STANZA' ready on the repository"
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "WARNING: could not create/verify stanza '$HOMELAB_STANZA' (repository unreachable?); WAL archiving fails until it exists"
      return 0
    fi
    sleep 1
  done
}

mark_ready() {
  : >"$READY_FILE"
  log "ready"
}

run_database() {
  # $1: sync-roles | no-sync
  install_pgdata_config
  start_pgbackrest_server
  start_postgres
  if wait_postgres_ready; then
    if [ "$1" = sync-roles ]; then
      if ! sync_roles; then
        log "role sync failed: stopping"
        on_signal TERM
        STOPPING=0   # report as a failure, not as a requested stop
      else
        ensure_stanza
        mark_ready
      fi
    else
      mark_ready
    fi
  fi
  supervise "$PG_PID"
}

# An existing cluster with standby.signal stays a standby whatever HOMELAB_ROLE says (the rule above).
run_existing_standby() {
  log "existing cluster in $PGDATA has standby.signal: running as a standby ($(grep -ho "host=[^ ']*" "$PGDATA/postgresql.auto.conf" 2>/dev/null | tail -1 || echo 'primary_conninfo unset'))"
  run_database no-sync
}

role_primary() {
  common_db_setup
  case "$(pgdata_state)" in
    empty) bootstrap_primary ;;
    cluster)
      if [ -f "$PGDATA/standby.signal" ]; then run_existing_standby; return; fi
      log "existing cluster in $PGDATA (PG_VERSION $(cat "$PGDATA/PG_VERSION")): not initialising" ;;
    partial) die "$PGDATA has PG_VERSION but no global/pg_control: refusing to touch it (inspect by hand)" ;;
    foreign) die "$PGDATA is not empty and holds no PostgreSQL cluster: refusing to initialise over it (a mount point with lost+found? use a subdirectory)" ;;
  esac
  run_database sync-roles
}

# What the repository holds for the stanza, asked once it answers (waits up to HOMELAB_REPO_WAIT_SECONDS):
# prints `backups` (at least one backup), `none` (no such stanza: nothing was ever archived there), or
# `empty:<code>:<message>` (the stanza exists but holds nothing to restore, pgbackrest info status code).
repository_state() {
  local stanza="$1" wait_s="${HOMELAB_REPO_WAIT_SECONDS:-600}" deadline attempt=0 out state
  [ -f "$PGBR_CONF" ] || die "no $PGBR_CONF: the primary needs pgbackrest.conf (repo1-host...) to ask the repository"
  deadline=$(( $(date +%s) + wait_s ))
  while :; do
    [ "$STOPPING" = 0 ] || exit 0
    attempt=$((attempt + 1))
    state=""
    if out="$(as_postgres /usr/bin/pgbackrest --stanza="$stanza" --output=json info 2>/dev/null)"; then
      state="$(printf '%s' "$out" | perl -MJSON::PP -e '
        my $j = eval { decode_json(join "", <STDIN>) } or exit 0;
        my $s = $j->[0] or exit 0;
        my $n = scalar @{ $s->{backup} // [] };
        my $c = $s->{status}{code} // -1;
        print $n > 0 ? "backups" : $c == 1 ? "none" : "empty:$c:" . ($s->{status}{message} // "");')"
    fi
    case "$state" in
      backups|none|empty:*) printf '%s' "$state"; return 0 ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || die "repository not usable after ${wait_s}s (pgbackrest info fails)"
    [ $((attempt % 5)) != 1 ] || log "repository not ready yet (attempt $attempt); retrying"
    run_interruptible sleep 3 || true
  done
}

# The way out when a stanza exists but a new primary cannot be made from it (printed by die).
stanza_refusal() {
  printf "stanza '%s' already exists in the repository (%s): never initdb over it (its archive would not match the new cluster). Either restore it (bootstrapFrom: auto or backup, once it holds a backup), or remove it to start an empty cluster: \`npx homelab down --purge-backups --yes\` (deletes every backup of the stack)" "$1" "$2"
}

# primary-from-backup: fill the empty PGDATA with the repository's latest backup; PostgreSQL then replays
# the archived WAL to its end and promotes itself (new timeline), and keeps archiving into the stanza.
restore_from_repository() {
  local stanza="${HOMELAB_STANZA:?HOMELAB_STANZA is required for primary-from-backup}" state
  log "bootstrapping from the latest backup of stanza '$stanza' (waiting up to ${HOMELAB_REPO_WAIT_SECONDS:-600}s for the repository)"
  state="$(repository_state "$stanza")"
  case "$state" in
    backups) ;;
    none) die "stanza '$stanza' has no backup to restore (no such stanza in the repository); use bootstrapFrom: auto or initdb" ;;
    *) die "stanza '$stanza' has no backup to restore (code${state#empty:}); use bootstrapFrom: auto or initdb" ;;
  esac
  log "pgbackrest restore (latest backup, then the archive to its end)"
  run_interruptible "${AS_POSTGRES[@]}" /usr/bin/pgbackrest --stanza="$stanza" restore >&2 \
    || { [ "$STOPPING" = 0 ] || exit 0; die "pgbackrest restore failed"; }
  log "restore done"
}

# primary on an EMPTY PGDATA: HOMELAB_BOOTSTRAP_FROM=auto restores the repository's backups when it holds
# the stanza and runs initdb when it does not; =initdb runs initdb, but never over an existing stanza.
bootstrap_primary() {
  local mode="${HOMELAB_BOOTSTRAP_FROM:-initdb}" stanza="${HOMELAB_STANZA:-}" state
  case "$mode" in auto|initdb) ;; *) die "HOMELAB_BOOTSTRAP_FROM must be auto or initdb (got '$mode')" ;; esac
  if [ -z "$stanza" ] || ! grep -q '^repo1-host=' "$PGBR_CONF" 2>/dev/null; then
    initdb_primary   # no repository configured: nothing to restore, nothing to collide with
    return
  fi
  state="$(repository_state "$stanza")"
  case "$mode:$state" in
    auto:backups)
      log "the repository holds backups of stanza '$stanza': restoring them (bootstrapFrom: auto)"
      restore_from_repository ;;
    *:none)
      log "no stanza '$stanza' in the repository yet: a new cluster"
      initdb_primary ;;
    initdb:backups) die "$(stanza_refusal "$stanza" "it holds backups; bootstrapFrom: initdb")" ;;
    *) die "$(stanza_refusal "$stanza" "code${state#empty:}")" ;;
  esac
}

replica_clone() {
  local host="${HOMELAB_PRIMARY_HOST:?HOMELAB_PRIMARY_HOST is required for a replica}"
  local port="$HOMELAB_PRIMARY_PORT" slot="${HOMELAB_REPLICATION_SLOT:-}" app="${HOMELAB_APPLICATION_NAME:-}"
  local user="$HOMELAB_REPLICATION_USER"
  valid_name "$host" || die "HOMELAB_PRIMARY_HOST '$host' is not a plain host name"
  [[ "$port" =~ ^[0-9]+$ ]] || die "HOMELAB_PRIMARY_PORT '$port' is not a number"
  [ -z "$slot" ] || [[ "$slot" =~ ^[a-z0-9_]{1,63}$ ]] || die "HOMELAB_REPLICATION_SLOT '$slot' must match [a-z0-9_]{1,63}"
  [ -z "$app" ] || valid_name "$app" || die "HOMELAB_APPLICATION_NAME '$app' must match [A-Za-z0-9._-]+"
  grep -q "^\*:\*:\*:${user}:" "$PASSFILE" 2>/dev/null \
    || die "no $HOMELAB_ETC/secrets/${user}.password: the replica cannot authenticate to the primary"

  local conninfo="host=$host port=$port user=$user passfile=$PASSFILE sslmode=prefer connect_timeout=5"
  [ -n "$app" ] && conninfo="$conninfo application_name=$app"
  local deadline=$(( $(date +%s) + HOMELAB_PRIMARY_WAIT_SECONDS )) attempt=0 slot_type create_opt
  log "cloning from $host:$port as $user (slot '${slot:-none}', waiting up to ${HOMELAB_PRIMARY_WAIT_SECONDS}s)"
  while :; do
    [ "$STOPPING" = 0 ] || exit 0
    attempt=$((attempt + 1))
    if pg_isready -q -h "$host" -p "$port" -t 3; then
      create_opt=()
      if [ -n "$slot" ]; then
        # (-R: standby.signal comes with the clone itself, so a crash right after it cannot leave a node that
        # would start as a primary; libpq leaves a passfile password out of the primary_conninfo it writes)
        # READ_REPLICATION_SLOT (PG 15+) on a physical replication connection: slot_type is empty when
        # the slot does not exist; then pg_basebackup creates it (-C).
        if slot_type="$(as_postgres psql -X -Atq -d "$conninfo replication=true dbname=replication" \
                          -c "READ_REPLICATION_SLOT $slot" 2>/dev/null)"; then
          slot_type="${slot_type%%|*}"
          if [ "$slot_type" = physical ]; then
            log "replication slot '$slot' exists on the primary: reusing it"
            create_opt=(-S "$slot")
          else
            log "replication slot '$slot' does not exist: pg_basebackup will create it"
            create_opt=(-S "$slot" -C)
          fi
        else
          create_opt=(UNREADY)
        fi
      fi
      if [ "${create_opt[0]:-}" != UNREADY ]; then
        if run_interruptible "${AS_POSTGRES[@]}" pg_basebackup -d "$conninfo" -D "$PGDATA" -X stream -c fast -R \
             --no-password "${create_opt[@]}" >&2; then
          log "base backup done (attempt $attempt)"
          break
        fi
        # pg_basebackup removes what it wrote on failure; make sure nothing half-made stays
        find "$PGDATA" -mindepth 1 -delete 2>/dev/null || true
        [ "$STOPPING" = 0 ] || exit 0
      fi
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      die "primary $host:$port not usable for a base backup after ${HOMELAB_PRIMARY_WAIT_SECONDS}s"
    fi
    [ $((attempt % 5)) != 1 ] || log "primary $host:$port not ready for a base backup yet (attempt $attempt); retrying"
    run_interruptible sleep 2 || true
  done
}

role_primary_from_backup() {
  common_db_setup
  case "$(pgdata_state)" in
    empty) restore_from_repository ;;
    cluster)
      if [ -f "$PGDATA/standby.signal" ]; then run_existing_standby; return; fi
      log "existing cluster in $PGDATA (PG_VERSION $(cat "$PGDATA/PG_VERSION")): not restoring" ;;
    partial) die "$PGDATA has PG_VERSION but no global/pg_control: refusing to touch it (inspect by hand)" ;;
    foreign) die "$PGDATA is not empty and holds no PostgreSQL cluster: refusing to restore over it" ;;
  esac
  run_database sync-roles
}

role_replica() {
  common_db_setup
  local cloned=0
  case "$(pgdata_state)" in
    partial)
      warn "$PGDATA has PG_VERSION but no global/pg_control: an interrupted clone; wiping it and cloning again"
      find "$PGDATA" -mindepth 1 -delete
      replica_clone
      cloned=1
      ;;
    empty) replica_clone; cloned=1 ;;
    cluster) log "existing cluster in $PGDATA: not cloning" ;;
    foreign) die "$PGDATA is not empty and holds no PostgreSQL cluster: refusing to clone over it" ;;
  esac
  if [ "$cloned" = 1 ]; then
    # a fresh clone must never start as a primary: standby.signal + primary_conninfo before anything else
    as_postgres homelab-configure-standby
  elif [ -f "$PGDATA/standby.signal" ]; then
    # the data directory decides (the rule above): primary_conninfo stays as written in it, since the
    # env's HOMELAB_PRIMARY_HOST names the primary the stack was built with, which a failover may have moved.
    # Re-point a standby with `homelab-configure-standby --host <primary>` (runbooks/postgres-failover.md).
    log "existing standby: keeping primary_conninfo from $PGDATA"
  else
    warn "no standby.signal in $PGDATA: this node was promoted; starting it as a primary"
  fi
  run_database no-sync
}

role_restored() {
  common_db_setup
  case "$(pgdata_state)" in
    cluster) ;;
    *) die "HOMELAB_ROLE=restored needs an existing cluster in $PGDATA (state: $(pgdata_state))" ;;
  esac
  run_database no-sync
}

role_restore() {
  common_db_setup
  if [ -e "$START_REQUEST_FILE" ]; then
    log "start was requested earlier (homelab-start): starting postgres"
    role_restored
    return
  fi
  log "idle: restore into $PGDATA with 'docker exec <ctr> pgbackrest --stanza=<stanza> restore ...', then 'docker exec <ctr> homelab-start'"
  mark_ready
  while [ "$STOPPING" = 0 ] && [ ! -e "$START_REQUEST_FILE" ]; do
    sleep 0.2 &
    wait $! 2>/dev/null || true
  done
  if [ "$STOPPING" = 1 ]; then
    log "stopped while idle"
    exit 0
  fi
  rm -f "$READY_FILE"
  log "start requested: starting postgres on the restored data directory"
  fix_pgdata_ownership
  role_restored
}

role_repository() {
  ensure_runtime_dirs
  rm -f "$READY_FILE"
  install_tls
  install_pgbackrest_conf
  install_repo2_secrets
  install -d -o postgres -g postgres -m 0750 "$PGBR_REPO"
  if [ "$(stat -c %U:%G "$PGBR_REPO")" != postgres:postgres ]; then chown postgres:postgres "$PGBR_REPO"; fi
  find "$PGBR_REPO" -xdev \( ! -user postgres -o ! -group postgres \) -exec chown -h postgres:postgres {} + 2>/dev/null || true
  pgbackrest_server_configured || die "$PGBR_CONF has no tls-server-cert-file: the repository host needs the TLS server"
  if [ -f "$HOMELAB_ETC/crontab" ]; then
    install_file "$HOMELAB_ETC/crontab" "$PGBR_CRONTAB" root postgres 0640
    as_postgres homelab-cron --check "$PGBR_CRONTAB" >/dev/null || die "$HOMELAB_ETC/crontab is not valid"
    log "installed $PGBR_CRONTAB"
  else
    rm -f "$PGBR_CRONTAB"
  fi
  start_pgbackrest_server
  local main="$BR_PID" i
  start_cron
  for i in $(seq 1 100); do
    [ "$STOPPING" = 0 ] || break
    kill -0 "$main" 2>/dev/null || break
    if homelab-health >/dev/null 2>&1; then
      mark_ready
      break
    fi
    sleep 0.2
  done
  # on the repository the server is the main process: when it exits, the container exits
  supervise "$main"
}

log "starting (image homelab/postgres, PostgreSQL $(postgres -V | awk '{print $3}'), $(/usr/bin/pgbackrest version))"
case "$HOMELAB_ROLE" in
  database|primary|primary-from-backup|replica|repository) start_node_exporter ;;
esac
case "$HOMELAB_ROLE" in
  database)
    case "${HOMELAB_BOOTSTRAP_FROM:-}" in
      auto|initdb) role_primary ;;
      backup) role_primary_from_backup ;;
      clone) role_replica ;;
      *) die "HOMELAB_ROLE=database needs HOMELAB_BOOTSTRAP_FROM=auto|initdb|backup|clone (got '${HOMELAB_BOOTSTRAP_FROM:-}')" ;;
    esac ;;
  primary) role_primary ;;
  primary-from-backup) role_primary_from_backup ;;
  replica) role_replica ;;
  repository) role_repository ;;
  restore) role_restore ;;
  restored) role_restored ;;
  "") die "HOMELAB_ROLE is not set (database | primary | primary-from-backup | replica | repository | restore | restored)" ;;
  *) die "unknown HOMELAB_ROLE '$HOMELAB_ROLE' (database | primary | primary-from-backup | replica | repository | restore | restored)" ;;
esac
