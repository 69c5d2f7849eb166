// Drill: Redis survives `kill -9` under load (docs/drills.md "redis"; rehearses runbooks/redis-recovery.md).
//
//   npx tsx drills/redis.mts --stack local [--variant restart|replica-promotion] [--reports reports]
//   npx tsx drills/redis.mts --topology topology.json
//
// restart (the default without a redis-replica node, as `homelab drill redis`): an INCR + XADD writer runs as the app user; the server is killed with SIGKILL and
// started again; lost acknowledged writes (counter vs last acknowledged INCR, stream vs acknowledged XADD
// ids) are held to objectives.redis.rpo (at most that many seconds of writes) and fault -> first
// acknowledged write (probe every 100 ms) to objectives.redis.rto.
// replica-promotion (stacks with a redis-replica node; their default): the primary is killed and stays down, the replica
// is promoted with REPLICAOF NO ONE (as the `admin` ACL user, password read on the node) and clients go to
// it; loss (replication is asynchronous) and RTO are measured the same way. Afterwards the drill
// puts the stack back as built: the old primary is started and the replica follows it again.
//
// Persistence is checked first: appendonly/appendfsync in the redis.conf the server started with, the
// runtime state (INFO persistence as admin: catches CONFIG SET appendonly no) and the AOF directory. AOF
// off fails the drill ("AOF off: ..."); the drill still runs, so the report also shows what it costs.
// Note (components/redis/image/README.md): killing the process cannot lose what reached write(), even with
// appendfsync everysec; only losing the machine exercises the fsync policy.
import type { Topology, TopologyNode } from "../components/topology.ts";
import { assertRpoWithin, assertRtoWithin, check, drillStopped, type Check } from "./lib/assert.ts";
import { DrillLog } from "./lib/log.ts";
import { formatDuration, formatSeconds, rtoPhases, type PhaseMark, type RtoBreakdown } from "./lib/measure.ts";
import { controlFor, readSecret, type NodeControl } from "./lib/nodes.ts";
import { Probe } from "./lib/probe.ts";
import { waitFor } from "./lib/wait.ts";
import {
  RedisAckWriter,
  assessAof,
  deleteRedisDrillKeys,
  measureRedisLoss,
  parseRedisConfPersistence,
  readRedisDrillState,
  redisCliOnNode,
  redisDrillKeys,
  redisInfoOnNode,
  redisWriteProbe,
  writesInWindow,
  type RedisEndpoint,
  type RedisLoss,
  type RedisNodeAuth,
} from "./lib/redis.ts";
import { type DrillReport, concludeDrill, newRunId } from "./lib/report.ts";
import { nodeByRole, nodesByRole } from "./lib/topology.ts";
import { runIfMain } from "./lib/main.ts";

export type RedisDrillVariant = "restart" | "replica-promotion";

export interface RedisDrillOptions {
  topology: Topology;
  /** Where the JSON + Markdown report and history go (default "reports"). */
  reportsDir?: string;
  log?: DrillLog;
  nodeControl?: NodeControl;
  variant?: RedisDrillVariant;
  /** Writer rate in INCR + XADD transactions per second (default 100). */
  writesPerSecond?: number;
  /** Writer runs this long before the fault (default 3000 ms). */
  warmupMs?: number;
  /** Longest wait for the first acknowledged write after the fault (default max(60 s, 3 x the RTO objective)). */
  recoveryTimeoutMs?: number;
}

/** Where the image keeps its config and data (components/redis/image/README.md "File contract"). */
const REDIS_CONF = "/etc/redis/redis.conf";
const REDIS_DATA_DIR = "/var/lib/redis";

class DrillAbort extends Error {}

export async function runRedisDrill(opts: RedisDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const variant = opts.variant ?? "restart";
  const log = opts.log ?? new DrillLog();
  const runId = newRunId();
  const startedAtMs = Date.now();
  const drill = variant === "restart" ? "redis" : "redis-replica-promotion";
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = { variant };
  const objectives = { rpoSeconds: t.objectives.redis.rpo, rtoSeconds: t.objectives.redis.rto };
  const keys = redisDrillKeys(runId);
  let rpo: RedisLoss | null = null;
  let rto: (RtoBreakdown & { redundancyRestoredSeconds?: number }) | null = null;
  let writer: RedisAckWriter | undefined;
  let probe: Probe | undefined;
  const cleanups: { name: string; run: () => Promise<void> }[] = [];
  log.info(`drill ${drill} on stack ${t.stack} (run ${runId}): objectives RPO <= ${formatSeconds(objectives.rpoSeconds)} of writes, RTO <= ${formatSeconds(objectives.rtoSeconds)}`);

  try {
    if (!t.redis) throw new DrillAbort(`stack ${t.stack} has no Redis (redis.enabled: false)`);
    const redisTopology = t.redis;
    const ctl = opts.nodeControl ?? controlFor(t);
    const primary = nodeByRole(t, "redis");
    const replica = nodesByRole(t, "redis-replica")[0];
    if (variant === "replica-promotion" && !replica) throw new DrillAbort(`variant replica-promotion needs a redis-replica node; stack ${t.stack} has none (set redis.replica: true)`);
    const fileOf = (user: string): RedisNodeAuth => {
      const passwordFile = redisTopology.passwordFiles[user];
      if (!passwordFile) throw new DrillAbort(`the topology names no password file for Redis user ${user} (passwordFiles: ${Object.keys(redisTopology.passwordFiles).join(", ")}); re-run pulumi up with this version`);
      return { user, passwordFile };
    };
    const admin = redisTopology.passwordFiles.admin ? fileOf("admin") : undefined;
    const endpointOf = (node: TopologyNode, password: string): RedisEndpoint => {
      if (!node.published) throw new DrillAbort(`node ${node.name} publishes no port: the drill reaches Redis at its published address`);
      return { host: node.published.host, port: node.published.port, username: redisTopology.appUser, password };
    };

    // ------------------------------------------------------------------------------------------ preflight
    const appPassword = await log.step("preflight: nodes healthy, persistence on, passwords on the node", async () => {
      for (const node of [primary, ...(variant === "replica-promotion" && replica ? [replica] : [])]) {
        await ctl.waitHealthy(node, 30_000);
        checks.push(await persistenceCheck(ctl, node, admin));
      }
      if (variant === "replica-promotion" && replica) {
        if (!admin) throw new DrillAbort("promotion needs the Redis admin user (REPLICAOF NO ONE); this stack's topology names no admin password file");
        // A replica resyncs for a moment after its primary restarted (e.g. the restart variant just ran).
        let info: Record<string, string> = {};
        await waitFor(`${replica.name} link up`, async () => {
          info = await redisInfoOnNode(ctl, replica, admin, "replication");
          return info.role === "slave" && info.master_link_status === "up";
        }, { timeoutMs: 30_000 }).catch(() => undefined);
        evidence.replicaBefore = pick(info, ["role", "master_host", "master_link_status", "master_repl_offset", "slave_repl_offset"]);
        const up = info.role === "slave" && info.master_link_status === "up";
        checks.push(check("replica streaming before the fault", up, up ? `${replica.name} replicates ${info.master_host}, link up, offset ${info.slave_repl_offset}` : `${replica.name}: role ${info.role}, master_link_status ${info.master_link_status ?? "none"}: nothing to promote`));
        if (!up) throw new DrillAbort(`${replica.name} is not a streaming replica (role ${info.role}, link ${info.master_link_status ?? "none"})`);
      }
      return readSecret(ctl, primary, fileOf(redisTopology.appUser).passwordFile);
    }, () => checks.filter((c) => c.name.startsWith("AOF enabled")).map((c) => c.detail).join("; "));

    const primaryEndpoint = endpointOf(primary, appPassword);
    let target = primaryEndpoint;
    cleanups.push({ name: "delete the drill's keys", run: () => deleteRedisDrillKeys(primaryEndpoint, keys) });

    // ------------------------------------------------------------------------------------------ load
    writer = new RedisAckWriter({ endpoint: primaryEndpoint, keys, writesPerSecond: opts.writesPerSecond ?? 100 });
    probe = new Probe(redisWriteProbe(() => target, keys.probe), { intervalMs: 100, attemptTimeoutMs: 1500 });
    const w = writer;
    await log.step("writer: INCR + XADD as the app user", async () => {
      w.start();
      await sleep(opts.warmupMs ?? 3000);
      const stats = w.getStats();
      if (stats.acknowledged === 0) throw new DrillAbort(`the writer got no write acknowledged in ${formatDuration(opts.warmupMs ?? 3000)} (last error: ${stats.lastError ?? "none"})`);
      return stats;
    }, (s) => `${s.acknowledged} acknowledged, ${s.errors} errors`);
    probe.start();

    // ------------------------------------------------------------------------------------------ fault
    // The writer stops right after the kill: everything it got acknowledged is then from before the fault,
    // and what is on the recovered server is exactly what survived (the probe's key measures the RTO).
    const faultAtMs = Date.now();
    // Recovery counts only from probe attempts started once the node is confirmed down: an attempt begun
    // between `docker kill` and the process' death would otherwise pass for a recovered server.
    let downAtMs = faultAtMs;
    await log.step(`kill -9 ${primary.name} under load`, async () => {
      await ctl.kill(primary, "KILL");
      downAtMs = Date.now();
      // From here on the primary is down until this drill starts it again, whatever happens.
      cleanups.unshift({ name: `start ${primary.name}`, run: () => ensureRunning(ctl, primary) });
      return w.stop();
    }, (s) => `${s.acknowledged} writes acknowledged before the fault, ${s.uncertain} uncertain (EXEC sent, no reply)`);
    evidence.writer = w.getStats();

    const marks: PhaseMark[] = [];
    const recoveryTimeoutMs = opts.recoveryTimeoutMs ?? Math.max(60_000, objectives.rtoSeconds * 3000);
    if (variant === "restart") {
      await log.step(`restart ${primary.name}`, async () => {
        await ctl.start(primary);
        marks.push({ name: "restart", atMs: Date.now() });
      });
    } else {
      const replicaNode = replica as TopologyNode;
      const adminAuth = admin as RedisNodeAuth;
      await log.step(`promote ${replicaNode.name}: REPLICAOF NO ONE`, async () => {
        await redisCliOnNode(ctl, replicaNode, adminAuth, ["REPLICAOF", "NO", "ONE"]);
        marks.push({ name: "promotion", atMs: Date.now() });
        // Fail back afterwards: start the old primary and make the replica follow it again (as built).
        cleanups.unshift({ name: `${replicaNode.name} follows ${primary.name} again`, run: async () => {
          await ensureRunning(ctl, primary);
          const since = Date.now();
          await redisCliOnNode(ctl, replicaNode, adminAuth, ["REPLICAOF", primary.hostname, String(primary.internal.port ?? 6379)]);
          let link = "unknown";
          await waitFor(`${replicaNode.name} link to ${primary.name} up`, async () => (link = (await redisInfoOnNode(ctl, replicaNode, adminAuth, "replication")).master_link_status ?? "none") === "up", { timeoutMs: 60_000, state: () => `master_link_status ${link}` });
          evidence.failBackSeconds = (Date.now() - since) / 1000;
          if (rto) rto.redundancyRestoredSeconds = (Date.now() - faultAtMs) / 1000;
        } });
        target = endpointOf(replicaNode, appPassword);
      });
    }

    const firstWriteAtMs = await log.step("first acknowledged write after the fault (probe, 100 ms)", async () => {
      try {
        return await probe!.waitForSuccessAfter(downAtMs, recoveryTimeoutMs);
      } catch (e) {
        log.warn((e as Error).message);
        return undefined;
      }
    }, (at) => (at === undefined ? "none" : `${formatDuration(at - faultAtMs)} after the fault`));
    const detectedAtMs = probe.firstFailureAfter(faultAtMs);
    if (firstWriteAtMs !== undefined) {
      const ordered = orderedMarks([...(detectedAtMs !== undefined ? [{ name: "detection", atMs: detectedAtMs }] : []), ...marks, { name: "first acknowledged write", atMs: firstWriteAtMs }], faultAtMs);
      rto = rtoPhases(ordered, faultAtMs);
    }
    checks.push(assertRtoWithin(rto?.totalSeconds, objectives.rtoSeconds, "RTO (fault -> first acknowledged write)"));

    await probe.stop();

    // ------------------------------------------------------------------------------------------ measure
    const measuredOn = variant === "restart" ? primary : (replica as TopologyNode);
    const loss = await log.step(`acknowledged writes still on ${measuredOn.name}`, async () => {
      const state = await readRedisDrillState(target, keys);
      evidence.recovered = { node: measuredOn.name, counter: state.counter, streamEntries: state.streamSeqs.length, lastStreamId: state.streamIds.at(-1) ?? null };
      return measureRedisLoss({ acknowledged: w.acknowledged(), state, uncertain: w.uncertain() });
    }, (l) => `${l.lostWrites} of ${l.acknowledgedWrites} lost (counter ${l.counterAfterRecovery ?? "gone"} vs last acknowledged INCR ${l.lastAcknowledgedCounter ?? "none"}; ${l.streamLost} XADD entries missing), RPO ${formatSeconds(l.rpoSeconds)}`);
    rpo = loss;
    const allowed = writesInWindow(w.acknowledged(), faultAtMs, objectives.rpoSeconds);
    checks.push(assertRpoWithin(loss, objectives.rpoSeconds));
    checks.push(
      check(
        `acknowledged writes lost within ${formatSeconds(objectives.rpoSeconds)} of writes`,
        loss.lostWrites <= allowed,
        `${loss.lostWrites} of ${loss.acknowledgedWrites} acknowledged writes lost (${loss.counterLost} INCRs above the recovered counter ${loss.counterAfterRecovery ?? "(key gone)"}, ${loss.streamLost} XADD entries missing); ${formatSeconds(objectives.rpoSeconds)} of writes before the fault was ${allowed}${loss.lostWrites > allowed ? `: exceeds it by ${loss.lostWrites - allowed}` : ""}`,
        { objective: allowed, measured: loss.lostWrites, unit: "writes" },
      ),
    );
  } catch (e) {
    checks.push(drillStopped(log, e));
  } finally {
    await writer?.stop().catch(() => undefined);
    await probe?.stop().catch(() => undefined);
    for (const c of cleanups) {
      await log.step(`cleanup: ${c.name}`, c.run).catch((e: Error) => {
        checks.push(check(`cleanup: ${c.name}`, false, e.message));
      });
    }
    if (variant === "replica-promotion" && rto) {
      const restored = rto.redundancyRestoredSeconds;
      checks.push(check("redundancy restored", restored !== undefined, restored !== undefined ? `replica follows the original primary again ${formatSeconds(restored)} after the fault (fail-back ${formatSeconds(Number(evidence.failBackSeconds))})` : "the replica does not follow the original primary again: see the cleanup step"));
    }
  }

  return concludeDrill({ drill, stack: t.stack, runId, startedAtMs, objectives, phases: log.phases(), rpo, rto, checks, evidence }, { reportsDir: opts.reportsDir, log });
}

/** "AOF enabled" for one node: its redis.conf, INFO persistence as admin (when there is one), its AOF directory. */
async function persistenceCheck(ctl: NodeControl, node: TopologyNode, admin: RedisNodeAuth | undefined): Promise<Check> {
  const confText = await ctl.exec(node, ["cat", REDIS_CONF], { allowFailure: true, timeoutMs: 10_000 });
  const conf = confText.code === 0 ? parseRedisConfPersistence(confText.stdout) : undefined;
  const aofDir = `${REDIS_DATA_DIR}/${conf?.appenddirname ?? "appendonlydir"}`;
  const listing = await ctl.exec(node, ["ls", "-1A", aofDir], { allowFailure: true, timeoutMs: 10_000 });
  let info: Record<string, string> | undefined;
  if (admin) info = await redisInfoOnNode(ctl, node, admin, "persistence").catch(() => undefined);
  const c = assessAof({ confPath: `${node.name}:${REDIS_CONF}`, conf, info, aofDir, aofDirFiles: listing.code === 0 ? listing.stdout.split("\n").filter(Boolean) : null });
  return { ...c, name: `AOF enabled on ${node.name}`, detail: c.detail };
}

async function ensureRunning(ctl: NodeControl, node: TopologyNode): Promise<void> {
  if (!(await ctl.isRunning(node))) await ctl.start(node);
  await ctl.waitHealthy(node, 60_000);
}

/** Phase marks in time order after the fault (the probe's first failure can land after a fast restart). */
function orderedMarks(marks: PhaseMark[], faultAtMs: number): PhaseMark[] {
  let last = faultAtMs;
  return marks.map((m) => {
    last = Math.max(last, m.atMs);
    return { name: m.name, atMs: last };
  });
}

function pick(o: Record<string, string>, keys: string[]): Record<string, string | undefined> {
  return Object.fromEntries(keys.map((k) => [k, o[k]]));
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------- main
// `npx tsx drills/redis.mts --stack <stack> | --topology <file.json> [--variant restart|replica-promotion]
// [--reports <dir>]`: the flags and the runner of `homelab drill redis`, defined once in cli/drill-commands.ts.
runIfMain(import.meta.url, "redis");
