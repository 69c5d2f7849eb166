// The long-transaction drill (drills/long-transaction.mts) on a real tier: a transaction left idle blocks an
// ALTER TABLE and every INSERT queued behind it; the drill finds the blocker and terminates it, and passes
// with the stall measured. Its twin: the classic wrong recovery, pg_cancel_backend() (it cancels a running
// query; an idle transaction runs none), leaves the writes stalled, and the drill FAILS naming it. Both run
// through `homelab drill`'s runner with the stack's objectives. Stack e2e-longtx on slot 7 (172.36.0.0/24).
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runLongTransactionDrill } from "../../drills/long-transaction.mts";
import { controlFor, psqlOnNode, type NodeControl } from "../../drills/lib/index.ts";
import type { DrillReport } from "../../drills/lib/report.ts";
import { nodeByRole } from "../../drills/lib/topology.ts";
import { e2eSpec, ensureImages, leftovers, startTier, type Tier } from "./harness.ts";

const STACK = "e2e-longtx";
let tier: Tier;
let ctl: NodeControl;
let reportsDir: string;

function summary(label: string, r: DrillReport): string {
  const phases = r.rto?.phases.map((p) => `${p.name} ${p.durationMs} ms`).join(", ") ?? "—";
  return [`[e2e] long-transaction ${label}: ${r.verdict.toUpperCase()}; stall ${r.rto ? `${r.rto.totalSeconds.toFixed(2)} s` : "—"} (${phases})`, ...r.checks.filter((c) => !c.ok).map((c) => `  ✖ ${c.name}: ${c.detail}`)].join("\n");
}

describe("long-transaction drill on a real tier", () => {
  beforeAll(async () => {
    ensureImages();
    tier = await startTier(e2eSpec(STACK, { redis: { enabled: false }, duckdb: { enabled: false } }, 7));
    ctl = controlFor(tier.topology);
    reportsDir = await mkdtemp(path.join(tmpdir(), "drill-longtx-"));
  }, 600_000);

  afterAll(async () => {
    await tier?.teardown();
    if (reportsDir) await rm(reportsDir, { recursive: true, force: true });
    expect(await leftovers(STACK)).toEqual([]);
  }, 120_000);

  it("healthy run: the blocker found and terminated, writes resume within the objective, the migration done, no write lost", async () => {
    const report = await runLongTransactionDrill({ topology: tier.topology, reportsDir });
    console.log(summary("terminate", report));
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
    console.log(summary("twin cancel", report));
    expect(report.verdict).toBe("fail");
    const stall = report.checks.find((c) => c.name.startsWith("write stall"));
    expect(stall?.ok).toBe(false);
    expect(stall?.detail).toMatch(/writes still stalled .* pg_cancel_backend\(\) left pid \d+ idle in transaction in place \(pg_cancel_backend cancels a running query; an idle transaction runs none: terminate it\)/);
    // Detection still worked; the cleanup ended the sessions anyway.
    expect(report.checks.find((c) => c.name === "forgotten transaction detected")?.ok).toBe(true);
    const primary = nodeByRole(tier.topology, "postgres-primary");
    expect(await psqlOnNode(ctl, primary, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'homelab-drill-long-tx-%'")).toBe("0");
  }, 180_000);
});
