#!/usr/bin/env bash
# Smoke test of homelab/duckdb:1 against a real PostgreSQL, on the local Docker engine.
#
#   1. build homelab/duckdb:1 (build.sh)
#   2. start a PostgreSQL source: homelab/postgres:17 (HOMELAB_ROLE=primary) when that image exists,
#      else a throwaway PostgreSQL from debian:bookworm-slim + apt (PG 15), built here and removed after
#   3. seed it: public.incidents (1000 rows: uuid, text with quotes/newlines/''/NULL, smallint,
#      timestamptz, jsonb, numeric, bool, bytea, interval, text[]), public.services, ops.deploys,
#      and a read-only role `analytics_ro`
#   4. start the DuckDB host (secret delivered as the platform does: tar stream, root-owned, 0600), wait for /healthz
#   5. prove: DuckDB answers `select count(*), sum(severity) from incidents` like the source, plus a
#      fingerprint over every column type; POST /sync picks up new rows; /query refuses writes,
#      several statements and reading the secret; parquet files exist; the service runs as uid 10001
#      without capabilities; password never in logs/env; the --user 10001:10001 variant works too;
#      Docker HEALTHCHECK turns healthy; SIGTERM stops it cleanly; it restarts on the same volume
#   6. print timings and memory use; remove every container, network, volume and temporary image,
#      on success and on failure alike
#
# Usage: components/duckdb/image/smoke.sh
# Env:   SMOKE_SOURCE=auto|homelab|throwaway (default auto)   SMOKE_SKIP_BUILD=1 (use the existing image)
#        IMAGE_TAG (default homelab/duckdb:1)   BASE_IMAGE (default debian:bookworm-slim)
# Needs: docker, curl, node (all on the project's machines). Exit 0 = green.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE_TAG="${IMAGE_TAG:-homelab/duckdb:1}"
BASE_IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
SMOKE_SOURCE="${SMOKE_SOURCE:-auto}"
ID="duckdb-smoke-$$-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
NET="$ID-net"
PG="$ID-pg"
DUCK="$ID-duckdb"
VOL="$ID-data"
TMP_PG_IMAGE=""
WORK="$(mktemp -d)"
chmod 0700 "$WORK"

T0=$(date +%s.%N)
declare -a TIMINGS=()
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[smoke %6ss] %s\n' "$(secs "$T0")" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
timed() { TIMINGS+=("$(printf '%-44s %6ss' "$1" "$2")"); }

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ]; then
    log "--- failure: last logs ---"
    docker logs --tail 40 "$DUCK" 2>&1 | sed 's/^/  duckdb| /' >&2
    docker logs --tail 20 "$PG" 2>&1 | sed 's/^/  pg    | /' >&2
  fi
  docker rm -f -v "$DUCK" "$DUCK-nonroot" "$PG" >/dev/null 2>&1
  docker network rm "$NET" >/dev/null 2>&1
  docker volume rm "$VOL" "$VOL-nonroot" >/dev/null 2>&1
  [ -n "$TMP_PG_IMAGE" ] && docker rmi -f "$TMP_PG_IMAGE" >/dev/null 2>&1
  rm -rf "$WORK"
  local left
  left="$(docker ps -a --filter "name=$ID" -q; docker network ls --filter "name=$ID" -q; docker volume ls --filter "name=$ID" -q)"
  [ -z "$left" ] || log "WARNING: left behind: $left"
  if [ "$rc" = 0 ]; then log "PASS (cleaned up)"; else log "FAILED rc=$rc (cleaned up)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# JSON field from stdin: json '.tables["public.incidents"]' -> JS expression evaluated on the parsed body
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=(new Function("j","return j"+process.argv[1]))(JSON.parse(s));process.stdout.write(typeof v==="string"?v:JSON.stringify(v))})' "$1"; }

# tar stream of one file with owner and mode, read from stdin: deliver FILE_IN_CONTAINER UID MODE CONTAINER
deliver() {
  local dest="$1" uid="$2" mode="$3" ctr="$4" stage
  stage="$(mktemp -d "$WORK/deliver.XXXXXX")"
  cat >"$stage/$(basename "$dest")"
  tar -C "$stage" --owner="$uid" --group="$uid" --numeric-owner --mode="$mode" -cf - "$(basename "$dest")" \
    | docker cp - "$ctr:$(dirname "$dest")"   # the tar headers carry owner and mode (no -a: it resolves USER via getent and fails on a numeric one)
  rm -rf "$stage"
}

psql_src() { docker exec -i -u postgres "$PG" psql -X -q -v ON_ERROR_STOP=1 -d "${1:-app}" -At; }

# ------------------------------------------------------------------------------------------------ build
command -v docker >/dev/null && command -v curl >/dev/null && command -v node >/dev/null || fail "needs docker, curl and node"
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || fail "base image $BASE_IMAGE missing: run scripts/make-base-images.sh"
if [ "${SMOKE_SKIP_BUILD:-0}" != 1 ]; then
  t=$(now); log "building $IMAGE_TAG"
  "$HERE/build.sh" --tag "$IMAGE_TAG" --base-image "$BASE_IMAGE" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; fail "image build failed"; }
  timed "build $IMAGE_TAG (build.sh)" "$(secs "$t")"
fi
IMAGE_MB="$(docker image inspect -f '{{.Size}}' "$IMAGE_TAG" | awk '{ printf "%.0f", $1 / 1e6 }')"

# ----------------------------------------------------------------------------------------------- source
if [ "$SMOKE_SOURCE" = auto ]; then
  if docker image inspect homelab/postgres:17 >/dev/null 2>&1; then SMOKE_SOURCE=homelab; else SMOKE_SOURCE=throwaway; fi
fi
docker network create "$NET" >/dev/null
t=$(now)
case "$SMOKE_SOURCE" in
  homelab)
    log "source: homelab/postgres:17 (HOMELAB_ROLE=primary)"
    docker create --name "$PG" --network "$NET" --network-alias pg-source -e HOMELAB_ROLE=primary homelab/postgres:17 >/dev/null
    printf "listen_addresses = '*'\nport = 5432\nmax_connections = 20\nshared_buffers = 32MB\npassword_encryption = scram-sha-256\n" \
      | deliver /etc/homelab/postgresql.conf 0 0644 "$PG"
    printf 'local all all peer\nhost all all all scram-sha-256\n' | deliver /etc/homelab/pg_hba.conf 0 0644 "$PG"
    ;;
  throwaway)
    TMP_PG_IMAGE="homelab-duckdb-smoke-pg:$ID"
    log "source: throwaway PostgreSQL from $BASE_IMAGE + apt (image $TMP_PG_IMAGE, removed afterwards)"
    docker build -q -t "$TMP_PG_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE" - >/dev/null <<'DOCKERFILE'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
 && rm -rf /var/lib/apt/lists/* && ln -s /usr/lib/postgresql/*/bin /usr/local/lib/pgbin
USER postgres
CMD set -e; if [ ! -s /tmp/pgdata/PG_VERSION ]; then \
      /usr/local/lib/pgbin/initdb -D /tmp/pgdata --auth-local=peer --auth-host=scram-sha-256 -U postgres >/dev/null; \
      echo 'host all all all scram-sha-256' >>/tmp/pgdata/pg_hba.conf; fi; \
    exec /usr/local/lib/pgbin/postgres -D /tmp/pgdata -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
DOCKERFILE
    docker create --name "$PG" --network "$NET" --network-alias pg-source "$TMP_PG_IMAGE" >/dev/null
    ;;
  *) fail "SMOKE_SOURCE must be auto, homelab or throwaway" ;;
esac
docker start "$PG" >/dev/null
for _ in $(seq 1 240); do
  echo 'select 1' | psql_src postgres >/dev/null 2>&1 && break
  [ "$(docker inspect -f '{{.State.Running}}' "$PG")" = true ] || fail "source PostgreSQL exited"
  sleep 0.5
done
echo 'select 1' | psql_src postgres >/dev/null 2>&1 || fail "source PostgreSQL not ready after 120s"
SOURCE_VERSION="$(echo 'show server_version' | psql_src postgres)"
timed "source PostgreSQL $SOURCE_VERSION ($SMOKE_SOURCE) up" "$(secs "$t")"

t=$(now)
PASSWORD="$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')"
echo 'CREATE DATABASE app' | psql_src postgres
# The password travels on psql's stdin only (never argv, env or a log).
psql_src app <<SQL
CREATE SCHEMA ops;
CREATE TABLE incidents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  title text, severity smallint NOT NULL, opened_at timestamptz NOT NULL, details jsonb,
  cost numeric(10,2), resolved boolean, attachment bytea, open_for interval, tags text[]);
INSERT INTO incidents (title, severity, opened_at, details, cost, resolved, attachment, open_for, tags)
SELECT CASE WHEN g % 100 = 0 THEN NULL WHEN g % 101 = 0 THEN '' WHEN g % 97 = 0 THEN E'disk "full",\non nas ' || g ELSE 'incident ' || g END,
       (g % 5 + 1)::smallint,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '37 minutes 13.25 seconds',
       jsonb_build_object('host', 'node-' || (g % 7), 'n', g),
       (g * 1.25)::numeric(10,2), g % 3 = 0, decode(lpad(to_hex(g), 4, '0'), 'hex'),
       (g - 500) * interval '1 minute' + (g % 3) * interval '1 day', ARRAY['t' || (g % 4), 'x']
  FROM generate_series(1, 1000) g;
CREATE TABLE services (id bigint PRIMARY KEY, name varchar(40) NOT NULL, port integer, weight double precision, created date);
INSERT INTO services SELECT g, 'svc-' || g, 8000 + g, g / 3.0, date '2023-01-01' + g FROM generate_series(1, 12) g;
CREATE TABLE ops.deploys (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, service_id bigint, at timestamptz DEFAULT now());
INSERT INTO ops.deploys (service_id) SELECT g % 12 + 1 FROM generate_series(1, 40) g;
CREATE ROLE analytics_ro LOGIN PASSWORD '$PASSWORD';
ALTER ROLE analytics_ro SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE app TO analytics_ro;
GRANT USAGE ON SCHEMA public, ops TO analytics_ro;
GRANT SELECT ON ALL TABLES IN SCHEMA public, ops TO analytics_ro;
SQL
timed "seed source (3 tables, 1052 rows, read-only role)" "$(secs "$t")"

# ----------------------------------------------------------------------------------------------- duckdb
t=$(now)
docker volume create "$VOL" >/dev/null
docker create --name "$DUCK" --network "$NET" -p 127.0.0.1::8080 -v "$VOL:/var/lib/duckdb" --memory 768m \
  -e HOMELAB_SOURCE_HOST=pg-source -e HOMELAB_SOURCE_PORT=5432 -e HOMELAB_SOURCE_DATABASE=app \
  -e HOMELAB_SOURCE_USER=analytics_ro -e HOMELAB_SOURCE_SCHEMAS=public,ops \
  "$IMAGE_TAG" >/dev/null
# Delivered as the platform does (NodePlan files -> tar stream, root-owned, 0600): the entrypoint hands it to uid 10001.
printf '%s\n' "$PASSWORD" | deliver /etc/homelab/secrets/source.password 0 0600 "$DUCK"
docker start "$DUCK" >/dev/null
PORT="$(docker port "$DUCK" 8080/tcp | head -n1 | sed 's/.*://')"
URL="http://127.0.0.1:$PORT"
code=000
for _ in $(seq 1 240); do
  code="$(curl -s -o "$WORK/health.json" -w '%{http_code}' "$URL/healthz" || true)"
  [ "$code" = 200 ] && break
  [ "$(docker inspect -f '{{.State.Running}}' "$DUCK")" = true ] || fail "duckdb container exited"
  sleep 0.5
done
[ "$code" = 200 ] || fail "/healthz did not turn 200 in 120s (last: $code $(cat "$WORK/health.json" 2>/dev/null))"
timed "duckdb start -> /healthz 200 (first sync)" "$(secs "$t")"
log "healthz: $(cat "$WORK/health.json")"
[ "$(json '.tables["public.incidents"]' <"$WORK/health.json")" = 1000 ] || fail "healthz does not report 1000 incidents"
[ "$(json '.tables["ops.deploys"]' <"$WORK/health.json")" = 40 ] || fail "healthz does not report ops.deploys"

query() { curl -sG -o "$WORK/q.json" -w '%{http_code}' --data-urlencode "sql=$1" "$URL/query"; }

# The e2e contract: DuckDB holds the replica's tables and answers an aggregate query.
t=$(now)
[ "$(query 'select count(*) as n, sum(severity) as s from incidents')" = 200 ] || fail "/query failed: $(cat "$WORK/q.json")"
DUCK_AGG="$(json '.rows[0].n + "|" + j.rows[0].s' <"$WORK/q.json")"
SRC_AGG="$(echo 'select count(*) || $$|$$ || sum(severity) from incidents' | psql_src)"
log "count/sum(severity): source $SRC_AGG, duckdb $DUCK_AGG"
[ "$DUCK_AGG" = "$SRC_AGG" ] || fail "aggregate differs: source $SRC_AGG, duckdb $DUCK_AGG"

# Every mapped type survives: the same fingerprint computed on both sides.
SRC_FP="$(psql_src <<'SQL'
select concat_ws('|', count(title), count(*) filter (where title = ''), count(*) filter (where position(chr(10) in title) > 0),
  sum(cost), sum(octet_length(attachment)), count(*) filter (where resolved), extract(epoch from max(opened_at))::bigint,
  sum(extract(epoch from open_for))::bigint, count(distinct id), sum((details->>'n')::int), sum(array_length(tags, 1)),
  (select sum(weight)::numeric(12,4) from services), (select max(created) from services), (select count(*) from ops.deploys))
from incidents
SQL
)"
FP_SQL="select concat_ws('|', count(title), count(*) filter (where title = ''), count(*) filter (where position(chr(10) in title) > 0),
  sum(cost), sum(octet_length(attachment)), count(*) filter (where resolved), epoch(max(opened_at))::bigint,
  sum(epoch(open_for))::bigint, count(distinct id), sum((details->>'n')::int), sum(json_array_length(tags)),
  (select sum(weight)::decimal(12,4) from services), (select max(created) from services), (select count(*) from ops.deploys)) as fp
from incidents"
[ "$(query "$FP_SQL")" = 200 ] || fail "fingerprint query failed: $(cat "$WORK/q.json")"
DUCK_FP="$(json '.rows[0].fp' <"$WORK/q.json")"
log "fingerprint: source $SRC_FP"
log "             duckdb $DUCK_FP"
[ "$DUCK_FP" = "$SRC_FP" ] || fail "fingerprint differs"
timed "aggregate + type fingerprint match" "$(secs "$t")"

# New rows on the source arrive with the next sync (POST /sync).
t=$(now)
echo "INSERT INTO incidents (title, severity, opened_at) SELECT 'late ' || g, 5, now() FROM generate_series(1, 25) g" | psql_src
curl -s -X POST -o "$WORK/sync.json" -w '%{http_code}' "$URL/sync" | grep -qx 200 || fail "POST /sync: $(cat "$WORK/sync.json")"
[ "$(json '.tables["public.incidents"]' <"$WORK/sync.json")" = 1025 ] || fail "POST /sync did not pick up new rows: $(cat "$WORK/sync.json")"
query 'select count(*) as n from incidents' >/dev/null
[ "$(json '.rows[0].n' <"$WORK/q.json")" = 1025 ] || fail "after POST /sync, /query does not see 1025 rows"
timed "POST /sync picks up 25 new rows ($(json '.durationMs' <"$WORK/sync.json") ms)" "$(secs "$t")"

# The read-only guard.
[ "$(query 'drop table incidents')" = 400 ] || fail "DROP was not refused"
[ "$(query 'select 1; drop table incidents')" = 400 ] || fail "two statements were not refused"
[ "$(query "select * from read_text('/etc/homelab/secrets/source.password')")" = 400 ] || fail "reading the secret file was not refused"
grep -q 'Permission Error' "$WORK/q.json" || fail "secret read refused for the wrong reason: $(cat "$WORK/q.json")"
[ "$(query "select count(*) as n from read_parquet('/var/lib/duckdb/parquet/public.incidents.parquet')")" = 200 ] || fail "parquet not readable: $(cat "$WORK/q.json")"
[ "$(json '.rows[0].n' <"$WORK/q.json")" = 1025 ] || fail "parquet export does not hold 1025 rows"
log "query guard ok (400 for DROP, two statements, reading the secret); parquet holds 1025 rows"
docker exec "$DUCK" ls -l /var/lib/duckdb/parquet | sed 's/^/  parquet| /' >&2

# Non-root, and the password nowhere but in its file.
[ "$(docker exec "$DUCK" awk '/^Uid:/ { print $2 $3 $4 $5 }' /proc/1/status)" = 10001100011000110001 ] || fail "PID 1 does not run as uid 10001"
[ "$(docker exec "$DUCK" awk '/^CapEff:/ { print $2 }' /proc/1/status)" = 0000000000000000 ] || fail "PID 1 kept capabilities"
[ "$(docker exec "$DUCK" stat -c '%u %a' /etc/homelab/secrets/source.password)" = "10001 400" ] || fail "secret not handed to uid 10001 with mode 0400"
docker logs "$DUCK" 2>&1 | grep -qF "$PASSWORD" && fail "password found in the container log"
docker inspect "$DUCK" | grep -qF "$PASSWORD" && fail "password found in the container config"
log "service (PID 1) runs as uid 10001 without capabilities; secret 10001/0400; password in neither logs nor config"

# Started as non-root (docker run --user, Kubernetes runAsUser): works when the secret is readable by 10001.
t=$(now)
docker create --name "$DUCK-nonroot" --network "$NET" --user 10001:10001 -v "$VOL-nonroot:/var/lib/duckdb" \
  -e HOMELAB_SOURCE_HOST=pg-source -e HOMELAB_SOURCE_DATABASE=app -e HOMELAB_SOURCE_USER=analytics_ro \
  -e HOMELAB_SYNC_INTERVAL_SECONDS=0 "$IMAGE_TAG" >/dev/null
printf '%s\n' "$PASSWORD" | deliver /etc/homelab/secrets/source.password 10001 0400 "$DUCK-nonroot"
docker start "$DUCK-nonroot" >/dev/null
for _ in $(seq 1 120); do
  docker exec "$DUCK-nonroot" homelab-health >/dev/null 2>&1 && break
  sleep 0.5
done
docker exec "$DUCK-nonroot" homelab-health >/dev/null 2>&1 || fail "--user 10001:10001 variant not healthy: $(docker logs --tail 5 "$DUCK-nonroot" 2>&1)"
docker rm -f -v "$DUCK-nonroot" >/dev/null
timed "--user 10001:10001 variant healthy" "$(secs "$t")"

# Source lost: the sync fails, /healthz turns 503 and says why, the mirror stays queryable; back: 200.
t=$(now)
docker stop -t 30 "$PG" >/dev/null
code="$(curl -s -X POST -o "$WORK/sync.json" -w '%{http_code}' "$URL/sync")"
[ "$code" = 500 ] || fail "POST /sync with the source down: HTTP $code $(cat "$WORK/sync.json")"
code="$(curl -s -o "$WORK/health.json" -w '%{http_code}' "$URL/healthz")"
[ "$code" = 503 ] || fail "/healthz with the source down: HTTP $code"
log "source down: /healthz 503, lastError: $(json '.lastError' <"$WORK/health.json")"
[ "$(query 'select count(*) as n from incidents')" = 200 ] && [ "$(json '.rows[0].n' <"$WORK/q.json")" = 1025 ] \
  || fail "the last good mirror is not queryable while the source is down"
docker start "$PG" >/dev/null
for _ in $(seq 1 240); do echo 'select 1' | psql_src postgres >/dev/null 2>&1 && break; sleep 0.5; done
curl -s -X POST -o "$WORK/sync.json" -w '%{http_code}' "$URL/sync" | grep -qx 200 || fail "POST /sync after the source came back: $(cat "$WORK/sync.json")"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200 ] || fail "/healthz not 200 after the source came back"
timed "source down -> 503, back -> 200" "$(secs "$t")"

# Docker's own HEALTHCHECK (homelab-health) turns healthy.
t=$(now)
for _ in $(seq 1 60); do
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$DUCK")" = healthy ] && break
  sleep 1
done
[ "$(docker inspect -f '{{.State.Health.Status}}' "$DUCK")" = healthy ] || fail "HEALTHCHECK not healthy: $(docker inspect -f '{{json .State.Health}}' "$DUCK")"
timed "docker HEALTHCHECK healthy (interval 5s)" "$(secs "$t")"

MEM="$(docker stats --no-stream --format '{{.MemUsage}} ({{.MemPerc}}), CPU {{.CPUPerc}}' "$DUCK")"
log "docker stats: $MEM"

# SIGTERM: clean exit, then the same volume opens again.
t=$(now)
docker stop -t 20 "$DUCK" >/dev/null
STOP_S="$(secs "$t")"
[ "$(docker inspect -f '{{.State.ExitCode}}' "$DUCK")" = 0 ] || fail "exit code after SIGTERM: $(docker inspect -f '{{.State.ExitCode}}' "$DUCK")"
docker logs "$DUCK" 2>&1 | grep -q '"msg":"stopped"' || fail "no clean 'stopped' line after SIGTERM"
timed "SIGTERM -> exit 0" "$STOP_S"
t=$(now)
docker start "$DUCK" >/dev/null
PORT="$(docker port "$DUCK" 8080/tcp | head -n1 | sed 's/.*://')"
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 120); do
  [ "$(curl -s -o "$WORK/health.json" -w '%{http_code}' "$URL/healthz" || true)" = 200 ] && break
  sleep 0.5
done
[ "$(json '.tables["public.incidents"]' <"$WORK/health.json" 2>/dev/null)" = 1025 ] || fail "restart on the same volume did not sync: $(cat "$WORK/health.json")"
timed "restart on the same volume -> /healthz 200" "$(secs "$t")"
log "sync log lines:"
docker logs "$DUCK" 2>&1 | grep '"msg":"sync ok"' | sed 's/^/  /' >&2

printf '\n== homelab/duckdb smoke: PASS\n' >&2
printf '  %-44s %s\n' "image" "$IMAGE_TAG ($IMAGE_MB MB)" "source" "$SMOKE_SOURCE, PostgreSQL $SOURCE_VERSION" "memory (docker stats)" "$MEM" >&2
printf '  %s\n' "${TIMINGS[@]}" >&2
printf '  %-44s %6ss\n' "total" "$(secs "$T0")" >&2
