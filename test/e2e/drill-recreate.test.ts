// The recreate drill against a real tier: destroy everything but the backup repository, build it again
// with the primary bootstrapped from the latest backup + archived WAL (same secrets and certificates), and
// its twin: with archive_command failing before the recreate, the drill must FAIL naming the lost writes.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DrillLog } from "../../drills/lib/log.ts";
import type { DrillReport } from "../../drills/lib/report.ts";
import { runRecreateDrill } from "../../drills/recreate.mts";
import { e2eSpec, ensureImages, leftovers, startTier, type Tier } from "./harness.ts";
import { recreateHook } from "./recreate-harness.ts";

const STACK = "e2e-recreate";
const SLOT = 6;
const reportsDir = mkdtempSync(path.join(tmpdir(), "drill-recreate-reports-"));
let tier: Tier;

const drillLog = () => new DrillLog({ stream: { write: (s: string) => process.stdout.write(`  ${s}`) }, color: false });
const hook = () => recreateHook(tier.spec, tier.secrets, { log: (m) => console.log(`[e2e] ${m}`) });

function summary(r: DrillReport): string {
  const rpo = r.rpo ? `lost ${r.rpo.lostWrites}/${r.rpo.acknowledgedWrites} acknowledged writes, RPO ${r.rpo.rpoSeconds.toFixed(3)} s, WAL not archived at the destroy ${r.rpo.walGapBytes ?? "?"} bytes` : "RPO not measured";
  const rto = r.rto ? `first write ${r.rto.totalSeconds.toFixed(1)} s after the destroy began (${r.rto.phases.map((p) => `${p.name} ${(p.durationMs / 1000).toFixed(1)} s`).join(", ")}), primary + streaming replica after ${r.rto.redundancyRestoredSeconds?.toFixed(1) ?? "never"} s` : "RTO not measured";
  return `[e2e] drill ${r.drill}: ${r.verdict.toUpperCase()}: ${rpo}; ${rto}; failed checks: ${r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join(" | ") || "none"}`;
}

describe("recreate drill: destroy all but the repository, rebuild from backup", () => {
  beforeAll(async () => {
    ensureImages();
    tier = await startTier(
      e2eSpec(
        STACK,
        {
          // A small archive_timeout bounds what a recreate can lose; the objective leaves room for the
          // archive's own latency on a loaded two-core box.
          postgres: { archiveTimeout: "5s" },
          redis: { enabled: false },
          duckdb: { enabled: false },
          objectives: { recreate: { rpo: "10s", rto: "300s" } },
        },
        SLOT,
      ),
    );
  }, 900_000);

  afterAll(async () => {
    await tier?.teardown();
    rmSync(reportsDir, { recursive: true, force: true });
    expect(await leftovers(STACK)).toEqual([]);
  }, 120_000);

  it("healthy: acknowledged writes lost stay within archive_timeout, primary + streaming replica back", async () => {
    const report = await runRecreateDrill({ topology: tier.topology, recreate: hook(), reportsDir, log: drillLog() });
    console.log(summary(report));
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.verdict).toBe("pass");
    expect(report.rpo?.acknowledgedWrites).toBeGreaterThan(20);
    expect(report.rpo?.rpoSeconds).toBeLessThanOrEqual(tier.topology.objectives.recreate.rpo);
    expect(report.rto?.redundancyRestoredSeconds).toBeLessThanOrEqual(tier.topology.objectives.recreate.rto);
    expect(report.checks.map((c) => c.name)).toEqual(
      expect.arrayContaining(["WAL archived before the destroy", "every write acknowledged before the WAL switch restored", "primary bootstrapped from the repository", "pg-2 streams and replays"]),
    );
    // Nodes re-created with the same names, certificates and passwords: the repository still takes WAL.
    const check = await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, "check"], { user: "postgres", allowFailure: true });
    expect(check.code, check.stderr + check.stdout).toBe(0);
  }, 900_000);

  it("twin: archive_command failing before the recreate -> FAIL naming the writes lost beyond the RPO objective", async () => {
    await tier.sql("pg-1", "ALTER SYSTEM SET archive_command = '/bin/false'");
    await tier.sql("pg-1", "SELECT pg_reload_conf()");
    const report = await runRecreateDrill({ topology: tier.topology, recreate: hook(), reportsDir, log: drillLog(), archiveWaitMs: 15_000 });
    console.log(summary(report));
    expect(report.verdict).toBe("fail");
    const failed = new Map(report.checks.filter((c) => !c.ok).map((c) => [c.name, c.detail]));
    expect(failed.get("WAL archived before the destroy")).toMatch(/did not reach the repository within 15 s/);
    expect(failed.get("RPO within objective")).toMatch(/exceeds objective 10 s/);
    expect(failed.get("every write acknowledged before the WAL switch restored")).toMatch(/which never reached the repository/);
    expect(report.rpo?.lostWrites).toBeGreaterThan(0);
    // The rebuilt primary came from the backup, whose settings archive again: the stack healed itself.
    expect(failed.has("primary bootstrapped from the repository")).toBe(false);
  }, 900_000);

  it("twin: the repository volume is lost with the stack (purgeBackupsOnDestroy by mistake) -> FAIL naming the missing backup", async () => {
    const recreate = recreateHook(tier.spec, tier.secrets, { dropRepository: true, healthTimeoutMs: 60_000, log: (m) => console.log(`[e2e] ${m}`) });
    const report = await runRecreateDrill({ topology: tier.topology, recreate, reportsDir, log: drillLog(), recoveryTimeoutMs: 30_000 });
    console.log(summary(report));
    expect(report.verdict).toBe("fail");
    const failed = new Map(report.checks.filter((c) => !c.ok).map((c) => [c.name, c.detail]));
    expect(failed.get("stack re-created")).toMatch(/has no backup to restore/);
    expect(failed.get("writes resumed within objective")).toMatch(/no acknowledged write after the fault/);
    expect(failed.get("drill ran to completion")).toMatch(/accepted no write/);
  }, 900_000);
});
