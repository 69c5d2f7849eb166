// The monitoring planners (components/monitoring): pure, so tested directly. promtool itself checks and
// tests the rendered rules in test/engine/alert-rules.test.ts.
import { existsSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { validateConfig } from "../../components/config/index.ts";
import { ALERT_NAMES, planAlertRules, runbookPath } from "../../components/monitoring/index.ts";
import { planHomelab, redactedSecrets } from "../../components/plan.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const planOf = (config: Record<string, unknown>) => planHomelab(validateConfig("t", config), redactedSecrets());
const file = (config: Record<string, unknown>, suffix: string) => planOf(config).nodes.find((n) => n.role === "monitoring")?.files.find((f) => f.path.endsWith(suffix))?.content as string;
const rulesOf = (config: Record<string, unknown>) => (parse(file(config, "/rules.yml")) as { groups: { rules: { alert: string; expr: string; for: string; annotations: { runbook_url: string } }[] }[] }).groups[0]!.rules;

describe("monitoring planners", () => {
  it("every alert links a runbook that exists", () => {
    for (const alert of ALERT_NAMES) expect(existsSync(path.join(ROOT, runbookPath(alert))), runbookPath(alert)).toBe(true);
    expect(rulesOf({}).map((r) => r.annotations.runbook_url)).toEqual(ALERT_NAMES.map(runbookPath));
  });

  it("thresholds follow the stack's objectives, not constants", () => {
    const byName = (config: Record<string, unknown>) => new Map(rulesOf(config).map((r) => [r.alert, r]));
    const a = byName({});
    const b = byName({ pgbackrest: { maxBackupAge: "2h" }, postgres: { archiveTimeout: "30s" }, objectives: { failover: { rpo: "5s" } }, monitoring: { alerts: { pendingFor: "20s", diskUsedRatio: 0.9 } } });
    expect(a.get("HomelabBackupTooOld")?.expr).toContain("> 93600");
    expect(b.get("HomelabBackupTooOld")?.expr).toContain("> 7200");
    expect(a.get("HomelabArchivingFailing")?.expr).toContain("oldest_ready_age_seconds > 120");
    expect(b.get("HomelabArchivingFailing")?.expr).toContain("oldest_ready_age_seconds > 60");
    // failover.rpo when set, else archive_timeout
    expect(a.get("HomelabReplicationLagHigh")?.expr).toBe("homelab_pg_replication_flush_lag_seconds > 60");
    expect(b.get("HomelabReplicationLagHigh")?.expr).toBe("homelab_pg_replication_flush_lag_seconds > 5");
    expect(a.get("HomelabReplicaNotStreaming")?.for).toBe("60s");
    expect(b.get("HomelabReplicaNotStreaming")?.for).toBe("20s");
    expect(b.get("HomelabDiskFilling")?.expr).toMatch(/> 0\.9$/);
  });

  it("refuses objectives it cannot turn into a rule, naming each", () => {
    const ok = { stack: "t", maxBackupAgeSeconds: 1, archiveTimeoutSeconds: 1, replicationLagMaxSeconds: 1, maxSlotWalKeepSizeBytes: 1, slotWalRetainedRatio: 0.5, diskUsedRatio: 0.5, drillMaxAgeSeconds: 1, pendingForSeconds: 1 };
    expect(() => planAlertRules({ ...ok, archiveTimeoutSeconds: 0, diskUsedRatio: 1 })).toThrow(/archiveTimeoutSeconds: got 0; expected a positive number; diskUsedRatio: got 1; expected a ratio below 1/);
  });

  it("scrapes every PostgreSQL and Redis node through its own exporter, and node_exporter on the postgres-image nodes", () => {
    const prom = parse(file({ redis: { replica: true } }, "/prometheus.yml")) as { global: { scrape_interval: string }; scrape_configs: { job_name: string; static_configs: { targets: string[]; labels: { node: string } }[] }[] };
    expect(prom.global.scrape_interval).toBe("15s");
    const jobs = Object.fromEntries(prom.scrape_configs.map((j) => [j.job_name, j.static_configs.map((c) => `${c.labels.node}@${c.targets.join(",")}`)]));
    expect(jobs).toEqual({
      prometheus: ["monitoring@localhost:9090"],
      postgres: ["pg-1@localhost:9187", "pg-2@localhost:9188"],
      redis: ["redis@localhost:9121", "redis-replica@localhost:9122"],
      node: ["pg-1@homelab-t-pg-1:9100", "pg-2@homelab-t-pg-2:9100", "backup@homelab-t-backup:9100"],
      duckdb: ["duckdb@homelab-t-duckdb:8080"],
      drills: ["monitoring@localhost:9101"],
    });
    // Alerts go to the Alertmanager beside Prometheus.
    expect((prom as unknown as { alerting: unknown }).alerting).toEqual({ alertmanagers: [{ static_configs: [{ targets: ["localhost:9093"] }] }] });
  });

  it("routes every alert to the webhook when one is set, and to no integration otherwise", () => {
    type Am = { route: { receiver: string; group_wait: string; repeat_interval: string }; receivers: { name: string; webhook_configs?: { url: string; send_resolved: boolean }[] }[] };
    const none = parse(file({}, "/alertmanager.yml")) as Am;
    expect(none.route).toMatchObject({ receiver: "none", group_wait: "30s", repeat_interval: "14400s" });
    expect(none.receivers).toEqual([{ name: "none" }]);
    const hook = parse(file({ monitoring: { alerting: { webhookUrl: "http://10.0.0.5:8088/alerts", groupWait: "2s" } } }, "/alertmanager.yml")) as Am;
    expect(hook.route).toMatchObject({ receiver: "webhook", group_wait: "2s" });
    expect(hook.receivers).toEqual([{ name: "webhook", webhook_configs: [{ url: "http://10.0.0.5:8088/alerts", send_resolved: true }] }]);
    expect(() => planOf({ monitoring: { alerting: { webhookUrl: "ftp://x/y" } } })).toThrow(/monitoring\.alerting\.webhookUrl.*ftp:\/\/x\/y.*http:\/\/ or https:\/\/ URL/s);
    // No DuckDB host: no staleness rule, no duckdb job.
    expect(rulesOf({ duckdb: { enabled: false } }).map((r) => r.alert)).not.toContain("HomelabAnalyticsStale");
    expect(rulesOf({ duckdb: { syncInterval: "10min" } }).find((r) => r.alert === "HomelabAnalyticsStale")?.expr).toBe("time() - homelab_duckdb_last_sync_success_timestamp_seconds > 1200");
  });

  it("keeps the monitor passwords in secret files: never in the exporters' argv or env", () => {
    const plan = planOf({});
    const mon = plan.nodes.find((n) => n.role === "monitoring")!;
    const exporters = mon.files.find((f) => f.path.endsWith("/exporters.jsonl"))!;
    expect(exporters.content).not.toContain("REDACTED");
    expect(exporters.content).toContain('"DATA_SOURCE_PASS_FILE":"/run/homelab-secrets/homelab_monitor.password"');
    for (const f of mon.files) if (f.content.includes("REDACTED-")) expect(f.secret, f.path).toBe(true);
    expect(mon.files.filter((f) => f.secret).map((f) => f.path)).toEqual(["/etc/homelab/secrets/homelab_monitor.password", "/etc/homelab/secrets/redis-monitor.json"]);
    // redis_exporter looks the password up under the address with -redis.user in it (redis://monitor@host:port).
    const map = JSON.parse(mon.files.find((f) => f.path.endsWith("/redis-monitor.json"))!.content) as Record<string, string>;
    expect(Object.keys(map)).toEqual([expect.stringMatching(/^redis:\/\/monitor@[a-z0-9.-]+:6379$/)]);
    expect(exporters.content).toContain('"-redis.user=monitor"');
    // pg_hba: the monitor role only from the monitoring node, scram, only the postgres database.
    const hba = plan.nodes.find((n) => n.name === "pg-1")!.files.find((f) => f.path.endsWith("pg_hba.conf"))!.content;
    expect(hba.split("\n").filter((l) => l.includes("homelab_monitor"))).toEqual([expect.stringMatching(/^host\s+postgres\s+homelab_monitor\s+172\.28\.0\.41\/32\s+scram-sha-256$/)]);
    const acl = plan.nodes.find((n) => n.name === "redis")!.files.find((f) => f.path.endsWith("users.acl"))!.content;
    expect(acl).toMatch(/^user monitor on resetpass #[0-9a-f]{64} resetkeys resetchannels -@all \+ping \+info \+config\|get/m);
  });


  it("runs every exporter and Alertmanager with the memory-lean Go runtime (GOGC=50, one thread)", () => {
    const mon = planOf({ duckdb: { enabled: true } }).nodes.find((n) => n.role === "monitoring")!;
    const lines = mon.files.find((f) => f.path.endsWith("/exporters.jsonl"))!.content.trim().split("\n").map((l) => JSON.parse(l) as { name: string; env: Record<string, string> });
    expect(lines.map((l) => l.name)).toEqual(expect.arrayContaining(["postgres-exporter-pg-1", "redis-exporter-redis", "drill-metrics", "alertmanager"]));
    for (const l of lines) expect(l.env, l.name).toMatchObject({ GOGC: "50", GOMAXPROCS: "1" });
  });
  it("without monitoring: no node, no monitor role, no node_exporter, no metrics cron line", () => {
    const plan = planOf({ monitoring: { enabled: false } });
    expect(plan.nodes.map((n) => n.role)).not.toContain("monitoring");
    expect(JSON.stringify(plan.nodes)).not.toMatch(/homelab_monitor|HOMELAB_NODE_EXPORTER_PORT|homelab-pgbackrest-metrics/);
    expect(plan.facts.monitoring).toBeUndefined();
  });

  it("reports a bad monitoring key naming the key, the value and what is accepted", () => {
    expect(() => validateConfig("t", { monitoring: { alerts: { diskUsedRatio: 1.5 } } })).toThrow(/monitoring\.alerts\.diskUsedRatio/);
    expect(() => validateConfig("t", { monitoring: { scrapeInterval: "soon" } })).toThrow(/monitoring\.scrapeInterval.*soon/);
  });
});
