// Alert rules of a stack, planned from its objectives (issue 12, ADR 0016): every threshold is a number the
// stack already promises (pgbackrest.maxBackupAge, postgres.archiveTimeout, objectives.failover.rpo,
// max_slot_wal_keep_size) or a monitoring.alerts key, never a constant of this file. Pure: plain values in,
// plain values out; renderAlertRules writes the Prometheus rule file (yaml package) that promtool checks.
import { stringify } from "yaml";

/** Names of every alert the rules define, in the order they are written. */
export const ALERT_NAMES = [
  "HomelabBackupTooOld",
  "HomelabArchivingFailing",
  "HomelabReplicaNotStreaming",
  "HomelabReplicationLagHigh",
  "HomelabSlotWalRetained",
  "HomelabRedisPersistenceFailing",
  "HomelabAnalyticsStale",
  "HomelabDiskFilling",
  "HomelabDrillFailed",
  "HomelabDrillOverdue",
] as const;
export type AlertName = (typeof ALERT_NAMES)[number];

export interface AlertObjectives {
  /** Stack name, a label on every alert. */
  stack: string;
  /** pgbackrest.maxBackupAge: the newest backup may not be older than this. */
  maxBackupAgeSeconds: number;
  /** postgres.archiveTimeout: a finished WAL segment waiting longer than twice this means archiving is stuck. */
  archiveTimeoutSeconds: number;
  /** Replication lag above which a failover would lose more than the failover RPO allows. */
  replicationLagMaxSeconds: number;
  /** max_slot_wal_keep_size as tuned (ADR 0002): a slot past it is invalidated and its replica must re-clone. */
  maxSlotWalKeepSizeBytes: number;
  /** monitoring.alerts.slotWalRetainedRatio: share of max_slot_wal_keep_size a slot may hold. */
  slotWalRetainedRatio: number;
  /** monitoring.alerts.diskUsedRatio: share of a filesystem in use above which it is "filling". */
  diskUsedRatio: number;
  /** monitoring.alerts.drillMaxAge: every drill that ever ran must have run again within this. */
  drillMaxAgeSeconds: number;
  /** monitoring.alerts.pendingFor: how long a fast signal (archiving, streaming, lag) must hold before it fires. */
  pendingForSeconds: number;
  /** duckdb.syncInterval when the stack has a DuckDB host: its mirror may be at most two of these old. */
  analyticsSyncIntervalSeconds?: number;
}

/** Annotations use only {{ $labels.<name> }} templates, so a test can expect them exactly (expandAnnotation). */
export interface AlertRule {
  alert: AlertName;
  expr: string;
  for: string;
  labels: Record<string, string>;
  annotations: { summary: string; description: string; runbook_url: string };
}

/** Prometheus duration of whole seconds ("90s"); Prometheus reads it exactly as written. */
export function promDuration(seconds: number): string {
  return `${Math.max(0, Math.ceil(seconds))}s`;
}

/** Where each alert's runbook lives (runbooks/alert-<name>.md, relative to the project root). */
export function runbookPath(alert: AlertName): string {
  return `runbooks/alert-${alert.replace(/^Homelab/, "").replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase()}.md`;
}

export function planAlertRules(o: AlertObjectives): AlertRule[] {
  const problems: string[] = [];
  for (const [key, value] of Object.entries(o)) {
    if (key === "analyticsSyncIntervalSeconds" && value === undefined) continue;
    if (key !== "stack" && (typeof value !== "number" || !Number.isFinite(value) || value <= 0)) problems.push(`${key}: got ${String(value)}; expected a positive number`);
  }
  for (const key of ["slotWalRetainedRatio", "diskUsedRatio"] as const) if (o[key] >= 1) problems.push(`${key}: got ${o[key]}; expected a ratio below 1`);
  if (problems.length > 0) throw new Error(`planAlertRules: ${problems.join("; ")}`);

  const fast = promDuration(o.pendingForSeconds);
  const rule = (alert: AlertName, severity: "critical" | "warning", expr: string, forDuration: string, summary: string, description: string): AlertRule => ({
    alert,
    expr,
    for: forDuration,
    labels: { severity, stack: o.stack },
    annotations: { summary, description, runbook_url: runbookPath(alert) },
  });
  const slotLimit = Math.floor(o.maxSlotWalKeepSizeBytes * o.slotWalRetainedRatio);
  return [
    // The textfile is rewritten every minute on the repository host (homelab-pgbackrest-metrics); no
    // successful backup at all counts as too old, once the stack had maxBackupAge to take one.
    rule("HomelabBackupTooOld", "critical",
      `time() - homelab_pgbackrest_backup_newest_stop_timestamp_seconds{type="any"} > ${Math.ceil(o.maxBackupAgeSeconds)} or homelab_pgbackrest_backup_count == 0 or homelab_pgbackrest_info_success == 0`,
      promDuration(Math.min(o.maxBackupAgeSeconds, 600)),
      "Newest pgBackRest backup of stanza {{ $labels.stanza }} is older than the stack's maxBackupAge",
      `pgbackrest.maxBackupAge is ${Math.ceil(o.maxBackupAgeSeconds)}s; a restore now would replay more WAL than the stack promises, or has nothing to restore.`),
    // pg_stat_archiver counts failed archive_command runs; a finished segment still waiting (.ready) after
    // twice archive_timeout means archiving is stuck even when the command hangs instead of failing.
    rule("HomelabArchivingFailing", "critical",
      `increase(homelab_pg_archiver_failed_count[${promDuration(Math.max(o.pendingForSeconds * 2, 60))}]) > 0 or homelab_pg_archiver_oldest_ready_age_seconds > ${Math.ceil(o.archiveTimeoutSeconds * 2)}`,
      fast,
      "WAL archiving from {{ $labels.node }} is failing",
      `archive_command failed or a finished WAL segment has waited more than twice archive_timeout (${Math.ceil(o.archiveTimeoutSeconds * 2)}s); the RPO of a restore from the repository is growing.`),
    rule("HomelabReplicaNotStreaming", "critical",
      `homelab_pg_recovery_in_recovery == 1 and homelab_pg_recovery_wal_receiver_streaming == 0`,
      fast,
      "Replica {{ $labels.node }} is not streaming from the primary",
      "Its WAL receiver is not in state streaming: it replays from the archive at best, a failover to it loses up to archive_timeout of writes and redundancy is gone."),
    rule("HomelabReplicationLagHigh", "warning",
      `homelab_pg_replication_flush_lag_seconds > ${Math.ceil(o.replicationLagMaxSeconds)}`,
      fast,
      "Replica {{ $labels.application_name }} of {{ $labels.node }} lags behind the primary by more than the failover RPO",
      `A failover now would lose more than the failover RPO (${Math.ceil(o.replicationLagMaxSeconds)}s) of acknowledged writes.`),
    rule("HomelabSlotWalRetained", "warning",
      `homelab_pg_slot_retained_bytes > ${slotLimit}`,
      fast,
      "Replication slot {{ $labels.slot_name }} on {{ $labels.node }} holds WAL near max_slot_wal_keep_size",
      `Above ${Math.round(o.slotWalRetainedRatio * 100)}% of max_slot_wal_keep_size (${o.maxSlotWalKeepSizeBytes} bytes): at the limit PostgreSQL invalidates the slot and its replica must be re-cloned.`),
    rule("HomelabRedisPersistenceFailing", "critical",
      `redis_rdb_last_bgsave_status == 0 or redis_aof_last_bgrewrite_status == 0 or redis_aof_last_write_status == 0`,
      fast,
      "Redis {{ $labels.node }} cannot persist (RDB save or AOF write failing)",
      "Writes acknowledged now are lost on a restart; with noeviction Redis also refuses writes after a failed BGSAVE (stop-writes-on-bgsave-error)."),
    // The DuckDB host's GET /metrics: the time of its last successful sync (0 before the first one).
    ...(o.analyticsSyncIntervalSeconds === undefined ? [] : [rule("HomelabAnalyticsStale", "warning",
      `time() - homelab_duckdb_last_sync_success_timestamp_seconds > ${Math.ceil(o.analyticsSyncIntervalSeconds * 2)}`,
      fast,
      "The DuckDB mirror on {{ $labels.node }} is older than two sync intervals",
      `duckdb.syncInterval is ${Math.ceil(o.analyticsSyncIntervalSeconds)}s and no sync has succeeded for twice that: analytics answer from stale data.`)]),
    rule("HomelabDiskFilling", "warning",
      `1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"} / node_filesystem_size_bytes > ${o.diskUsedRatio}`,
      promDuration(Math.max(o.pendingForSeconds, 300)),
      "Filesystem {{ $labels.mountpoint }} on {{ $labels.node }} is filling",
      `Above monitoring.alerts.diskUsedRatio (${o.diskUsedRatio}): PostgreSQL stops at a full WAL disk, pgBackRest and Redis cannot write.`),
    rule("HomelabDrillFailed", "warning",
      `homelab_drill_success == 0`,
      "0s",
      "The last {{ $labels.drill }} drill failed its objectives",
      "The drill measured an RPO or RTO the stack does not meet (reports/history.jsonl has the run): the recovery it rehearses is not proven."),
    rule("HomelabDrillOverdue", "warning",
      `time() - homelab_drill_last_run_timestamp_seconds > ${Math.ceil(o.drillMaxAgeSeconds)}`,
      "0s",
      "The {{ $labels.drill }} drill has not run for longer than monitoring.alerts.drillMaxAge",
      `A drill older than ${Math.ceil(o.drillMaxAgeSeconds)}s says little about the stack as it is now.`),
  ];
}

/** An annotation as Prometheus renders it for an alert with these labels (only $labels templates are used). */
export function expandAnnotation(template: string, labels: Record<string, string>): string {
  return template.replace(/\{\{ \$labels\.([a-zA-Z_][a-zA-Z0-9_]*) \}\}/g, (_m, name: string) => labels[name] ?? "");
}

/** The Prometheus rule file (one group). */
export function renderAlertRules(rules: AlertRule[], evaluationIntervalSeconds: number): string {
  return `# Rendered by components/monitoring/rules.ts planAlertRules: thresholds follow the stack's objectives.\n${stringify(
    { groups: [{ name: "homelab", interval: promDuration(evaluationIntervalSeconds), rules }] },
    { lineWidth: 0 },
  )}`;
}
