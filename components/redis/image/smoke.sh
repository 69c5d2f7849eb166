#!/usr/bin/env bash
# Smoke test of homelab/redis:7 on the local Docker engine: config + ACL delivered in /etc/homelab/, auth
# required (no default user, wrong password refused, health user limited to PING), runs as redis,
# acknowledged writes survive `kill -9` thanks to the AOF (everysec, no RDB), no password in env/logs,
# clean SIGTERM shutdown. Everything it creates is removed on exit, failure included.
# Usage: components/redis/image/smoke.sh     (env: HOMELAB_REDIS_IMAGE, default homelab/redis:7; KEEP=1)
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
IMAGE="${HOMELAB_REDIS_IMAGE:-homelab/redis:7}"
RUN="hlredis-$(date +%H%M%S)-$$"
NET="$RUN-net"
R="$RUN-redis"
VOL="$RUN-data"
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
  if [ "$FAILED" = 1 ] && docker container inspect "$R" >/dev/null 2>&1; then
    echo "----- docker logs $R (last 40 lines) -----" >&2
    docker logs --tail 40 "$R" 2>&1 | sed 's/^/  | /' >&2
  fi
  if [ "${KEEP:-0}" = 1 ]; then say "KEEP=1: leaving run $RUN and $TMP"; return; fi
  docker rm -f -v "$R" >/dev/null 2>&1
  docker volume rm -f "$VOL" >/dev/null 2>&1
  docker network rm "$NET" >/dev/null 2>&1
  rm -rf "$TMP"
  if [ "$FAILED" = 1 ]; then say "cleaned up run $RUN after FAILURE (rc=$rc)"; else say "cleaned up run $RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gen_password() { printf '%s%s' "$(head -c 18 /dev/urandom | base64 | tr -d '\n/+=')" "-x:'\"y"; }
sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# redis-cli inside the container as USER with the password via REDISCLI_AUTH (stdin -> env, not argv)
rcli() {  # rcli USER PASSWORD ARGS...
  local user="$1" pw="$2"
  shift 2
  printf '%s' "$pw" | docker exec -i "$R" bash -c 'REDISCLI_AUTH="$(cat)" exec redis-cli --no-auth-warning --user "$0" "$@"' "$user" "$@"
}

wait_healthy() {
  local deadline=$(( $(date +%s) + $1 )) state
  while :; do
    state="$(docker inspect -f '{{.State.Status}}' "$R" 2>/dev/null || echo missing)"
    [ "$state" = running ] || fail "$R is $state (expected running)"
    if docker exec "$R" homelab-health >/dev/null 2>&1; then return 0; fi
    [ "$(date +%s)" -lt "$deadline" ] || fail "$R not healthy after $1s: $(docker exec "$R" homelab-health 2>&1)"
    sleep 0.3
  done
}

docker image inspect "$IMAGE" >/dev/null 2>&1 || { say "$IMAGE missing: building it"; "$ROOT/scripts/build-images.sh"; }
say "run $RUN, image $IMAGE ($(docker image inspect -f '{{.Id}}' "$IMAGE" | cut -c8-19))"

APP_PW="$(gen_password)"; HEALTH_PW="$(gen_password)"
mkdir -p "$TMP/etc/secrets"
cp "$HERE/testdata/redis.conf" "$TMP/etc/redis.conf"
sed -e "s/@APP_SHA256@/$(sha256 "$APP_PW")/" -e "s/@HEALTH_SHA256@/$(sha256 "$HEALTH_PW")/" \
  "$HERE/testdata/users.acl" >"$TMP/etc/users.acl"
printf '%s\n' "$HEALTH_PW" >"$TMP/etc/secrets/health.password"
chmod -R go-rwx "$TMP/etc"

docker network create --label "homelab-smoke=$RUN" "$NET" >/dev/null
docker volume create --label "homelab-smoke=$RUN" "$VOL" >/dev/null
docker create --name "$R" --hostname "$R" --network "$NET" --label "homelab-smoke=$RUN" \
  -v "$VOL:/var/lib/redis" "$IMAGE" >/dev/null
docker cp "$TMP/etc/." "$R:/etc/homelab/"
docker start "$R" >/dev/null
wait_healthy 60
pass "redis up, authenticated PING as 'health' (homelab-health)"

[ "$(docker exec "$R" ps -o user= -p 1)" = redis ] || fail "PID 1 is not running as redis"
[ "$(docker exec "$R" stat -c %U:%a /etc/redis/users.acl /etc/redis/redis.conf | tr "\n" " ")" = "redis:600 redis:600 " ] || fail "users.acl/redis.conf owner/mode"
pass "redis-server is PID 1 as user redis; users.acl redis:0600"

out="$(docker exec "$R" redis-cli ping 2>&1 || true)"
case "$out" in *NOAUTH*|*"Authentication required"*) ;; *) fail "unauthenticated PING got: $out" ;; esac
out="$(rcli app wrong-password ping 2>&1 || true)"
case "$out" in *WRONGPASS*) ;; *) fail "wrong password got: $out" ;; esac
out="$(rcli health "$HEALTH_PW" get k 2>&1 || true)"
case "$out" in *NOPERM*) ;; *) fail "health user could run GET: $out" ;; esac
[ "$(rcli app "$APP_PW" ping)" = PONG ] || fail "app cannot PING"
pass "auth required: no default user, wrong password refused, health user limited to PING"

rcli app "$APP_PW" info persistence >"$TMP/info.txt"
grep -q '^aof_enabled:1' "$TMP/info.txt" || fail "AOF not enabled"

# acknowledged writes: 500 INCRs (each reply seen) + a stream
N=500
for _ in $(seq 1 $N); do echo "INCR counter"; done >"$TMP/incr.txt"
echo "XADD events * n 1" >>"$TMP/incr.txt"
# first stdin line = password (read byte by byte by `read`), the rest goes to redis-cli
{ printf '%s\n' "$APP_PW"; cat "$TMP/incr.txt"; } \
  | docker exec -i "$R" bash -c 'IFS= read -r pw; REDISCLI_AUTH="$pw" exec redis-cli --no-auth-warning --user app' \
  >"$TMP/incr.out" 2>&1 || true
[ "$(tail -n 2 "$TMP/incr.out" | head -n 1)" = "$N" ] || fail "INCR replies: $(tail -n 3 "$TMP/incr.out" | tr '\n' ' ')"
pass "$N acknowledged INCRs + XADD"

sleep 1.5   # appendfsync everysec: what was acknowledged more than a second ago is on disk
docker kill -s KILL "$R" >/dev/null
[ "$(docker inspect -f '{{.State.Running}}' "$R")" = false ] || fail "still running after kill -9"
docker start "$R" >/dev/null
wait_healthy 60
got="$(rcli app "$APP_PW" get counter)"
[ "$got" = "$N" ] || fail "after kill -9: counter=$got, expected $N"
[ "$(rcli app "$APP_PW" xlen events)" = 1 ] || fail "stream lost after kill -9"
[ -z "$(docker exec "$R" find /var/lib/redis ! -user redis)" ] || fail "files not owned by redis in /var/lib/redis"
docker exec "$R" ls /var/lib/redis/appendonlydir >/dev/null || fail "no appendonlydir"
pass "kill -9 + restart: counter=$N and the stream survived (AOF, no RDB)"

docker inspect "$R" >"$TMP/inspect.json"
docker logs "$R" >"$TMP/logs.txt" 2>&1
for pw in "$APP_PW" "$HEALTH_PW"; do
  grep -qF -- "$pw" "$TMP/inspect.json" && fail "a password appears in docker inspect"
  grep -qF -- "$pw" "$TMP/logs.txt" && fail "a password appears in docker logs"
done
pass "no password in docker inspect or docker logs"

t=$(now)
docker stop -t 30 "$R" >/dev/null
[ "$(docker inspect -f '{{.State.ExitCode}}' "$R")" = 0 ] || fail "exit code $(docker inspect -f '{{.State.ExitCode}}' "$R") on SIGTERM"
docker logs "$R" >"$TMP/logs.txt" 2>&1
grep -q 'ready to exit, bye bye' "$TMP/logs.txt" || fail "redis did not shut down cleanly"
pass "SIGTERM: clean shutdown, exit 0 ($(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'))"

FAILED=0
say "redis smoke: $PASSES passed, 0 failed"
