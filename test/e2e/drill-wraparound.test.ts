// The wraparound day-2 drill (drills/wraparound.mts) on a real tier, with its fault twin. Never on the stack's
// own nodes: a scratch copy of the primary from the newest backup, its next XID moved with pg_resetwal to 25
// million before the wrap limit; the warning observed in single-user mode; VACUUM (FREEZE) of every database
// (template0 included) gets every database below the warning age within the objective.
// Twin: a prepared transaction left behind before the advance holds the oldest XID: VACUUM cannot freeze past
// it, the warning stays, the drill FAILS naming it. Either way the copy is gone afterwards and the stack's
// nodes and repository are as they were.
// Stack e2e-wraparound on slot 9 (172.38.0.0/24).
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "../../components/platform/docker-node.ts";
import { LABEL_DRILL_SCRATCH } from "../../drills/lib/scratch-node.ts";
import { controlFor, psqlOnNode, type NodeControl } from "../../drills/lib/index.ts";
import type { DrillReport } from "../../drills/lib/report.ts";
import { nodeByRole } from "../../drills/lib/topology.ts";
import { WARN_AGE, runWraparoundDrill, type XidAdvance } from "../../drills/wraparound.mts";
import { e2eSpec, ensureImages, leftovers, startTier, type Tier } from "./harness.ts";

const STACK = "e2e-wraparound";
let tier: Tier;
let ctl: NodeControl;
let reportsDir: string;

function summary(label: string, r: DrillReport): string {
  const e = r.evidence;
  const xid = e.xid as XidAdvance | undefined;
  const num = (v: unknown) => (typeof v === "number" ? v.toLocaleString("en-US") : "?");
  const phases = r.rto?.phases.map((p) => `${p.name} ${p.durationMs} ms`).join(", ") ?? "—";
  return [
    `[e2e] wraparound ${label}: ${r.verdict.toUpperCase()}; copy ${typeof e.copySeconds === "number" ? `${e.copySeconds.toFixed(2)} s` : "?"} (backup ${(e.backup as { label?: string } | undefined)?.label ?? "?"}); XIDs advanced by ${num(xid?.advancedBy)} to ${num(xid?.targetXid)}; max age(datfrozenxid) ${num(e.maxAgeBefore)} -> ${num(e.maxAgeAfter)}; freeze ${typeof e.freezeSeconds === "number" ? `${e.freezeSeconds.toFixed(2)} s` : "?"}; RTO ${r.rto ? `${r.rto.totalSeconds.toFixed(2)} s` : "—"} (${phases}); autovacuum did ${JSON.stringify(e.autovacuumWraparoundTables ?? {})}`,
    ...r.checks.filter((c) => !c.ok).map((c) => `  ✖ ${c.name}: ${c.detail}`),
  ].join("\n");
}

/** What the engine holds of the drill's scratch copies (containers and volumes). */
async function scratchLeft(): Promise<string[]> {
  const filter = `label=${LABEL_DRILL_SCRATCH}=true`;
  const containers = (await docker(["ps", "-aq", "--filter", filter, "--filter", `label=dev.homelab-data.stack=${STACK}`])).stdout.split(/\s+/).filter(Boolean);
  const volumes = (await docker(["volume", "ls", "-q", "--filter", filter, "--filter", `label=dev.homelab-data.stack=${STACK}`])).stdout.split(/\s+/).filter(Boolean);
  return [...containers.map((c) => `container ${c}`), ...volumes.map((v) => `volume ${v}`)];
}

/** The stack's primary as the drill must leave it: its XID counter where it was, no prepared transaction. */
async function primaryState(): Promise<{ xid: number; prepared: string; maxAge: number }> {
  const primary = nodeByRole(tier.topology, "postgres-primary");
  const [xid = "0", prepared = "", maxAge = "0"] = (await psqlOnNode(ctl, primary, ["SELECT txid_current()", "SELECT count(*) FROM pg_prepared_xacts", "SELECT max(age(datfrozenxid)) FROM pg_database"])).split("\n");
  return { xid: Number(xid), prepared, maxAge: Number(maxAge) };
}

describe("wraparound drill on a real tier", () => {
  beforeAll(async () => {
    ensureImages();
    tier = await startTier(e2eSpec(STACK, { redis: { enabled: false }, duckdb: { enabled: false } }, 9));
    ctl = controlFor(tier.topology);
    reportsDir = await mkdtemp(path.join(tmpdir(), "drill-wraparound-"));
  }, 600_000);

  afterAll(async () => {
    await tier?.teardown();
    if (reportsDir) await rm(reportsDir, { recursive: true, force: true });
    expect(await leftovers(STACK)).toEqual([]);
  }, 180_000);

  it("healthy run: the warning observed on the copy, VACUUM (FREEZE) gets every database below the warning age within the objective", async () => {
    const before = await primaryState();
    const report = await runWraparoundDrill({ topology: tier.topology, reportsDir });
    console.log(summary("freeze", report));
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.verdict).toBe("pass");
    expect(report.objectives).toEqual({ rtoSeconds: 120 });
    expect(report.rto?.phases.map((p) => p.name)).toEqual(["start", "freeze", "verify"]);
    expect(report.rto!.totalSeconds).toBeLessThanOrEqual(120);
    const xid = report.evidence.xid as XidAdvance;
    expect(xid.warningRemaining).toBe(25_000_000);
    expect(xid.advancedBy).toBeGreaterThan(2_000_000_000);
    expect(report.evidence.warning).toMatchObject({ remaining: 25_000_000, text: expect.stringMatching(/^database "\w+" must be vacuumed within 25000000 transactions$/) });
    expect(report.evidence.maxAgeBefore as number).toBeGreaterThanOrEqual(WARN_AGE);
    expect(report.evidence.maxAgeAfter as number).toBeLessThan(1000);
    // Every database, template0 included, went through VACUUM (FREEZE).
    expect((report.evidence.vacuumdb as { databases: string[] }).databases.sort()).toEqual([tier.spec.postgres.database, "postgres", "template0", "template1"].sort());
    expect(report.checks.map((c) => c.name)).toEqual(expect.arrayContaining(["the copy is isolated from the stack", "wraparound warning observed", "XID age past the warning age", "every database below the warning age", "a new XID draws no warning", "the copy archived nothing into the stack's repository"]));
    const md = await readFile(path.join(reportsDir, "history.jsonl"), "utf8");
    expect(md).toContain('"drill":"wraparound"');
    // The stack's primary: its XIDs where they were (a few more from the checks), nothing prepared; the copy gone.
    const after = await primaryState();
    expect(after.prepared).toBe("0");
    expect(after.xid - before.xid).toBeLessThan(1000);
    expect(after.maxAge).toBeLessThan(1_000_000);
    expect(await scratchLeft()).toEqual([]);
  }, 300_000);

  it("twin: a prepared transaction left behind holds the oldest XID -> VACUUM cannot freeze past it -> FAIL naming it", async () => {
    const report = await runWraparoundDrill({ topology: tier.topology, reportsDir, holdPrepared: true });
    console.log(summary("twin prepared transaction", report));
    expect(report.verdict).toBe("fail");
    expect(report.rto).toBeNull();
    // Detection worked; the recovery is what failed, and the check names the cause.
    expect(report.checks.find((c) => c.name === "wraparound warning observed")?.ok).toBe(true);
    const frozen = report.checks.find((c) => c.name === "every database below the warning age");
    expect(frozen?.ok).toBe(false);
    expect(frozen?.detail).toMatch(/VACUUM cannot freeze past the oldest XID still held: prepared transaction 'homelab-drill-forgotten' \(age [\d,]+ XIDs, prepared .* by postgres in database \w+\): COMMIT PREPARED or ROLLBACK PREPARED it/);
    expect(report.checks.find((c) => c.name === "a new XID draws no warning")?.ok).toBe(false);
    expect(report.checks.find((c) => c.name.startsWith("recovery time"))?.ok).toBe(false);
    expect(report.evidence.maxAgeAfter as number).toBeGreaterThanOrEqual(WARN_AGE);
    expect((report.evidence.holders as { prepared: { gid: string }[] }).prepared.map((p) => p.gid)).toEqual(["homelab-drill-forgotten"]);
    // Only the copy held it: the stack's primary has nothing prepared, and the copy is gone.
    expect((await primaryState()).prepared).toBe("0");
    expect(await scratchLeft()).toEqual([]);
  }, 300_000);
});
