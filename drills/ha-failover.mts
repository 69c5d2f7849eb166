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
// quorum), then brings etcd and the node back. Twin `twin: "replica-lagging"`: synchronous_mode off, the
// leader's link to its standbys throttled (tc, drills/lib/shaping.ts) and 8 MB of WAL written, so every standby
// is further behind than maximum_lag_on_failover when the leader dies. Measured: the standby replays what the
// repository archived once streaming stops, is then within the limit, and Patroni promotes it; what was
// neither streamed nor archived is lost, and the drill FAILS on the lost acknowledged writes, saying how. A
// standby that could not catch up from the archive is not promoted: then the drill fails on "failover
// happened". Either way the old leader is started again and synchronous_mode put back.
import pg from "pg";
import { planPatroniTiming } from "../components/postgres/patroni.ts";
import { docker, dockerEnv } from "../components/platform/docker-node.ts";
import type { Topology, TopologyNode } from "../components/topology.ts";
import { assertNoAcknowledgedWriteLost, assertRtoWithin, check, drillStopped, type Check } from "./lib/assert.ts";
import { EndpointWriter, HA_PROBE_SQL, failoverFromAcks } from "./lib/ha.ts";
import { DrillLog } from "./lib/log.ts";
import { formatSeconds, measureRpo, rtoPhases, type RpoMeasurement, type RtoBreakdown } from "./lib/measure.ts";
import { controlFor, psqlOnNode, type ControlledNode, type NodeControl } from "./lib/nodes.ts";
import { PATRONICTL, describeMembers, endpointConfig, leaderLockAt, leaderOf, patroniMembers, waitClusterHealthy, type PatroniMember } from "./lib/patroni.ts";
import { SLOW_CLASS, THROTTLE_HANDLE, netnsOf, oneLine, tcIn, throttleCommands } from "./lib/shaping.ts";
import { type DrillReport, concludeDrill, newRunId } from "./lib/report.ts";
import { nullOnTimeout, waitFor } from "./lib/wait.ts";

export interface HaFailoverDrillOptions {
  topology: Topology;
  reportsDir?: string;
  log?: DrillLog;
  nodeControl?: NodeControl;
  twin?: "etcd-quorum-lost" | "replica-lagging";
}

/** Patroni's maximum_lag_on_failover from `patronictl show-config` (bytes; Patroni's default 1 MiB) (pure). */
export function maximumLagOnFailover(showConfig: string): number {
  const m = /^maximum_lag_on_failover:\s*(\d+)\s*$/m.exec(showConfig);
  return m ? Number(m[1]) : 1024 ** 2;
}

/** A member's lag in bytes from patronictl's "Lag in MB" (a number, or "unknown") (pure). */
export function memberLagBytes(m: PatroniMember): number | undefined {
  const v = m["Lag in MB"];
  const n = typeof v === "number" ? v : Number(v);
  return v !== undefined && v !== "" && Number.isFinite(n) ? n * 1024 ** 2 : undefined;
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

export async function runHaFailoverDrill(opts: HaFailoverDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const log = opts.log ?? new DrillLog();
  const ctl = opts.nodeControl ?? controlFor(t);
  const startedAtMs = Date.now();
  const runId = newRunId();
  const o = t.objectives.failover;
  const objectives = { rtoSeconds: o.rto, rpoWrites: o.rpoWrites, redundancyRestoredSeconds: o.redundancyRestored };
  const ha = t.postgres.ha;
  const timing = planPatroniTiming(o.rto);
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = { mode: "patroni", twin: opts.twin ?? null, ttlSeconds: ha?.ttlSeconds, loopWaitSeconds: ha?.loopWaitSeconds, retryTimeoutSeconds: ha?.retryTimeoutSeconds };
  let rto: RtoBreakdown | null = null;
  let rpo: RpoMeasurement | null = null;
  let killed: TopologyNode | undefined;
  let lagging: Lagging | undefined;
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
    await waitFor("20 writes acknowledged through the primary endpoint", () => w.acks.length >= 20, { timeoutMs: 60_000, state: () => `${w.acks.length} acknowledged; last errors: ${w.errors.slice(-3).map((e) => e.message).join(" | ") || "none"}` });

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

    if (opts.twin === "replica-lagging") {
      lagging = await makeStandbysLag(t, ctl, killed, log);
      // The filler archived (so what decides the outcome is the lag, not an unarchived filler), and at least a
      // second of acknowledged writes not archived yet (archive_timeout switches segments).
      const leader = killed;
      const fillerEnd = lagging.fillerEndLsn;
      await waitFor(`the filler's WAL (up to ${fillerEnd}) archived, and a second of writes since`, async () => (await psqlOnNode(ctl, leader, `SELECT coalesce(last_archived_wal >= pg_walfile_name('${fillerEnd}') AND now() - last_archived_time > interval '1 second', false) FROM pg_stat_archiver`)) === "t", { timeoutMs: t.postgres.archiveTimeoutSeconds * 2000 + 30_000 });
    }

    // ------------------------------------------------------------------------------------------ fault
    const faultAtMs = Date.now();
    await log.step(`fault: docker kill ${killed.name} (the leader)`, () => ctl.kill(killed!));
    const waitMs = opts.twin ? (o.rto + 10) * 1000 : Math.max(o.rto * 2, 60) * 1000;
    const m = await log.step("observe: a write acknowledged by a new primary through the endpoint", () => nullOnTimeout(waitFor("a write acknowledged by a new primary", () => {
      const r = failoverFromAcks(w.acks, faultAtMs);
      return "problem" in r ? undefined : r;
    }, { timeoutMs: waitMs })), (r) => (r ? `${formatSeconds(r.rtoSeconds)} after the fault, by ${r.newPrimary}` : `none within ${formatSeconds(waitMs / 1000)}`));
    await new Promise((r) => setTimeout(r, 500));
    await w.stop();

    if (!m) {
      const members = await patroniMembers(t, ctl, [killed.name]);
      const etcdDown = etcdKilled.length > 0 ? `etcd has no quorum (${etcdKilled.map((n) => n.name).join(", ")} down, ${(ha.etcdNodes.length - etcdKilled.length)} of ${ha.etcdNodes.length} left): no member can hold or take Patroni's leader lock, so none may promote (by design: without the DCS a promotion could make a second primary)` : "";
      const lagged = lagging ? `every standby was further behind than maximum_lag_on_failover (${(lagging.maxLagBytes / 1024 ** 2).toFixed(1)} MB) when the leader died (${lagging.lags.map((l) => `${l.member} ${(l.bytes / 1024 ** 2).toFixed(1)} MB behind`).join(", ")}): Patroni promotes none rather than lose what they lack; the old leader must come back (or an operator accept the loss with patronictl failover --force)` : "";
      evidence.membersAfter = describeMembers(members);
      checks.push(check("failover happened", false, `no write was acknowledged by another server within ${formatSeconds(waitMs / 1000)} of the fault; ${etcdDown || lagged || `members: ${describeMembers(members)}`}`));
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
      const lost = assertNoAcknowledgedWriteLost(rpo, o.rpoWrites);
      if (lagging && newNode) {
        // A standby behind the limit can still be promoted: once streaming stops it replays what the
        // repository archived (restore_command), and Patroni judges its lag after that. What it lacks then is
        // the tail the primary had not archived yet.
        const restored = restoredSegmentsSince(await nodeLog(newNode, 2000), faultAtMs);
        evidence.restoredFromArchive = restored;
        lost.detail += `; ${newNode.name} was ${lagging.lags.map((l) => `${(l.bytes / 1024 ** 2).toFixed(1)} MB`).join(", ")} behind (maximum_lag_on_failover ${(lagging.maxLagBytes / 1024 ** 2).toFixed(1)} MB) when the leader died, replayed ${restored.length} archived WAL segment(s) from the repository and was then promoted: asynchronous replication lost what was neither streamed nor archived (at most archive_timeout of writes); synchronous_mode would have lost none`;
      }
      checks.push(lost);
    }

    // ------------------------------------------------------------------------------------------ rejoin
    if (etcdKilled.length > 0) {
      await log.step("twin cleanup: start the etcd members again", async () => {
        for (const n of etcdKilled.splice(0)) await ctl.start(n);
      });
    }
    const rejoinStart = Date.now();
    const victim = killed;
    if (lagging) {
      const l = lagging;
      await log.step(`twin cleanup: start ${victim.name} again (the only member with all the data), synchronous_mode back`, async () => {
        await ctl.start(victim);
        killed = undefined;
        await restoreSyncMode(t, ctl, l);
      });
    }
    await log.step(`rejoin: ${killed ? `start ${victim.name}; ` : ""}Patroni makes ${lagging ? "the others standbys" : "it a standby"} again`, async () => {
      if (killed) {
        await ctl.start(killed);
        killed = undefined;
      }
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
    if (lagging) await restoreSyncMode(t, ctl, lagging).catch((e: Error) => log.warn(`synchronous_mode not restored: ${e.message}`));
    if (endpoint) await onEndpoint(endpoint, (c) => c.query("DELETE FROM ha_probe WHERE run = $1", [runId])).catch(() => undefined);
  }
  return concludeDrill({ drill: "failover", stack: t.stack, runId, startedAtMs, objectives, phases: log.phases(), rpo, rto, checks, evidence }, { reportsDir: opts.reportsDir, log });
}

/** The PostgreSQL node with a server address as inet_server_addr() gives it ("172.40.0.11/32") (pure). */
export function nodeAtAddress(t: Pick<Topology, "nodes">, address: string): TopologyNode | undefined {
  const ip = address.split("/")[0];
  return t.nodes.find((n) => n.role.startsWith("postgres-") && (n.container.ipv4Address === ip || n.internal.host === ip));
}

/** WAL segments a node's PostgreSQL log says it restored from the archive after `sinceMs` (pure). */
export function restoredSegmentsSince(log: string, sinceMs: number): string[] {
  const out: string[] = [];
  for (const line of log.split("\n")) {
    const m = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[\d+\] LOG:\s+restored log file "([0-9A-F]{24})" from archive/.exec(line.trim());
    if (m && Date.parse(`${m[1]!.replace(" ", "T")}Z`) >= sinceMs) out.push(m[2]!);
  }
  return out;
}

interface Lagging {
  maxLagBytes: number;
  /** The leader's WAL position after the filler. */
  fillerEndLsn: string;
  lags: { member: string; bytes: number }[];
  /** synchronous_mode was on and is turned back on at the end. */
  wasSync: boolean;
  restored?: boolean;
}

/** The lag twin's set-up: async, the leader's egress to every standby throttled, WAL written, lag past the limit. */
async function makeStandbysLag(t: Topology, ctl: NodeControl, leader: TopologyNode, log: DrillLog): Promise<Lagging> {
  const standbys = t.nodes.filter((n) => n.role.startsWith("postgres-") && n.role !== "postgres-endpoint" && n.name !== leader.name);
  const patronictl = (args: string[]) => ctl.exec(leader, [...PATRONICTL, ...args], { user: "postgres", allowFailure: true, timeoutMs: 30_000 });
  const maxLagBytes = maximumLagOnFailover((await patronictl(["show-config"])).stdout);
  const wasSync = t.postgres.replicationMode === "sync";
  if (wasSync) {
    await log.step("twin: synchronous_mode off (a sync standby cannot fall behind acknowledged commits)", async () => {
      const r = await patronictl(["edit-config", "--force", "--set", "synchronous_mode=false"]);
      if (r.code !== 0) throw new Error(`patronictl edit-config failed: ${(r.stdout + r.stderr).trim()}`);
      await waitFor("synchronous_standby_names cleared", async () => (await psqlOnNode(ctl, leader, "SHOW synchronous_standby_names")) === "", { timeoutMs: 30_000 });
    });
  }
  const ns = await netnsOf(leader);
  let fillerEndLsn = "";
  await log.step(`twin: throttle ${leader.name}'s link to its standbys to 64 kbit (tc htb in its namespace)`, async () => {
    const [first, ...rest] = standbys.map((n) => n.container.ipv4Address ?? n.internal.host);
    const commands = [...throttleCommands({ dev: ns.dev, dstIp: first!, rateKbit: 64 }), ...rest.map((ip) => ["filter", "add", "dev", ns.dev, "parent", THROTTLE_HANDLE, "protocol", "ip", "prio", "1", "u32", "match", "ip", "dst", `${ip}/32`, "flowid", SLOW_CLASS])];
    for (const c of commands) {
      const r = await tcIn(ns, c);
      if (r.code !== 0) throw new Error(`${leader.name}: tc ${c.join(" ")} failed: ${oneLine(r)}`);
    }
  });
  const lags = await log.step(`twin: 8 MB of WAL on ${leader.name}; wait until Patroni sees every standby past maximum_lag_on_failover (${(maxLagBytes / 1024 ** 2).toFixed(1)} MB)`, async () => {
    await psqlOnNode(ctl, leader, ["CREATE TABLE IF NOT EXISTS ha_lag_filler (b text)", "INSERT INTO ha_lag_filler SELECT repeat(md5(g::text), 64) FROM generate_series(1, 4000) g"], { database: t.postgres.database, timeoutMs: 60_000 });
    fillerEndLsn = await psqlOnNode(ctl, leader, "SELECT pg_current_wal_lsn()");
    let members: PatroniMember[] = [];
    return waitFor("every standby past maximum_lag_on_failover", async () => {
      members = await patroniMembers(t, ctl);
      const behind = members.filter((m) => m.Role !== "Leader").map((m) => ({ member: m.Member, bytes: memberLagBytes(m) ?? 0 }));
      return behind.length === standbys.length && behind.every((b) => b.bytes > maxLagBytes) ? behind : undefined;
    }, { timeoutMs: 60_000, state: () => describeMembers(members) });
  }, (l) => l.map((x) => `${x.member} ${(x.bytes / 1024 ** 2).toFixed(1)} MB behind`).join(", "));
  return { maxLagBytes, fillerEndLsn, lags, wasSync };
}

/** The lag twin's clean-up once a leader runs: synchronous_mode as it was, the filler table dropped. */
async function restoreSyncMode(t: Topology, ctl: NodeControl, lagging: Lagging): Promise<void> {
  if (lagging.restored) return;
  let members: PatroniMember[] = [];
  const found = await waitFor("a Patroni leader", async () => leaderOf(t, (members = await patroniMembers(t, ctl))), { timeoutMs: 120_000, state: () => describeMembers(members) });
  if (lagging.wasSync) {
    const r = await ctl.exec(found, [...PATRONICTL, "edit-config", "--force", "--set", "synchronous_mode=true"], { user: "postgres", allowFailure: true, timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`patronictl edit-config --set synchronous_mode=true failed: ${(r.stdout + r.stderr).trim()}`);
  }
  await psqlOnNode(ctl, found, "DROP TABLE IF EXISTS ha_lag_filler", { database: t.postgres.database, timeoutMs: 60_000 });
  lagging.restored = true;
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
