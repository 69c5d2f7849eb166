// The redis-replication-lag drill against real Redis 7 nodes (a primary + replica, the NodePlans `pulumi up`
// applies; only the Redis nodes are started), and its twins: the drill must FAIL when the recovery lifts the
// shaping on the wrong side (the replica's interface carries only its ACKs), when the primary drops the
// replica mid-fault (client-output-buffer-limit), and refuse before any fault when the load would push the
// replica past that limit. After each: no qdisc on either container, the drill's keys gone, the replica
// streaming again. Stack e2e-redis-lag on slot 12 (172.41.0.0/24).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planHomelab } from "../../components/plan.ts";
import { LABEL_STACK, applyPlan, docker, removeByLabel } from "../../components/platform/docker-node.ts";
import { topologyOf, type Topology, type TopologyNode } from "../../components/topology.ts";
import { DockerNodeControl } from "../../drills/lib/nodes.ts";
import { redisCliOnNode, redisInfoOnNode } from "../../drills/lib/redis.ts";
import type { DrillReport } from "../../drills/lib/report.ts";
import { nodeByRole } from "../../drills/lib/topology.ts";
import { runRedisReplicationLagDrill } from "../../drills/redis-replication-lag.mts";
import { waitFor } from "../../drills/lib/wait.ts";
import { e2eSpec, ensureImages, leftovers, makeSecrets, requireDocker, quietLog, watchingLog } from "./harness.ts";

const STACK = "e2e-redis-lag";
const SLOT = 12;
const ctl = new DockerNodeControl();
const reportsDir = mkdtempSync(path.join(tmpdir(), "drill-redis-lag-reports-"));
let t: Topology;
let primary: TopologyNode;
let replica: TopologyNode;
const admin = () => ({ user: "admin", passwordFile: t.redis!.passwordFiles.admin! });



function summary(label: string, r: DrillReport): string {
  const lag = r.evidence.lag as { maxBytes: number; bytesToReplay: number; maxLagFieldSeconds: number } | undefined;
  const detect = r.checks.find((c) => c.name === "lag detected");
  const phases = r.rto?.phases.map((p) => `${p.name} ${p.durationMs} ms`).join(", ") ?? "—";
  return [
    `[e2e] redis-replication-lag ${label}: ${r.verdict.toUpperCase()}; detect ${typeof detect?.measured === "number" ? `${detect.measured.toFixed(2)} s` : "—"}; max lag ${lag ? `${lag.maxBytes} B (lag field <= ${lag.maxLagFieldSeconds} s)` : "—"}; replayed ${lag?.bytesToReplay ?? "—"} B; catch-up ${r.evidence.catchUpSeconds ?? "—"} s; RTO ${r.rto ? `${r.rto.totalSeconds.toFixed(2)} s (${phases})` : "—"}; writes during the fault ${JSON.stringify(r.evidence.writes ?? {})}; throttle ${JSON.stringify(r.evidence.throttle ?? {})}`,
    ...r.checks.filter((c) => !c.ok).map((c) => `  ✖ ${c.name}: ${c.detail}`),
  ].join("\n");
}

/** Root qdiscs of a container's interfaces, read on the host in its network namespace. */
async function qdiscs(node: TopologyNode): Promise<string> {
  const pid = (await docker(["inspect", "-f", "{{.State.Pid}}", node.hostname])).stdout.trim();
  return execFileSync("nsenter", ["-t", pid, "-n", "tc", "qdisc", "show"], { encoding: "utf8" });
}

/** What every run must leave: no shaping on either node, no drill key, the replica streaming and caught up. */
async function expectLeftAsBuilt(): Promise<void> {
  for (const node of [primary, replica]) {
    const lines = (await qdiscs(node)).trim().split("\n");
    expect(lines.every((l) => / 0: /.test(l) && /noqueue/.test(l)), `${node.name}: ${lines.join(" | ")}`).toBe(true);
  }
  expect(await redisCliOnNode(ctl, primary, admin(), ["KEYS", "app:drill:*"])).toBe("");
  await waitFor("the replica streaming and caught up", async () => {
    const [p, r] = await Promise.all([redisInfoOnNode(ctl, primary, admin(), "replication"), redisInfoOnNode(ctl, replica, admin(), "replication")]);
    return r.master_link_status === "up" && r.master_sync_in_progress === "0" && r.slave_repl_offset === p.master_repl_offset;
  }, { timeoutMs: 60_000 });
}

beforeAll(async () => {
  ensureImages();
  await requireDocker();
  const spec = e2eSpec(STACK, { postgres: { replicas: 0 }, duckdb: { enabled: false }, redis: { replica: true } }, SLOT);
  const label = `${LABEL_STACK}=${STACK}`;
  await removeByLabel(label, { purgeRetained: true });
  const plan = planHomelab(spec, makeSecrets(spec));
  const t0 = Date.now();
  try {
    await applyPlan(plan, { only: (n) => n.role === "redis" || n.role === "redis-replica", timeoutSeconds: 60 });
  } catch (e) {
    await removeByLabel(label, { purgeRetained: true });
    throw e;
  }
  console.log(`[e2e] ${STACK}: Redis nodes healthy in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  t = topologyOf(spec, plan);
  primary = nodeByRole(t, "redis");
  replica = nodeByRole(t, "redis-replica");
}, 300_000);

afterAll(async () => {
  await removeByLabel(`${LABEL_STACK}=${STACK}`, { purgeRetained: true });
  rmSync(reportsDir, { recursive: true, force: true });
  expect(await leftovers(STACK)).toEqual([]);
}, 120_000);

describe("redis-replication-lag drill on a primary + replica", () => {
  it("healthy run: lag detected in INFO replication, the throttle lifted on the primary, caught up on the live link within the objective", async () => {
    const report = await runRedisReplicationLagDrill({ topology: t, reportsDir, log: quietLog() });
    console.log(summary("lift", report));
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.verdict).toBe("pass");
    expect(report.objectives).toEqual({ detectSeconds: 10, rtoSeconds: 30 });
    expect(report.rto?.phases.map((p) => p.name)).toEqual(["detection", "lift", "catch-up"]);
    expect(report.rto!.totalSeconds).toBeLessThanOrEqual(30);
    const lag = report.evidence.lag as { maxBytes: number; bytesToReplay: number };
    expect(lag.maxBytes).toBeGreaterThan(512 * 1024);
    expect(lag.bytesToReplay).toBeGreaterThan(512 * 1024);
    expect(report.checks.map((c) => c.name)).toEqual(expect.arrayContaining(["lag detected", "caught up without a full resync", "replica holds every acknowledged write", "no shaping left"]));
    expect(report.checks.find((c) => c.name === "caught up without a full resync")?.detail).toMatch(/the same: the stream resumed on the live link/);
    // The app's writes to the primary went on at full speed during the fault.
    expect((report.evidence.writes as { duringFault: number }).duringFault).toBeGreaterThan(100);
    await expectLeftAsBuilt();
  }, 180_000);

  it("twin: the shaping 'lifted' on the replica's side -> the replica stays behind -> FAIL naming the bytes and the primary's shaping", async () => {
    const report = await runRedisReplicationLagDrill({ topology: t, reportsDir, log: quietLog(), recovery: "wrong-side" });
    console.log(summary("twin wrong-side", report));
    expect(report.verdict).toBe("fail");
    expect(report.checks.find((c) => c.name === "lag detected")?.ok).toBe(true);
    const caught = report.checks.find((c) => c.name.startsWith("replica caught up"));
    expect(caught?.ok).toBe(false);
    expect(caught?.detail).toMatch(/^the replica is still \d+ bytes behind the primary's offset at the lift .* redis's egress is still shaped \(redis:eth0 htb 1: root.*\): replication flows primary -> replica, lift the shaping on the primary$/);
    expect(report.evidence.wrongSide).toMatchObject({ node: "redis-replica", command: "tc qdisc del dev eth0 root" });
    // Cleanup removed the real throttle anyway.
    expect(report.checks.find((c) => c.name === "no shaping left")?.ok).toBe(true);
    await expectLeftAsBuilt();
  }, 180_000);

  it("twin: the primary drops the replica mid-fault (client-output-buffer-limit lowered) -> FAIL saying so, not a hang", async () => {
    const original = (await redisCliOnNode(ctl, primary, admin(), ["CONFIG", "GET", "client-output-buffer-limit"])).split("\n")[1]!;
    const actions: Promise<unknown>[] = [];
    const log = watchingLog({ "▶ diagnosis": () => actions.push(redisCliOnNode(ctl, primary, admin(), ["CONFIG", "SET", "client-output-buffer-limit", "replica 16kb 8kb 1"])) });
    try {
      const report = await runRedisReplicationLagDrill({ topology: t, reportsDir, log });
      console.log(summary("twin dropped", report));
      expect(report.verdict).toBe("fail");
      expect(report.checks.find((c) => c.name === "drill ran to completion")?.detail).toMatch(/^redis dropped the replica during the fault \(.*; client-output-buffer-limit replica 16 KiB 8 KiB 1\): its log says "Client id=\d+ addr=172\.41\.0\.31:\d+ … (scheduled to be closed ASAP|closed) for overcoming of output buffer limits\."/);
      expect(report.rto).toBeNull();
      expect(report.checks.find((c) => c.name === "no shaping left")?.ok).toBe(true);
    } finally {
      await Promise.allSettled(actions);
      await redisCliOnNode(ctl, primary, admin(), ["CONFIG", "SET", "client-output-buffer-limit", original]);
    }
    await expectLeftAsBuilt();
  }, 180_000);

  it("twin: a replica output buffer limit the load would exceed -> FAIL before any fault, naming the limit", async () => {
    const original = (await redisCliOnNode(ctl, primary, admin(), ["CONFIG", "GET", "client-output-buffer-limit"])).split("\n")[1]!;
    await redisCliOnNode(ctl, primary, admin(), ["CONFIG", "SET", "client-output-buffer-limit", "replica 8mb 4mb 10"]);
    try {
      const report = await runRedisReplicationLagDrill({ topology: t, reportsDir, log: quietLog() });
      console.log(summary("twin buffer limit", report));
      expect(report.verdict).toBe("fail");
      expect(report.checks.find((c) => c.name === "load within the replica output buffer limit")?.detail).toMatch(/reaches the hard limit \(client-output-buffer-limit replica 8\.0 MiB 4\.0 MiB 10\): the primary would drop the replica \(full resync\)/);
      expect(report.phases.map((p) => p.name).some((n) => n.startsWith("fault"))).toBe(false);
    } finally {
      await redisCliOnNode(ctl, primary, admin(), ["CONFIG", "SET", "client-output-buffer-limit", original]);
    }
    await expectLeftAsBuilt();
  }, 120_000);
});
