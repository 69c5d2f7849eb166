// The day-2 drills on one real tier (they are non-destructive, so they share it), each with its fault twin:
// - long-transaction (drills/long-transaction.mts): a transaction left idle blocks an ALTER TABLE and every
//   INSERT queued behind it; the drill finds the blocker and terminates it. Twin: pg_cancel_backend() (it
//   cancels a running query; an idle transaction runs none) leaves the writes stalled: FAIL naming it.
// - vacuum-bloat (drills/vacuum-bloat.mts): dead tuples piled up with autovacuum off are detected, measured
//   with pgstattuple, removed by VACUUM within the objective. Twin: a REPEATABLE READ transaction opened
//   before the churn holds the xmin horizon, VACUUM removes nothing: FAIL naming the session.
// - query-tuning (drills/query-tuning.mts): the workload's slow lookup found at the top of pg_stat_statements,
//   explained, fixed with CREATE INDEX CONCURRENTLY, at least objectives.queryTuning.minSpeedup faster. Twin:
//   an index on the wrong column: the plan keeps its sequential scan, FAIL naming it.
// Stack e2e-day2 on slot 7 (172.36.0.0/24).
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runLongTransactionDrill } from "../../drills/long-transaction.mts";
import { runQueryTuningDrill } from "../../drills/query-tuning.mts";
import { runVacuumBloatDrill, type TupleStats } from "../../drills/vacuum-bloat.mts";
import { controlFor, psqlOnNode, type NodeControl } from "../../drills/lib/index.ts";
import type { DrillReport } from "../../drills/lib/report.ts";
import { nodeByRole } from "../../drills/lib/topology.ts";
import { e2eSpec, ensureImages, leftovers, startTier, type Tier } from "./harness.ts";

const STACK = "e2e-day2";
let tier: Tier;
let ctl: NodeControl;
let reportsDir: string;

function longTxSummary(label: string, r: DrillReport): string {
  const phases = r.rto?.phases.map((p) => `${p.name} ${p.durationMs} ms`).join(", ") ?? "—";
  return [`[e2e] long-transaction ${label}: ${r.verdict.toUpperCase()}; stall ${r.rto ? `${r.rto.totalSeconds.toFixed(2)} s` : "—"} (${phases})`, ...r.checks.filter((c) => !c.ok).map((c) => `  ✖ ${c.name}: ${c.detail}`)].join("\n");
}

function bloatSummary(label: string, r: DrillReport): string {
  const b = r.evidence.before as TupleStats | undefined;
  const a = r.evidence.after as TupleStats | undefined;
  return [
    `[e2e] vacuum-bloat ${label}: ${r.verdict.toUpperCase()}; VACUUM ${r.rto ? `${r.rto.totalSeconds.toFixed(2)} s` : "—"}; dead tuples ${b?.dead_tuple_count ?? "?"} -> ${a?.dead_tuple_count ?? "?"}, free ${b?.free_percent ?? "?"}% -> ${a?.free_percent ?? "?"}%, table ${b ? (b.table_len / 1048576).toFixed(1) : "?"} -> ${a ? (a.table_len / 1048576).toFixed(1) : "?"} MiB`,
    ...r.checks.filter((c) => !c.ok).map((c) => `  ✖ ${c.name}: ${c.detail}`),
  ].join("\n");
}

describe("day-2 drills on a real tier", () => {
  beforeAll(async () => {
    ensureImages();
    tier = await startTier(e2eSpec(STACK, { redis: { enabled: false }, duckdb: { enabled: false } }, 7));
    ctl = controlFor(tier.topology);
    reportsDir = await mkdtemp(path.join(tmpdir(), "drill-day2-"));
  }, 600_000);

  afterAll(async () => {
    await tier?.teardown();
    if (reportsDir) await rm(reportsDir, { recursive: true, force: true });
    expect(await leftovers(STACK)).toEqual([]);
  }, 120_000);

  it("healthy run: the blocker found and terminated, writes resume within the objective, the migration done, no write lost", async () => {
    const report = await runLongTransactionDrill({ topology: tier.topology, reportsDir });
    console.log(longTxSummary("terminate", report));
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.verdict).toBe("pass");
    expect(report.objectives).toEqual({ detectSeconds: 10, rtoSeconds: 30 });
    expect(report.rto?.phases.map((p) => p.name)).toEqual(["detection", "recovery"]);
    expect(report.rto!.totalSeconds).toBeGreaterThan(0);
    const roots = report.evidence.rootBlockers as { state: string }[];
    expect(roots.map((r) => r.state)).toEqual(["idle in transaction"]);
    // The blocked queue held the migration and the writer's INSERT.
    const blocked = (report.evidence.blocked as { query: string }[]).map((b) => b.query.split(" ")[0]);
    expect(blocked).toEqual(expect.arrayContaining(["ALTER", "INSERT"]));
    expect(report.checks.map((c) => c.name)).toEqual(expect.arrayContaining(["forgotten transaction detected", "the migration went through", "the forgotten session was ended", "no acknowledged write lost"]));
    const md = await readFile(path.join(reportsDir, "history.jsonl"), "utf8");
    expect(md).toContain('"drill":"long-transaction"');
    // Nothing of the drill is left on the primary.
    const primary = nodeByRole(tier.topology, "postgres-primary");
    expect(await psqlOnNode(ctl, primary, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'homelab-drill-long-tx-%'")).toBe("0");
    expect(await psqlOnNode(ctl, primary, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'drill_long_tx_%'", { database: tier.spec.postgres.database })).toBe("0");
  }, 180_000);

  it("twin: pg_cancel_backend() instead of terminate leaves the writes stalled -> FAIL naming it", async () => {
    const report = await runLongTransactionDrill({ topology: tier.topology, reportsDir, recovery: "cancel" });
    console.log(longTxSummary("twin cancel", report));
    expect(report.verdict).toBe("fail");
    const stall = report.checks.find((c) => c.name.startsWith("write stall"));
    expect(stall?.ok).toBe(false);
    expect(stall?.detail).toMatch(/writes still stalled .* pg_cancel_backend\(\) left pid \d+ idle in transaction in place \(pg_cancel_backend cancels a running query; an idle transaction runs none: terminate it\)/);
    // Detection still worked; the cleanup ended the sessions anyway.
    expect(report.checks.find((c) => c.name === "forgotten transaction detected")?.ok).toBe(true);
    const primary = nodeByRole(tier.topology, "postgres-primary");
    expect(await psqlOnNode(ctl, primary, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'homelab-drill-long-tx-%'")).toBe("0");
  }, 180_000);

  it("healthy run: bloat detected, VACUUM removes the dead tuples within the objective, their space free for reuse", async () => {
    const report = await runVacuumBloatDrill({ topology: tier.topology, reportsDir });
    console.log(bloatSummary("vacuum", report));
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.verdict).toBe("pass");
    expect(report.objectives).toEqual({ rtoSeconds: 60, maxRemainingDeadRatio: 0.05 });
    const before = report.evidence.before as TupleStats;
    const after = report.evidence.after as TupleStats;
    expect(before.dead_tuple_count).toBeGreaterThanOrEqual(90_000);
    expect(after.dead_tuple_count).toBeLessThanOrEqual(before.dead_tuple_count * 0.05);
    expect(after.free_space).toBeGreaterThan(before.free_space);
    const primary = nodeByRole(tier.topology, "postgres-primary");
    const db = tier.spec.postgres.database;
    expect(await psqlOnNode(ctl, primary, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'drill_bloat_%'", { database: db })).toBe("0");
    expect(await psqlOnNode(ctl, primary, "SELECT count(*) FROM pg_extension WHERE extname = 'pgstattuple'", { database: db })).toBe("0");
  }, 180_000);

  it("twin: an old snapshot left open holds the xmin horizon -> VACUUM removes nothing -> FAIL naming the session", async () => {
    const report = await runVacuumBloatDrill({ topology: tier.topology, reportsDir, holdSnapshot: true });
    console.log(bloatSummary("twin old snapshot", report));
    expect(report.verdict).toBe("fail");
    const removed = report.checks.find((c) => c.name === "dead tuples removed");
    expect(removed?.ok).toBe(false);
    expect(removed?.detail).toMatch(/remain .*the xmin horizon is held by pid \d+ \(app, homelab-drill-bloat-old-snapshot, idle in transaction, transaction open .*\): VACUUM cannot remove tuples a snapshot may still see/);
    expect(report.checks.find((c) => c.name === "bloat detected")?.ok).toBe(true);
    const primary = nodeByRole(tier.topology, "postgres-primary");
    expect(await psqlOnNode(ctl, primary, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'homelab-drill-bloat-%'")).toBe("0");
  }, 180_000);

  it("query-tuning: the slow lookup is the top of pg_stat_statements, the index makes it at least minSpeedup faster; twin: the wrong index -> FAIL", async () => {
    const report = await runQueryTuningDrill({ topology: tier.topology, reportsDir });
    const mean = report.evidence.meanExecMs as { before: number; after: number; speedup: number };
    console.log(`[e2e] query-tuning: ${report.verdict.toUpperCase()}; mean ${mean.before.toFixed(3)} -> ${mean.after.toFixed(3)} ms (${mean.speedup.toFixed(0)}x), plans ${JSON.stringify(report.evidence.plans)}`);
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.objectives).toEqual({ minSpeedup: 10 });
    expect(report.checks.map((c) => c.name)).toEqual(["slow query found", "the plan uses the new index", "the top query got faster"]);
    const plans = report.evidence.plans as { before: { scans: string[] }; after: { scans: string[] } };
    expect(plans.before.scans.join()).toMatch(/^Seq Scan on drill_tuning_/);
    expect(plans.after.scans.join()).toMatch(/^Index Scan using drill_tuning_\w+_fix$/);

    const twin = await runQueryTuningDrill({ topology: tier.topology, reportsDir, wrongIndex: true });
    console.log(`[e2e] query-tuning twin (index on created_at): ${twin.verdict.toUpperCase()}; ${twin.checks.filter((c) => !c.ok).map((c) => c.detail).join("; ")}`);
    expect(twin.verdict).toBe("fail");
    expect(twin.checks.find((c) => c.name === "slow query found")?.ok).toBe(true);
    expect(twin.checks.find((c) => c.name === "the plan uses the new index")?.ok).toBe(false);
    expect(twin.checks.find((c) => c.name === "the top query got faster")?.detail).toMatch(/the plan still reads Seq Scan on drill_tuning_\w+: the index does not serve WHERE customer_id/);
    const primary = nodeByRole(tier.topology, "postgres-primary");
    expect(await psqlOnNode(ctl, primary, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'drill_tuning_%'", { database: tier.spec.postgres.database })).toBe("0");
    expect(await psqlOnNode(ctl, primary, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'homelab-drill-tuning-%'")).toBe("0");
  }, 240_000);
});
