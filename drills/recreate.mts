// Drill: tear the tier down and build it again from the backup repository, the daily homelab act
// (rehearses runbooks/recreate-from-backup.md).
//
//   npx tsx drills/recreate.mts --stack local --yes [--reports reports] [--force]
//
// Steps, as the runbook: the acknowledged-write writer runs on the primary; a WAL switch is forced and the
// drill waits until the switched segment is in the repository (the last archived position: everything
// acknowledged before it must survive; what came after is bounded by archive_timeout); the writer stops;
// the stack is destroyed (every node and data volume except the backup repository's) and created again
// with the primary bootstrapped from the repository's latest backup + archived WAL (HOMELAB_ROLE
// primary-from-backup) and the replica cloned from it. Measured: acknowledged writes lost (RPO, held to
// objectives.recreate.rpo), fault -> first acknowledged write (probe every 100 ms), and fault -> primary +
// streaming replica (held to objectives.recreate.rto); the replica must stream and replay.
//
// How the stack is destroyed and created is the caller's `recreate(phase)` hook: `pulumi destroy` and
// `pulumi up` with `postgres.bootstrapFrom: backup` for a real stack (pulumiRecreate below), the e2e harness's
// destroy/apply in tests (test/e2e/recreate-harness.ts).
import pg from "pg";
import { $ } from "zx";
import { parseSize } from "../components/config/units.ts";
import type { Topology, TopologyNode } from "../components/topology.ts";
import { compareWalSegments, pgbackrestInfoOnNode, walSegmentEndLsn, walTimeline, type RepositoryState } from "./lib/archive.ts";
import { assertRpoWithin, assertRtoWithin, assertWritesResumedWithin, check, drillStopped, type Check } from "./lib/assert.ts";
import { DrillLog } from "./lib/log.ts";
import { formatDuration, formatSeconds, measureRpo, rtoPhases, walGapBytes, type RpoMeasurement, type RtoBreakdown } from "./lib/measure.ts";
import { controlFor, psqlOnNode, readSecret, type NodeControl } from "./lib/nodes.ts";
import { Probe, pgWriteProbe } from "./lib/probe.ts";
import { type DrillReport, concludeDrill, newRunId } from "./lib/report.ts";
import { currentPrimary, loadTopology, nodeByName, nodeByRole, nodesByRole, pgClientConfig } from "./lib/topology.ts";
import { waitFor } from "./lib/wait.ts";
import { AckWriter, ensureWorkloadSchema, presentSeqs, type ConnectionConfig } from "./lib/writer.ts";
import { runIfMain } from "./lib/main.ts";

export type RecreatePhase = "destroy" | "create";

export interface RecreateDrillOptions {
  topology: Topology;
  /** Destroys the stack (all but the backup repository) / creates it again bootstrapped from the backup. */
  recreate: (phase: RecreatePhase) => Promise<void>;
  /** Where the JSON + Markdown report and history go (default "reports"). */
  reportsDir?: string;
  log?: DrillLog;
  nodeControl?: NodeControl;
  /** Writer rate, transactions per second (default 20). */
  writesPerSecond?: number;
  /** Writer runs this long before the WAL switch (default 3000 ms). */
  warmupMs?: number;
  /** Longest wait for the switched segment to reach the repository (default max(60 s, 3 x archive_timeout)). */
  archiveWaitMs?: number;
  /**
   * Do not destroy when the archive is behind (the switched segment never reached the repository) or
   * there is no backup: report and stop (default false: a drill measures what the destroy costs; main sets it).
   */
  refuseWhenArchiveBehind?: boolean;
  /** Longest wait for the first write and for the streaming replica after `create` (default 300 s). */
  recoveryTimeoutMs?: number;
  /** The drill this run reports as, and whose objectives it holds (default recreate; site-loss runs this flow). */
  drill?: "recreate" | "site-loss";
  /**
   * The only repository the destroy leaves (pgbackrest --repo=N): the preflight's backup and the WAL
   * switch's wait look there alone (site-loss: 2). Default: every repository of the stanza.
   */
  survivingRepo?: number;
  /** What the destroy keeps, for the log (default "the backup repository stays"). */
  destroyKeeps?: string;
  /** More preflight checks; any failing one stops the drill before anything is destroyed. */
  preflight?: () => Promise<Check[]>;
  /** More checks once the stack is back (site-loss: repo1 has a new stanza and backup). */
  afterRecovery?: () => Promise<Check[]>;
}

class DrillAbort extends Error {}

interface ClusterIdentity {
  systemIdentifier: string;
  timeline: number;
}

export async function runRecreateDrill(opts: RecreateDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const log = opts.log ?? new DrillLog();
  const runId = newRunId();
  const startedAtMs = Date.now();
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = { archiveTimeoutSeconds: t.postgres.archiveTimeoutSeconds };
  const drill = opts.drill ?? "recreate";
  const objective = drill === "site-loss" ? t.objectives.siteLoss : t.objectives.recreate;
  const objectives = { rpoSeconds: objective.rpo, rtoSeconds: objective.rto };
  const repoOpt = opts.survivingRepo !== undefined ? { repo: opts.survivingRepo } : {};
  const repoName = opts.survivingRepo !== undefined ? `repo${opts.survivingRepo}` : "the repository";
  let rpo: (RpoMeasurement & { walGapBytes?: number }) | null = null;
  let rto: (RtoBreakdown & { redundancyRestoredSeconds?: number }) | null = null;
  let writer: AckWriter | undefined;
  let probe: Probe | undefined;
  log.info(`drill ${drill} on stack ${t.stack} (run ${runId}): objectives RPO <= ${formatSeconds(objectives.rpoSeconds)} (archive_timeout ${formatSeconds(t.postgres.archiveTimeoutSeconds)}), primary + streaming replica back <= ${formatSeconds(objectives.rtoSeconds)}`);

  try {
    const ctl = opts.nodeControl ?? controlFor(t);
    const stanza = t.pgbackrest.stanza;
    const repository = nodeByName(t, t.pgbackrest.repositoryNode);
    // The plan makes the built primary the one bootstrapped from the backup, whoever is primary now.
    const rebuiltPrimary = nodeByRole(t, "postgres-primary");
    const replicas = nodesByRole(t, "postgres-replica");
    const appUser = t.postgres.appUser;
    const passwordFile = t.postgres.passwordFiles[appUser];
    if (!passwordFile) throw new DrillAbort(`the topology names no password file for ${appUser}`);

    // ------------------------------------------------------------------------------------------ preflight
    const pre = await log.step("preflight: primary, backup in the repository, workload schema", async () => {
      const primary = await currentPrimary(t, ctl);
      const repo = await pgbackrestInfoOnNode(ctl, repository, stanza, repoOpt);
      evidence.backupBefore = repo.newestBackup;
      evidence.archivedBefore = repo.newestArchivedWal;
      checks.push(backupAgeCheck(repo, t.pgbackrest.maxBackupAgeSeconds));
      if (!repo.newestBackup) throw new DrillAbort(`stanza ${stanza} has no backup in ${repoName} (${repo.statusMessage || `status ${repo.statusCode}`}): a ${drill} would lose everything; nothing was destroyed; take one first (runbooks/${drill === "site-loss" ? "site-loss" : "recreate-from-backup"}.md)`);
      if (opts.preflight) {
        const extra = await opts.preflight();
        checks.push(...extra);
        const failed = extra.filter((c) => !c.ok);
        if (failed.length > 0) throw new DrillAbort(`not destroying anything: ${failed.map((c) => `${c.name}: ${c.detail}`).join("; ")}`);
      }
      const identity = await clusterIdentity(ctl, primary);
      evidence.before = { primary: primary.name, ...identity };
      const password = await readSecret(ctl, primary, passwordFile);
      await withClient(pgClientConfig(t, primary, { user: appUser, password }), (c) => ensureWorkloadSchema(c));
      return { primary, identity, password };
    }, (p) => `primary ${p.primary.name} (timeline ${p.identity.timeline}); newest backup ${String((evidence.backupBefore as { label?: string } | null)?.label)}`);
    const connection = (node: TopologyNode): ConnectionConfig => pgClientConfig(t, node, { user: appUser, password: pre.password });

    // ------------------------------------------------------------------------------------------ load
    writer = new AckWriter({ connection: connection(pre.primary), runId, writesPerSecond: opts.writesPerSecond ?? 20 });
    const w = writer;
    await log.step("writer: incidents with idempotency keys + drill_seq", async () => {
      w.start();
      await sleep(opts.warmupMs ?? 3000);
      const stats = w.getStats();
      if (stats.acknowledged === 0) throw new DrillAbort(`the writer got nothing acknowledged (${stats.fatalError ?? stats.lastError ?? "no error"})`);
      return stats;
    }, (s) => `${s.acknowledged} acknowledged`);

    // ------------------------------------------------------------------------------------------ archive
    const archiveWaitMs = opts.archiveWaitMs ?? Math.max(60_000, t.postgres.archiveTimeoutSeconds * 3000);
    const switchRequestedAtMs = Date.now();
    const archived = await log.step(`force a WAL switch and wait until ${repoName} has it`, async () => {
      const [segment = "", switchLsn = ""] = (await psqlOnNode(ctl, pre.primary, "select pg_walfile_name(l) || ' ' || l from (select pg_switch_wal() as l) s")).split(" ");
      let repo: RepositoryState | undefined;
      const reached = await waitFor(`segment ${segment} in ${repoName}`, async () => {
        repo = await pgbackrestInfoOnNode(ctl, repository, stanza, repoOpt);
        return repo.newestArchivedWal !== null && compareWalSegments(repo.newestArchivedWal, segment) >= 0;
      }, { timeoutMs: archiveWaitMs }).then(() => true, () => false);
      return { segment, switchLsn, reached, newest: repo?.newestArchivedWal ?? null };
    }, (a) => (a.reached ? `segment ${a.segment} (switch at ${a.switchLsn}) archived; newest in the repository ${a.newest}` : `segment ${a.segment} NOT in the repository after ${formatDuration(archiveWaitMs)} (newest: ${a.newest ?? "none"})`));
    evidence.walSwitch = { segment: archived.segment, lsn: archived.switchLsn, archived: archived.reached, newestArchived: archived.newest };
    checks.push(
      check(
        "WAL archived before the destroy",
        archived.reached,
        archived.reached
          ? `segment ${archived.segment} (switched at ${archived.switchLsn}) reached the repository`
          : `segment ${archived.segment} (switched at ${archived.switchLsn}) did not reach the repository within ${formatDuration(archiveWaitMs)}; newest archived ${archived.newest ?? "none"}: archive_command failing or the repository unreachable, everything after ${archived.newest ?? "the backup"} is lost on recreate`,
        { objective: archived.segment, measured: archived.newest ?? "none" },
      ),
    );
    // Acknowledged before the switch was even asked for: its commit record lies in an archived segment.
    const mustSurvive = w.acknowledged().filter((a) => a.clientTimeMs <= switchRequestedAtMs).map((a) => a.seq);

    const stats = await log.step("stop the writer", async () => w.stop(), (s) => `${s.acknowledged} acknowledged, ${s.uncertain} uncertain; ${mustSurvive.length} acknowledged before the WAL switch`);
    evidence.writer = stats;
    const atStop = await psqlOnNode(ctl, pre.primary, "select pg_current_wal_lsn() || ' ' || coalesce(last_archived_wal, '') || ' ' || current_setting('wal_segment_size') from pg_stat_archiver");
    const [lsnAtStop = "", lastArchivedByPrimary = "", segSize = ""] = atStop.split(" ");
    const newestArchived = [archived.newest, lastArchivedByPrimary].filter((s): s is string => !!s && /^[0-9A-F]{24}$/.test(s)).sort().at(-1);
    const gapBytes = newestArchived ? Math.max(0, walGapBytes(lsnAtStop, walSegmentEndLsn(newestArchived, parseBytesSetting(segSize)))) : undefined;
    evidence.atStop = { lsn: lsnAtStop, lastArchivedWal: newestArchived ?? null, walNotArchivedBytes: gapBytes ?? null };
    if (!archived.reached && opts.refuseWhenArchiveBehind) {
      throw new DrillAbort(`not destroying: the archive is behind (segment ${archived.segment} not in the repository); fix archiving first (runbooks/recreate-from-backup.md "Signals")`);
    }

    // ------------------------------------------------------------------------------------------ destroy
    const faultAtMs = Date.now();
    const destroyedAtMs = await log.step(`destroy the stack (${opts.destroyKeeps ?? "the backup repository stays"})`, async () => {
      await opts.recreate("destroy");
      return Date.now();
    });

    // ------------------------------------------------------------------------------------------ create
    probe = new Probe(pgWriteProbe(() => connection(rebuiltPrimary)), { intervalMs: 100, attemptTimeoutMs: 2000 }).start();
    let createError: string | undefined;
    await log.step("create the stack, primary from the latest backup + archived WAL", async () => {
      await opts.recreate("create");
    }).catch((e: Error) => {
      createError = e.message;
    });
    if (createError) checks.push(check("stack re-created", false, `the create phase failed: ${createError}`));
    const recoveryTimeoutMs = opts.recoveryTimeoutMs ?? 300_000;
    const p = probe;
    const firstWriteAtMs = await log.step("first acknowledged write on the re-created primary", async () =>
      p.waitForSuccessAfter(destroyedAtMs, createError ? 30_000 : recoveryTimeoutMs).catch((e: Error) => {
        log.warn(e.message);
        return undefined;
      }),
    (at) => (at === undefined ? "none" : `${formatDuration(at - faultAtMs)} after the destroy began`));
    await p.stop();
    checks.push(assertWritesResumedWithin(faultAtMs, firstWriteAtMs, objectives.rtoSeconds));
    if (firstWriteAtMs === undefined) throw new DrillAbort(`the re-created primary ${rebuiltPrimary.name} accepted no write (last probe error: ${p.lastError() ?? "none"})`);
    rto = rtoPhases([{ name: "destroy", atMs: destroyedAtMs }, { name: "restore + first acknowledged write", atMs: firstWriteAtMs }], faultAtMs);

    let streamingReplicas = 0;
    const redundancyAtMs = await log.step(`primary + ${replicas.length} streaming replica${replicas.length === 1 ? "" : "s"}`, async () =>
      waitFor(
        "replicas streaming",
        async () => (streamingReplicas = Number(await psqlOnNode(ctl, rebuiltPrimary, "select count(*) from pg_stat_replication where state = 'streaming'"))) >= replicas.length,
        { timeoutMs: createError ? 30_000 : recoveryTimeoutMs, state: () => `${streamingReplicas} of ${replicas.length} streaming from ${rebuiltPrimary.name}` },
      ).then(
        () => Date.now(),
        (e: Error) => {
          log.warn(e.message);
          return undefined;
        },
      ),
    (at) => (at === undefined ? "not reached" : `${formatDuration(at - faultAtMs)} after the destroy began`));
    if (redundancyAtMs !== undefined) rto.redundancyRestoredSeconds = (redundancyAtMs - faultAtMs) / 1000;
    checks.push(assertRtoWithin(rto.redundancyRestoredSeconds, objectives.rtoSeconds, "time to primary + streaming replica"));

    // ------------------------------------------------------------------------------------------ measure
    const after = await log.step("what the re-created primary holds", async () => {
      const identity = await clusterIdentity(ctl, rebuiltPrimary);
      const present = await withClient(connection(rebuiltPrimary), (c) => presentSeqs(c, { fromSeq: w.firstSeq(), toSeq: w.highestAttemptedSeq() }));
      return { identity, present };
    }, (a) => `timeline ${a.identity.timeline}, ${a.present.length} of this run's writes present`);
    evidence.after = { primary: rebuiltPrimary.name, ...after.identity };
    const measured = measureRpo({ acknowledged: w.acknowledged(), presentSeqs: after.present, uncertain: w.uncertain() });
    rpo = { ...measured, ...(gapBytes !== undefined ? { walGapBytes: gapBytes } : {}) };
    const present = new Set(after.present);
    const missing = mustSurvive.filter((s) => !present.has(s));
    checks.push(
      check(
        "every write acknowledged before the WAL switch restored",
        missing.length === 0,
        missing.length === 0
          ? `all ${mustSurvive.length} writes acknowledged before the switch to ${archived.segment} are on the re-created primary`
          : `${missing.length} of ${mustSurvive.length} writes acknowledged before the WAL switch are missing (first: ${missing.slice(0, 10).join(", ")}): the restore stopped short of ${archived.segment}${archived.reached ? " although the repository had it" : ", which never reached the repository"}`,
        { objective: 0, measured: missing.length, unit: "writes" },
      ),
    );
    checks.push(assertRpoWithin(measured, objectives.rpoSeconds));
    const rebuilt = after.identity.systemIdentifier === pre.identity.systemIdentifier && after.identity.timeline > pre.identity.timeline;
    checks.push(
      check(
        "primary bootstrapped from the repository",
        rebuilt,
        rebuilt
          ? `same cluster (system identifier ${after.identity.systemIdentifier}), new timeline ${pre.identity.timeline} -> ${after.identity.timeline}: restored and promoted`
          : `system identifier ${pre.identity.systemIdentifier} -> ${after.identity.systemIdentifier}, timeline ${pre.identity.timeline} -> ${after.identity.timeline}: ${after.identity.systemIdentifier !== pre.identity.systemIdentifier ? "a new cluster (initdb), not a restore" : "the old data directory survived the destroy"}`,
      ),
    );

    await log.step("the replica streams and replays the re-created primary", async () => {
      const target = await psqlOnNode(ctl, rebuiltPrimary, "select pg_current_wal_lsn()");
      for (const replica of replicas) {
        let state = "";
        const ok = await waitFor(`${replica.name} replays ${target}`, async () => {
          state = await psqlOnNode(ctl, replica, "select pg_is_in_recovery() || ' ' || coalesce((select status from pg_stat_wal_receiver), 'none') || ' ' || coalesce(pg_last_wal_replay_lsn()::text, '0/0')");
          const [recovery, receiver, replayed = "0/0"] = state.split(" ");
          return recovery === "true" && receiver === "streaming" && walGapBytes(replayed, target) >= 0;
        }, { timeoutMs: 60_000 }).then(() => true, () => false);
        checks.push(check(`${replica.name} streams and replays`, ok, ok ? `${replica.name}: in recovery, WAL receiver streaming, replayed past ${target}` : `${replica.name}: ${state || "no answer"} (recovery, WAL receiver, replay LSN); primary at ${target}`));
      }
    });
    if (opts.afterRecovery) {
      const after = opts.afterRecovery;
      checks.push(...(await log.step("the rebuilt stack's repositories", async () => after(), (c) => c.map((x) => `${x.name}: ${x.ok ? "ok" : "FAILED"}`).join("; "))));
    }
  } catch (e) {
    checks.push(drillStopped(log, e));
  } finally {
    await writer?.stop().catch(() => undefined);
    await probe?.stop().catch(() => undefined);
  }

  return concludeDrill({ drill, stack: t.stack, runId, startedAtMs, objectives, phases: log.phases(), rpo, rto, checks, evidence }, { reportsDir: opts.reportsDir, log });
}

/** Newest backup no older than the stack's policy (fault catalog: "newest backup older than the policy allows"). */
function backupAgeCheck(repo: RepositoryState, maxAgeSeconds: number): Check {
  const name = "newest backup within the age policy";
  const b = repo.newestBackup;
  if (!b) return check(name, false, `no backup in stanza ${repo.stanza}: ${repo.statusMessage || `status ${repo.statusCode}`}`, { objective: maxAgeSeconds, measured: "none", unit: "s" });
  const ageSeconds = Math.max(0, (Date.now() - b.stopMs) / 1000);
  const ok = ageSeconds <= maxAgeSeconds;
  return check(name, ok, `${b.type} backup ${b.label} is ${formatSeconds(ageSeconds)} old (policy ${formatSeconds(maxAgeSeconds)})${ok ? "" : ": the restore replays that much more WAL, and a gap in it loses everything after"}`, { objective: maxAgeSeconds, measured: Math.round(ageSeconds), unit: "s" });
}

async function clusterIdentity(ctl: NodeControl, node: TopologyNode): Promise<ClusterIdentity> {
  const out = await psqlOnNode(ctl, node, "select system_identifier::text || ' ' || pg_walfile_name(pg_current_wal_lsn()) from pg_control_system()");
  const [systemIdentifier = "", segment = ""] = out.split(" ");
  return { systemIdentifier, timeline: walTimeline(segment) };
}

/** wal_segment_size as SHOW prints it ("16MB") in bytes; PostgreSQL's default 16MiB when unreadable. */
function parseBytesSetting(value: string): number {
  const parsed = parseSize(value, "postgres");
  return "bytes" in parsed ? parsed.bytes : 16 * 1024 ** 2;
}

async function withClient<T>(config: ConnectionConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...config, connectionTimeoutMillis: 5000, query_timeout: 30_000 });
  client.on("error", () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------- main

/**
 * Runs `pulumi <args> --stack <stack>` (zx quotes each element) in the current directory (the project
 * root). Its stdout goes to the terminal (pulumi up's progress) unless `capture`d and returned; its stderr
 * is shown as it comes (hidden when capturing) and kept for the error, which names the command, its exit
 * code and the last stderr lines. Never verbose: zx does not echo the command line.
 */
async function pulumi(stack: string, args: string[], opts: { capture?: boolean } = {}): Promise<string> {
  const argv = [...args, "--stack", stack];
  const command = `pulumi ${argv.join(" ")}`;
  const r = await $({ stdio: ["ignore", opts.capture ? "pipe" : "inherit", "pipe"], nothrow: true, verbose: false, quiet: Boolean(opts.capture) })`pulumi ${argv}`;
  // zx runs it through bash: a spawn failure comes back as `cause`, "not found" as exit 127.
  if (r.cause) throw new Error(`${command} could not run: ${r.cause.message}`);
  if (r.exitCode === 127) throw new Error(`pulumi not found on PATH: run \`eval "$(bash tools/toolchain.sh --env)"\` first`);
  if (r.exitCode !== 0) {
    const tail = r.stderr.trim().split("\n").slice(-5).join(" | ");
    throw new Error(`${command} failed (${r.exitCode === null ? `killed by ${r.signal ?? "a signal"}` : `exit ${r.exitCode}`})${tail ? `: ${tail}` : ""}`);
  }
  return r.stdout.trim();
}

/**
 * The hook for a real stack: `pulumi destroy` (the repository volume is retained: purgeBackupsOnDestroy
 * false), then `pulumi up`. A stack on `bootstrapFrom: auto` (the default, ADR 0012) restores by itself;
 * one pinned to `initdb` gets `postgres.bootstrapFrom: backup` first (it stays: with data present the
 * primary starts as is, so later `pulumi up`s change nothing).
 */
export function pulumiRecreate(stack: string, opts: { restoresByItself?: boolean } = {}): (phase: RecreatePhase) => Promise<void> {
  return async (phase) => {
    if (phase === "destroy") await pulumi(stack, ["destroy", "--yes", "--skip-preview"]);
    else {
      if (!opts.restoresByItself) await pulumi(stack, ["config", "set", "--path", "homelab-data:postgres.bootstrapFrom", "backup"]);
      await pulumi(stack, ["up", "--yes", "--skip-preview"]);
    }
  };
}

/**
 * The recreate drill on a real Pulumi stack (`homelab drill recreate` and this script's main): refuses
 * without `yes`, refuses when destroy would delete the backups, and (unless `force`) when the archive is
 * behind, so a broken stack is never destroyed into data loss.
 */
export async function runRecreateOnStack(opts: { stack: string; yes: boolean; force?: boolean; topologyFile?: string; reportsDir?: string }): Promise<DrillReport> {
  const { stack } = opts;
  if (!opts.yes) throw new RecreateRefusedError(`drill recreate destroys stack ${stack} and re-creates it from its backups; pass --yes to go ahead`);
  // A destroy that also deletes the repository leaves nothing to come back from.
  const purge = await pulumi(stack, ["config", "get", "--path", "homelab-data:pgbackrest.purgeBackupsOnDestroy"], { capture: true }).catch(() => "");
  if (purge === "true") throw new RecreateRefusedError(`stack ${stack} has pgbackrest.purgeBackupsOnDestroy: true: pulumi destroy would delete the backups; set it to false first`);
  const topology = await loadTopology({ stack, file: opts.topologyFile });
  // The primary as the stack builds it says how an empty data directory is filled (bootstrapFrom).
  const bootstrap = nodeByRole(topology, "postgres-primary").container.env;
  const restoresByItself = bootstrap.HOMELAB_BOOTSTRAP_FROM === "auto" || bootstrap.HOMELAB_BOOTSTRAP_FROM === "backup";
  return runRecreateDrill({ topology, recreate: pulumiRecreate(stack, { restoresByItself }), reportsDir: opts.reportsDir ?? "reports", refuseWhenArchiveBehind: !opts.force });
}

/** A refusal to destroy: the user's call to make, reported as one line. */
export class RecreateRefusedError extends Error {
  override name = "RecreateRefusedError";
}

// `npx tsx drills/recreate.mts --stack <stack> --yes [--topology <file.json>] [--reports <dir>] [--force]`: the
// flags and the runner of `homelab drill recreate`, defined once in cli/drill-commands.ts.
runIfMain(import.meta.url, "recreate");
