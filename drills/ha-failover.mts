// The failover drill on a postgres.ha: patroni stack (docs/drills.md "failover" in HA mode; rehearses
// runbooks/postgres-ha-failover.md). `homelab drill failover` runs this instead of the operator-driven drill
// when the topology says ha: patroni, because there the drill must NOT promote anything: it only injects the
// fault and observes, as a client would, through the stable primary endpoint (HAProxy).
//
//   fault    docker kill of the Patroni leader's node (nothing else touched)
//   observe  a writer through the primary endpoint: RTO = fault -> first write acknowledged by another server;
//            RPO = acknowledged writes missing afterwards (objectives.failover.rpoWrites; 0 in sync mode)
//   phases   leader lock (fault -> the new leader's "promoted self to leader", budget ttl + loop_wait + leader
//            race), endpoint (-> first acknowledged write: promotion + HAProxy's check), each beside its budget
//            from Patroni's timing (components/postgres/patroni.ts planPatroniTiming)
//   rejoin   the killed node started again; Patroni rejoins it (pg_rewind when needed) until it streams as a
//            standby: held to objectives.failover.redundancyRestored
// Twin (`twin: "etcd-quorum-lost"`): two of the three etcd members are killed first. No member can then hold
// or take the leader lock: no failover may happen, and the drill FAILS saying so and why (the DCS has no
// quorum), then brings etcd and the node back.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { planPatroniTiming } from "../components/postgres/patroni.ts";
import { docker, dockerEnv } from "../components/platform/docker-node.ts";
import type { Topology, TopologyNode } from "../components/topology.ts";
import { assertNoAcknowledgedWriteLost, assertRtoWithin, check, drillStopped, type Check } from "./lib/assert.ts";
import { EndpointWriter, HA_PROBE_SQL, failoverFromAcks } from "./lib/ha.ts";
import { DrillLog } from "./lib/log.ts";
import { formatSeconds, measureRpo, rtoPhases, type RpoMeasurement, type RtoBreakdown } from "./lib/measure.ts";
import { controlFor, type ControlledNode, type NodeControl } from "./lib/nodes.ts";
import { describeMembers, endpointConfig, leaderLockAt, leaderOf, patroniMembers, waitClusterHealthy } from "./lib/patroni.ts";
import { type DrillReport, concludeDrill } from "./lib/report.ts";

export interface HaFailoverDrillOptions {
  topology: Topology;
  reportsDir?: string;
  log?: DrillLog;
  nodeControl?: NodeControl;
  twin?: "etcd-quorum-lost";
}

/** A node's recent log (docker logs), for the lock time and for evidence; "" off docker. */
export async function nodeLog(node: ControlledNode, tail = 400): Promise<string> {
  if (node.handle.kind !== "docker") return "";
  const r = await docker(["logs", "--tail", String(tail), node.handle.container], { env: dockerEnv(node.handle.dockerHost), allowFailure: true });
  return `${r.stdout}\n${r.stderr}`;
}

/** Runs `fn` on one endpoint connection (the app user's view). */
export async function onEndpoint<T>(config: pg.ClientConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 5000, application_name: "homelab-drill-ha" });
  c.on("error", () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Waits until `probe` yields a value, polling every 100 ms; undefined after `timeoutMs`. */
export async function within<T>(timeoutMs: number, probe: () => T | undefined | Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function runHaFailoverDrill(opts: HaFailoverDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const log = opts.log ?? new DrillLog();
  const ctl = opts.nodeControl ?? controlFor(t);
  const startedAtMs = Date.now();
  const runId = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
  const o = t.objectives.failover;
  const objectives = { rtoSeconds: o.rto, rpoWrites: o.rpoWrites, redundancyRestoredSeconds: o.redundancyRestored };
  const ha = t.postgres.ha;
  const timing = planPatroniTiming(o.rto);
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = { mode: "patroni", twin: opts.twin ?? null, ttlSeconds: ha?.ttlSeconds, loopWaitSeconds: ha?.loopWaitSeconds, retryTimeoutSeconds: ha?.retryTimeoutSeconds };
  let rto: RtoBreakdown | null = null;
  let rpo: RpoMeasurement | null = null;
  let killed: TopologyNode | undefined;
  const etcdKilled: TopologyNode[] = [];
  log.info(`drill failover (postgres.ha: patroni) on stack ${t.stack} (run ${runId}): objectives RTO <= ${formatSeconds(o.rto)}, <= ${o.rpoWrites} acknowledged writes lost, redundancy back <= ${formatSeconds(o.redundancyRestored)}${opts.twin ? `; twin: ${opts.twin}` : ""}`);
  let endpoint: pg.ClientConfig | undefined;
  let writer: EndpointWriter | undefined;
  try {
    if (!ha) throw new Error(`stack ${t.stack} is not postgres.ha: patroni`);
    endpoint = await endpointConfig(t, ctl);
    const before = await log.step("preflight: a leader, every member streaming", () => waitClusterHealthy(t, ctl, 120_000), describeMembers);
    killed = leaderOf(t, before);
    if (!killed) throw new Error(`no running leader: ${describeMembers(before)}`);
    await onEndpoint(endpoint, (c) => c.query(HA_PROBE_SQL));
    writer = new EndpointWriter({ connection: endpoint, run: runId });
    writer.start();
    const w = writer;
    const warm = await within(60_000, () => (w.acks.length >= 20 ? true : undefined));
    if (!warm) throw new Error(`the writer got ${w.acks.length} acknowledgements through the primary endpoint in 60 s (last errors: ${w.errors.slice(-3).map((e) => e.message).join(" | ") || "none"})`);

    if (opts.twin === "etcd-quorum-lost") {
      const etcd = (ha.etcdNodes ?? []).map((name) => t.nodes.find((n) => n.name === name)).filter((n): n is TopologyNode => n !== undefined);
      await log.step("twin: kill two of the etcd members (the DCS loses quorum)", async () => {
        // Quorum is floor(n/2)+1: with n - floor(n/2) members down, fewer than that are left.
        for (const n of etcd.slice(0, etcd.length - Math.floor(etcd.length / 2))) {
          await ctl.kill(n);
          etcdKilled.push(n);
        }
      }, () => `${etcdKilled.map((n) => n.name).join(", ")} killed; ${etcd.length - etcdKilled.length} of ${etcd.length} left (quorum needs ${Math.floor(etcd.length / 2) + 1})`);
    }

    // ------------------------------------------------------------------------------------------ fault
    const faultAtMs = Date.now();
    await log.step(`fault: docker kill ${killed.name} (the leader)`, () => ctl.kill(killed!));
    const waitMs = opts.twin ? (o.rto + 10) * 1000 : Math.max(o.rto * 2, 60) * 1000;
    const m = await log.step("observe: a write acknowledged by a new primary through the endpoint", async () => (await within(waitMs, () => {
      const r = failoverFromAcks(w.acks, faultAtMs);
      return "problem" in r ? undefined : r;
    })) ?? null, (r) => (r ? `${formatSeconds(r.rtoSeconds)} after the fault, by ${r.newPrimary}` : `none within ${formatSeconds(waitMs / 1000)}`));
    await new Promise((r) => setTimeout(r, 500));
    await w.stop();

    if (!m) {
      const members = await patroniMembers(t, ctl, [killed.name]);
      const etcdDown = etcdKilled.length > 0 ? `etcd has no quorum (${etcdKilled.map((n) => n.name).join(", ")} down, ${(ha.etcdNodes.length - etcdKilled.length)} of ${ha.etcdNodes.length} left): no member can hold or take Patroni's leader lock, so none may promote (by design: without the DCS a promotion could make a second primary)` : "";
      evidence.membersAfter = describeMembers(members);
      checks.push(check("failover happened", false, `no write was acknowledged by another server within ${formatSeconds(waitMs / 1000)} of the fault; ${etcdDown || `members: ${describeMembers(members)}`}`));
    } else {
      const newNode = nodeAtAddress(t, m.newPrimary);
      const lockAt = newNode ? leaderLockAt(await nodeLog(newNode), faultAtMs) : undefined;
      if (!lockAt) log.warn(`the new leader's Patroni log (${newNode?.name ?? `no node at ${m.newPrimary}`}) has no "promoted self to leader" after the fault: one phase reported`);
      rto = rtoPhases([...(lockAt ? [{ name: "leader lock", atMs: lockAt }] : []), { name: "endpoint", atMs: m.firstAckAfterFault.atMs }], faultAtMs);
      evidence.newPrimary = m.newPrimary;
      evidence.budgets = budgetsOf(rto, timing);
      log.info(`phases vs Patroni's budgets: ${(evidence.budgets as string[]).join("; ")}`);
      checks.push(assertRtoWithin(m.rtoSeconds, o.rto, "RTO (fault -> first write acknowledged through the endpoint)"));
      rpo = await measureLoss(endpoint, w, runId);
      checks.push(assertNoAcknowledgedWriteLost(rpo, o.rpoWrites));
    }

    // ------------------------------------------------------------------------------------------ rejoin
    if (etcdKilled.length > 0) {
      await log.step("twin cleanup: start the etcd members again", async () => {
        for (const n of etcdKilled.splice(0)) await ctl.start(n);
      });
    }
    const rejoinStart = Date.now();
    await log.step(`rejoin: start ${killed.name}; Patroni makes it a standby again`, async () => {
      await ctl.start(killed!);
      killed = undefined;
      return waitClusterHealthy(t, ctl, Math.max(o.redundancyRestored, 120) * 1000 * (opts.twin ? 2 : 1));
    }, describeMembers);
    const rejoinSeconds = (Date.now() - rejoinStart) / 1000;
    evidence.rejoinSeconds = rejoinSeconds;
    if (m) {
      if (rto) rto = { ...rto, redundancyRestoredSeconds: rejoinSeconds } as RtoBreakdown;
      checks.push(check("redundancy restored", rejoinSeconds <= o.redundancyRestored, `the old leader streams again as a standby ${formatSeconds(rejoinSeconds)} after it was started (objective ${formatSeconds(o.redundancyRestored)})`, { objective: o.redundancyRestored, measured: Number(rejoinSeconds.toFixed(2)), unit: "s" }));
    }
  } catch (e) {
    checks.push(drillStopped(log, e));
  } finally {
    await writer?.stop().catch(() => undefined);
    for (const n of etcdKilled) await ctl.start(n).catch(() => undefined);
    if (killed) await ctl.start(killed).catch(() => undefined);
    if (endpoint) await onEndpoint(endpoint, (c) => c.query("DELETE FROM ha_probe WHERE run = $1", [runId])).catch(() => undefined);
  }
  return concludeDrill({ drill: "failover", stack: t.stack, runId, startedAtMs, objectives, phases: log.phases(), rpo, rto, checks, evidence }, { reportsDir: opts.reportsDir, log });
}

/** The PostgreSQL node with a server address as inet_server_addr() gives it ("172.40.0.11/32") (pure). */
export function nodeAtAddress(t: Pick<Topology, "nodes">, address: string): TopologyNode | undefined {
  const ip = address.split("/")[0];
  return t.nodes.find((n) => n.role.startsWith("postgres-") && (n.container.ipv4Address === ip || n.internal.host === ip));
}

async function measureLoss(endpoint: pg.ClientConfig, w: EndpointWriter, runId: string): Promise<RpoMeasurement> {
  const present = await onEndpoint(endpoint, async (c) => (await c.query<{ seq: string }>("SELECT seq FROM ha_probe WHERE run = $1", [runId])).rows.map((r) => Number(r.seq)));
  return measureRpo({ acknowledged: w.acks.map((a) => ({ seq: a.seq, clientTimeMs: a.atMs })), presentSeqs: present });
}

/** Each measured phase beside the part of the objective Patroni's timing gives it (pure). */
export function budgetsOf(rto: RtoBreakdown, timing: ReturnType<typeof planPatroniTiming>): string[] {
  if ("problem" in timing) return [];
  const b = timing.budget;
  const budget: Record<string, number> = { "leader lock": b.leaseExpirySeconds + b.electionSeconds + b.leaderRaceSeconds, endpoint: b.promotionSeconds + b.endpointSeconds };
  return rto.phases.map((p) => `${p.name} ${formatSeconds(p.durationMs / 1000)}${budget[p.name] !== undefined ? ` of ${formatSeconds(budget[p.name]!)}` : ""}`);
}
