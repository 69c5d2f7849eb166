#!/usr/bin/env bash
# homelab/monitoring entrypoint (PID 1): installs /etc/homelab/monitoring/* and the exporters' password files,
# starts every process of /etc/homelab/monitoring/exporters.jsonl (the exporters and Alertmanager; one JSON
# object a line: name, port, argv, env; rendered by components/monitoring/prometheus.ts planExporters) as the
# prometheus user, then Prometheus itself.
# An exporter that dies is restarted; when Prometheus exits, the container exits. Never `set -x`.
set -Eeuo pipefail

if [ "$#" -gt 0 ]; then exec "$@"; fi   # docker run IMAGE promtool ...: run it

log() { printf '%s homelab-monitoring: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SRC=/etc/homelab/monitoring
CONF=/etc/prometheus/homelab
SECRETS=/etc/homelab/secrets
RUN_SECRETS=/run/homelab-secrets
RETENTION="${HOMELAB_PROMETHEUS_RETENTION:-7d}"

[ -f "$SRC/prometheus.yml" ] || die "no $SRC/prometheus.yml (the stack's plan places it)"
install -d -m 0755 "$CONF"
for f in prometheus.yml rules.yml postgres-queries.yml exporters.jsonl alertmanager.yml; do
  [ -f "$SRC/$f" ] && install -m 0644 "$SRC/$f" "$CONF/$f"
done
# The files placed in /etc/homelab are root's: the rendered config names these copies, readable by the
# prometheus user only (components/plan.ts: /etc/prometheus/homelab, /run/homelab-secrets).
install -d -o prometheus -g prometheus -m 0700 "$RUN_SECRETS"
for f in "$SECRETS"/*; do
  [ -f "$f" ] || continue
  install -o prometheus -g prometheus -m 0600 "$f" "$RUN_SECRETS/$(basename "$f")"
done
# The drill results' textfile (written by `homelab drill`, drills/lib/metrics.ts) and Alertmanager's state
# live on the data volume beside the TSDB.
install -d -o prometheus -g prometheus -m 0755 /var/lib/prometheus/textfile /var/lib/prometheus/alertmanager
chown -R prometheus:prometheus /var/lib/prometheus
promtool check config "$CONF/prometheus.yml" >/dev/null || die "promtool check config failed for $CONF/prometheus.yml"
if [ -f "$CONF/alertmanager.yml" ]; then
  amtool check-config "$CONF/alertmanager.yml" >/dev/null || die "amtool check-config failed for $CONF/alertmanager.yml"
fi

declare -A PIDS=()      # pid -> exporter line
STOPPING=0
PROM_PID=""

start_exporter() {   # one JSON line
  local line="$1" name
  name="$(jq -r .name <<<"$line")"
  local -a argv envs
  mapfile -t argv < <(jq -r '.argv[]' <<<"$line")
  mapfile -t envs < <(jq -r '.env | to_entries[] | "\(.key)=\(.value)"' <<<"$line")
  setpriv --reuid=prometheus --regid=prometheus --init-groups env "${envs[@]}" "${argv[@]}" &
  PIDS[$!]="$line"
  log "started $name (pid $!)"
}

on_signal() {
  STOPPING=1
  [ -n "$PROM_PID" ] && kill -TERM "$PROM_PID" 2>/dev/null || true
  local p; for p in "${!PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap on_signal TERM INT

if [ -s "$CONF/exporters.jsonl" ]; then
  while IFS= read -r line; do [ -n "$line" ] && start_exporter "$line"; done < "$CONF/exporters.jsonl"
fi

# GOGC=50: Go's collector at 50% heap growth, not 100% (ADR 0016: ~12% less anonymous memory, measured side by
# side); GOMAXPROCS stays Go's default so queries and compaction may use every CPU.
setpriv --reuid=prometheus --regid=prometheus --init-groups env GOGC=50 prometheus \
  --config.file="$CONF/prometheus.yml" --storage.tsdb.path=/var/lib/prometheus \
  --storage.tsdb.retention.time="$RETENTION" --web.listen-address=:9090 --log.level=warn &
PROM_PID=$!
log "prometheus started (pid $PROM_PID, retention $RETENTION)"

set +e
while :; do
  done_pid=""
  wait -n -p done_pid
  rc=$?
  [ -n "${done_pid:-}" ] || continue
  if [ "$done_pid" = "$PROM_PID" ]; then break; fi
  line="${PIDS[$done_pid]:-}"
  unset "PIDS[$done_pid]"
  if [ "$STOPPING" = 0 ] && [ -n "$line" ]; then
    log "$(jq -r .name <<<"$line") exited (rc=$rc); restarting it in 2s"
    sleep 2
    start_exporter "$line"
  fi
done
for p in "${!PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
log "stopped (prometheus rc=$rc)"
[ "$STOPPING" = 1 ] && exit 0
exit "$rc"
