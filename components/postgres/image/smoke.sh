#!/usr/bin/env bash
# Smoke test of homelab/postgres:17 on the local Docker engine, for real:
#   primary + streaming replica + pgBackRest repository host (TLS, self-signed CA made here) + a restore
#   node; writes, replication, SCRAM+TLS logins, stanza-create/check/backup/info, restore into an empty
#   volume, restart without re-init, no password in env/logs, clean SIGTERM shutdown, scheduled jobs on
#   the repository (homelab-cron), and a new primary bootstrapped from the repository (primary-from-backup).
# Everything it creates (containers, network, volumes, temp dir) is labelled with a run id and removed
# on exit, failure included.
# Usage: components/postgres/image/smoke.sh     (env: HOMELAB_PG_IMAGE, default homelab/postgres:17;
#        KEEP=1 keeps everything for inspection)
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
IMAGE="${HOMELAB_PG_IMAGE:-homelab/postgres:17}"
RUN="hlpg-$(date +%H%M%S)-$$"
NET="$RUN-net"
PG1="$RUN-pg1"; PG2="$RUN-pg2"; REPO="$RUN-repo"; RST="$RUN-restore"; PGFB="$RUN-pgfb"
NODES=("$PG1" "$PG2" "$REPO" "$RST" "$PGFB")
SLOT=replica_1
APP_NAME=pg2
STANZA=main
TMP="$(mktemp -d "${TMPDIR:-/tmp}/$RUN.XXXXXX")"
T0=$(date +%s.%N)
FAILED=1
PASSES=0

now() { date +%s.%N; }
ts() { awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%6.1fs", b - a }'; }
say() { printf '[smoke %s] %s\n' "$(ts)" "$*"; }
pass() { PASSES=$((PASSES + 1)); printf '[smoke %s] PASS %s\n' "$(ts)" "$*"; }
fail() { printf '[smoke %s] FAIL %s\n' "$(ts)" "$*" >&2; exit 1; }

cleanup() {
  local rc=$?
  set +e
  if [ "$FAILED" = 1 ]; then
    for c in "${NODES[@]}"; do
      if docker container inspect "$c" >/dev/null 2>&1; then
        echo "----- docker logs $c (last 60 lines) -----" >&2
        docker logs --tail 60 "$c" 2>&1 | sed 's/^/  | /' >&2
      fi
    done
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    say "KEEP=1: leaving containers/volumes/network of run $RUN and $TMP"
    return
  fi
  docker rm -f -v "${NODES[@]}" >/dev/null 2>&1
  docker volume ls -q --filter "label=homelab-smoke=$RUN" | xargs -r docker volume rm -f >/dev/null 2>&1
  docker network rm "$NET" >/dev/null 2>&1
  rm -rf "$TMP"
  if [ "$FAILED" = 1 ]; then say "cleaned up run $RUN after FAILURE (rc=$rc)"; else say "cleaned up run $RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

logs_have() {  # logs_have CONTAINER REGEX  (no `docker logs | grep -q`: SIGPIPE + pipefail)
  docker logs "$1" >"$TMP/logs.tmp" 2>&1
  grep -Eq -- "$2" "$TMP/logs.tmp"
}
logs_count() {
  docker logs "$1" >"$TMP/logs.tmp" 2>&1
  grep -Ec -- "$2" "$TMP/logs.tmp" || true
}

psql_on() {  # psql_on CONTAINER DB SQL  (as postgres over the local socket, peer auth)
  docker exec -u postgres "$1" psql -X -v ON_ERROR_STOP=1 -Atq -d "$2" -c "$3"
}

wait_healthy() {  # wait_healthy CONTAINER TIMEOUT
  local c="$1" timeout="$2" deadline state
  deadline=$(( $(date +%s) + timeout ))
  while :; do
    state="$(docker inspect -f '{{.State.Status}}' "$c" 2>/dev/null || echo missing)"
    [ "$state" = running ] || fail "$c is $state (expected running)"
    if docker exec "$c" homelab-health >/dev/null 2>&1; then return 0; fi
    [ "$(date +%s)" -lt "$deadline" ] || fail "$c not healthy after ${timeout}s: $(docker exec "$c" homelab-health 2>&1)"
    sleep 0.5
  done
}

wait_for() {  # wait_for TIMEOUT DESCRIPTION COMMAND...   (retries COMMAND until it succeeds)
  local timeout="$1" what="$2" deadline
  shift 2
  deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out after ${timeout}s waiting for: $what"
    sleep 0.5
  done
}

gen_password() {  # printable ASCII with the characters that break naive quoting: : ' " \ and a space
  printf '%s%s' "$(head -c 18 /dev/urandom | base64 | tr -d '\n/+=')" ":'\" \\x"
}

# --------------------------------------------------------------------------------------------- setup
docker image inspect "$IMAGE" >/dev/null 2>&1 || { say "$IMAGE missing: building it"; "$ROOT/scripts/build-images.sh"; }
say "run $RUN, image $IMAGE ($(docker image inspect -f '{{.Id}}' "$IMAGE" | cut -c8-19))"

docker network create --label "homelab-smoke=$RUN" "$NET" >/dev/null
for v in pg1 pg2 repo restore pgfb; do docker volume create --label "homelab-smoke=$RUN" "$RUN-$v" >/dev/null; done

# TLS: one CA, one certificate per node (CN = SAN = container/host name; serverAuth+clientAuth because each
# node is both a pgBackRest TLS server and a client). Made with the image's openssl, no host dependency.
mkdir -p "$TMP/tls"
docker run --rm --user "$(id -u):$(id -g)" -v "$TMP/tls:/out" -w /out "$IMAGE" bash -ec '
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
    -keyout ca.key -out ca.crt -subj "/CN=homelab-smoke-ca" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  for n in "$@"; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$n.key" -out "$n.csr" -subj "/CN=$n" 2>/dev/null
    printf "subjectAltName=DNS:%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n" "$n" >"$n.ext"
    openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -extfile "$n.ext" -out "$n.crt" 2>/dev/null
  done' certs "${NODES[@]}"
say "TLS CA and node certificates made"

APP_PW="$(gen_password)"; REPL_PW="$(gen_password)"; MON_PW="$(gen_password)"; RO_PW="$(gen_password)"
SU_PW="$(gen_password)"
ALL_PW=("$APP_PW" "$REPL_PW" "$MON_PW" "$RO_PW" "$SU_PW")
subst() {
  sed -e "s/@REPO_HOST@/$REPO/g; s/@REPO_CN@/$REPO/g; s/@PRIMARY_HOST@/$PG1/g; s/@PRIMARY_CN@/$PG1/g" \
      -e "s/@REPLICA_HOST@/$PG2/g; s/@REPLICA_CN@/$PG2/g; s/@RESTORE_CN@/$RST/g; s/@BOOTSTRAP_CN@/$PGFB/g" "$1"
}
# /etc/homelab/ for each node, as the Pulumi components deliver it (root-owned, modes don't matter)
for n in "${NODES[@]}"; do
  d="$TMP/etc-$n"
  mkdir -p "$d/tls" "$d/secrets"
  cp "$TMP/tls/ca.crt" "$d/tls/ca.crt"
  cp "$TMP/tls/$n.crt" "$d/tls/node.crt"
  cp "$TMP/tls/$n.key" "$d/tls/node.key"
  if [ "$n" = "$REPO" ]; then
    subst "$HERE/testdata/pgbackrest-repo.conf" >"$d/pgbackrest.conf"
    cp "$HERE/testdata/crontab" "$d/crontab"
  else
    subst "$HERE/testdata/pgbackrest-db.conf" >"$d/pgbackrest.conf"
    cp "$HERE/testdata/postgresql.conf" "$HERE/testdata/pg_hba.conf" "$d/"
    printf '%s' "$REPL_PW" >"$d/secrets/replicator.password"
  fi
  if [ "$n" = "$PG1" ] || [ "$n" = "$PGFB" ]; then
    cp "$HERE/testdata/roles.json" "$d/roles.json"
    printf '%s\n' "$APP_PW" >"$d/secrets/app.password"     # trailing newline: must be ignored
    printf '%s' "$MON_PW" >"$d/secrets/monitor.password"
    printf '%s' "$RO_PW" >"$d/secrets/analytics_ro.password"
    printf '%s' "$SU_PW" >"$d/secrets/postgres.password"
  fi
  chmod -R go-rwx "$d"
done

create_node() {  # create_node NAME ROLE VOLUME-MOUNT [extra docker args...]
  local n="$1" role="$2" mount="$3"
  shift 3
  docker create --name "$n" --hostname "$n" --network "$NET" --label "homelab-smoke=$RUN" \
    -e HOMELAB_ROLE="$role" -e HOMELAB_STANZA="$STANZA" -v "$mount" "$@" "$IMAGE" >/dev/null
  docker cp "$TMP/etc-$n/." "$n:/etc/homelab/"
}

# ----------------------------------------------------------------------------------------- primary
create_node "$PG1" primary "$RUN-pg1:/var/lib/postgresql/data"
docker start "$PG1" >/dev/null
wait_healthy "$PG1" 120
logs_have "$PG1" 'initialising a new cluster' || fail "primary did not initdb"
[ "$(psql_on "$PG1" postgres 'show data_checksums')" = on ] || fail "data checksums are off"
[ "$(psql_on "$PG1" postgres "select rolreplication from pg_roles where rolname='replicator'")" = t ] || fail "replicator role missing"
[ "$(psql_on "$PG1" postgres "select pg_get_userbyid(datdba) from pg_database where datname='app'")" = app ] || fail "database app not owned by app"
[ "$(psql_on "$PG1" postgres "select pg_has_role('monitor','pg_monitor','member')")" = t ] || fail "monitor not in pg_monitor"
[ "$(psql_on "$PG1" postgres "select count(*) from pg_authid where rolname in ('app','replicator','analytics_ro','monitor','postgres') and rolpassword like 'SCRAM-SHA-256\$4096:%'")" = 5 ] \
  || fail "not every role has a SCRAM verifier"
[ "$(psql_on "$PG1" postgres "select pg_has_role('analytics_ro','pg_read_all_data','member') and has_database_privilege('analytics_ro','app','connect')")" = t ] \
  || fail "analytics_ro is not a reader of app"
[ "$(psql_on "$PG1" postgres "select has_function_privilege('replicator','pg_read_binary_file(text,bigint,bigint,boolean)','execute') and has_function_privilege('replicator','pg_ls_dir(text,boolean,boolean)','execute')")" = t ] \
  || fail "replicator lacks the pg_rewind grants"
pass "primary initialised (checksums on); roles.json applied: owners, readonly, rewind grants, pg_monitor, SCRAM verifiers"

psql_on "$PG1" app "create table smoke(id int primary key, note text not null); insert into smoke select g, 'before-backup' from generate_series(1,100) g; alter table smoke owner to app"
pass "wrote 100 rows on the primary"

# ----------------------------------------------------------------------------------------- repository
# (started before the replica: its restore_command reaches the repository host)
create_node "$REPO" repository "$RUN-repo:/var/lib/pgbackrest"
docker start "$REPO" >/dev/null
wait_healthy "$REPO" 60
pass "repository host up (pgbackrest server-ping)"

# ----------------------------------------------------------------------------------------- replica
create_node "$PG2" replica "$RUN-pg2:/var/lib/postgresql/data" \
  -e HOMELAB_PRIMARY_HOST="$PG1" -e HOMELAB_PRIMARY_PORT=5432 \
  -e HOMELAB_REPLICATION_SLOT="$SLOT" -e HOMELAB_APPLICATION_NAME="$APP_NAME"
docker start "$PG2" >/dev/null
wait_healthy "$PG2" 180
[ "$(psql_on "$PG2" postgres 'select pg_is_in_recovery()')" = t ] || fail "replica is not in recovery"
wait_for 30 "pg_stat_replication shows $APP_NAME streaming" \
  bash -c "[ \"\$(docker exec -u postgres $PG1 psql -XAtq -c \"select application_name||'|'||state from pg_stat_replication\")\" = '$APP_NAME|streaming' ]"
[ "$(psql_on "$PG1" postgres "select slot_type||'|'||active from pg_replication_slots where slot_name='$SLOT'")" = 'physical|true' ] \
  || fail "slot $SLOT not active"
conninfo="$(psql_on "$PG2" postgres 'show primary_conninfo')"
case "$conninfo" in *password*) fail "primary_conninfo holds a password" ;; esac
case "$conninfo" in *"application_name=$APP_NAME"*) ;; *) fail "primary_conninfo lacks application_name: $conninfo" ;; esac
[ "$(psql_on "$PG2" postgres 'show primary_slot_name')" = "$SLOT" ] || fail "primary_slot_name not set"
psql_on "$PG1" app "insert into smoke values (101, 'streamed')"
wait_for 30 "row 101 replayed on the replica" \
  bash -c "[ \"\$(docker exec -u postgres $PG2 psql -XAtq -d app -c 'select note from smoke where id=101')\" = streamed ]"
pass "replica streaming (pg_stat_replication: $APP_NAME|streaming, slot $SLOT active, passfile auth, row replayed)"

# SCRAM over TLS with a verified server certificate, from another container; wrong password refused
pgpass_line() { local p="$2"; p="${p//\\/\\\\}"; p="${p//:/\\:}"; printf '*:*:*:%s:%s\n' "$1" "$p"; }
pgpass_line app "$APP_PW" | docker exec -i -u postgres "$PG2" sh -c 'umask 077; cat >/tmp/app.pgpass'
got="$(docker exec -u postgres -e PGPASSFILE=/tmp/app.pgpass "$PG2" psql -XAtq \
  "host=$PG1 user=app dbname=app sslmode=verify-full sslrootcert=/etc/ssl/homelab/ca.crt" \
  -c "select current_user||'|'||ssl from pg_stat_ssl where pid = pg_backend_pid()")"
[ "$got" = 'app|true' ] || fail "app login over TLS: got '$got'"
pgpass_line analytics_ro "$RO_PW" | docker exec -i -u postgres "$PG2" sh -c 'umask 077; cat >/tmp/ro.pgpass'
got="$(docker exec -u postgres -e PGPASSFILE=/tmp/ro.pgpass "$PG2" psql -XAtq "host=$PG1 user=analytics_ro dbname=app" -c 'select count(*) from smoke')"
[ "$got" = 101 ] || fail "analytics_ro read: got '$got'"
if docker exec -u postgres -e PGPASSFILE=/tmp/ro.pgpass "$PG2" psql -XAtq "host=$PG1 user=analytics_ro dbname=app" -c "insert into smoke values (999,'x')" >/dev/null 2>&1; then
  fail "analytics_ro could write"
fi
pgpass_line app "wrong-password" | docker exec -i -u postgres "$PG2" sh -c 'umask 077; cat >/tmp/bad.pgpass'
if docker exec -u postgres -e PGPASSFILE=/tmp/bad.pgpass "$PG2" psql -XAtq "host=$PG1 user=app dbname=app" -c 'select 1' >/dev/null 2>&1; then
  fail "a wrong password was accepted"
fi
docker exec "$PG2" rm -f /tmp/app.pgpass /tmp/bad.pgpass /tmp/ro.pgpass
pass "app logs in with SCRAM over verified TLS; a wrong password is refused; analytics_ro reads, cannot write"

# ----------------------------------------------------------------------------------------- stanza

docker exec "$REPO" pgbackrest --stanza="$STANZA" stanza-create >"$TMP/stanza-create.log" 2>&1 \
  || { cat "$TMP/stanza-create.log" >&2; fail "stanza-create"; }
pass "pgbackrest stanza-create on the repository host"
docker exec "$REPO" pgbackrest --stanza="$STANZA" check >"$TMP/check-repo.log" 2>&1 \
  || { cat "$TMP/check-repo.log" >&2; fail "check (repository host)"; }
docker exec "$PG1" pgbackrest --stanza="$STANZA" check >"$TMP/check-pg1.log" 2>&1 \
  || { cat "$TMP/check-pg1.log" >&2; fail "check (primary)"; }
pass "pgbackrest check on the repository host and on the primary (WAL archived over TLS)"
tb=$(now)
docker exec "$REPO" pgbackrest --stanza="$STANZA" backup --type=full >"$TMP/backup.log" 2>&1 \
  || { cat "$TMP/backup.log" >&2; fail "backup --type=full"; }
pass "pgbackrest backup --type=full ($(awk -v a="$tb" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'))"
docker exec "$REPO" pgbackrest --stanza="$STANZA" info >"$TMP/info.log" 2>&1 || { cat "$TMP/info.log" >&2; fail "info"; }
grep -Eq '^ +full backup: ' "$TMP/info.log" || { cat "$TMP/info.log" >&2; fail "info shows no full backup"; }
grep -q 'status: ok' "$TMP/info.log" || { cat "$TMP/info.log" >&2; fail "stanza status not ok"; }
sed 's/^/    /' "$TMP/info.log"
pass "pgbackrest info shows the full backup"
# the only files in the repository are postgres-owned (the wrapper drops root to postgres)
[ -z "$(docker exec "$REPO" find /var/lib/pgbackrest ! -user postgres)" ] || fail "root-owned files in the repository"

psql_on "$PG1" app "insert into smoke values (102, 'after-backup')"

# ----------------------------------------------------------------------------------------- restore
create_node "$RST" restore "$RUN-restore:/var/lib/postgresql/data"
docker start "$RST" >/dev/null
wait_healthy "$RST" 60
docker exec "$RST" pgbackrest --stanza="$STANZA" restore --type=immediate --target-action=promote \
  --archive-mode=off >"$TMP/restore.log" 2>&1 || { cat "$TMP/restore.log" >&2; fail "pgbackrest restore"; }
docker exec "$RST" homelab-start 120 >/dev/null || fail "homelab-start"
wait_for 60 "restored node promoted" \
  bash -c "[ \"\$(docker exec -u postgres $RST psql -XAtq -c 'select pg_is_in_recovery()')\" = f ]"
[ "$(psql_on "$RST" app 'select count(*) from smoke')" = 101 ] || fail "restored row count is not 101"
[ "$(psql_on "$RST" app "select count(*) from smoke where id = 102")" = 0 ] || fail "row written after the backup is in an immediate restore"
[ "$(psql_on "$RST" postgres 'show archive_mode')" = off ] || fail "restored copy would archive into the stanza"
psql_on "$RST" app "create extension if not exists amcheck; select bt_index_check('smoke_pkey'::regclass, true)" >/dev/null \
  || fail "amcheck on the restored copy"
pass "restore node: pgbackrest restore into an empty volume + homelab-start; 101 rows, archive_mode=off, amcheck ok"

# ----------------------------------------------------------------------------------------- restarts
docker restart -t 30 "$PG1" >/dev/null
wait_healthy "$PG1" 120
[ "$(logs_count "$PG1" 'initialising a new cluster')" = 1 ] || fail "primary re-initialised on restart"
logs_have "$PG1" 'existing cluster' || fail "no 'existing cluster' after restart"
[ "$(psql_on "$PG1" app 'select count(*) from smoke')" = 102 ] || fail "rows lost over a restart"
wait_for 60 "replica streaming again after the primary restart" \
  bash -c "[ \"\$(docker exec -u postgres $PG1 psql -XAtq -c \"select application_name||'|'||state from pg_stat_replication\")\" = '$APP_NAME|streaming' ]"
pass "primary restart: no re-init, data kept, roles re-synced, replica streaming again"

docker restart -t 30 "$PG2" >/dev/null
wait_healthy "$PG2" 120
logs_have "$PG2" 'existing cluster' || fail "replica re-cloned on restart"
wait_for 60 "replica streaming after its restart" \
  bash -c "[ \"\$(docker exec -u postgres $PG1 psql -XAtq -c \"select application_name||'|'||state from pg_stat_replication\")\" = '$APP_NAME|streaming' ]"
pass "replica restart: kept its data (standby.signal), streaming again"

# ----------------------------------------------------------------------------------------- failover
# kill the primary hard, promote the replica, rejoin the old primary as its standby with pg_rewind (run in
# a HOMELAB_ROLE=restore container on the old volume), take a backup from the new primary
docker kill -s KILL "$PG1" >/dev/null
[ "$(psql_on "$PG2" postgres 'select pg_promote(true, 60)')" = t ] || fail "pg_promote on $PG2"
psql_on "$PG2" app "insert into smoke values (103, 'after-failover')"
psql_on "$PG2" postgres "select pg_create_physical_replication_slot('replica_0')" >/dev/null
docker rm "$PG1" >/dev/null
create_node "$PG1" restore "$RUN-pg1:/var/lib/postgresql/data" \
  -e HOMELAB_PRIMARY_HOST="$PG2" -e HOMELAB_REPLICATION_SLOT=replica_0 -e HOMELAB_APPLICATION_NAME=pg1
docker start "$PG1" >/dev/null
wait_healthy "$PG1" 60
docker exec -u postgres "$PG1" pg_rewind -D /var/lib/postgresql/data \
  --source-server="host=$PG2 port=5432 user=replicator dbname=postgres passfile=/var/lib/postgresql/.pgpass" \
  >"$TMP/rewind.log" 2>&1 || { cat "$TMP/rewind.log" >&2; fail "pg_rewind (as replicator, no superuser)"; }
docker exec "$PG1" homelab-configure-standby >/dev/null 2>&1 || fail "homelab-configure-standby"
docker exec "$PG1" homelab-start 120 >/dev/null || fail "homelab-start after pg_rewind"
wait_for 60 "old primary streaming from the new one" \
  bash -c "[ \"\$(docker exec -u postgres $PG2 psql -XAtq -c \"select application_name||'|'||state from pg_stat_replication\")\" = 'pg1|streaming' ]"
wait_for 30 "row 103 on the rejoined node" \
  bash -c "[ \"\$(docker exec -u postgres $PG1 psql -XAtq -d app -c 'select count(*) from smoke where id = 103')\" = 1 ]"
[ "$(psql_on "$PG1" postgres 'select pg_is_in_recovery()')" = t ] || fail "rejoined node is not a standby"
docker exec "$REPO" pgbackrest --stanza="$STANZA" backup --type=incr >"$TMP/backup-incr.log" 2>&1 \
  || { cat "$TMP/backup-incr.log" >&2; fail "incr backup after failover"; }
pass "failover: kill -9 primary, pg_promote replica, old primary rejoined by pg_rewind (replicator) + streaming; repo backs up the new primary"

# ----------------------------------------------------------------------------------------- secrets
for c in "$PG1" "$PG2" "$REPO" "$RST"; do
  docker inspect "$c" >"$TMP/inspect-$c.json"
  docker logs "$c" >"$TMP/logs-$c.txt" 2>&1
  for pw in "${ALL_PW[@]}"; do
    grep -qF -- "$pw" "$TMP/inspect-$c.json" && fail "a password appears in docker inspect $c"
    grep -qF -- "$pw" "$TMP/logs-$c.txt" && fail "a password appears in docker logs $c"
  done
  [ "$(docker exec "$c" stat -c %U:%a /etc/ssl/homelab/node.key)" = postgres:600 ] || fail "node.key owner/mode on $c"
done
pass "no password in docker inspect or docker logs of any node; TLS keys postgres:0600"

[ "$(docker inspect -f '{{.State.Health.Status}}' "$PG1")" != unhealthy ] || fail "docker reports $PG1 unhealthy"

# ----------------------------------------------------------------------------------------- shutdown
# row 104 must reach the archive before the cluster goes away (check switches WAL and waits for it)
psql_on "$PG2" app "insert into smoke values (104, 'archived-before-shutdown')"
docker exec "$PG2" pgbackrest --stanza="$STANZA" check >"$TMP/check2.log" 2>&1 || { cat "$TMP/check2.log" >&2; fail "check on the new primary"; }
stop_clean() {
  local c="$1" t code
  t=$(now)
  docker stop -t 30 "$c" >/dev/null
  code="$(docker inspect -f '{{.State.ExitCode}}' "$c")"
  [ "$code" = 0 ] || fail "$c exited with $code on SIGTERM"
  if [ "$c" != "$REPO" ]; then
    docker logs "$c" >"$TMP/logs.tmp" 2>&1
    tail -n 5 "$TMP/logs.tmp" | grep -q 'database system is shut down' || fail "$c: postgres did not shut down cleanly"
  fi
  say "$c stopped cleanly in $(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }')"
}
for c in "$RST" "$PG1" "$PG2"; do stop_clean "$c"; done
pass "SIGTERM: restore node, standby and primary shut down cleanly (exit 0)"

# ----------------------------------------------------------------------------------------- primary-from-backup
# the old cluster is gone; a new primary on an empty volume comes from the repository (backup + archive)
create_node "$PGFB" primary-from-backup "$RUN-pgfb:/var/lib/postgresql/data"
docker start "$PGFB" >/dev/null
wait_healthy "$PGFB" 180
logs_have "$PGFB" 'pgbackrest restore' || fail "$PGFB did not restore"
logs_have "$PGFB" 'initialising a new cluster' && fail "$PGFB ran initdb"
[ "$(psql_on "$PGFB" postgres 'select pg_is_in_recovery()')" = f ] || fail "$PGFB is not promoted"
[ "$(psql_on "$PGFB" app 'select count(*) from smoke')" = 104 ] || fail "$PGFB: expected 104 rows (backup + archive)"
[ "$(psql_on "$PGFB" postgres "select timeline_id > 1 from pg_control_checkpoint()")" = t ] || fail "$PGFB: no new timeline"
psql_on "$PGFB" app "insert into smoke values (105, 'new primary')"
docker inspect "$PGFB" >"$TMP/inspect-pgfb.json"; docker logs "$PGFB" >"$TMP/logs-pgfb.txt" 2>&1
for pw in "${ALL_PW[@]}"; do
  grep -qF -- "$pw" "$TMP/inspect-pgfb.json" "$TMP/logs-pgfb.txt" && fail "a password appears in inspect/logs of $PGFB"
done
pass "primary-from-backup: empty volume restored from the repository, 104 rows (backup + archived WAL), promoted on a new timeline, writable"
stop_clean "$PGFB"

# ----------------------------------------------------------------------------------------- cron
wait_for 75 "a homelab-cron job ran on the repository host" logs_have "$REPO" 'homelab-smoke-cron-tick as postgres'
pass "homelab-cron ran the repository crontab's job as postgres (output in docker logs)"
stop_clean "$REPO"

FAILED=0
say "postgres smoke: $PASSES passed, 0 failed"
