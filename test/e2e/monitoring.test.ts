// The monitoring node on a real tier (issue 12, ADR 0016): Prometheus scrapes every exporter, no alert fires
// on the healthy stack, and the alert twins of docs/drills.md fire on their faults: archive_command broken
// -> HomelabArchivingFailing, the replica's WAL receiver stopped -> HomelabReplicaNotStreaming, Redis' data dir
// read-only -> HomelabRedisPersistenceFailing, the DuckDB host's source password stale -> HomelabAnalyticsStale,
// a failed drill published by `homelab drill`'s path -> HomelabDrillFailed, each within
// two scrape+evaluation cycles of its `for:` (plus what PostgreSQL itself takes to notice). Also measures
// the memory monitoring adds (must stay <= 150 MiB). Alertmanager delivers to a webhook this test listens on
// (firing, then resolved). Stack e2e-monitoring on slot 10 (172.39.0.0/24).
import { createServer, type Server } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { monitoringLine } from "../../cli/lifecycle-commands.ts";
import { ALERT_NAMES, RATE_INTERVAL, dashboardQueries } from "../../components/monitoring/index.ts";
import { DockerNodeControl } from "../../drills/lib/nodes.ts";
import { redisCliOnNode } from "../../drills/lib/redis.ts";
import { publishDrillMetrics } from "../../drills/lib/metrics.ts";
import { makeReport, writeReport } from "../../drills/lib/report.ts";
import { nodeByRole } from "../../drills/lib/topology.ts";
import { containerUsedBytes, e2eSpec, ensureImages, leftovers, processAnonBytes, startTier, tierMemoryBytes, type Tier } from "./harness.ts";

const STACK = "e2e-monitoring";
const SCRAPE_SECONDS = 2;
const PENDING_FOR_SECONDS = 6;
const MEMORY_BUDGET_BYTES = 150 * 1024 ** 2;
// Two scrape+evaluation cycles after `for:` (the acceptance bound), plus what the fault takes to show in
// PostgreSQL itself (the archiver's first failed attempt, the WAL receiver's exit): measured, printed.
const FIRE_BOUND_SECONDS = PENDING_FOR_SECONDS + 2 * (SCRAPE_SECONDS + SCRAPE_SECONDS);
const SLACK_SECONDS = 10;
const SYNC_SECONDS = 5;
let tier: Tier;
// Alertmanager's webhook POSTs (Prometheus webhook payload v4), as received.
interface WebhookAlert { status: string; labels: Record<string, string> }
const received: { status: string; alerts: WebhookAlert[] }[] = [];
let webhook: Server;
let prometheus: string;
const t0 = Date.now();
let healthyFrom = 0;

interface Sample { metric: Record<string, string>; value?: [number, string]; values?: [number, string][] }
async function query(promql: string): Promise<Sample[]> {
  const res = await fetch(`${prometheus}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = (await res.json()) as { status: string; data?: { result: Sample[] }; error?: string };
  if (body.status !== "success") throw new Error(`prometheus: ${promql}: ${body.error}`);
  return body.data?.result ?? [];
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
    await sleep(500);
  }
}
/** Firing alerts with these names, by Prometheus' own ALERTS series. */
async function firing(alert: string): Promise<Sample[]> {
  return query(`ALERTS{alertname="${alert}",alertstate="firing"}`);
}
/** Seconds from the fault until the alert fires. */
async function timeToFire(alert: string, injectedAt: number, keepBusy: () => Promise<void>): Promise<number> {
  await until(`${alert} to fire`, (FIRE_BOUND_SECONDS + SLACK_SECONDS + 30) * 1000, async () => {
    await keepBusy();
    return (await firing(alert)).length > 0 ? true : undefined;
  });
  return (Date.now() - injectedAt) / 1000;
}
/** A drill report written and published the way `homelab drill` does after a run (cli/drill-commands.ts). */
async function publishDrillRun(reports: string, drill: string, ok: boolean, rtoSeconds: number): Promise<string | undefined> {
  const now = Date.now();
  await writeReport(makeReport({
    drill, stack: STACK, runId: `e2e-${now}`, startedAtMs: now - 30_000, objectives: { rtoSeconds: 30 }, phases: [],
    rpo: { acknowledgedWrites: 100, lostWrites: 0, lostSeqs: [], ghostWrites: 0, ghostSeqs: [], uncertainWrites: 0, uncertainPresent: 0, rpoSeconds: 0, lastAcknowledgedSeq: 100, lastPresentSeq: 100, lastPresentAcknowledgedSeq: 100 },
    rto: { faultAtMs: now - 20_000, phases: [], totalMs: rtoSeconds * 1000, totalSeconds: rtoSeconds },
    checks: [{ name: "RTO within objective", ok, detail: `${rtoSeconds}s` }], evidence: {},
  }), reports);
  return publishDrillMetrics(tier.topology, reports);
}
/** Some WAL and a segment switch on the primary, so the archiver has a finished segment to push. */
async function walSwitch(): Promise<void> {
  await tier.sql("pg-1", "CREATE TABLE IF NOT EXISTS monitoring_probe (at timestamptz); INSERT INTO monitoring_probe VALUES (now()); SELECT pg_switch_wal();");
}

describe("monitoring node on a real tier", () => {
  beforeAll(async () => {
    ensureImages();
    webhook = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        try {
          received.push(JSON.parse(body) as (typeof received)[number]);
        } catch {
          received.push({ status: `unparsable: ${body.slice(0, 200)}`, alerts: [] });
        }
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => webhook.listen(0, "0.0.0.0", r));
    const port = (webhook.address() as { port: number }).port;
    // The monitoring node reaches the host at the stack network's gateway (slot 10: 172.39.0.0/24).
    const alerting = { webhookUrl: `http://172.39.0.1:${port}/alerts`, groupWait: "1s", repeatInterval: "1h" };
    tier = await startTier(e2eSpec(STACK, { monitoring: { enabled: true, scrapeInterval: `${SCRAPE_SECONDS}s`, alerts: { pendingFor: `${PENDING_FOR_SECONDS}s` }, alerting }, duckdb: { syncInterval: `${SYNC_SECONDS}s` } }, 10));
    prometheus = tier.topology.monitoring?.prometheus as string;
    healthyFrom = Date.now();
    console.log(`[e2e] prometheus at ${prometheus}`);
  }, 600_000);

  afterAll(async () => {
    await tier?.teardown();
    webhook?.close();
    expect(await leftovers(STACK)).toEqual([]);
    console.log(`[e2e] monitoring total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }, 120_000);

  it("scrapes every exporter: postgres (both nodes), redis, node_exporter with pgBackRest's textfile", async () => {
    expect(prometheus).toBe(`http://127.0.0.1:${25432 + 10 * 100 + 40}`);
    const targets = await until("every target up", 120_000, async () => {
      const res = (await (await fetch(`${prometheus}/api/v1/targets`)).json()) as { data: { activeTargets: { labels: Record<string, string>; health: string; lastError: string }[] } };
      const t = res.data.activeTargets;
      return t.length > 0 && t.every((x) => x.health === "up") ? t : undefined;
    });
    console.log(`[e2e] targets up: ${targets.map((t) => `${t.labels.job}/${t.labels.node}`).join(", ")}`);
    expect(targets.map((t) => `${t.labels.job}/${t.labels.node}`).sort()).toEqual(["drills/monitoring", "duckdb/duckdb", "node/backup", "node/pg-1", "node/pg-2", "postgres/pg-1", "postgres/pg-2", "prometheus/monitoring", "redis/redis"]);
    // The monitor roles log in (scram over the network, their own pg_hba rule; the redis ACL user).
    let ups: string[] = [];
    try {
      await until("pg_up on both PostgreSQL nodes", 60_000, async () => {
        const r = await query("pg_up");
        ups = r.map((x) => `pg_up{node=${x.metric.node}}=${x.value?.[1]}`);
        return r.length === 2 && r.every((x) => x.value?.[1] === "1") ? true : undefined;
      });
    } finally {
      console.log(`[e2e] postgres_exporters' own view: ${ups.join(", ")}`);
    }
    // The replica streams, the primary reports it; the pgBackRest textfile (cron, every minute) shows the first full backup.
    await until("replica streaming", 60_000, async () => ((await query('homelab_pg_recovery_wal_receiver_streaming{node="pg-2"} == 1')).length === 1 ? true : undefined));
    const backups = await until("pgBackRest metrics", 90_000, async () => {
      const r = await query("homelab_pgbackrest_backup_count");
      return r.length > 0 && Number(r[0]?.value?.[1]) > 0 ? r : undefined;
    });
    console.log(`[e2e] pgBackRest backups seen by Prometheus: ${backups[0]?.value?.[1]}`);
    expect((await query('homelab_pgbackrest_backup_newest_stop_timestamp_seconds{type="full"}')).length).toBe(1);
    expect((await query("node_filesystem_size_bytes")).length).toBeGreaterThan(0);
    healthyFrom = Date.now();
  }, 300_000);

  // The exporter logs in as the ACL user "monitor" with the password from its password file (never argv/env):
  // redis_up and a persistence metric only the logged-in INFO reports.
  it("redis_exporter logs in as the monitor user with the password file", async () => {
    await until("redis_up", 30_000, async () => ((await query("redis_up == 1")).length === 1 ? true : undefined));
    expect((await query("redis_rdb_last_bgsave_status")).length).toBe(1);
  }, 60_000);

  it("healthy stack: no alert fires while WAL is written and archived", async () => {
    const rules = (await (await fetch(`${prometheus}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string }[] }[] } };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    expect(loaded.map((r) => r.name).sort()).toEqual([...ALERT_NAMES].sort());
    expect(loaded.filter((r) => r.health !== "ok")).toEqual([]);
    // Archiving works through several segment switches, and the alerts stay quiet over at least 3x `for:`.
    for (let i = 0; i < 6; i++) {
      await walSwitch();
      await sleep(4000);
    }
    const windowSeconds = Math.ceil((Date.now() - healthyFrom) / 1000);
    const fired = await query(`max_over_time(ALERTS{alertstate="firing"}[${windowSeconds}s])`);
    const pending = await query(`max_over_time(ALERTS{alertstate="pending"}[${windowSeconds}s])`);
    console.log(`[e2e] healthy window ${windowSeconds}s: ${fired.length} firing, ${pending.length} pending (${pending.map((p) => p.metric.alertname).join(", ") || "none"})`);
    expect(fired.map((f) => f.metric)).toEqual([]);
    expect(Number((await query("increase(homelab_pg_archiver_archived_count{node=\"pg-1\"}[1m])"))[0]?.value?.[1])).toBeGreaterThan(0);
  }, 120_000);

  it("every panel of the Grafana dashboard (dashboards/homelab.json) gets data from this Prometheus", async () => {
    // Grafana cannot be installed here: run each panel's query the way Grafana would, $__rate_interval as
    // four scrape intervals. A drill result is published first, as `homelab drill` does, for the drill panels.
    const reports = mkdtempSync(path.join(tmpdir(), "e2e-monitoring-dashboard-"));
    try {
      await publishDrillRun(reports, "backup-restore", true, 9);
      // A table in the application database, for the DuckDB host to mirror (its rows panel).
      await tier.sql("pg-1", "CREATE TABLE IF NOT EXISTS dashboard_orders AS SELECT g AS id, now() AS at FROM generate_series(1, 1000) g", tier.spec.postgres.database);
      const queries = dashboardQueries().map((q) => ({ ...q, expr: q.expr.replaceAll(RATE_INTERVAL, `${4 * SCRAPE_SECONDS}s`) }));
      const withoutData = async () => {
        const none: string[] = [];
        for (const q of queries) if ((await query(q.expr)).length === 0) none.push(`${q.panel}: ${q.expr}`);
        return none;
      };
      // Rates need two samples in the window: wait a little for them, then name every query still empty.
      const empty = await until("data for every dashboard query", 30_000, async () => ((await withoutData()).length === 0 ? [] : undefined)).catch(withoutData);
      console.log(`[e2e] dashboard: ${queries.length} queries, ${queries.length - empty.length} with data`);
      expect(empty).toEqual([]);
    } finally {
      rmSync(reports, { recursive: true, force: true });
    }
  }, 120_000);

  it("archive_command broken -> HomelabArchivingFailing fires", async () => {
    await tier.sql("pg-1", "ALTER SYSTEM SET archive_command = 'false'");
    await tier.sql("pg-1", "SELECT pg_reload_conf()");
    const injectedAt = Date.now();
    let last = 0;
    const seconds = await timeToFire("HomelabArchivingFailing", injectedAt, async () => {
      if (Date.now() - last > 3000) { last = Date.now(); await walSwitch(); }
    });
    const alert = (await firing("HomelabArchivingFailing"))[0];
    console.log(`[e2e] HomelabArchivingFailing fired ${seconds.toFixed(1)}s after archive_command broke (for: ${PENDING_FOR_SECONDS}s, bound ${FIRE_BOUND_SECONDS}s + ${SLACK_SECONDS}s for PostgreSQL's archiver), on ${alert?.metric.node}`);
    expect(alert?.metric).toMatchObject({ node: "pg-1", severity: "critical", stack: STACK });
    expect(seconds).toBeLessThanOrEqual(FIRE_BOUND_SECONDS + SLACK_SECONDS);
    // Alertmanager delivers it to the stack's webhook (group_wait 1s).
    const delivered = (status: string) => received.some((p) => p.alerts.some((a) => a.status === status && a.labels.alertname === "HomelabArchivingFailing" && a.labels.node === "pg-1"));
    await until("the webhook to receive HomelabArchivingFailing firing", 30_000, async () => (delivered("firing") ? true : undefined));
    console.log(`[e2e] webhook received HomelabArchivingFailing firing ${((Date.now() - injectedAt) / 1000).toFixed(1)}s after the fault`);
    await tier.sql("pg-1", "ALTER SYSTEM RESET archive_command");
    await tier.sql("pg-1", "SELECT pg_reload_conf()");
    // ...and once archiving works again, the resolved notification (send_resolved).
    const repairedAt = Date.now();
    await until("the webhook to receive HomelabArchivingFailing resolved", 90_000, async () => {
      await walSwitch();
      return delivered("resolved") ? true : undefined;
    });
    console.log(`[e2e] webhook received HomelabArchivingFailing resolved ${((Date.now() - repairedAt) / 1000).toFixed(1)}s after archive_command was reset`);
  }, 180_000);

  it("replica's WAL receiver stopped -> HomelabReplicaNotStreaming fires", async () => {
    // An empty primary_conninfo stops the WAL receiver for good (PostgreSQL 13+ reloads it): the standby
    // falls back to restore_command, as it would when the primary is unreachable.
    await tier.sql("pg-2", "ALTER SYSTEM SET primary_conninfo = ''");
    await tier.sql("pg-2", "SELECT pg_reload_conf()");
    const injectedAt = Date.now();
    const seconds = await timeToFire("HomelabReplicaNotStreaming", injectedAt, async () => {});
    const alert = (await firing("HomelabReplicaNotStreaming"))[0];
    console.log(`[e2e] HomelabReplicaNotStreaming fired ${seconds.toFixed(1)}s after the WAL receiver was stopped (for: ${PENDING_FOR_SECONDS}s, bound ${FIRE_BOUND_SECONDS}s + ${SLACK_SECONDS}s), on ${alert?.metric.node}`);
    expect(alert?.metric).toMatchObject({ node: "pg-2", severity: "critical", stack: STACK });
    expect(seconds).toBeLessThanOrEqual(FIRE_BOUND_SECONDS + SLACK_SECONDS);
  }, 120_000);

  it("Redis cannot write its data dir -> HomelabRedisPersistenceFailing fires", async () => {
    // The fault: the data directory read-only for the redis user, then a BGSAVE (as admin, the password read on
    // the node into REDISCLI_AUTH). The forked child cannot create its temp RDB file: rdb_last_bgsave_status=err.
    const ctl = new DockerNodeControl();
    const redis = nodeByRole(tier.topology, "redis");
    const admin = { user: tier.topology.redis!.adminUser, passwordFile: tier.topology.redis!.passwordFiles.admin! };
    expect(await redisCliOnNode(ctl, redis, admin, ["PING"])).toBe("PONG");
    const dir = "/var/lib/redis";
    const mode = (await tier.exec("redis", ["stat", "-c", "%a", dir])).stdout.trim();
    expect(mode).toMatch(/^[0-7]{3,4}$/);
    expect((await tier.exec("redis", ["chmod", "0555", dir])).code).toBe(0);
    try {
      const injectedAt = Date.now();
      const seconds = await timeToFire("HomelabRedisPersistenceFailing", injectedAt, async () => {
        await redisCliOnNode(ctl, redis, admin, ["BGSAVE"]).catch(() => undefined);
      });
      const alert = (await firing("HomelabRedisPersistenceFailing"))[0];
      console.log(`[e2e] HomelabRedisPersistenceFailing fired ${seconds.toFixed(1)}s after Redis' data dir went read-only (for: ${PENDING_FOR_SECONDS}s, bound ${FIRE_BOUND_SECONDS}s + ${SLACK_SECONDS}s), on ${alert?.metric.node}`);
      expect(alert?.metric).toMatchObject({ node: "redis", severity: "critical", stack: STACK });
      expect(seconds).toBeLessThanOrEqual(FIRE_BOUND_SECONDS + SLACK_SECONDS);
    } finally {
      await tier.exec("redis", ["chmod", mode, dir]);
    }
  }, 120_000);

  it("DuckDB's source password refused -> HomelabAnalyticsStale fires, and clears once syncs succeed", async () => {
    // The fault: the DuckDB host's copy of the source password no longer matches (a rotation that did not reach
    // it). The host's own file, since its source is the replica, which an earlier fault cut off from the primary.
    const file = "/etc/homelab/secrets/source.password";
    expect((await query('homelab_duckdb_last_sync_ok{node="duckdb"} == 1')).length).toBe(1);
    expect((await tier.exec("duckdb", ["sh", "-c", 'cp -p "$1" "$1.saved" && printf stale-password > "$1"', "sh", file])).code).toBe(0);
    try {
      const injectedAt = Date.now();
      const seconds = await timeToFire("HomelabAnalyticsStale", injectedAt, async () => {});
      const alert = (await firing("HomelabAnalyticsStale"))[0];
      // The rule's threshold is two sync intervals, on top of `for:`.
      console.log(`[e2e] HomelabAnalyticsStale fired ${seconds.toFixed(1)}s after the source password went stale (2 x sync ${SYNC_SECONDS}s + for: ${PENDING_FOR_SECONDS}s, bound ${FIRE_BOUND_SECONDS + 2 * SYNC_SECONDS}s + ${SLACK_SECONDS}s), on ${alert?.metric.node}`);
      expect(alert?.metric).toMatchObject({ node: "duckdb", severity: "warning", stack: STACK });
      expect(seconds).toBeLessThanOrEqual(FIRE_BOUND_SECONDS + 2 * SYNC_SECONDS + SLACK_SECONDS);
      expect((await query('homelab_duckdb_last_sync_ok{node="duckdb"} == 0')).length).toBe(1);
    } finally {
      await tier.exec("duckdb", ["sh", "-c", 'cat "$1.saved" > "$1" && rm "$1.saved"', "sh", file]);
    }
    await until("HomelabAnalyticsStale to clear", 60_000, async () => ((await firing("HomelabAnalyticsStale")).length === 0 ? true : undefined));
    expect((await query('homelab_duckdb_last_sync_ok{node="duckdb"} == 1')).length).toBe(1);
  }, 180_000);

  it("drill results reach Prometheus the way `homelab drill` publishes them: a failed drill fires HomelabDrillFailed, a passing one clears it", async () => {
    const reports = mkdtempSync(path.join(tmpdir(), "e2e-monitoring-reports-"));
    try {
      const run = (ok: boolean, rtoSeconds: number) => publishDrillRun(reports, "failover", ok, rtoSeconds);
      expect(await run(false, 45)).toBe("monitoring:/var/lib/prometheus/textfile/drills.prom");
      const injectedAt = Date.now();
      const seconds = await timeToFire("HomelabDrillFailed", injectedAt, async () => {});
      console.log(`[e2e] HomelabDrillFailed fired ${seconds.toFixed(1)}s after the failed run was published`);
      expect((await firing("HomelabDrillFailed"))[0]?.metric).toMatchObject({ drill: "failover", stack: STACK });
      expect((await query(`homelab_drill_rpo_writes{drill="failover",stack="${STACK}"}`))[0]?.value?.[1]).toBe("0");
      await run(true, 12);
      await until("HomelabDrillFailed to clear", 30_000, async () => ((await firing("HomelabDrillFailed")).length === 0 ? true : undefined));
      expect((await query(`homelab_drill_success{drill="failover"}`))[0]?.value?.[1]).toBe("1");
    } finally {
      rmSync(reports, { recursive: true, force: true });
    }
  }, 120_000);

  it("over the whole run only the injected faults fired", async () => {
    const windowSeconds = Math.ceil((Date.now() - healthyFrom) / 1000) + 5;
    const fired = await query(`max_over_time(ALERTS{alertstate="firing"}[${windowSeconds}s])`);
    console.log(`[e2e] fired over ${windowSeconds}s: ${fired.map((f) => `${f.metric.alertname}{node=${f.metric.node}}`).join(", ")}`);
    expect([...new Set(fired.map((f) => f.metric.alertname))].sort()).toEqual(["HomelabAnalyticsStale", "HomelabArchivingFailing", "HomelabDrillFailed", "HomelabRedisPersistenceFailing", "HomelabReplicaNotStreaming"]);
    // `homelab status` says the same: the URL and what fires now.
    const line = await monitoringLine(prometheus);
    console.log(`[e2e] homelab status: ${line}`);
    expect(line).toMatch(new RegExp(`^monitoring: Prometheus ${prometheus}; FIRING: .*HomelabReplicaNotStreaming\\{node=pg-2\\}`));
  });

  it("monitoring adds at most 150 MiB of memory in use", async () => {
    // "In use" as `free` counts it: the monitoring node's memory less its page cache, plus the anonymous
    // memory of node_exporter in each node of the postgres image. Page cache is left out because which
    // container is charged for a binary's pages depends on who read it first (harness containerUsedBytes):
    // the working set docker stats prints, printed beside it, moved from 86 to 129 MiB between two runs.
    const monitoringNode = await containerUsedBytes(`homelab-${STACK}-monitoring`);
    const workingSet = (await tierMemoryBytes(STACK)).perContainer[`homelab-${STACK}-monitoring`] ?? 0;
    let nodeExporters = 0;
    const perNode: string[] = [];
    for (const node of ["pg-1", "pg-2", "backup"]) {
      const bytes = await processAnonBytes(`homelab-${STACK}-${node}`, "prometheus-node-exporter");
      nodeExporters += bytes;
      perNode.push(`${node} ${(bytes / 1024 ** 2).toFixed(1)} MiB`);
    }
    const total = monitoringNode + nodeExporters;
    const mib = (b: number) => `${(b / 1024 ** 2).toFixed(1)} MiB`;
    console.log(`[e2e] monitoring memory in use: monitoring node ${mib(monitoringNode)} (working set with page cache ${mib(workingSet)}) + node_exporters ${mib(nodeExporters)} (${perNode.join(", ")}) = ${mib(total)} of ${mib(MEMORY_BUDGET_BYTES)}`);
    expect(monitoringNode).toBeGreaterThan(20 * 1024 ** 2); // Prometheus alone holds more than that
    expect(nodeExporters).toBeGreaterThan(0);
    expect(total).toBeLessThanOrEqual(MEMORY_BUDGET_BYTES);
  });
});
