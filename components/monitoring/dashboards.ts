// Grafana dashboard for users who run Grafana against the monitoring node's Prometheus (issue 12, ADR 0016).
// Pure: the panels' queries are data here, rendered into Grafana's dashboard JSON (schemaVersion 39) and
// committed as dashboards/homelab.json (`npm run dashboards` rewrites it; test/unit/dashboards.test.ts fails
// when the two differ). Grafana cannot be installed on the build machines, so test/e2e/monitoring.test.ts
// runs every panel's query against a live tier's Prometheus and requires data from each.
// One dashboard for any stack: each stack has its own Prometheus, so the only variable is the Prometheus
// data source, chosen at import; series are told apart by their `node` label.

export interface PanelQuery {
  expr: string;
  legend: string;
}

export interface PanelSpec {
  title: string;
  kind: "stat" | "timeseries";
  /** Grafana unit id: s, bytes, percentunit, short, none. */
  unit: string;
  description: string;
  queries: PanelQuery[];
}

export interface RowSpec {
  title: string;
  panels: PanelSpec[];
}

/** Grafana's range macro: the e2e substitutes a concrete window for it. */
export const RATE_INTERVAL = "$__rate_interval";

const q = (expr: string, legend: string): PanelQuery => ({ expr, legend });

export const DASHBOARD_ROWS: RowSpec[] = [
  {
    title: "Overview",
    panels: [
      { title: "Firing alerts", kind: "stat", unit: "short", description: "Alerts firing now (runbooks/alert-*.md says what to run).", queries: [q(`count(ALERTS{alertstate="firing"}) or vector(0)`, "firing")] },
      { title: "Scrape targets down", kind: "stat", unit: "short", description: "Exporters Prometheus cannot scrape: their alerts cannot fire.", queries: [q(`count(up == 0) or vector(0)`, "down")] },
      { title: "Targets", kind: "timeseries", unit: "none", description: "1 when Prometheus scraped the target.", queries: [q(`up`, "{{job}} {{node}}")] },
    ],
  },
  {
    title: "PostgreSQL",
    panels: [
      { title: "PostgreSQL up", kind: "stat", unit: "none", description: "postgres_exporter's connection to each node (pg_up).", queries: [q(`pg_up`, "{{node}}")] },
      { title: "Standby (1) or primary (0)", kind: "stat", unit: "none", description: "pg_is_in_recovery() on each node: a failover flips it.", queries: [q(`homelab_pg_recovery_in_recovery`, "{{node}}")] },
      { title: "Standby streaming", kind: "stat", unit: "none", description: "1 when a standby's WAL receiver streams from the primary; a standby at 0 fires HomelabReplicaNotStreaming.", queries: [q(`homelab_pg_recovery_wal_receiver_streaming and on (node) homelab_pg_recovery_in_recovery == 1`, "{{node}}")] },
      { title: "Replication flush lag", kind: "timeseries", unit: "s", description: "pg_stat_replication.flush_lag on the primary; HomelabReplicationLagHigh fires above the failover RPO.", queries: [q(`homelab_pg_replication_flush_lag_seconds`, "{{node}} -> {{application_name}}")] },
      { title: "WAL held by replication slots", kind: "timeseries", unit: "bytes", description: "WAL each slot keeps; at max_slot_wal_keep_size PostgreSQL invalidates the slot.", queries: [q(`homelab_pg_slot_retained_bytes`, "{{node}} {{slot_name}}")] },
      { title: "WAL archived and failed per minute", kind: "timeseries", unit: "short", description: "pg_stat_archiver: any failure fires HomelabArchivingFailing.", queries: [q(`rate(homelab_pg_archiver_archived_count[${RATE_INTERVAL}]) * 60`, "{{node}} archived"), q(`rate(homelab_pg_archiver_failed_count[${RATE_INTERVAL}]) * 60`, "{{node}} failed")] },
      { title: "Oldest WAL segment waiting to be archived", kind: "timeseries", unit: "s", description: "Age of the oldest .ready segment: beyond twice archive_timeout archiving is stuck.", queries: [q(`homelab_pg_archiver_oldest_ready_age_seconds`, "{{node}}")] },
      { title: "Connections", kind: "timeseries", unit: "short", description: "Backends by state (pg_stat_activity).", queries: [q(`sum by (node, state) (pg_stat_activity_count)`, "{{node}} {{state}}")] },
      { title: "Transactions per second", kind: "timeseries", unit: "short", description: "Commits and rollbacks over every database (pg_stat_database).", queries: [q(`sum by (node) (rate(pg_stat_database_xact_commit[${RATE_INTERVAL}]))`, "{{node}} commits"), q(`sum by (node) (rate(pg_stat_database_xact_rollback[${RATE_INTERVAL}]))`, "{{node}} rollbacks")] },
    ],
  },
  {
    title: "Backups (pgBackRest)",
    panels: [
      { title: "Newest backup age", kind: "stat", unit: "s", description: "Since the newest backup of any type finished; HomelabBackupTooOld fires beyond pgbackrest.maxBackupAge.", queries: [q(`time() - homelab_pgbackrest_backup_newest_stop_timestamp_seconds{type="any"}`, "{{stanza}}")] },
      { title: "Backups in the repository", kind: "stat", unit: "short", description: "Every backup pgbackrest info lists for the stanza.", queries: [q(`homelab_pgbackrest_backup_count`, "{{stanza}}")] },
      { title: "Newest backup size in the repository", kind: "timeseries", unit: "bytes", description: "What the newest backup of each type added to the repository.", queries: [q(`homelab_pgbackrest_backup_newest_repo_size_bytes`, "{{stanza}} {{type}}")] },
      { title: "pgbackrest info succeeds", kind: "stat", unit: "none", description: "0 when the repository host cannot read the repository: backup alerts are blind.", queries: [q(`homelab_pgbackrest_info_success`, "{{node}}")] },
    ],
  },
  {
    title: "Redis",
    panels: [
      { title: "Persistence status", kind: "stat", unit: "none", description: "1 when the last RDB save, AOF write and AOF rewrite succeeded; 0 fires HomelabRedisPersistenceFailing.", queries: [q(`redis_rdb_last_bgsave_status`, "{{node}} rdb save"), q(`redis_aof_last_write_status`, "{{node}} aof write"), q(`redis_aof_last_bgrewrite_status`, "{{node}} aof rewrite")] },
      { title: "Memory used", kind: "timeseries", unit: "bytes", description: "used_memory against maxmemory.", queries: [q(`redis_memory_used_bytes`, "{{node}} used"), q(`redis_memory_max_bytes`, "{{node}} max")] },
      { title: "Commands per second", kind: "timeseries", unit: "short", description: "INFO stats total_commands_processed.", queries: [q(`rate(redis_commands_processed_total[${RATE_INTERVAL}])`, "{{node}}")] },
      { title: "Clients", kind: "timeseries", unit: "short", description: "Connected clients.", queries: [q(`redis_connected_clients`, "{{node}}")] },
    ],
  },
  {
    title: "Analytics (DuckDB)",
    panels: [
      { title: "Mirror age", kind: "stat", unit: "s", description: "Since the last successful sync; HomelabAnalyticsStale fires beyond two sync intervals.", queries: [q(`time() - homelab_duckdb_last_sync_success_timestamp_seconds`, "{{node}}")] },
      { title: "Rows mirrored", kind: "timeseries", unit: "short", description: "Rows of each mirrored table.", queries: [q(`homelab_duckdb_table_rows`, "{{node}} {{table}}")] },
      { title: "Sync duration", kind: "timeseries", unit: "s", description: "How long the last sync took.", queries: [q(`homelab_duckdb_last_sync_duration_seconds`, "{{node}}")] },
    ],
  },
  {
    title: "Nodes",
    panels: [
      { title: "Filesystem used", kind: "timeseries", unit: "percentunit", description: "Data filesystems; HomelabDiskFilling fires above monitoring.alerts.diskUsedRatio.", queries: [q(`1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"} / node_filesystem_size_bytes`, "{{node}} {{mountpoint}}")] },
    ],
  },
  {
    title: "Drills",
    panels: [
      { title: "Last run passed", kind: "stat", unit: "none", description: "1 when the drill's last run met every objective; 0 fires HomelabDrillFailed.", queries: [q(`homelab_drill_success`, "{{drill}}")] },
      { title: "Since the last run", kind: "stat", unit: "s", description: "HomelabDrillOverdue fires beyond monitoring.alerts.drillMaxAge.", queries: [q(`time() - homelab_drill_last_run_timestamp_seconds`, "{{drill}}")] },
      { title: "Measured RTO", kind: "timeseries", unit: "s", description: "Recovery time of each drill's last run (reports/ has every run and its chart).", queries: [q(`homelab_drill_rto_seconds`, "{{drill}}")] },
      { title: "Acknowledged writes lost", kind: "timeseries", unit: "short", description: "The RPO each drill's last run measured, in writes.", queries: [q(`homelab_drill_rpo_writes`, "{{drill}}")] },
    ],
  },
];

/** Every query of the dashboard, with the panel it belongs to. */
export function dashboardQueries(rows: RowSpec[] = DASHBOARD_ROWS): { panel: string; expr: string }[] {
  return rows.flatMap((r) => r.panels.flatMap((p) => p.queries.map((x) => ({ panel: `${r.title} / ${p.title}`, expr: x.expr }))));
}

const DATASOURCE = { type: "prometheus", uid: "${datasource}" };

/** Grafana dashboard JSON: rows of panels on a 24-column grid, stats 6 wide, time series 12. */
export function renderDashboard(rows: RowSpec[] = DASHBOARD_ROWS): string {
  const panels: unknown[] = [];
  let id = 1;
  let y = 0;
  for (const row of rows) {
    panels.push({ id: id++, type: "row", title: row.title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] });
    y += 1;
    let x = 0;
    let rowHeight = 0;
    for (const p of row.panels) {
      const [w, h] = p.kind === "stat" ? [6, 4] : [12, 8];
      if (x + w > 24) {
        x = 0;
        y += rowHeight;
        rowHeight = 0;
      }
      panels.push({
        id: id++,
        type: p.kind,
        title: p.title,
        description: p.description,
        datasource: DATASOURCE,
        gridPos: { h, w, x, y },
        fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
        options: p.kind === "stat" ? { reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false }, colorMode: "value", graphMode: "area", textMode: "auto" } : { legend: { displayMode: "list", placement: "bottom", showLegend: true }, tooltip: { mode: "multi", sort: "none" } },
        targets: p.queries.map((x, i) => ({ datasource: DATASOURCE, expr: x.expr, legendFormat: x.legend, refId: String.fromCharCode(65 + i) })),
      });
      x += w;
      rowHeight = Math.max(rowHeight, h);
    }
    y += rowHeight;
  }
  const dashboard = {
    title: "homelab-data",
    uid: "homelab-data",
    description: "The homelab-data tier: PostgreSQL, pgBackRest, Redis, DuckDB, the nodes and the drills' results (rendered by components/monitoring/dashboards.ts).",
    tags: ["homelab-data", "postgresql", "pgbackrest", "redis", "duckdb"],
    editable: true,
    schemaVersion: 39,
    version: 1,
    time: { from: "now-6h", to: "now" },
    refresh: "30s",
    timezone: "",
    templating: { list: [{ name: "datasource", label: "Prometheus", type: "datasource", query: "prometheus", current: {}, hide: 0 }] },
    annotations: { list: [] },
    panels,
  };
  return `${JSON.stringify(dashboard, null, 2)}\n`;
}
