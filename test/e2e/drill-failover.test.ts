// The failover drill (drills/failover.mts) on a real sync-mode tier: a healthy run passes and a second run
// fails back; then the twins from docs/drills.md's fault catalog that belong to this drill must make it FAIL,
// naming the cause: a replica that is not streaming, and an async replica lagging past the RPO objective.
// Stack e2e-failover on slot 1 (subnet 172.30.0.0/24, ports 25532+).
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planHomelab } from "../../components/plan.ts";
import { containerSpecOf, docker, filesTar, runApplyNode } from "../../components/platform/docker-node.ts";
import type { Topology } from "../../components/topology.ts";
import { runFailoverDrill } from "../../drills/failover.mts";
import type { DrillReport } from "../../drills/lib/report.ts";
import { controlFor, currentPrimary, formatSeconds, pgNodes, psqlOnNode, waitFor, type NodeControl, type TopologyNode } from "../../drills/lib/index.ts";
import { e2eSpec, ensureImages, leftovers, startTier, type Tier } from "./harness.ts";

const STACK = "e2e-failover";
let tier: Tier;
let ctl: NodeControl;
let reportsDir: string;
const t0 = Date.now();

function container(node: TopologyNode): string {
  if (node.handle.kind !== "docker") throw new Error("docker nodes only");
  return node.handle.container;
}

/** The node that is a replica now (roles move with every run). */
async function roles(topology: Topology): Promise<{ primary: TopologyNode; replica: TopologyNode }> {
  const primary = await currentPrimary(topology, ctl);
  const replica = pgNodes(topology).find((n) => n.name !== primary.name)!;
  return { primary, replica };
}

async function streaming(topology: Topology): Promise<string[]> {
  const { primary } = await roles(topology);
  const out = await psqlOnNode(ctl, primary, "select application_name from pg_stat_replication where state = 'streaming'");
  return out.split("\n").filter(Boolean);
}

function summary(label: string, r: DrillReport): string {
  const phases = r.rto?.phases.map((p) => `${p.name} ${p.durationMs} ms`).join(", ") ?? "—";
  const failed = r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
  return [
    `[e2e] failover ${label}: ${r.verdict.toUpperCase()}`,
    `  RTO ${r.rto ? formatSeconds(r.rto.totalSeconds) : "—"} (${phases}); redundancy restored ${r.rto?.redundancyRestoredSeconds !== undefined ? formatSeconds(r.rto.redundancyRestoredSeconds) : "—"}`,
    `  RPO ${r.rpo ? `${r.rpo.lostWrites} of ${r.rpo.acknowledgedWrites} acknowledged writes lost, ${formatSeconds(r.rpo.rpoSeconds)}, WAL gap ${r.rpo.walGapBytes ?? "?"} bytes` : "—"}`,
    ...failed.map((f) => `  ✖ ${f}`),
  ].join("\n");
}

const failedChecks = (r: DrillReport) => r.checks.filter((c) => !c.ok);

describe("failover drill on a real tier (sync replication)", () => {
  beforeAll(async () => {
    ensureImages();
    // Redis and DuckDB play no part in a PostgreSQL failover: left out to keep the 2-core box for PostgreSQL.
    tier = await startTier(e2eSpec(STACK, { postgres: { replicationMode: "sync" }, redis: { enabled: false }, duckdb: { enabled: false } }, 1));
    ctl = controlFor(tier.topology);
    reportsDir = await mkdtemp(path.join(tmpdir(), "drill-failover-"));
  }, 600_000);

  afterAll(async () => {
    // Unpause first: a twin that failed halfway may have left the replica frozen.
    for (const n of tier ? pgNodes(tier.topology) : []) await docker(["unpause", container(n)], { allowFailure: true });
    await tier?.teardown();
    if (reportsDir) await rm(reportsDir, { recursive: true, force: true });
    expect(await leftovers(STACK)).toEqual([]);
    console.log(`[e2e] drill-failover total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }, 120_000);

  it("healthy run passes: no acknowledged write lost, RTO within 10 s by phase, redundancy restored, report JSON + MD written", async () => {
    const report = await runFailoverDrill({ topology: tier.topology, reportsDir });
    console.log(summary("run 1 (pg-1 -> pg-2)", report));
    expect(failedChecks(report)).toEqual([]);
    expect(report.verdict).toBe("pass");
    expect(report.objectives).toMatchObject({ rtoSeconds: 10, rpoWrites: 0, redundancyRestoredSeconds: 120 });
    expect(report.rpo?.lostWrites).toBe(0);
    expect(report.rpo?.acknowledgedWrites).toBeGreaterThan(100);
    expect(report.rto?.phases.map((p) => p.name)).toEqual(["detection", "promotion", "reconnect"]);
    expect(report.rto!.totalSeconds).toBeLessThan(10);
    expect(report.rto!.redundancyRestoredSeconds).toBeLessThan(120);
    expect(report.evidence).toMatchObject({ primaryBefore: "pg-1", primaryAfter: "pg-2", timeline: { new: 2, previous: 1 } });
    expect(report.checks.map((c) => c.name)).toEqual(
      expect.arrayContaining(["replica streaming", "RTO within objective", "no acknowledged write lost", "old primary accepted no write after the fault", "redundancy restored within objective", "synchronous replication restored", "stack redundant after the drill"]),
    );

    const files = await readdir(path.join(reportsDir, "failover"));
    expect(files.filter((f) => f.endsWith(".json"))).toHaveLength(1);
    expect(files.filter((f) => f.endsWith(".md"))).toHaveLength(1);
    const json = JSON.parse(await readFile(path.join(reportsDir, "failover", files.find((f) => f.endsWith(".json"))!), "utf8")) as DrillReport;
    expect(json.verdict).toBe("pass");
    expect(await readFile(path.join(reportsDir, "failover", files.find((f) => f.endsWith(".md"))!), "utf8")).toMatch(/# Drill `failover`: PASS[\s\S]*detection[\s\S]*promotion[\s\S]*reconnect/);
    expect((await readFile(path.join(reportsDir, "history.jsonl"), "utf8")).trim().split("\n")).toHaveLength(1);

    // Roles swapped, cluster redundant and synchronous again.
    expect((await roles(tier.topology)).primary.name).toBe("pg-2");
    expect(await streaming(tier.topology)).toEqual(["pg_1"]);
    expect(await psqlOnNode(ctl, (await roles(tier.topology)).primary, "show synchronous_standby_names")).toBe("ANY 1 (pg_1, pg_2)");
  }, 240_000);

  it("after the failover, a config change applied the way `pulumi up` applies it keeps the roles the drill left (ADR 0011)", async () => {
    // What `up` does after a stack-file change: the plan's containers, re-created by the one node applier
    // with the new files. pg-1 was the primary the stack built (HOMELAB_BOOTSTRAP_FROM=auto) and is a standby
    // now; pg-2 the reverse. The data directories decide; the env names no role.
    const { spec } = tier;
    const changed = { ...spec, postgres: { ...spec.postgres, settings: { ...spec.postgres.settings, work_mem: "6MB" } } };
    const plan = planHomelab(changed, tier.secrets);
    expect(plan.nodes.find((n) => n.name === "pg-1")!.env).toMatchObject({ HOMELAB_ROLE: "database", HOMELAB_BOOTSTRAP_FROM: "auto" });
    for (const node of plan.nodes.filter((n) => n.role.startsWith("postgres-"))) {
      await runApplyNode(containerSpecOf(plan, node), await filesTar(node.files));
    }
    expect((await roles(tier.topology)).primary.name).toBe("pg-2");
    await waitFor("pg-1 streaming from pg-2 after the re-apply", async () => (await streaming(tier.topology)).includes("pg_1"), { timeoutMs: 60_000 });
    for (const node of pgNodes(tier.topology)) expect(await psqlOnNode(ctl, node, "show work_mem"), node.name).toBe("6MB");
  }, 240_000);

  it("a second run fails back (roles are discovered at run time)", async () => {
    const report = await runFailoverDrill({ topology: tier.topology, reportsDir });
    console.log(summary("run 2 (pg-2 -> pg-1)", report));
    expect(failedChecks(report)).toEqual([]);
    expect(report.rpo?.lostWrites).toBe(0);
    expect(report.rto!.totalSeconds).toBeLessThan(10);
    expect(report.evidence).toMatchObject({ primaryBefore: "pg-2", primaryAfter: "pg-1", timeline: { new: 3, previous: 2 } });
    expect(await streaming(tier.topology)).toEqual(["pg_2"]);
  }, 240_000);

  it("twin: replica not streaming (wrong primary_conninfo) -> preflight fails naming it, and no fault is injected", async () => {
    const { primary, replica } = await roles(tier.topology);
    const conninfo = await psqlOnNode(ctl, replica, "show primary_conninfo");
    // The WAL receiver restarts with the new conninfo on reload and cannot reach the host.
    await psqlOnNode(ctl, replica, ["ALTER SYSTEM SET primary_conninfo = 'host=nowhere.invalid port=5432 user=replicator connect_timeout=2'", "SELECT pg_reload_conf()"]);
    let report: DrillReport;
    try {
      await waitFor("replica no longer streaming", async () => (await streaming(tier.topology)).length === 0, { timeoutMs: 30_000 });
      report = await runFailoverDrill({ topology: tier.topology, reportsDir });
    } finally {
      await psqlOnNode(ctl, replica, [`ALTER SYSTEM SET primary_conninfo = '${conninfo.replace(/'/g, "''")}'`, "SELECT pg_reload_conf()"]);
    }
    console.log(summary("twin: replica not streaming", report));
    expect(report.verdict).toBe("fail");
    expect(failedChecks(report)).toHaveLength(1);
    expect(failedChecks(report)[0]).toMatchObject({ name: "replica streaming", detail: expect.stringMatching(new RegExp(`^replica not streaming: ${replica.name} \\(application_name ${replica.name.replace("-", "_")}\\) is absent in pg_stat_replication on ${primary.name}`)) });
    expect(failedChecks(report)[0]!.detail).toMatch(/wal receiver: (no wal receiver running|\w+ from nowhere\.invalid)/);
    // Never failed over a stack without a streaming replica: the primary was not touched.
    expect(report.rto).toBeNull();
    expect(report.rpo).toBeNull();
    expect(await ctl.isRunning(primary)).toBe(true);
    expect((await roles(tier.topology)).primary.name).toBe(primary.name);
    await waitFor("replica streaming again", async () => (await streaming(tier.topology)).length === 1, { timeoutMs: 60_000 });
  }, 240_000);

  it("twin: async replica lagging past the RPO objective at failover -> the drill fails with the RPO objective missed by N", async () => {
    // Switch the running tier to async replication (what a stack with replicationMode: async runs).
    for (const n of pgNodes(tier.topology)) await psqlOnNode(ctl, n, ["ALTER SYSTEM SET synchronous_standby_names = ''", "SELECT pg_reload_conf()"]);
    const topology: Topology = {
      ...tier.topology,
      postgres: { ...tier.topology.postgres, replicationMode: "async" },
      // Tight objectives: no acknowledged write may be lost, RPO (time) at most 0.5 s.
      objectives: { ...tier.topology.objectives, failover: { ...tier.topology.objectives.failover, rpoWrites: 0, rpo: 0.5 } as Topology["objectives"]["failover"] },
    };
    let frozen: string | undefined;
    let report: DrillReport;
    try {
      report = await runFailoverDrill({
        topology,
        reportsDir,
        // The replica falls behind: frozen (docker pause) while the primary writes a batch of WAL larger
        // than the TCP buffers between them can hold (the frozen replica's kernel keeps receiving into its
        // socket buffer: tcp_rmem max, 32 MiB here, + the primary's send buffer, tcp_wmem max), and the
        // writer keeps going for a second; it thaws once the primary is dead.
        beforeFault: async ({ primary, replica }) => {
          const maxOf = async (node: TopologyNode, file: string) => Number((await ctl.exec(node, ["cat", `/proc/sys/net/ipv4/${file}`])).stdout.trim().split(/\s+/)[2]);
          const batchMiB = Math.max(16, Math.ceil((1.5 * ((await maxOf(replica, "tcp_rmem")) + (await maxOf(primary, "tcp_wmem")))) / 2 ** 20));
          frozen = container(replica);
          await docker(["pause", frozen]);
          await psqlOnNode(ctl, primary, `select count(pg_logical_emit_message(false, 'drill-twin-lag', repeat('x', 1048576))) from generate_series(1, ${batchMiB})`, { timeoutMs: 60_000 });
          await new Promise((r) => setTimeout(r, 1000));
          return async () => {
            await docker(["unpause", frozen!]);
            frozen = undefined;
          };
        },
      });
    } finally {
      if (frozen) await docker(["unpause", frozen], { allowFailure: true });
    }
    console.log(summary("twin: async replica lagging", report));
    expect(report.verdict).toBe("fail");
    const lost = report.rpo!.lostWrites;
    expect(lost).toBeGreaterThan(0);
    expect(failedChecks(report).map((c) => c.name).sort()).toEqual(["RPO within objective", "no acknowledged write lost"]);
    expect(failedChecks(report).find((c) => c.name === "no acknowledged write lost")!.detail).toMatch(new RegExp(`^RPO objective missed by ${lost} acknowledged writes? \\(async replication, replica [\\d.]+MiB \\(\\d+ bytes\\) of WAL behind at the fault`));
    expect(failedChecks(report).find((c) => c.name === "RPO within objective")!.detail).toMatch(/^RPO [\d.]+ m?s exceeds objective 500 ms by /);
    expect((report.evidence.beforeFault as { flushLagBytes: number }).flushLagBytes).toBeGreaterThan(16 * 2 ** 20);
    expect(report.rpo!.walGapBytes).toBeGreaterThan(0);
    // Even a failed drill leaves the stack redundant: the old primary rejoined with pg_rewind.
    expect(report.checks.find((c) => c.name === "stack redundant after the drill")?.ok).toBe(true);
    expect(await streaming(tier.topology)).toHaveLength(1);
  }, 240_000);
});
