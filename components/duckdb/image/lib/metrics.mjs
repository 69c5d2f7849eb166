// GET /metrics: the mirror's sync state in the Prometheus text exposition format 0.0.4, for the
// HomelabAnalyticsStale alert (`time() - homelab_duckdb_last_sync_success_timestamp_seconds > 2 * interval`).
// Numbers and table names only: never an error message (it may name hosts and roles), never a secret.

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** A label value as the exposition format wants it: backslash, double quote and line feed escaped. Pure. */
export function escapeLabelValue(value) {
  return String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** A sample value: Go float syntax for the special values, JavaScript's shortest round-trip form otherwise. Pure. */
export function formatValue(n) {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** An ISO timestamp (or null) as Unix seconds, 0 when there is none. Pure. */
function epochSeconds(iso) {
  if (iso === null || iso === undefined) return 0;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : 0;
}

/**
 * Render the metrics page from Mirror.state and the configured sync interval. Pure.
 * Every family always has its # HELP and # TYPE lines; a family whose value is unknown (the duration
 * before the first finished attempt, the row counts before the first successful sync) has no sample.
 * @param {{ lastSyncAt: string | null, lastAttemptAt: string | null, lastError: string | null,
 *   lastDurationMs: number | null, tables: Record<string, number>, syncs: number, failures: number }} state
 * @param {number} syncIntervalSeconds HOMELAB_SYNC_INTERVAL_SECONDS (0 = only at start and on POST /sync)
 */
export function renderMetrics(state, syncIntervalSeconds) {
  const lines = [];
  const family = (name, type, help, samples) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${formatValue(value)}`);
  };
  const one = (value) => (value === undefined ? [] : [['', value]]);

  family('homelab_duckdb_last_sync_success_timestamp_seconds', 'gauge',
    'Unix time the last successful sync finished; 0 if none succeeded since the service started.',
    one(epochSeconds(state.lastSyncAt)));
  family('homelab_duckdb_last_sync_attempt_timestamp_seconds', 'gauge',
    'Unix time the last sync attempt started (it may still be running); 0 if none was made.',
    one(epochSeconds(state.lastAttemptAt)));
  family('homelab_duckdb_last_sync_ok', 'gauge',
    '1 if the last finished sync attempt succeeded, 0 if it failed or no sync has succeeded yet.',
    one(state.lastSyncAt !== null && state.lastError === null ? 1 : 0));
  family('homelab_duckdb_last_sync_duration_seconds', 'gauge',
    'How long the last finished sync attempt (successful or not) took.',
    one(state.lastDurationMs === null || state.lastDurationMs === undefined ? undefined : state.lastDurationMs / 1000));
  // Mirror.state.syncs counts successes only; the attempts counter adds the failures back, so that
  // sync_failures_total / syncs_total is the failure ratio, as Prometheus' naming conventions read it.
  family('homelab_duckdb_syncs_total', 'counter',
    'Sync attempts finished since the service started, successful or not.',
    one(state.syncs + state.failures));
  family('homelab_duckdb_sync_failures_total', 'counter',
    'Sync attempts that failed (or were aborted by shutdown) since the service started.',
    one(state.failures));
  family('homelab_duckdb_sync_interval_seconds', 'gauge',
    'Configured seconds between the end of one sync and the start of the next (HOMELAB_SYNC_INTERVAL_SECONDS); 0 = only at start and on POST /sync.',
    one(syncIntervalSeconds));
  family('homelab_duckdb_table_rows', 'gauge',
    'Rows of each mirrored table ("<schema>.<table>") as of the last successful sync.',
    Object.keys(state.tables ?? {}).sort().map((table) => [`{table="${escapeLabelValue(table)}"}`, state.tables[table]]));
  return `${lines.join('\n')}\n`;
}
