// Failover drill (docs/drills.md "Drills" 2), rehearsing runbooks/postgres-failover.md step by step: a writer
// runs against the primary; the primary is killed hard; the failure is detected by a probe; the replica is
// promoted and the writer repointed; RTO and RPO are measured from the writer's acknowledged log; the old
// primary, which must have accepted no write after the fault, rejoins as a replica with pg_rewind; the time
// until the cluster is primary + streaming replica again is "redundancy restored".
//
//   npx tsx drills/failover.mts --stack <stack> | --topology <file.json> [--reports <dir>]
//
// Exit code 0 only when every objective is met (objectives.failover of the stack). Roles are discovered at
// run time, so a second run fails back. Only the measuring lives in drills/lib; this file orchestrates.
import { randomBytes } from "node:crypto";
import pg, { escapeIdentifier, escapeLiteral } from "pg";
import { formatBytes } from "../components/config/units.ts";
import { assertNoAcknowledgedWriteLost, assertNoWriteAfterFault, assertRpoWithin, assertRtoWithin, check, type Check } from "./lib/assert.ts";
import { DrillLog } from "./lib/log.ts";
import { formatDuration, formatSeconds, measureRpo, parseTimelineHistory, rtoPhases, walGapBytes, type RpoMeasurement, type RtoBreakdown } from "./lib/measure.ts";
import { controlFor, psqlOnNode, queryStoppedCluster, readSecret, type NodeControl } from "./lib/nodes.ts";
import { Probe, pgReadProbe } from "./lib/probe.ts";
import { type DrillReport, concludeDrill } from "./lib/report.ts";
import { currentPrimary, pgClientConfig, pgNodeStates, type Topology, type TopologyNode } from "./lib/topology.ts";
import { waitFor } from "./lib/wait.ts";
import { AckWriter, ensureWorkloadSchema, presentSeqs, type ConnectionConfig, withPg as withPgClient } from "./lib/writer.ts";
import { runIfMain } from "./lib/main.ts";

export const DRILL = "failover";

/**
 * Detection rule: the primary is declared down after this many probe attempts in a row failed (probes every
 * 100 ms, each a fresh connection + `SELECT 1`). One failure would be a hair trigger (a single dropped
 * connection would promote); three cost ~200 ms of RTO over the first failure.
 */
export const DETECTION_CONSECUTIVE_FAILURES = 3;
const PROBE_INTERVAL_MS = 100;

/**
 * Settings the replica gets for its promotion (ALTER SYSTEM + reload), reset after the rejoin:
 * - wal_retrieve_retry_interval: when the WAL receiver lost the primary less than this long ago, the
 *   startup process sleeps out the rest of it before it acts on a promote request (PostgreSQL 17
 *   xlogrecovery.c WaitForWALToBecomeAvailable: the promote wake-up is consumed, then the retry sleep
 *   starts). At the default 5 s that is 5 s of RTO for nothing; the reload also cuts a sleep in progress.
 * - sync mode, synchronous_standby_names: the new primary has no standby left, so every commit would wait
 *   for one forever. Relaxed to '' (Patroni does the same when synchronous_mode_strict is off).
 */
const PROMOTION_SETTINGS = (sync: boolean): [string, string][] => [["wal_retrieve_retry_interval", "100ms"], ...(sync ? ([["synchronous_standby_names", ""]] as [string, string][]) : [])];
/** The writer runs this long on the primary before the fault (acknowledged writes to lose, if any). */
const WARMUP_MS = 3000;
/** ... and this long on the new primary after the first acknowledged write there. */
const AFTER_RECOVERY_MS = 1000;

export interface FaultContext {
  primary: TopologyNode;
  replica: TopologyNode;
  ctl: NodeControl;
  log: DrillLog;
}

export interface FailoverDrillOptions {
  topology: Topology;
  /** Reports folder (history accumulates there). Default "reports". */
  reportsDir?: string;
  log?: DrillLog;
  /** Writer rate. Default 100. */
  writesPerSecond?: number;
  /** Default: controlFor(topology). */
  nodeControl?: NodeControl;
  /**
   * Fault-injection seam for the drill's twins (docs/drills.md "Fault catalog"): runs after preflight with the
   * writer going, right before the lag is measured and the primary killed. A function it returns runs right
   * after the kill (e.g. to unpause a replica it froze). Never set in a real drill.
   */
  beforeFault?: (ctx: FaultContext) => Promise<void | (() => Promise<void>)>;
}

/** application_name and slot of a PG node: what the stack configured (env), '-' -> '_' otherwise. */
function streamingName(node: TopologyNode): { applicationName: string; slot: string } {
  const fallback = node.name.replace(/-/g, "_");
  const applicationName = node.container.env.HOMELAB_APPLICATION_NAME ?? fallback;
  const slot = node.container.env.HOMELAB_REPLICATION_SLOT ?? fallback;
  for (const [what, v] of [["application_name", applicationName], ["replication slot", slot]] as const) {
    // Only what homelab-configure-standby itself accepts (and PostgreSQL takes as a slot name); quoted all
    // the same where it goes into SQL (failoverSql).
    if (!/^[a-z0-9_]{1,63}$/.test(v)) throw new Error(`node ${node.name}: ${what} ${JSON.stringify(v)} is not [a-z0-9_]{1,63}`);
  }
  return { applicationName, slot };
}

interface ReplicationRow {
  applicationName: string;
  state: string;
  syncState: string;
}

async function replicationRows(ctl: NodeControl, primary: TopologyNode): Promise<ReplicationRow[]> {
  // pg_stat_replication's details are visible to superusers only: asked as the OS user postgres.
  const out = await psqlOnNode(ctl, primary, "select coalesce(application_name, '') || '|' || coalesce(state, '') || '|' || coalesce(sync_state, '') from pg_stat_replication order by 1");
  return out
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const [applicationName = "", state = "", syncState = ""] = l.split("|");
      return { applicationName, state, syncState };
    });
}

/**
 * The SQL this drill builds from values (it goes through `psql -c` on a node, psqlOnNode: no bind
 * parameters there), each value quoted by node-postgres' own escapeLiteral / escapeIdentifier.
 */
export const failoverSql = {
  /** One row `current LSN|state|sent|flush|replay|flush lag bytes|replay lag bytes` for a standby (state `absent` without one). */
  replicationLag: (applicationName: string): string =>
    `select pg_current_wal_lsn()::text || '|' || coalesce(r.state, 'absent') || '|' || coalesce(r.sent_lsn::text, '') || '|' || coalesce(r.flush_lsn::text, '') || '|' || coalesce(r.replay_lsn::text, '') || '|' || coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), r.flush_lsn)::bigint::text, '') || '|' || coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint::text, '') from (select 1) one left join pg_stat_replication r on r.application_name = ${escapeLiteral(applicationName)}`,
  /** The settings, a reload, then pg_promote: one psql round trip (ALTER SYSTEM works on a standby). */
  promote: (settings: readonly [string, string][]): string[] => [...settings.map(([name, value]) => `ALTER SYSTEM SET ${escapeIdentifier(name)} = ${escapeLiteral(value)}`), "SELECT pg_reload_conf()", "SELECT pg_promote(true, 60)"],
  resetSettings: (settings: readonly [string, string][]): string[] => [...settings.map(([name]) => `ALTER SYSTEM RESET ${escapeIdentifier(name)}`), "SELECT pg_reload_conf()"],
  dropInactiveSlot: (slot: string): string => `select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${escapeLiteral(slot)} and not active`,
  /** A physical slot reserving WAL from now on, replacing an inactive leftover of the same name. */
  recreateSlot: (slot: string): string[] => [failoverSql.dropInactiveSlot(slot), `select pg_create_physical_replication_slot(${escapeLiteral(slot)}, true)`],
  timelineHistory: (timeline: number): string => `select pg_read_file(${escapeLiteral(`pg_wal/${timeline.toString(16).toUpperCase().padStart(8, "0")}.history`)})`,
};

const describeRows = (rows: ReplicationRow[]) => (rows.length === 0 ? "none" : rows.map((r) => `${r.applicationName || "?"} ${r.state} (${r.syncState})`).join(", "));

const withPg = <T,>(config: ConnectionConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> => withPgClient(config, fn, "homelab-drill-failover");

export async function runFailoverDrill(opts: FailoverDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const log = opts.log ?? new DrillLog();
  const ctl = opts.nodeControl ?? controlFor(t);
  const startedAtMs = Date.now();
  const runId = `${new Date(startedAtMs).toISOString().replace(/[-:T]/g, "").slice(0, 14)}-${randomBytes(3).toString("hex")}`;
  const sync = t.postgres.replicationMode === "sync";
  const objective = t.objectives.failover;
  // An RPO objective in seconds is not part of the stack config today; honoured when a topology carries one.
  const rpoObjectiveSeconds = objective.rpo;
  const objectives: Record<string, number> = { rtoSeconds: objective.rto, rpoWrites: objective.rpoWrites, redundancyRestoredSeconds: objective.redundancyRestored };
  if (typeof rpoObjectiveSeconds === "number") objectives.rpoSeconds = rpoObjectiveSeconds;
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = { replicationMode: t.postgres.replicationMode, detectionRule: `${DETECTION_CONSECUTIVE_FAILURES} consecutive failed probes, every ${PROBE_INTERVAL_MS} ms` };
  let rpo: (RpoMeasurement & { walGapBytes?: number }) | null = null;
  let rto: (RtoBreakdown & { redundancyRestoredSeconds?: number }) | null = null;
  let rejoined = false;
  let writer: AckWriter | undefined;
  let probe: Probe | undefined;

  log.info(`failover drill on stack ${t.stack} (${t.postgres.replicationMode} replication), run ${runId}; objectives: RTO ${formatSeconds(objective.rto)}, lost writes <= ${objective.rpoWrites}, redundancy restored ${formatSeconds(objective.redundancyRestored)}`);

  try {
    // ------------------------------------------------------------------------------------ 1. preflight
    const pre = await log.step(
      "preflight",
      async (phase) => {
        const states = await pgNodeStates(t, ctl);
        const primary = await currentPrimary(t, ctl);
        const replicas = states.filter((s) => s.state === "replica").map((s) => s.node);
        const unreachable = states.filter((s) => s.state === "unreachable").map((s) => s.node.name);
        const rows = await replicationRows(ctl, primary);
        evidence.replicationBefore = rows;
        const fail = (name: string, detail: string) => {
          checks.push(check(name, false, detail));
          phase.fail(detail);
          return undefined;
        };
        if (replicas.length === 0) {
          return fail("replica streaming", `replica not streaming: no PostgreSQL node answers as a replica (${states.map((s) => `${s.node.name}: ${s.state}`).join(", ")}${unreachable.length ? `; unreachable: ${unreachable.join(", ")}` : ""}); pg_stat_replication on ${primary.name}: ${describeRows(rows)}`);
        }
        if (replicas.length > 1) {
          return fail("one replica", `the failover drill handles a primary and ONE replica (found ${replicas.map((r) => r.name).join(", ")}): other replicas would keep following the dead primary`);
        }
        const replica = replicas[0]!;
        const { applicationName } = streamingName(replica);
        const row = rows.find((r) => r.applicationName === applicationName);
        if (!row || row.state !== "streaming") {
          const receiver = await psqlOnNode(ctl, replica, "select coalesce((select status || ' from ' || coalesce(sender_host, '?') from pg_stat_wal_receiver), 'no wal receiver running')").catch((e: Error) => `unknown (${e.message})`);
          return fail("replica streaming", `replica not streaming: ${replica.name} (application_name ${applicationName}) is ${row ? `in state ${row.state}` : "absent"} in pg_stat_replication on ${primary.name} (rows: ${describeRows(rows)}); its wal receiver: ${receiver}. Failing over now would lose every write since it stopped: fix replication first`);
        }
        checks.push(check("replica streaming", true, `${replica.name} streams from ${primary.name} (${row.syncState})`));
        const syncNames = await psqlOnNode(ctl, primary, "show synchronous_standby_names");
        evidence.synchronousStandbyNames = syncNames;
        if (sync && (syncNames === "" || !["sync", "quorum"].includes(row.syncState))) {
          return fail("replica is a synchronous standby", `the stack is in sync mode but ${replica.name} is a ${row.syncState} standby (synchronous_standby_names = ${JSON.stringify(syncNames)} on ${primary.name}): acknowledged writes can be lost`);
        }
        const passwordFile = t.postgres.passwordFiles[t.postgres.appUser];
        if (!passwordFile) throw new Error(`topology names no password file for ${t.postgres.appUser}`);
        const password = await readSecret(ctl, primary, passwordFile);
        const auth = { user: t.postgres.appUser, password };
        phase.done(`primary ${primary.name}, replica ${replica.name} streaming (${row.syncState})`);
        return { primary, replica, auth };
      },
    );
    if (!pre) return await finish();
    const { primary, replica, auth } = pre;
    evidence.primaryBefore = primary.name;
    evidence.replicaBefore = replica.name;
    const primaryConfig = pgClientConfig(t, primary, auth);
    const replicaConfig = pgClientConfig(t, replica, auth);

    // ------------------------------------------------------------------------------------ 2. workload
    await log.step(
      "workload",
      async () => {
        await withPg(primaryConfig, (c) => ensureWorkloadSchema(c));
        writer = new AckWriter({ connection: primaryConfig, runId, writesPerSecond: opts.writesPerSecond ?? 100, connectTimeoutMs: 1000, queryTimeoutMs: 2000, backoffMs: 20, maxBackoffMs: PROBE_INTERVAL_MS });
        writer.start();
        await waitFor("first acknowledged write on the primary", () => (writer!.getStats().fatalError ? Promise.reject(new Error(writer!.getStats().fatalError)) : writer!.acknowledged().length > 0), { timeoutMs: 15_000 });
        await new Promise((r) => setTimeout(r, WARMUP_MS));
      },
      () => `${writer!.getStats().acknowledged} acknowledged writes on ${primary.name} (first seq ${writer!.firstSeq()})`,
    );
    const w = writer!;

    const afterKill = opts.beforeFault ? await opts.beforeFault({ primary, replica, ctl, log }) : undefined;

    // ------------------------------------------------------------------------------ 3. lag at the fault
    const lagBytes = await log.step(
      "replication lag before the fault",
      async () => {
        const { applicationName } = streamingName(replica);
        const out = await psqlOnNode(ctl, primary, failoverSql.replicationLag(applicationName));
        const [currentLsn = "", state = "", sentLsn = "", flushLsn = "", replayLsn = "", flushLag = "", replayLag = ""] = out.split("|");
        evidence.beforeFault = { primaryLsn: currentLsn, replicaState: state, sentLsn, flushLsn, replayLsn, flushLagBytes: flushLag === "" ? null : Number(flushLag), replayLagBytes: replayLag === "" ? null : Number(replayLag) };
        return flushLag === "" ? null : Number(flushLag);
      },
      (lag) => (lag === null ? "replica absent from pg_stat_replication" : `replica ${formatBytes(lag)} behind (flushed), ${formatBytes((evidence.beforeFault as { replayLagBytes: number }).replayLagBytes)} (replayed)`),
    );

    // ------------------------------------------------------------------------------------ 4. fault
    probe = new Probe(pgReadProbe(primaryConfig, { timeoutMs: 1000 }), { intervalMs: PROBE_INTERVAL_MS, attemptTimeoutMs: 1000 }).start();
    const faultAtMs = Date.now();
    const seqAtFault = await log.step(`fault: kill ${primary.name} (SIGKILL)`, async () => {
      await ctl.kill(primary);
      // Read once the node is down: any seq sent later cannot have reached it. The split-brain boundary.
      return w.highestAttemptedSeq();
    }, (seq) => `down; writer had sent up to seq ${seq}`);
    evidence.faultAt = new Date(faultAtMs).toISOString();
    evidence.seqAtFault = seqAtFault;
    if (afterKill) await afterKill();

    // ------------------------------------------------------------------------------------ 5. detect
    const detectedAtMs = await log.step(
      "detect",
      async () => {
        return waitFor(`${primary.name} unreachable (${DETECTION_CONSECUTIVE_FAILURES} failed probes in a row)`, () => probe!.failingSince(faultAtMs, DETECTION_CONSECUTIVE_FAILURES), { timeoutMs: 30_000, intervalMs: 10 });
      },
      (at) => `${primary.name} declared down ${formatDuration(at - faultAtMs)} after the fault (${probe!.lastError() ?? "no error text"})`,
    );
    await probe.stop();
    probe = undefined;

    // ------------------------------------------------------------------------------------ 6. promote
    const fenced = !(await ctl.isRunning(primary));
    checks.push(check("old primary fenced before promotion", fenced, fenced ? `${primary.name} is down when ${replica.name} is promoted` : `${primary.name} is running again (restart policy?): promoting now would make two primaries`));
    if (!fenced) throw new Error(`${primary.name} came back before the promotion: refusing to promote ${replica.name}`);
    const promotedAtMs = await log.step(
      `promote ${replica.name}`,
      async () => {
        // One psql round trip: the relaxed settings, a reload, then pg_promote (ALTER SYSTEM works on a
        // standby). Both are reset on both nodes once the old primary has rejoined.
        const out = await psqlOnNode(ctl, replica, failoverSql.promote(PROMOTION_SETTINGS(sync)), { timeoutMs: 90_000 });
        const promoted = out.split("\n").pop()?.trim();
        if (promoted !== "t") throw new Error(`pg_promote(true, 60) on ${replica.name} answered ${JSON.stringify(promoted)}: promotion did not finish within 60 s`);
        return Date.now();
      },
      () => `pg_promote done (${PROMOTION_SETTINGS(sync).map(([n, v]) => `${n} = '${v}'`).join(", ")} until the rejoin)`,
    );

    // ------------------------------------------------------------------------------------ 7. reconnect
    const repointAtMs = Date.now();
    const firstWrite = await log.step(
      "reconnect writer",
      async () => {
        w.repoint(replicaConfig);
        // Only a write whose transaction started after the repoint counts: it can only be on the new primary.
        return waitFor(
          `first acknowledged write on ${replica.name}`,
          () => {
            const fatal = w.getStats().fatalError;
            if (fatal) throw new Error(`writer stopped: ${fatal}`);
            return w.firstAcknowledgedAfter(repointAtMs);
          },
          { timeoutMs: Math.max(30_000, objective.rto * 3000), intervalMs: 10 },
        ).catch((e: Error) => {
          checks.push(assertRtoWithin(undefined, objective.rto));
          throw e;
        });
      },
      (a) => `first acknowledged write on ${replica.name}: seq ${a.seq}, ${formatDuration(a.clientTimeMs - faultAtMs)} after the fault`,
    );
    rto = rtoPhases(
      [
        { name: "detection", atMs: detectedAtMs },
        { name: "promotion", atMs: promotedAtMs },
        { name: "reconnect", atMs: firstWrite.clientTimeMs },
      ],
      faultAtMs,
    );
    const phasesText = rto.phases.map((p) => `${p.name} ${formatDuration(p.durationMs)}`).join(", ");
    const rtoCheck = assertRtoWithin(rto.totalSeconds, objective.rto);
    checks.push({ ...rtoCheck, detail: `${rtoCheck.detail} (${phasesText})` });
    log.info(`RTO ${formatSeconds(rto.totalSeconds)}: ${phasesText}`);

    // ------------------------------------------------------------------------------------ 8. RPO
    await new Promise((r) => setTimeout(r, AFTER_RECOVERY_MS));
    const stats = await w.stop();
    evidence.writer = stats;
    const { measured, branch } = await log.step(
      "measure RPO",
      async () => {
        const present = await withPg(replicaConfig, (c) => presentSeqs(c, { fromSeq: w.firstSeq(), toSeq: w.highestAttemptedSeq() }));
        // RPO is about the writes the failover put at risk: those the OLD primary acknowledged (before the
        // repoint). Writes the new primary acknowledged are checked apart, and left out of both sides here,
        // or they would hide the loss (the last acknowledged write would always be present).
        const acknowledged = w.acknowledged();
        const atRisk = acknowledged.filter((a) => a.clientTimeMs < repointAtMs);
        const onNewPrimary = new Set(acknowledged.filter((a) => a.clientTimeMs >= repointAtMs).map((a) => a.seq));
        const presentSet = new Set(present);
        const missingOnNew = [...onNewPrimary].filter((seq) => !presentSet.has(seq)).sort((a, b) => a - b);
        checks.push(check("writes acknowledged by the new primary present", missingOnNew.length === 0, missingOnNew.length === 0 ? `all ${onNewPrimary.size} present` : `${missingOnNew.length} of ${onNewPrimary.size} missing: ${missingOnNew.slice(0, 10).join(", ")}`, { objective: 0, measured: missingOnNew.length, unit: "writes" }));
        const measured = measureRpo({ acknowledged: atRisk, presentSeqs: present.filter((seq) => !onNewPrimary.has(seq)), uncertain: w.uncertain() });
        // The new timeline and where it branched off: the timeline history file the promotion wrote.
        const walfile = await psqlOnNode(ctl, replica, "select pg_walfile_name(pg_current_wal_lsn())");
        const timeline = parseInt(walfile.slice(0, 8), 16);
        const history = await psqlOnNode(ctl, replica, failoverSql.timelineHistory(timeline)).catch(() => "");
        const branch = parseTimelineHistory(history);
        evidence.timeline = { new: timeline, previous: branch?.parentTimeline ?? null, promoteLsn: branch?.switchpoint ?? null };
        return { measured, branch };
      },
      ({ measured: m }) => `${m.lostWrites} of the ${m.acknowledgedWrites} writes ${primary.name} acknowledged lost (RPO ${formatSeconds(m.rpoSeconds)}), ${m.ghostWrites} ghost, ${m.uncertainWrites} uncertain (${m.uncertainPresent} present)`,
    );
    rpo = measured;
    const lostCheck = assertNoAcknowledgedWriteLost(measured, objective.rpoWrites);
    const lagText = lagBytes === null ? "replica absent from pg_stat_replication" : `replica ${formatBytes(lagBytes)} (${lagBytes} bytes) of WAL behind`;
    checks.push(
      lostCheck.ok
        ? { ...lostCheck, detail: `${lostCheck.detail} (${t.postgres.replicationMode} replication; ${lagText} at the fault)` }
        : { ...lostCheck, detail: `RPO objective missed by ${measured.lostWrites - objective.rpoWrites} acknowledged write${measured.lostWrites - objective.rpoWrites === 1 ? "" : "s"} (${t.postgres.replicationMode} replication, ${lagText} at the fault; RPO ${formatSeconds(measured.rpoSeconds)}): ${lostCheck.detail}` },
    );
    if (typeof rpoObjectiveSeconds === "number") checks.push(assertRpoWithin(measured, rpoObjectiveSeconds));

    // ------------------------------------------------------------------------------ 9. rejoin + split brain
    const oldName = streamingName(primary);
    const newName = streamingName(replica);
    await log.step(`rejoin ${primary.name} as a replica of ${replica.name} (pg_rewind)`, async (phase) => {
      // CHECKPOINT first: pg_rewind reads the source's timeline from its control file, which a promotion
      // updates only at its first checkpoint (PostgreSQL docs, pg_rewind "Notes"); and the next failover's
      // rewind of THIS node then finds a checkpoint on the new timeline instead of needing WAL from before
      // the promotion, which may be recycled by then. Then the slot, reserving WAL from now on (a
      // leftover from an earlier run is replaced).
      await psqlOnNode(ctl, replica, ["CHECKPOINT", ...failoverSql.recreateSlot(oldName.slot)]);
      // Never start the old primary's own container again: without standby.signal it would come up as a
      // second primary. Its data volume goes to a `restore` container instead (image README "Drill recipes").
      rejoined = true;
      await ctl.recreate(primary, {
        env: {
          HOMELAB_ROLE: "restore",
          HOMELAB_PRIMARY_HOST: replica.hostname,
          HOMELAB_PRIMARY_PORT: String(replica.internal.port ?? 5432),
          HOMELAB_REPLICATION_SLOT: oldName.slot,
          HOMELAB_APPLICATION_NAME: oldName.applicationName,
        },
        timeoutSeconds: Math.max(60, Math.round(objective.redundancyRestored / 2)),
      });
      await ctl.waitHealthy(primary, 60_000);

      // Split brain: what the old primary holds, read offline (single-user mode: no listener, nobody can
      // write) before pg_rewind discards its divergent WAL. It must hold no seq the writer sent after the
      // node was down. Its end of WAL against the promote LSN is the WAL the new timeline does not have.
      const held = await queryStoppedCluster(
        ctl,
        primary,
        "select coalesce((select max(id) from drill_seq where id > 0), 0)::text as max_seq, (select redo_lsn from pg_control_checkpoint())::text as end_lsn",
        { database: t.postgres.database },
      ).catch((e: Error) => {
        checks.push(check("old primary accepted no write after the fault", false, `could not read what ${primary.name} holds: ${e.message}`));
        throw e;
      });
      const oldMaxSeq = held.max_seq === null || held.max_seq === undefined ? null : Number(held.max_seq);
      evidence.oldPrimary = { maxSeq: oldMaxSeq, endOfWal: held.end_lsn };
      checks.push(assertNoWriteAfterFault(oldMaxSeq === 0 ? null : oldMaxSeq, seqAtFault));
      if (held.end_lsn && branch?.switchpoint) {
        const gap = Math.max(0, walGapBytes(held.end_lsn, branch.switchpoint));
        rpo = { ...measured, walGapBytes: gap };
      }

      const source = `host=${replica.hostname} port=${replica.internal.port ?? 5432} user=${t.postgres.replicationUser} dbname=postgres passfile=/var/lib/postgresql/.pgpass`;
      const rewind = await ctl.exec(primary, ["sh", "-c", 'exec pg_rewind -D "$PGDATA" --source-server="$1"', "sh", source], { user: "postgres", allowFailure: true, timeoutMs: 300_000 });
      const rewindOut = `${rewind.stdout}\n${rewind.stderr}`;
      const diverged = /servers diverged at WAL location (\S+) on timeline (\d+)/.exec(rewindOut);
      evidence.pgRewind = { exitCode: rewind.code, divergedAt: diverged?.[1] ?? null, divergedOnTimeline: diverged ? Number(diverged[2]) : null, lastLines: rewindOut.trim().split("\n").slice(-4) };
      if (rewind.code !== 0) throw new Error(`pg_rewind on ${primary.name} failed (exit ${rewind.code}): ${rewindOut.trim().split("\n").slice(-3).join(" | ")}`);
      await ctl.exec(primary, ["homelab-configure-standby"], { timeoutMs: 30_000 });
      // The rejoined node may take as long as the redundancy objective allows (a VM under emulation replays
      // WAL about 10x slower than a container), and never less than two minutes.
      const startS = Math.max(120, Math.round(objective.redundancyRestored));
      const start = await ctl.exec(primary, ["homelab-start", String(startS)], { allowFailure: true, timeoutMs: (startS + 30) * 1000 });
      if (start.code !== 0) throw new Error(`homelab-start on ${primary.name} failed: ${(start.stdout + start.stderr).trim().split("\n").slice(-3).join(" | ")}`);

      const waitMs = Math.max(60_000, objective.redundancyRestored * 1000 + 60_000 - (Date.now() - faultAtMs));
      let standbys: ReplicationRow[] = [];
      await waitFor(
        `${primary.name} streaming from ${replica.name}`,
        async () => {
          standbys = await replicationRows(ctl, replica);
          return standbys.some((r) => r.applicationName === oldName.applicationName && r.state === "streaming");
        },
        { timeoutMs: waitMs, state: () => `standbys of ${replica.name}: ${describeRows(standbys)}` },
      ).catch((e: Error) => {
        checks.push(assertRtoWithin(undefined, objective.redundancyRestored, "redundancy restored"));
        throw e;
      });
      const restoredS = (Date.now() - faultAtMs) / 1000;
      rto = { ...rto!, redundancyRestoredSeconds: restoredS };
      checks.push(assertRtoWithin(restoredS, objective.redundancyRestored, "redundancy restored"));
      phase.done(`${primary.name} streams from ${replica.name}; redundancy restored ${formatSeconds(restoredS)} after the fault${diverged ? ` (diverged at ${diverged[1]})` : ""}`);
      // The rejoined node's slot from its primary days pins WAL there for nothing: drop it.
      await psqlOnNode(ctl, primary, failoverSql.dropInactiveSlot(newName.slot)).catch((e: Error) => log.warn(`could not drop the stale slot ${newName.slot} on ${primary.name}: ${e.message}`));
    });

    // ------------------------------------------------------------------------------ 10. settings back
    await log.step(
      "restore the settings relaxed for the promotion",
      async () => {
        // Back to the stack's postgresql.conf on both nodes (pg_rewind copied the new primary's
        // postgresql.auto.conf, relaxed settings included, to the rejoined one).
        const resets = failoverSql.resetSettings(PROMOTION_SETTINGS(sync));
        for (const node of [replica, primary]) await psqlOnNode(ctl, node, resets);
        const reset = `${PROMOTION_SETTINGS(sync).map(([name]) => name).join(", ")} reset on ${replica.name} and ${primary.name}`;
        if (!sync) return reset;
        let rows: ReplicationRow[] = [];
        const isSyncStandby = (r: ReplicationRow) => r.applicationName === oldName.applicationName && r.state === "streaming" && ["sync", "quorum"].includes(r.syncState);
        await waitFor(
          "synchronous standby",
          async () => {
            rows = await replicationRows(ctl, replica);
            return rows.some(isSyncStandby);
          },
          { timeoutMs: 30_000 },
        ).catch(() => {});
        const names = await psqlOnNode(ctl, replica, "show synchronous_standby_names");
        const ok = names !== "" && rows.some(isSyncStandby);
        checks.push(check("synchronous replication restored", ok, `synchronous_standby_names = ${JSON.stringify(names)} on ${replica.name}; standbys: ${describeRows(rows)}`));
        if (!ok) throw new Error(`synchronous replication not restored on ${replica.name}: standbys ${describeRows(rows)}`);
        return `${reset}; synchronous_standby_names = ${names}; standbys: ${describeRows(rows)}`;
      },
      (detail) => detail,
    );

    // ----------------------------------------------------------------- 11. the stack's own container back
    // The rejoined node ran as a drill-made `restore` container; it goes back to exactly the container the
    // stack made (its topology spec: a later `pulumi up` or refresh finds what it created). The entrypoint
    // keeps it a standby: on an existing cluster standby.signal decides, not HOMELAB_ROLE (ADR 0011).
    if (rejoined) {
      // A container on docker, the node's unit with the stack's env on a VM (MachineNodeControl.recreate).
      const what = primary.handle.kind === "libvirt" ? "node (the stack's env, its unit restarted)" : "container";
      await log.step(`${primary.name} back on the stack's own ${what} (a standby by its data directory)`, async () => {
        await ctl.recreate(primary, { timeoutSeconds: Math.max(120, Math.round(objective.redundancyRestored)) });
        await waitFor(`${primary.name} streaming from ${replica.name} again`, async () => (await replicationRows(ctl, replica)).some((r) => r.applicationName === oldName.applicationName && r.state === "streaming"), { timeoutMs: 120_000 });
        return `the ${primary.handle.kind === "libvirt" ? "node" : "container"} the stack made (HOMELAB_BOOTSTRAP_FROM=${primary.container.env.HOMELAB_BOOTSTRAP_FROM ?? "?"}, for an empty data directory only); streaming from ${replica.name}`;
      }, (detail) => detail);
    }

    // ------------------------------------------------------------------------------------ 12. verify
    await log.step("verify: one primary, one streaming replica", async () => {
      const now = await currentPrimary(t, ctl); // throws on split brain
      const rows = await replicationRows(ctl, now);
      const ok = now.name === replica.name && rows.some((r) => r.applicationName === oldName.applicationName && r.state === "streaming");
      checks.push(check("stack redundant after the drill", ok, `primary ${now.name}; standbys: ${describeRows(rows)}`));
      evidence.primaryAfter = now.name;
      evidence.replicaAfter = primary.name;
      return `primary ${now.name}; standbys: ${describeRows(rows)}`;
    }, (detail) => detail);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    checks.push(check("drill ran to completion", false, message));
    log.warn(`drill stopped: ${message}`);
  }
  return await finish();

  async function finish(): Promise<DrillReport> {
    if (writer?.isRunning()) evidence.writer = await writer.stop();
    await probe?.stop();
    return concludeDrill({ drill: DRILL, stack: t.stack, runId, startedAtMs, objectives, phases: log.phases(), rpo, rto, checks, evidence }, { reportsDir: opts.reportsDir, log });
  }
}

// ---------------------------------------------------------------------------------------------- CLI
// `npx tsx drills/failover.mts --stack <stack> | --topology <file.json> [--reports <dir>]`: the flags and the
// runner of `homelab drill failover`, defined once in cli/drill-commands.ts.
runIfMain(import.meta.url, "failover");
