// The redis drill against real Redis 7 nodes (the same NodePlans `pulumi up` applies), and its twins: the
// drill must FAIL when AOF is off, whether the stack config says so or someone turned it off at runtime.
// Only the Redis nodes of the plan are started: the drill touches nothing else, and two cores are shared.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HomelabSpec } from "../../components/config/index.ts";
import { planHomelab } from "../../components/plan.ts";
import { LABEL_STACK, applyPlan, docker, removeByLabel } from "../../components/platform/docker-node.ts";
import { topologyOf, type Topology } from "../../components/topology.ts";
import { DockerNodeControl } from "../../drills/lib/nodes.ts";
import { redisCliOnNode, redisInfoOnNode } from "../../drills/lib/redis.ts";
import type { DrillReport } from "../../drills/lib/report.ts";
import { nodeByRole } from "../../drills/lib/topology.ts";
import { runRedisDrill } from "../../drills/redis.mts";
import { e2eSpec, ensureImages, leftovers, makeSecrets, requireDocker, quietLog, watchingLog } from "./harness.ts";

const SLOT = 5;
const ctl = new DockerNodeControl();
const reportsDir = mkdtempSync(path.join(tmpdir(), "drill-redis-reports-"));

/** The Redis nodes of a stack's plan, healthy; returns the stack's topology. */
async function startRedisNodes(spec: HomelabSpec): Promise<Topology> {
  await requireDocker();
  const label = `${LABEL_STACK}=${spec.stack}`;
  await removeByLabel(label, { purgeRetained: true });
  const plan = planHomelab(spec, makeSecrets(spec));
  const t0 = Date.now();
  try {
    await applyPlan(plan, { only: (n) => n.role === "redis" || n.role === "redis-replica", timeoutSeconds: 60 });
  } catch (e) {
    await removeByLabel(label, { purgeRetained: true });
    throw e;
  }
  console.log(`[e2e] ${spec.stack}: Redis nodes healthy in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  return topologyOf(spec, plan);
}

const specFor = (stack: string, redis: Record<string, unknown>) => e2eSpec(stack, { postgres: { replicas: 0 }, duckdb: { enabled: false }, redis }, SLOT);

function summary(r: DrillReport): string {
  const rto = r.rto ? `RTO ${r.rto.totalSeconds.toFixed(3)} s (${r.rto.phases.map((p) => `${p.name} ${p.durationMs} ms`).join(", ")})` : "RTO not measured";
  const rpo = r.rpo ? `lost ${r.rpo.lostWrites}/${r.rpo.acknowledgedWrites} acknowledged writes, RPO ${r.rpo.rpoSeconds.toFixed(3)} s` : "RPO not measured";
  const redundancy = r.rto?.redundancyRestoredSeconds !== undefined ? `, redundancy restored after ${r.rto.redundancyRestoredSeconds.toFixed(2)} s` : "";
  return `[e2e] drill ${r.drill}: ${r.verdict.toUpperCase()}: ${rpo}; ${rto}${redundancy}; failed checks: ${r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join(" | ") || "none"}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


afterAll(() => rmSync(reportsDir, { recursive: true, force: true }));

describe("redis drill on a primary + replica with AOF everysec", () => {
  const STACK = "e2e-redis";
  let t: Topology;

  beforeAll(async () => {
    ensureImages();
    t = await startRedisNodes(specFor(STACK, { replica: true }));
  }, 300_000);

  afterAll(async () => {
    await removeByLabel(`${LABEL_STACK}=${STACK}`, { purgeRetained: true });
    expect(await leftovers(STACK)).toEqual([]);
  }, 120_000);

  it("restart: kill -9 under an INCR + XADD writer loses no acknowledged write, RTO within the objective", async () => {
    const report = await runRedisDrill({ topology: t, reportsDir, log: quietLog() });
    console.log(summary(report));
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.verdict).toBe("pass");
    expect(report.rpo?.acknowledgedWrites).toBeGreaterThan(100);
    expect(report.rpo?.lostWrites).toBe(0);
    expect(report.rto?.totalSeconds).toBeLessThanOrEqual(t.objectives.redis.rto);
    expect(report.rto?.phases.map((p) => p.name)).toEqual(["detection", "restart", "first acknowledged write"]);
  }, 180_000);

  it("replica promotion: REPLICAOF NO ONE as admin, loss and RTO measured, then the replica follows the primary again", async () => {
    const report = await runRedisDrill({ topology: t, reportsDir, log: quietLog(), variant: "replica-promotion" });
    console.log(summary(report));
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.drill).toBe("redis-replica-promotion");
    expect(report.rto?.phases.map((p) => p.name)).toEqual(["detection", "promotion", "first acknowledged write"]);
    expect(report.rto?.redundancyRestoredSeconds).toBeGreaterThan(0);
    const replica = nodeByRole(t, "redis-replica");
    const info = await redisInfoOnNode(ctl, replica, { user: "admin", passwordFile: t.redis!.passwordFiles.admin! }, "replication");
    expect(info).toMatchObject({ role: "slave", master_link_status: "up" });
  }, 240_000);

  it("twin: the replica lags (cut off from the primary during the load) -> promotion FAILS naming the writes lost", async () => {
    const replica = nodeByRole(t, "redis-replica");
    const net = t.network.name;
    const container = replica.hostname;
    const actions: Promise<unknown>[] = [];
    // Cut the replica off 0.5 s into the load (replication stops; docker exec still reaches it); give it its
    // network back once it is promoted, so clients reach it and the fail-back can resync it.
    const log = watchingLog({
      "▶ writer:": () => actions.push(sleep(500).then(() => docker(["network", "disconnect", net, container]))),
      "✔ promote": () => actions.push(docker(["network", "connect", "--ip", replica.internal.host, net, container])),
    });
    try {
      const report = await runRedisDrill({ topology: t, reportsDir, log, variant: "replica-promotion" });
      console.log(summary(report));
      expect(report.verdict).toBe("fail");
      expect(report.rpo?.lostWrites).toBeGreaterThan(100);
      expect(report.checks.find((c) => c.name === "RPO within objective")?.detail).toMatch(/exceeds objective 1 s/);
      expect(report.checks.find((c) => c.name === "redundancy restored")?.ok).toBe(true);
    } finally {
      await Promise.allSettled(actions);
      await docker(["network", "connect", "--ip", replica.internal.host, net, container], { allowFailure: true });
    }
  }, 240_000);

  it("twin: the replica is detached (REPLICAOF NO ONE beforehand) -> promotion FAILS before any fault", async () => {
    const primary = nodeByRole(t, "redis");
    const replica = nodeByRole(t, "redis-replica");
    const admin = { user: "admin", passwordFile: t.redis!.passwordFiles.admin! };
    await redisCliOnNode(ctl, replica, admin, ["REPLICAOF", "NO", "ONE"]);
    try {
      const report = await runRedisDrill({ topology: t, reportsDir, log: quietLog(), variant: "replica-promotion" });
      console.log(summary(report));
      expect(report.verdict).toBe("fail");
      expect(report.checks.find((c) => c.name === "replica streaming before the fault")?.detail).toMatch(/redis-replica: role master, master_link_status none: nothing to promote/);
      expect(report.rto).toBeNull();
      expect(await ctl.isRunning(primary)).toBe(true);
    } finally {
      await redisCliOnNode(ctl, replica, admin, ["REPLICAOF", primary.hostname, "6379"]);
    }
  }, 120_000);

  it("twin: AOF turned off at runtime (CONFIG SET appendonly no) -> FAIL naming AOF off and the writes lost", async () => {
    const primary = nodeByRole(t, "redis");
    const admin = { user: "admin", passwordFile: t.redis!.passwordFiles.admin! };
    await redisCliOnNode(ctl, primary, admin, ["CONFIG", "SET", "appendonly", "no"]);
    const report = await runRedisDrill({ topology: t, reportsDir, log: quietLog() });
    console.log(summary(report));
    expect(report.verdict).toBe("fail");
    const failed = report.checks.filter((c) => !c.ok);
    expect(failed.find((c) => c.name === "AOF enabled on redis")?.detail).toMatch(/AOF off at runtime: INFO persistence aof_enabled:0/);
    expect(failed.find((c) => c.name === "RPO within objective")?.detail).toMatch(/exceeds objective 1 s/);
    expect(failed.map((c) => c.name)).toContain("acknowledged writes lost within 1 s of writes");
    expect(report.rpo?.lostWrites).toBe(report.rpo?.acknowledgedWrites);
    // The restart read redis.conf again: AOF is back on (the drill left the node as built).
    expect((await redisInfoOnNode(ctl, primary, admin, "persistence")).aof_enabled).toBe("1");
  }, 180_000);
});

describe("redis drill on a stack whose config turns AOF off", () => {
  const STACK = "e2e-redis-aof-off";
  let t: Topology;

  beforeAll(async () => {
    ensureImages();
    t = await startRedisNodes(specFor(STACK, { persistence: { aof: false } }));
  }, 300_000);

  afterAll(async () => {
    await removeByLabel(`${LABEL_STACK}=${STACK}`, { purgeRetained: true });
    expect(await leftovers(STACK)).toEqual([]);
  }, 120_000);

  it("twin: appendonly no in redis.conf -> FAIL naming AOF off, every acknowledged write lost", async () => {
    const report = await runRedisDrill({ topology: t, reportsDir, log: quietLog() });
    console.log(summary(report));
    expect(report.verdict).toBe("fail");
    const failed = report.checks.filter((c) => !c.ok);
    expect(failed.find((c) => c.name === "AOF enabled on redis")?.detail).toMatch(/^AOF off: appendonly no in redis:\/etc\/redis\/redis.conf/);
    expect(failed.map((c) => c.name)).toEqual(expect.arrayContaining(["RPO within objective", "acknowledged writes lost within 1 s of writes"]));
    expect(report.rpo?.acknowledgedWrites).toBeGreaterThan(100);
    expect(report.rpo?.lostWrites).toBe(report.rpo?.acknowledgedWrites);
  }, 180_000);
});
