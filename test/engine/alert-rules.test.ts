// The alert rules a stack renders, checked and unit-tested by the promtool of the monitoring image
// (`promtool check rules`, `promtool test rules`; Prometheus docs "Unit testing for rules"). Every alert has
// a firing case and a not-firing twin, with series placed relative to the thresholds the same objectives
// give, so a rule that drifts from its objective, or never fires, fails here. Needs the engine (the
// image); the global setup builds it.
import { execFileSync } from "node:child_process";
import { stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { validateConfig } from "../../components/config/index.ts";
import { ALERT_NAMES, expandAnnotation, planAlertRules, renderAlertRules, type AlertName, type AlertObjectives, type AlertRule } from "../../components/monitoring/index.ts";
import { IMAGES, planHomelab, redactedSecrets } from "../../components/plan.ts";

const INTERVAL = 15;
// Smaller than a real stack's 26h / 8d so promtool evaluates hours, not days, of 15 s steps; the local
// stack's own rules are checked by `promtool check rules` below.
const objectives: AlertObjectives = {
  stack: "rules",
  maxBackupAgeSeconds: 2 * 3600,
  archiveTimeoutSeconds: 60,
  replicationLagMaxSeconds: 30,
  maxSlotWalKeepSizeBytes: 1024 * 1024 ** 2,
  slotWalRetainedRatio: 0.8,
  diskUsedRatio: 0.85,
  drillMaxAgeSeconds: 3 * 3600,
  pendingForSeconds: 60,
  analyticsSyncIntervalSeconds: 300,
};
const rules = planAlertRules(objectives);
const byName = new Map(rules.map((r) => [r.alert, r]));
const forSeconds = (r: AlertRule) => Number(/^(\d+)s$/.exec(r.for)?.[1]);

interface Case {
  alert: AlertName;
  fires: boolean;
  /** Samples every INTERVAL seconds from time 0; values in promtool's expanding notation. */
  series: { series: string; values: string }[];
  /** Labels of the alert besides alertname, severity and stack (those of the series it fires on). */
  labels?: Record<string, string>;
  /** Seconds after 0 to evaluate at; default for + 4 intervals. */
  at?: number;
}

const steps = (seconds: number) => Math.ceil(seconds / INTERVAL) + 8;
const limit = Math.floor(objectives.maxSlotWalKeepSizeBytes * objectives.slotWalRetainedRatio);
const backupAt = objectives.maxBackupAgeSeconds + 1200;
const drillAt = objectives.drillMaxAgeSeconds + 600;
const staleAt = 2 * (objectives.analyticsSyncIntervalSeconds as number) + 300;
const healthyBackup = (n: number) => [
  { series: 'homelab_pgbackrest_info_success', values: `1x${n}` },
  { series: 'homelab_pgbackrest_backup_count{stanza="main"}', values: `2x${n}` },
];
const cases: Case[] = [
  // The newest backup stopped at time 0 and never again: older than maxBackupAge an hour after it.
  { alert: "HomelabBackupTooOld", fires: true, at: backupAt, labels: { stanza: "main", type: "any" },
    series: [{ series: 'homelab_pgbackrest_backup_newest_stop_timestamp_seconds{stanza="main",type="any"}', values: `0x${steps(backupAt)}` }, ...healthyBackup(steps(backupAt))] },
  // A backup every 15 s: always fresh.
  { alert: "HomelabBackupTooOld", fires: false, at: backupAt,
    series: [{ series: 'homelab_pgbackrest_backup_newest_stop_timestamp_seconds{stanza="main",type="any"}', values: `0+${INTERVAL}x${steps(backupAt)}` }, ...healthyBackup(steps(backupAt))] },
  // No backup at all.
  { alert: "HomelabBackupTooOld", fires: true, labels: { stanza: "main" },
    series: [{ series: 'homelab_pgbackrest_backup_count{stanza="main"}', values: `0x${steps(900)}` }, { series: "homelab_pgbackrest_info_success", values: `1x${steps(900)}` }] },
  // archive_command fails on every attempt.
  { alert: "HomelabArchivingFailing", fires: true, labels: { node: "pg-1" },
    series: [{ series: 'homelab_pg_archiver_failed_count{node="pg-1"}', values: `0+1x${steps(600)}` }, { series: 'homelab_pg_archiver_oldest_ready_age_seconds{node="pg-1"}', values: `0x${steps(600)}` }] },
  // A segment waits longer than twice archive_timeout, no failure counted (a hanging command).
  { alert: "HomelabArchivingFailing", fires: true, labels: { node: "pg-1" },
    series: [{ series: 'homelab_pg_archiver_failed_count{node="pg-1"}', values: `3x${steps(600)}` }, { series: 'homelab_pg_archiver_oldest_ready_age_seconds{node="pg-1"}', values: `${objectives.archiveTimeoutSeconds * 2 + 1}x${steps(600)}` }] },
  // Old failures (counter constant) and segments leaving within archive_timeout: healthy.
  { alert: "HomelabArchivingFailing", fires: false,
    series: [{ series: 'homelab_pg_archiver_failed_count{node="pg-1"}', values: `3x${steps(600)}` }, { series: 'homelab_pg_archiver_oldest_ready_age_seconds{node="pg-1"}', values: `${objectives.archiveTimeoutSeconds * 2}x${steps(600)}` }] },
  { alert: "HomelabReplicaNotStreaming", fires: true, labels: { node: "pg-2" },
    series: [{ series: 'homelab_pg_recovery_in_recovery{node="pg-2"}', values: `1x${steps(300)}` }, { series: 'homelab_pg_recovery_wal_receiver_streaming{node="pg-2"}', values: `0x${steps(300)}` }] },
  // A streaming replica, and a primary (no WAL receiver, not in recovery).
  { alert: "HomelabReplicaNotStreaming", fires: false,
    series: [
      { series: 'homelab_pg_recovery_in_recovery{node="pg-2"}', values: `1x${steps(300)}` }, { series: 'homelab_pg_recovery_wal_receiver_streaming{node="pg-2"}', values: `1x${steps(300)}` },
      { series: 'homelab_pg_recovery_in_recovery{node="pg-1"}', values: `0x${steps(300)}` }, { series: 'homelab_pg_recovery_wal_receiver_streaming{node="pg-1"}', values: `0x${steps(300)}` },
    ] },
  { alert: "HomelabReplicationLagHigh", fires: true, labels: { node: "pg-1", application_name: "pg_2" },
    series: [{ series: 'homelab_pg_replication_flush_lag_seconds{node="pg-1",application_name="pg_2"}', values: `${objectives.replicationLagMaxSeconds + 1}x${steps(300)}` }] },
  { alert: "HomelabReplicationLagHigh", fires: false,
    series: [{ series: 'homelab_pg_replication_flush_lag_seconds{node="pg-1",application_name="pg_2"}', values: `${objectives.replicationLagMaxSeconds}x${steps(300)}` }] },
  { alert: "HomelabSlotWalRetained", fires: true, labels: { node: "pg-1", slot_name: "pg_2" },
    series: [{ series: 'homelab_pg_slot_retained_bytes{node="pg-1",slot_name="pg_2"}', values: `${limit + 1}x${steps(300)}` }] },
  { alert: "HomelabSlotWalRetained", fires: false,
    series: [{ series: 'homelab_pg_slot_retained_bytes{node="pg-1",slot_name="pg_2"}', values: `${limit}x${steps(300)}` }] },
  { alert: "HomelabRedisPersistenceFailing", fires: true, labels: { node: "redis" },
    series: [{ series: 'redis_rdb_last_bgsave_status{node="redis"}', values: `0x${steps(300)}` }, { series: 'redis_aof_last_write_status{node="redis"}', values: `1x${steps(300)}` }] },
  { alert: "HomelabRedisPersistenceFailing", fires: true, labels: { node: "redis" },
    series: [{ series: 'redis_rdb_last_bgsave_status{node="redis"}', values: `1x${steps(300)}` }, { series: 'redis_aof_last_write_status{node="redis"}', values: `0x${steps(300)}` }] },
  { alert: "HomelabRedisPersistenceFailing", fires: false,
    series: [{ series: 'redis_rdb_last_bgsave_status{node="redis"}', values: `1x${steps(300)}` }, { series: 'redis_aof_last_write_status{node="redis"}', values: `1x${steps(300)}` }, { series: 'redis_aof_last_bgrewrite_status{node="redis"}', values: `1x${steps(300)}` }] },
  // The last successful sync at time 0, none since: stale two intervals later. A sync every interval: fresh.
  { alert: "HomelabAnalyticsStale", fires: true, at: staleAt, labels: { node: "duckdb" },
    series: [{ series: 'homelab_duckdb_last_sync_success_timestamp_seconds{node="duckdb"}', values: `0x${steps(staleAt)}` }] },
  { alert: "HomelabAnalyticsStale", fires: false, at: staleAt,
    series: [{ series: 'homelab_duckdb_last_sync_success_timestamp_seconds{node="duckdb"}', values: `0+${INTERVAL}x${steps(staleAt)}` }] },
  // 90% used (above 0.85), and 80% used.
  { alert: "HomelabDiskFilling", fires: true, labels: { node: "pg-1", mountpoint: "/var/lib/postgresql/data", fstype: "ext4" },
    series: [{ series: 'node_filesystem_avail_bytes{node="pg-1",mountpoint="/var/lib/postgresql/data",fstype="ext4"}', values: `10x${steps(900)}` }, { series: 'node_filesystem_size_bytes{node="pg-1",mountpoint="/var/lib/postgresql/data",fstype="ext4"}', values: `100x${steps(900)}` }] },
  { alert: "HomelabDiskFilling", fires: false,
    series: [
      { series: 'node_filesystem_avail_bytes{node="pg-1",mountpoint="/var/lib/postgresql/data",fstype="ext4"}', values: `${100 - Math.round(objectives.diskUsedRatio * 100)}x${steps(900)}` }, { series: 'node_filesystem_size_bytes{node="pg-1",mountpoint="/var/lib/postgresql/data",fstype="ext4"}', values: `100x${steps(900)}` },
      // a full tmpfs is not a data disk
      { series: 'node_filesystem_avail_bytes{node="pg-1",mountpoint="/run",fstype="tmpfs"}', values: `0x${steps(900)}` }, { series: 'node_filesystem_size_bytes{node="pg-1",mountpoint="/run",fstype="tmpfs"}', values: `100x${steps(900)}` },
    ] },
  { alert: "HomelabDrillFailed", fires: true, labels: { drill: "failover" }, series: [{ series: 'homelab_drill_success{drill="failover"}', values: `0x${steps(120)}` }] },
  { alert: "HomelabDrillFailed", fires: false, series: [{ series: 'homelab_drill_success{drill="failover"}', values: `1x${steps(120)}` }] },
  { alert: "HomelabDrillOverdue", fires: true, at: drillAt, labels: { drill: "failover" }, series: [{ series: 'homelab_drill_last_run_timestamp_seconds{drill="failover"}', values: `0x${steps(drillAt)}` }] },
  { alert: "HomelabDrillOverdue", fires: false, at: drillAt, series: [{ series: 'homelab_drill_last_run_timestamp_seconds{drill="failover"}', values: `0+${INTERVAL}x${steps(drillAt)}` }] },
];

function promtool(files: Record<string, string>, script: string): { code: number; output: string } {
  // The files travel as JSON on stdin (no bind mount: the engine may be remote, DOCKER_HOST).
  const sh = `set -e; mkdir -p /tmp/t; cd /tmp/t; input="$(cat)"; for f in $(printf '%s' "$input" | jq -r 'keys[]'); do printf '%s' "$input" | jq -r --arg f "$f" '.[$f]' > "$f"; done; ${script}`;
  try {
    const output = execFileSync("docker", ["run", "--rm", "-i", "--network", "none", "--entrypoint", "sh", IMAGES.monitoring.name, "-c", sh], { input: JSON.stringify(files), encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
    return { code: 0, output };
  } catch (err) {
    const e = err as { status?: number; stdout?: string; stderr?: string };
    return { code: e.status ?? 1, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

function testFile(list: Case[]): string {
  return stringify({
    rule_files: ["rules.yml"],
    evaluation_interval: `${INTERVAL}s`,
    tests: list.map((c) => {
      const rule = byName.get(c.alert) as AlertRule;
      const at = c.at ?? forSeconds(rule) + 4 * INTERVAL;
      const labels = { ...rule.labels, ...(c.labels ?? {}) };
      return {
        name: `${c.alert} ${c.fires ? "fires" : "does not fire"}: ${c.series.map((s) => s.series).join(", ")}`,
        interval: `${INTERVAL}s`,
        input_series: c.series,
        alert_rule_test: [{
          eval_time: `${at}s`,
          alertname: c.alert,
          exp_alerts: c.fires ? [{ exp_labels: labels, exp_annotations: Object.fromEntries(Object.entries(rule.annotations).map(([k, v]) => [k, expandAnnotation(v, { ...labels, alertname: c.alert })])) }] : [],
        }],
      };
    }),
  }, { lineWidth: 0 });
}

describe("alert rules (promtool of the monitoring image)", () => {
  const rendered = renderAlertRules(rules, INTERVAL);

  it("has a firing and a not-firing case for every alert", () => {
    for (const alert of ALERT_NAMES) {
      expect(cases.some((c) => c.alert === alert && c.fires), `${alert} fires`).toBe(true);
      expect(cases.some((c) => c.alert === alert && !c.fires), `${alert} stays quiet`).toBe(true);
    }
  });

  it("promtool check rules accepts the rules of the local stack and of these objectives", () => {
    const plan = planHomelab(validateConfig("local", {}), redactedSecrets());
    const local = plan.nodes.find((n) => n.role === "monitoring")?.files.find((f) => f.path.endsWith("/rules.yml"))?.content;
    expect(local).toBeDefined();
    const r = promtool({ "local.yml": local as string, "rules.yml": rendered }, "promtool check rules local.yml rules.yml");
    expect(r.output).toMatch(/SUCCESS: 10 rules found/);
    expect(r.code, r.output).toBe(0);
  });

  it("promtool test rules: every alert fires on its fault and not on its healthy twin", () => {
    const r = promtool({ "rules.yml": rendered, "tests.yml": testFile(cases) }, "promtool test rules tests.yml");
    console.log(`[alert-rules] promtool test rules, ${cases.length} cases:\n${r.output.trim()}`);
    expect(r.code, r.output).toBe(0);
    expect(r.output).toMatch(/SUCCESS/);
  }, 120_000);

  it("the tests can fail: each case with its expectation flipped fails promtool", () => {
    // One run with every expectation inverted: promtool must report each test as failed.
    const flipped = cases.map((c) => ({ ...c, fires: !c.fires, labels: c.labels ?? {} }));
    const r = promtool({ "rules.yml": rendered, "tests.yml": testFile(flipped) }, "promtool test rules tests.yml");
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/FAILED/);
    for (const c of cases) expect(r.output, `flipped ${c.alert} ${c.fires ? "fires" : "quiet"} must fail`).toContain(c.alert);
  }, 120_000);
});
