// Drill: the Redis replica falls behind on a slow link (docs/drills.md "redis-replication-lag"; rehearses
// runbooks/redis-replication-lag.md; the seeds' day-2 checklist: "Redis replication lag").
//
//   npx tsx drills/redis-replication-lag.mts --stack local [--reports reports]
//
// A writer (the app user, through the primary's published port) runs MULTI; INCR; XADD; SET <4 KiB payload>;
// EXEC 50 times a second: ~200 KiB/s of replication stream. The fault throttles the replica link where the
// data flows, the PRIMARY's egress to the replica's address only: an htb qdisc in the primary's network
// namespace (tc run from this host through nsenter: the containers have neither tc nor CAP_NET_ADMIN, and the
// kernel here has no netem), a 64 kbit class with a shallow queue (~250 ms) for `u32 match ip dst
// <replica>/32`, everything else (the app's traffic) unshaped. Detected the way the runbook does: the
// primary's INFO replication (polled every 100 ms), master_repl_offset minus the replica's acknowledged
// offset above a threshold, held to objectives.redisReplicationLag.detect. The throttle is held a moment
// (the diagnosis), then lifted (`tc qdisc del` on the primary); caught up = the replica's own
// slave_repl_offset reaches the primary's offset at the lift, held to objectives.redisReplicationLag.rto from
// the fault. Then: no full resync (sync_full and sync_partial_ok unchanged, the same replication connection
// at the primary, link up) and the replica holds every acknowledged write (counter, stream). Before the
// fault, the load is checked against client-output-buffer-limit replica (the primary would drop the replica
// past it: a full resync, not a lag) and the lag reached is compared with repl-backlog-size (a link drop past
// it also means a full resync).
// Twin (`recovery: "wrong-side"`): the shaping is "lifted" on the replica's interface, which only carries its
// ACKs; the primary's egress stays throttled, the replica never catches up and the drill FAILS naming the
// bytes it is still behind and the shaping still on the primary. Cleanup always removes the real throttle.
import { randomBytes } from "node:crypto";
import type { Topology, TopologyNode } from "../components/topology.ts";
import { docker } from "../components/platform/docker-node.ts";
import { assertRtoWithin, check, drillStopped, type Check } from "./lib/assert.ts";
import { DrillLog } from "./lib/log.ts";
import { formatDuration, formatSeconds, rtoPhases, type RtoBreakdown } from "./lib/measure.ts";
import { controlFor, readSecret, type NodeControl } from "./lib/nodes.ts";
import {
  connectRedis,
  measureRedisLoss,
  parseRedisInfo,
  readRedisDrillState,
  redisCliOnNode,
  redisDrillKeys,
  RedisAckWriter,
  type RedisConnectionFactory,
  type RedisDrillKeys,
  type RedisEndpoint,
  type RedisNodeAuth,
} from "./lib/redis.ts";
import { type DrillReport, concludeDrill, newRunId } from "./lib/report.ts";
import { nodeByRole, nodesByRole } from "./lib/topology.ts";
import { waitFor } from "./lib/wait.ts";
import { runIfMain } from "./lib/main.ts";
import { SLOW_CLASS, THROTTLE_HANDLE, ShapingRefused, addedRoot, describeQdiscs, liftCommand, netnsOf, oneLine, qdiscsOf, refuseUnlessLocalDocker, tcBlockStats, tcIn, throttleCommands, throttleQueuePackets, type NodeNetns } from "./lib/shaping.ts";

export interface RedisReplicationLagDrillOptions {
  topology: Topology;
  reportsDir?: string;
  log?: DrillLog;
  nodeControl?: NodeControl;
  /** How the throttle is lifted: on the primary (the runbook) or on the replica's side (the fault twin's mistake). */
  recovery?: "lift" | "wrong-side";
  /** Writer rate (default 50 transactions/s) and payload per write (default 4096 bytes). */
  writesPerSecond?: number;
  valueBytes?: number;
  /** Rate of the throttled link (default 64 kbit/s, ~7 KiB/s of TCP payload: far below the writer's ~210 KiB/s). */
  throttleKbit?: number;
  /** The throttle stays this long after the lag is detected (default 3000 ms): the diagnosis. */
  holdMs?: number;
  /** Writes before the fault (default 2000 ms). */
  warmupMs?: number;
  /** Behind by more than this is lag (default: 512 KiB or 2 s of the writer's bytes, whichever is larger). */
  lagThresholdBytes?: number;
}

const POLL_MS = 100; // docs/drills.md: drills poll at <= 100 ms
const DEFAULT_RATE = 50;
const DEFAULT_VALUE_BYTES = 4096;
/** What a write adds to the replication stream besides its payload (MULTI/EXEC, INCR, XADD with its id, SET). */
const STREAM_OVERHEAD_BYTES = 200;

/** A reason the drill cannot go on (a shaping refusal is one too). */
class DrillAbort extends ShapingRefused {}

// ---------------------------------------------------------------------------------------------------- pure

/** One `slaveN:ip=...,port=...,state=...,offset=...,lag=...` line of a primary's INFO replication. */
export interface ReplicaEntry {
  /** slave0, slave1, ... */
  key: string;
  ip: string;
  port: number;
  /** wait_bgsave | send_bulk | online (Redis 7). */
  state: string;
  /** The replication offset the replica last acknowledged (REPLCONF ACK, once a second). */
  offset: number;
  /** Seconds since that acknowledgement: NOT how far behind the data is. */
  lag: number;
}

export function parseReplicaEntries(info: Readonly<Record<string, string>>): ReplicaEntry[] {
  const out: ReplicaEntry[] = [];
  for (const [key, value] of Object.entries(info)) {
    if (!/^slave\d+$/.test(key)) continue;
    const f = Object.fromEntries(value.split(",").map((kv) => {
      const i = kv.indexOf("=");
      return i < 0 ? [kv, ""] : [kv.slice(0, i), kv.slice(i + 1)];
    }));
    if (f.ip === undefined || f.offset === undefined) continue;
    out.push({ key, ip: f.ip, port: Number(f.port), state: f.state ?? "unknown", offset: Number(f.offset), lag: Number(f.lag ?? NaN) });
  }
  return out.sort((a, b) => Number(a.key.slice(5)) - Number(b.key.slice(5)));
}

/** What one look at the primary's INFO (replication, stats, memory) says about one replica. */
export interface LagSample {
  atMs: number;
  masterOffset: number;
  /** The replica's entry, undefined when the primary lists none at that address (dropped, or never there). */
  replica?: ReplicaEntry;
  /** master_repl_offset minus the replica's acknowledged offset. */
  lagBytes?: number;
  connectedReplicas: number;
  /** mem_clients_slaves: the replicas' output buffers on the primary (the kernel's socket buffers are not in it). */
  outputBufferBytes?: number;
  syncFull?: number;
  syncPartialOk?: number;
}

export function lagSample(info: Readonly<Record<string, string>>, replicaIp: string, atMs: number): LagSample {
  const replica = parseReplicaEntries(info).find((r) => r.ip === replicaIp);
  const masterOffset = Number(info.master_repl_offset ?? NaN);
  const num = (k: string) => (info[k] === undefined ? undefined : Number(info[k]));
  return {
    atMs,
    masterOffset,
    replica,
    lagBytes: replica ? Math.max(0, masterOffset - replica.offset) : undefined,
    connectedReplicas: Number(info.connected_slaves ?? 0),
    outputBufferBytes: num("mem_clients_slaves"),
    syncFull: num("sync_full"),
    syncPartialOk: num("sync_partial_ok"),
  };
}

/**
 * The lag decision: "behind" when the replica's acknowledged offset is more than `thresholdBytes` behind the
 * primary's; "dropped" when the primary no longer lists it online (output buffer limit, timeout, a resync in
 * progress); else "within". The acknowledged offset is up to a second old (REPLCONF ACK once a second), so
 * a healthy replica shows up to a second of writes: the threshold must be above that.
 */
export function lagDecision(s: LagSample, thresholdBytes: number): "behind" | "dropped" | "within" {
  if (!s.replica || s.replica.state !== "online") return "dropped";
  return (s.lagBytes ?? 0) > thresholdBytes ? "behind" : "within";
}

export function defaultLagThreshold(bytesPerSecond: number): number {
  return Math.max(512 * 1024, Math.ceil(2 * bytesPerSecond));
}

export interface OutputBufferLimit {
  hardBytes: number;
  softBytes: number;
  softSeconds: number;
}

/** The replica class of `CONFIG GET client-output-buffer-limit` ("normal 0 0 0 slave 268435456 67108864 60 pubsub ..."). */
export function parseReplicaOutputBufferLimit(value: string): OutputBufferLimit | undefined {
  const w = value.trim().split(/\s+/);
  for (let i = 0; i + 3 < w.length; i += 4) {
    if (w[i] === "slave" || w[i] === "replica") return { hardBytes: Number(w[i + 1]), softBytes: Number(w[i + 2]), softSeconds: Number(w[i + 3]) };
  }
  return undefined;
}

/**
 * Would the primary drop the replica under this load? At most `bytesPerSecond` pile up for the replica over
 * `faultSeconds` (an upper bound: the throttled link still carries some, and the kernel's socket buffers
 * hold some outside Redis' output buffer). Past the hard limit, or past the soft limit for softSeconds, Redis
 * closes the replica's connection: the replica then needs a full resync, not a catch-up.
 */
export function assessReplicaBuffer(a: { bytesPerSecond: number; faultSeconds: number; limit: OutputBufferLimit }): { ok: boolean; projectedBytes: number; detail: string } {
  const projectedBytes = Math.ceil(a.bytesPerSecond * a.faultSeconds);
  const { hardBytes, softBytes, softSeconds } = a.limit;
  const limitText = `client-output-buffer-limit replica ${mib(hardBytes)} ${mib(softBytes)} ${softSeconds}`;
  const load = `${kib(a.bytesPerSecond)}/s for up to ${formatSeconds(a.faultSeconds)}: at most ${mib(projectedBytes)} for the replica`;
  if (hardBytes > 0 && projectedBytes >= hardBytes) return { ok: false, projectedBytes, detail: `${load} reaches the hard limit (${limitText}): the primary would drop the replica (full resync). Lower writesPerSecond/valueBytes or raise the limit` };
  const aboveSoft = softBytes > 0 ? a.faultSeconds - softBytes / a.bytesPerSecond : -1;
  if (softBytes > 0 && projectedBytes >= softBytes && aboveSoft >= softSeconds) return { ok: false, projectedBytes, detail: `${load} stays above the soft limit for ${formatSeconds(aboveSoft)} (${limitText}): the primary would drop the replica (full resync). Lower writesPerSecond/valueBytes or raise the limit` };
  return { ok: true, projectedBytes, detail: `${load}, within ${limitText}` };
}

/**
 * The line of a primary's log that says why it let a replica go (Redis 7.0 wording): the output buffer limit
 * first ("scheduled to be closed ASAP" when it is hit while the stream is appended, "closed" when clientsCron
 * finds it), then a replica timeout, then a plain "connection lost"; the client's long field list shortened.
 */
export function droppedLogLine(logText: string): string | undefined {
  const lines = logText.split("\n").map((l) => l.trim().replace(/^\d+:[A-Z] [^*#-]*[*#-] /, ""));
  for (const re of [/output buffer limits/, /Disconnecting timedout replica/i, /Connection with replica .* lost/i]) {
    const hit = lines.filter((l) => re.test(l)).at(-1);
    if (hit) return hit.replace(/^(Client id=\d+ addr=\S+) .*? ((?:scheduled to be closed ASAP|closed) for overcoming)/, "$1 … $2");
  }
  return undefined;
}

/** `CLIENT LIST` lines as key -> value maps. */
export function parseClientList(text: string): Record<string, string>[] {
  return text.split("\n").filter((l) => l.trim() !== "").map((l) => Object.fromEntries(l.trim().split(" ").map((kv) => {
    const i = kv.indexOf("=");
    return i < 0 ? [kv, ""] : [kv.slice(0, i), kv.slice(i + 1)];
  })));
}

function kib(b: number): string {
  return `${(b / 1024).toFixed(0)} KiB`;
}
function mib(b: number): string {
  if (b === 0) return "0";
  return b < 1024 ** 2 ? kib(b) : `${(b / 1024 ** 2).toFixed(1)} MiB`;
}

// ---------------------------------------------------------------------------------------------------- writer

/**
 * The RedisAckWriter's transaction with a payload: MULTI; INCR; XADD seq; SET <payloadKey> <payload>; EXEC.
 * The payload key is overwritten, so memory stays flat while every write adds its bytes to the stream.
 */
function payloadConnection(payloadKey: string, payload: string): RedisConnectionFactory {
  return async (endpoint, timeoutMs) => {
    const client = await connectRedis(endpoint, timeoutMs);
    return {
      async incrAndAppend(keys, seq) {
        const replies = await client.multi().incr(keys.counter).xadd(keys.stream, "*", "seq", String(seq)).set(payloadKey, payload).exec();
        if (!replies) throw new Error("EXEC answered nil (transaction aborted)");
        if (replies.length !== 3) throw new Error(`EXEC answered ${replies.length} replies, expected 3`);
        for (const [err] of replies) if (err) throw err;
        return { counter: Number(replies[0]![1]), streamId: String(replies[1]![1]) };
      },
      close: () => client.disconnect(),
    };
  };
}

async function deleteKeys(endpoint: RedisEndpoint, keys: RedisDrillKeys, payloadKey: string): Promise<void> {
  const client = await connectRedis(endpoint, 5000);
  try {
    await client.del(keys.counter, keys.stream, keys.probe, payloadKey);
  } finally {
    client.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------------- drill

export async function runRedisReplicationLagDrill(opts: RedisReplicationLagDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const log = opts.log ?? new DrillLog();
  const recovery = opts.recovery ?? "lift";
  const startedAtMs = Date.now();
  const runId = newRunId();
  const rate = opts.writesPerSecond ?? DEFAULT_RATE;
  const valueBytes = opts.valueBytes ?? DEFAULT_VALUE_BYTES;
  const throttleKbit = opts.throttleKbit ?? 64;
  const holdMs = opts.holdMs ?? 3000;
  const bytesPerSecond = rate * (valueBytes + STREAM_OVERHEAD_BYTES);
  const thresholdBytes = opts.lagThresholdBytes ?? defaultLagThreshold(bytesPerSecond);
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = { recovery, writesPerSecond: rate, valueBytes, throttleKbit, lagThresholdBytes: thresholdBytes };
  const objective = t.objectives.redisReplicationLag;
  const objectives = { detectSeconds: objective?.detect ?? NaN, rtoSeconds: objective?.rto ?? NaN };
  const keys = redisDrillKeys(runId);
  const payloadKey = keys.counter.replace(/:counter$/, ":payload");
  let rto: RtoBreakdown | null = null;
  let writer: RedisAckWriter | undefined;
  let primaryEndpoint: RedisEndpoint | undefined;
  let primaryNs: NodeNetns | undefined;
  let replicaNs: NodeNetns | undefined;
  let throttled = false; // the drill may have added shaping on the primary: cleanup looks and removes it
  let primaryInfo: (() => Promise<Record<string, string>>) | undefined;
  let replicaInfo: (() => Promise<Record<string, string>>) | undefined;
  log.info(`drill redis-replication-lag on stack ${t.stack} (run ${runId}): objectives detect <= ${formatSeconds(objectives.detectSeconds)}, caught up <= ${formatSeconds(objectives.rtoSeconds)} after the fault`);

  try {
    if (!objective) throw new DrillAbort(`the topology of stack ${t.stack} has no objectives.redisReplicationLag: re-run \`homelab up --stack ${t.stack}\` with this version`);
    if (!t.redis) throw new DrillAbort(`stack ${t.stack} has no Redis (redis.enabled: false)`);
    const redisTopology = t.redis;
    const primary = nodeByRole(t, "redis");
    const replica = nodesByRole(t, "redis-replica")[0];
    if (!replica) throw new DrillAbort(`stack ${t.stack} has no Redis replica: this drill throttles the replica's link (set redis.replica: true and re-run homelab up)`);
    for (const node of [primary, replica]) refuseUnlessLocalDocker(node);
    const ctl = opts.nodeControl ?? controlFor(t);
    const adminFile = redisTopology.passwordFiles[redisTopology.adminUser];
    const appFile = redisTopology.passwordFiles[redisTopology.appUser];
    if (!adminFile || !appFile) throw new DrillAbort(`the topology names no password file for Redis user ${!adminFile ? redisTopology.adminUser : redisTopology.appUser} (INFO replication needs the admin user); re-run homelab up with this version`);
    const admin: RedisNodeAuth = { user: redisTopology.adminUser, passwordFile: adminFile };
    const endpointOf = (node: TopologyNode, password: string): RedisEndpoint => {
      if (!node.published) throw new DrillAbort(`node ${node.name} publishes no port: the drill reaches Redis at its published address`);
      return { host: node.published.host, port: node.published.port, username: redisTopology.appUser, password };
    };
    const pInfo = (primaryInfo = async () => parseRedisInfo(await redisCliOnNode(ctl, primary, admin, ["INFO", "replication", "stats", "memory"])));
    const rInfo = (replicaInfo = async () => parseRedisInfo(await redisCliOnNode(ctl, replica, admin, ["INFO", "replication"])));
    const replicaIp = replica.container.ipv4Address ?? replica.internal.host;
    const sample = async () => lagSample(await pInfo(), replicaIp, Date.now());
    const replicaConnection = async () => parseClientList(await redisCliOnNode(ctl, primary, admin, ["CLIENT", "LIST", "TYPE", "replica"])).find((c) => c.addr?.startsWith(`${replicaIp}:`));

    // ------------------------------------------------------------------------------------ preflight
    const pre = await log.step("preflight: this host reaches both nodes' network namespaces, the replica streams", async () => {
      await ctl.waitHealthy(primary, 30_000);
      await ctl.waitHealthy(replica, 30_000);
      primaryNs = await netnsOf(primary);
      replicaNs = await netnsOf(replica);
      const existing = addedRoot(await qdiscsOf(primaryNs));
      if (existing) throw new DrillAbort(`${primary.name}:${primaryNs.dev} already has a root qdisc (${existing.kind} ${existing.handle}): the drill would replace someone's shaping; remove it first (tc qdisc del dev ${primaryNs.dev} root in its namespace)`);
      let r: Record<string, string> = {};
      await waitFor(`${replica.name} link up`, async () => (r = await rInfo()).role === "slave" && r.master_link_status === "up" && r.master_sync_in_progress === "0", { timeoutMs: 30_000 }).catch(() => undefined);
      const s = await sample();
      const streaming = r.role === "slave" && r.master_link_status === "up" && s.replica?.state === "online";
      checks.push(check("replica streaming before the fault", streaming, streaming ? `${replica.name} (${replicaIp}) replicates ${r.master_host}, link up, ${primary.name} lists it online at offset ${s.replica?.offset}` : `${replica.name}: role ${r.role}, master_link_status ${r.master_link_status ?? "none"}; ${primary.name} lists ${s.replica ? `it ${s.replica.state}` : `no replica at ${replicaIp}`}`));
      if (!streaming) throw new DrillAbort(`${replica.name} is not streaming from ${primary.name}: nothing to throttle`);
      const obl = parseReplicaOutputBufferLimit((await redisCliOnNode(ctl, primary, admin, ["CONFIG", "GET", "client-output-buffer-limit"])).split("\n")[1] ?? "");
      const backlog = Number((await redisCliOnNode(ctl, primary, admin, ["CONFIG", "GET", "repl-backlog-size"])).split("\n")[1]);
      if (!obl) throw new DrillAbort(`${primary.name}: CONFIG GET client-output-buffer-limit names no replica class`);
      const connection = await replicaConnection();
      return { s, obl, backlog, connection };
    }, (p) => `${primaryNs?.node}:${primaryNs?.dev} pid ${primaryNs?.pid}, ${replicaNs?.node}:${replicaNs?.dev} ${replicaNs?.ip}; replication connection id ${p.connection?.id ?? "?"}, sync_full ${p.s.syncFull}, repl-backlog-size ${mib(p.backlog)}`);
    const pNs = primaryNs!;
    const rNs = replicaNs!;
    // The longest the throttle can stay: detection's timeout, the hold, the catch-up wait (twin: all of it).
    const detectTimeoutMs = Math.max(15_000, objectives.detectSeconds * 2000);
    const catchUpLimitMs = objectives.rtoSeconds * 1000;
    const buffer = assessReplicaBuffer({ bytesPerSecond, faultSeconds: (detectTimeoutMs + holdMs + catchUpLimitMs) / 1000, limit: pre.obl });
    checks.push(check("load within the replica output buffer limit", buffer.ok, buffer.detail, { objective: pre.obl.softBytes, measured: buffer.projectedBytes, unit: "bytes" }));
    evidence.outputBufferLimit = pre.obl;
    evidence.replBacklogBytes = pre.backlog;
    if (!buffer.ok) throw new DrillAbort(buffer.detail);

    const appPassword = await readSecret(ctl, primary, appFile);
    primaryEndpoint = endpointOf(primary, appPassword);
    const replicaEndpoint = endpointOf(replica, appPassword);

    // ------------------------------------------------------------------------------------ load
    writer = new RedisAckWriter({ endpoint: primaryEndpoint, keys, writesPerSecond: rate, connectionFactory: payloadConnection(payloadKey, randomBytes(Math.ceil(valueBytes / 2)).toString("hex").slice(0, valueBytes)) });
    const w = writer;
    const warm = await log.step(`writer: MULTI INCR + XADD + SET ${valueBytes} B, ${rate}/s as ${redisTopology.appUser} (~${kib(bytesPerSecond)}/s of replication stream)`, async () => {
      w.start();
      await sleep(opts.warmupMs ?? 2000);
      const stats = w.getStats();
      if (stats.acknowledged === 0) throw new DrillAbort(`the writer got no write acknowledged (last error: ${stats.lastError ?? "none"})`);
      const s = await sample();
      if (lagDecision(s, thresholdBytes) !== "within") throw new DrillAbort(`${replica.name} is already ${s.lagBytes ?? "?"} bytes behind before the fault (threshold ${thresholdBytes}): find out why first`);
      return { stats, s };
    }, ({ stats, s }) => `${stats.acknowledged} acknowledged; replica ${s.lagBytes} bytes behind (acknowledged offset, up to 1 s old)`);
    evidence.lagBeforeFault = warm.s.lagBytes;

    // ------------------------------------------------------------------------------------ fault
    const faultAtMs = Date.now();
    throttled = true;
    await log.step(`fault: throttle ${primary.name}'s egress to ${replicaIp} at ${throttleKbit} kbit (htb + u32 on ${pNs.dev}, in its namespace)`, async () => {
      for (const args of throttleCommands({ dev: pNs.dev, dstIp: replicaIp, rateKbit: throttleKbit })) {
        const r = await tcIn(pNs, args);
        if (r.code !== 0) throw new DrillAbort(`${primary.name}: tc ${args.join(" ")} failed: ${oneLine(r)}`);
      }
    });

    // ------------------------------------------------------------------------------------ detect
    let last: LagSample | undefined;
    let maxLag = { bytes: 0, lagSeconds: 0, outputBufferBytes: 0 };
    /** Why the primary let the replica go, from what it says now and its log since the fault. */
    const droppedError = async (s: LagSample): Promise<DrillAbort> => {
      const limit = await redisCliOnNode(ctl, primary, admin, ["CONFIG", "GET", "client-output-buffer-limit"]).then((o) => parseReplicaOutputBufferLimit(o.split("\n")[1] ?? "")).catch(() => undefined);
      const logs = await docker(["logs", "--since", new Date(faultAtMs - 1000).toISOString(), refuseUnlessLocalDocker(primary).container], { allowFailure: true });
      const said = droppedLogLine(`${logs.stdout}\n${logs.stderr}`);
      const state = `${s.replica ? `state ${s.replica.state}` : `no replica at ${replicaIp}`}, connected_slaves ${s.connectedReplicas}, sync_full ${pre.s.syncFull} -> ${s.syncFull}, sync_partial_ok ${pre.s.syncPartialOk} -> ${s.syncPartialOk}`;
      const limitText = limit ? `client-output-buffer-limit replica ${mib(limit.hardBytes)} ${mib(limit.softBytes)} ${limit.softSeconds}` : "client-output-buffer-limit replica (unreadable)";
      return new DrillAbort(`${primary.name} dropped the replica during the fault (${state}; ${limitText}): ${said ? `its log says "${said}"` : "its log names no reason"}; the replica needs a resync (a full one when it is further behind than repl-backlog-size ${mib(pre.backlog)}), not a catch-up`);
    };
    /** Keeps the largest lag seen; the replica gone (or resynced) ends the drill at once. */
    const track = async (s: LagSample): Promise<LagSample> => {
      last = s;
      maxLag = { bytes: Math.max(maxLag.bytes, s.lagBytes ?? 0), lagSeconds: Math.max(maxLag.lagSeconds, s.replica?.lag ?? 0), outputBufferBytes: Math.max(maxLag.outputBufferBytes, s.outputBufferBytes ?? 0) };
      const resynced = s.syncFull !== pre.s.syncFull || s.syncPartialOk !== pre.s.syncPartialOk;
      if (lagDecision(s, thresholdBytes) === "dropped" || resynced) throw await droppedError(s);
      return s;
    };
    const detected = await log.step(`detect: ${primary.name}'s INFO replication, master_repl_offset - the replica's offset > ${kib(thresholdBytes)} (every ${POLL_MS} ms)`, async () => {
      // A dropped replica ends the wait at once (waitFor would count the throw as "not yet").
      const found = await waitFor("the replica behind", async () => {
        const x = await sample();
        try {
          await track(x);
        } catch (e) {
          if (e instanceof DrillAbort) return e;
          throw e;
        }
        return lagDecision(x, thresholdBytes) === "behind" ? x : undefined;
      }, { timeoutMs: detectTimeoutMs, intervalMs: POLL_MS, state: () => `last: ${last?.lagBytes ?? "?"} bytes behind` }).catch((e: Error) => {
        checks.push(check("lag detected", false, `the replica was never more than ${thresholdBytes} bytes behind within ${formatDuration(detectTimeoutMs)} of the throttle (last ${last?.lagBytes ?? "?"} bytes): the throttle did not hold the stream back`, { objective: objectives.detectSeconds, measured: "none", unit: "s" }));
        throw new DrillAbort(e.message);
      });
      if (found instanceof DrillAbort) throw found;
      return found;
    }, (s) => `${s.lagBytes} bytes behind ${formatDuration(s.atMs - faultAtMs)} after the fault (replica acknowledged ${s.replica?.offset}, primary at ${s.masterOffset}); INFO's lag field ${s.replica?.lag} s`);
    const detectSeconds = (detected.atMs - faultAtMs) / 1000;
    checks.push(check("lag detected", detectSeconds <= objectives.detectSeconds, `replica ${detected.lagBytes} bytes behind (threshold ${thresholdBytes}) in ${primary.name}'s INFO replication ${formatSeconds(detectSeconds)} after the fault (objective ${formatSeconds(objectives.detectSeconds)}); its lag field said ${detected.replica?.lag} s: that is seconds since the replica's last ACK, not how far behind the data is`, { objective: objectives.detectSeconds, measured: detectSeconds, unit: "s" }));

    await log.step(`diagnosis: the throttle held ${formatDuration(holdMs)} more`, async () => {
      const until = Date.now() + holdMs;
      while (Date.now() < until) {
        await track(await sample());
        await sleep(POLL_MS);
      }
    }, () => `${last?.lagBytes} bytes behind, output buffer ${kib(last?.outputBufferBytes ?? 0)}`);

    // ------------------------------------------------------------------------------------ recover
    const classStats = tcBlockStats((await tcIn(pNs, ["-s", "class", "show", "dev", pNs.dev])).stdout, new RegExp(`^class htb ${SLOW_CLASS} `));
    const leafStats = tcBlockStats((await tcIn(pNs, ["-s", "qdisc", "show", "dev", pNs.dev])).stdout, /^qdisc pfifo 10: /);
    evidence.throttle = { rateKbit: throttleKbit, queuePackets: throttleQueuePackets(throttleKbit), node: pNs.node, dev: pNs.dev, dstIp: replicaIp, sentBytes: classStats?.sentBytes, sentPackets: classStats?.sentPackets, droppedPackets: leafStats?.dropped };
    const lifted = await log.step(recovery === "lift" ? `recover: tc qdisc del dev ${pNs.dev} root on ${primary.name} (the sending side)` : `recover (twin): tc qdisc del dev ${rNs.dev} root on ${replica.name} (the wrong side: it only sends ACKs)`, async () => {
      const ns = recovery === "lift" ? pNs : rNs;
      // Where the replica stands just before the lift: what it has to replay runs from there to the target.
      const replicaOffset = Number((await rInfo()).slave_repl_offset);
      const r = await tcIn(ns, liftCommand(ns.dev));
      if (recovery === "lift") {
        if (r.code !== 0) throw new DrillAbort(`${primary.name}: tc ${liftCommand(ns.dev).join(" ")} failed: ${oneLine(r)}`);
        throttled = false;
      } else evidence.wrongSide = { node: ns.node, command: `tc ${liftCommand(ns.dev).join(" ")}`, exit: r.code, output: oneLine(r) };
      const atMs = Date.now();
      return { atMs, target: Number((await pInfo()).master_repl_offset), replicaOffset, output: oneLine(r) };
    }, (l) => `the primary at offset ${l.target}, the replica at ${l.replicaOffset} just before: ${l.target - l.replicaOffset} bytes to replay${recovery === "wrong-side" ? ` (tc said: ${l.output || "nothing"})` : ""}`);
    const bytesToReplay = lifted.target - lifted.replicaOffset;

    // ------------------------------------------------------------------------------------ measure
    let replicaOffset = lifted.replicaOffset;
    let link = "up";
    const deadlineMs = Math.max(faultAtMs + catchUpLimitMs, lifted.atMs + 5000);
    const caughtUpAtMs = await log.step(`catch-up: ${replica.name}'s slave_repl_offset >= ${lifted.target} (every ${POLL_MS} ms)`, async () => {
      try {
        await waitFor("the replica caught up", async () => {
          const r = await rInfo();
          replicaOffset = Number(r.slave_repl_offset);
          link = r.master_link_status ?? "none";
          return replicaOffset >= lifted.target;
        }, { timeoutMs: Math.max(0, deadlineMs - Date.now()), intervalMs: POLL_MS });
        return Date.now();
      } catch {
        return undefined;
      }
    }, (at) => (at === undefined ? `not caught up ${formatDuration(Date.now() - faultAtMs)} after the fault: ${lifted.target - replicaOffset} bytes behind` : `${formatDuration(at - lifted.atMs)} after the lift, ${formatDuration(at - faultAtMs)} after the fault`));
    evidence.lag = { maxBytes: maxLag.bytes, maxLagFieldSeconds: maxLag.lagSeconds, maxOutputBufferBytes: maxLag.outputBufferBytes, bytesToReplay, beyondBacklog: maxLag.bytes > pre.backlog };
    if (maxLag.bytes > pre.backlog) log.info(`the lag reached ${mib(maxLag.bytes)}, more than repl-backlog-size ${mib(pre.backlog)}: had the link dropped then, the replica could not have resumed (PSYNC) and would have needed a full resync`);
    if (caughtUpAtMs !== undefined) {
      rto = rtoPhases([{ name: "detection", atMs: detected.atMs }, { name: "lift", atMs: lifted.atMs }, { name: "catch-up", atMs: caughtUpAtMs }], faultAtMs);
      evidence.catchUpSeconds = (caughtUpAtMs - lifted.atMs) / 1000;
      checks.push(assertRtoWithin(rto.totalSeconds, objectives.rtoSeconds, "replica caught up (fault -> offset reached)"));
    } else {
      const now = await sample().catch(() => undefined);
      const shaping = await qdiscsOf(pNs).catch(() => []);
      const stats = tcBlockStats((await tcIn(pNs, ["-s", "class", "show", "dev", pNs.dev])).stdout, new RegExp(`^class htb ${SLOW_CLASS} `));
      const still = addedRoot(shaping)
        ? `; ${primary.name}'s egress is still shaped (${describeQdiscs(pNs, shaping)}${stats ? `, class ${SLOW_CLASS} rate ${stats.rate ?? "?"}, ${stats.dropped} packets dropped` : ""}): replication flows primary -> replica, lift the shaping on the primary`
        : "";
      checks.push({
        ...assertRtoWithin(undefined, objectives.rtoSeconds, "replica caught up (fault -> offset reached)"),
        detail: `the replica is still ${lifted.target - replicaOffset} bytes behind the primary's offset at the lift (${lifted.target}; replica at ${replicaOffset}, link ${link}) ${formatDuration(Date.now() - faultAtMs)} after the fault${now?.lagBytes !== undefined ? `, ${now.lagBytes} behind the primary now` : ""} (objective ${formatSeconds(objectives.rtoSeconds)})${still}`,
      });
    }

    // ------------------------------------------------------------------------------------ verify
    const faultEnd = caughtUpAtMs ?? Date.now();
    const during = w.acknowledged().filter((a) => a.clientTimeMs >= faultAtMs && a.clientTimeMs <= faultEnd);
    const before = w.acknowledged().filter((a) => a.clientTimeMs < faultAtMs);
    const maxLatency = (xs: typeof during) => xs.reduce((m, a) => Math.max(m, a.clientTimeMs - a.startedAtMs), 0);
    evidence.writes = { duringFault: during.length, maxLatencyMsDuringFault: maxLatency(during), maxLatencyMsBefore: maxLatency(before) };
    if (caughtUpAtMs !== undefined) {
      const stats = await log.step("verify: writer stopped, the replica reaches the primary's last offset", async () => {
        const s = await w.stop();
        const final = Number((await pInfo()).master_repl_offset);
        await waitFor("the replica at the primary's last offset", async () => Number((await rInfo()).slave_repl_offset) >= final, { timeoutMs: 15_000, intervalMs: POLL_MS });
        return s;
      }, (s) => `${s.acknowledged} writes acknowledged, ${s.errors} errors`);
      const after = await sample();
      const rep = await rInfo();
      const connection = await replicaConnection();
      const fullDelta = (after.syncFull ?? 0) - (pre.s.syncFull ?? 0);
      const partialDelta = (after.syncPartialOk ?? 0) - (pre.s.syncPartialOk ?? 0);
      const sameConnection = connection?.id !== undefined && connection.id === pre.connection?.id;
      const partial = fullDelta === 0 && sameConnection && rep.master_link_status === "up" && rep.master_sync_in_progress === "0";
      checks.push(check("caught up without a full resync", partial, `sync_full ${pre.s.syncFull} -> ${after.syncFull}, sync_partial_ok ${pre.s.syncPartialOk} -> ${after.syncPartialOk}${partialDelta > 0 ? " (the link broke and resumed)" : ""}; replication connection id ${pre.connection?.id ?? "?"} -> ${connection?.id ?? "none"}${sameConnection ? " (the same: the stream resumed on the live link)" : ""}; master_link_status ${rep.master_link_status}`));
      const state = await readRedisDrillState(replicaEndpoint, keys);
      const loss = measureRedisLoss({ acknowledged: w.acknowledged(), state, uncertain: w.uncertain() });
      const lastAck = w.lastAcknowledged();
      evidence.replicaState = { counter: state.counter, streamEntries: state.streamSeqs.length, lastAcknowledgedSeq: lastAck?.seq ?? null, lastAcknowledgedCounter: lastAck?.counter ?? null };
      checks.push(check("replica holds every acknowledged write", loss.lostWrites === 0, `${replica.name}: counter ${state.counter ?? "gone"} (last acknowledged INCR ${lastAck?.counter ?? "none"}), ${state.streamSeqs.length} stream entries; ${loss.lostWrites} of ${stats.acknowledged} acknowledged writes missing${loss.lostWrites ? ` (first: ${loss.lostSeqs.slice(0, 5).join(", ")})` : ""}`, { objective: 0, measured: loss.lostWrites, unit: "writes" }));
    }
  } catch (e) {
    checks.push(drillStopped(log, e));
  } finally {
    await writer?.stop().catch(() => undefined);
    if (primaryNs && throttled) {
      const ns = primaryNs;
      await log.step(`cleanup: lift the throttle on ${ns.node}:${ns.dev}, the replica catches up`, async () => {
        if (addedRoot(await qdiscsOf(ns))?.handle === THROTTLE_HANDLE) {
          const r = await tcIn(ns, liftCommand(ns.dev));
          if (r.code !== 0) throw new Error(`tc ${liftCommand(ns.dev).join(" ")} failed: ${oneLine(r)}`);
        }
        const p = await primaryInfo!();
        const target = Number(p.master_repl_offset);
        let at = 0;
        await waitFor("the replica caught up after the cleanup", async () => (at = Number((await replicaInfo!()).slave_repl_offset)) >= target, { timeoutMs: 60_000, intervalMs: POLL_MS, state: () => `${target - at} bytes behind` });
      }).catch((e: Error) => checks.push(check("cleanup: throttle lifted", false, e.message)));
    }
    if (primaryNs && replicaNs) {
      const [p, r] = [primaryNs, replicaNs];
      await log.step("cleanup: no shaping left on either node", async () => {
        const [pq, rq] = await Promise.all([qdiscsOf(p), qdiscsOf(r)]);
        const left = [addedRoot(pq), addedRoot(rq)].some(Boolean);
        checks.push(check("no shaping left", !left, `${describeQdiscs(p, pq)}; ${describeQdiscs(r, rq)}`));
      }).catch((e: Error) => checks.push(check("no shaping left", false, e.message)));
    }
    if (primaryEndpoint) {
      const ep = primaryEndpoint;
      await log.step("cleanup: delete the drill's keys", () => deleteKeys(ep, keys, payloadKey)).catch((e: Error) => checks.push(check("cleanup: delete the drill's keys", false, e.message)));
    }
  }

  return concludeDrill({ drill: "redis-replication-lag", stack: t.stack, runId, startedAtMs, objectives, phases: log.phases(), rpo: null, rto, checks, evidence }, { reportsDir: opts.reportsDir, log });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------- main
// `npx tsx drills/redis-replication-lag.mts --stack <stack> | --topology <file.json> [--reports <dir>]`: the
// flags and the runner of `homelab drill redis-replication-lag`, defined once in cli/drill-commands.ts.
runIfMain(import.meta.url, "redis-replication-lag");
