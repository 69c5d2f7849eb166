// Backup-restore drill (docs/drills.md "Drills" 1), rehearsing runbooks/postgres-pitr-restore.md step by step:
//   preflight   pgbackrest check (archiving works), pgbackrest verify over every backup and the archive, a
//               backup existed before the drill, newest backup within policy, no WAL segment missing
//   source      the newest backup the repository ALREADY holds (what a real disaster restores); with
//               --fresh-backup a new full backup taken while the writer writes (expired again at the end)
//   target      writer paused, target time T from the primary's clock + table digests AT T, writer resumed
//   archive     more writes, a WAL switch, wait until the repository holds every segment from the backup
//               past T (PITR must reach T), more writes
//   disaster    the primary is killed and its data volume removed (its files and container spec kept)
//   restore     into a FRESH node with the lost primary's identity (hostname, certificate, /etc/homelab) under
//               another name: --type=time --target=T (pitr) and/or the whole archive (latest), always
//               --archive-mode=off; RTO = fault -> first read on the restored node once out of recovery
//   verify      pitr: the acknowledged writes up to T exactly, table digests = digests at T, amcheck, no WAL
//               from the copy in the repository; latest: RPO vs objective; restore time vs a plain copy
//   rebuild     the restored copies are disposable; the lost primary is rebuilt from the repository
//               (HOMELAB_ROLE=primary-from-backup, then its own role again) and each replica, stranded ahead
//               on the old timeline, re-cloned from it: the stack ends primary + streaming replica
//
//   npx tsx drills/backup-restore.mts --stack <stack> | --topology <file.json> [--variant pitr|latest|both] [--fresh-backup] [--reports <dir>]
//
// Exit code 0 only when every check passes (objectives.backupRestore of the stack). Nothing is destroyed when
// preflight fails: a drill must not turn broken backups into a lost primary.
import { randomBytes } from "node:crypto";
import pg, { escapeLiteral } from "pg";
import { docker, dockerEnv } from "../components/platform/docker-node.ts";
import { parsePgbackrestInfo, type RepositoryBackup, type RepositoryState } from "./lib/archive.ts";
import { assertDigestsEqual, assertRowsEqualAtTarget, assertRpoWithin, assertRtoWithin, check, type Check } from "./lib/assert.ts";
import { DrillLog } from "./lib/log.ts";
import { formatDuration, formatSeconds, measureRpo, parseTimelineHistory, rtoPhases, splitAtTarget, walGapBytes, type RpoMeasurement, type RtoBreakdown } from "./lib/measure.ts";
import { controlFor, psqlOnNode, readSecret, type ControlledNode, type NodeControl } from "./lib/nodes.ts";
import {
  ARCHIVER_STATE_SQL,
  archiveGaps,
  archiveGetFailures,
  archivedSegmentsOnNode,
  assertArchiveContinuous,
  assertArchivingWorks,
  assertBackupExisted,
  assertBackupFresh,
  assertEstateVerified,
  assertRecoveryWindowKept,
  explainRecoveryFailure,
  missingWalSegments,
  pgbackrestError,
  pgbackrestRestoreArgs,
  pgPromotedReadProbe,
  parseVerifyText,
  walSegmentOfLsn,
  walSpan,
  type ArchiveGetFailure,
  type ArchiverState,
  type RestoreVariant,
  type WalSpan,
} from "./lib/pitr.ts";
import { Probe } from "./lib/probe.ts";
import { type DrillReport, concludeDrill } from "./lib/report.ts";
import { createNodeCopy, publishedAddress, rebuildNode, recreateContainer, removeNodeCopy, snapshotDockerNode, type NodeSnapshot } from "./lib/scratch-node.ts";
import { currentPrimary, nodeByName, pgClientConfig, pgNodes, type Topology, type TopologyNode } from "./lib/topology.ts";
import { waitFor } from "./lib/wait.ts";
import { AckWriter, ensureWorkloadSchema, presentSeqs, workloadDigest, WORKLOAD_TABLES, type AckRecord, type ConnectionConfig, withPg as withPgClient } from "./lib/writer.ts";
import { runIfMain } from "./lib/main.ts";

export const DRILL = "backup-restore";
export type BackupRestoreVariant = RestoreVariant | "both";

/** Writes before and after each mark: enough rows on both sides of T, and unarchived ones for "latest" to lose. */
const WRITES_BEFORE_TARGET_MS = 2500;
const WRITES_AFTER_TARGET_MS = 2000;
const WRITES_BEFORE_DISASTER_MS = 2000;

export interface DisasterContext {
  topology: Topology;
  ctl: NodeControl;
  log: DrillLog;
  primary: TopologyNode;
  repository: TopologyNode;
  /** The backup the drill restores: the newest existing one, or its own with --fresh-backup. */
  backupLabel: string;
  /** First WAL segment the backup needs, the segment holding T, and the last one the drill waited for. */
  backupStartSegment: string;
  targetSegment: string;
  neededSegment: string;
}

export interface BackupRestoreDrillOptions {
  topology: Topology;
  /** Reports folder (history accumulates there). Default "reports". */
  reportsDir?: string;
  log?: DrillLog;
  /** pitr: restore to T; latest: the whole archive; both (default): one after the other. */
  variant?: BackupRestoreVariant;
  /** Default: controlFor(topology). Docker only: the restore target is a container built from the lost one. */
  nodeControl?: NodeControl;
  /** Writer rate. Default 50. */
  writesPerSecond?: number;
  /**
   * Take a new full backup and restore that one instead of the newest existing backup (the default: what a
   * real disaster restores). It is taken with retention lifted and expired again once the stack is whole.
   */
  freshBackup?: boolean;
  /** How long `pgbackrest check` waits for its forced WAL segment (--archive-timeout). Default 30. */
  archiveCheckTimeoutSeconds?: number;
  /**
   * Fault-injection seam for the drill's twins (docs/drills.md "Fault catalog"): runs once the repository holds
   * every WAL segment the restore needs, right before the drill re-checks that and destroys the primary.
   * Never set in a real drill.
   */
  beforeDisaster?: (ctx: DisasterContext) => Promise<void>;
}

/** Stops the run before the disaster with a failed check (nothing destroyed). */
class PreDisasterStop extends Error {}

interface RestoreOutcome {
  variant: RestoreVariant;
  copy: ControlledNode;
  config: ConnectionConfig;
  /** The instant the restore's clock starts: the fault for the first restore, its own start for a second one. */
  fromMs: number;
  restoreCommandMs: number;
  rto: RtoBreakdown;
  timeline: number | null;
  switchLsn: string | null;
  recoveryStop: string[];
  restoreSize: string | null;
  /** restore_command calls that errored rather than found nothing (e.g. [082] timeouts). */
  fetchErrors: ArchiveGetFailure[];
}

interface TargetMark {
  /** recovery_target_time as given to pgBackRest: the primary's clock_timestamp() in UTC, microseconds. */
  time: string;
  serverMs: number;
  lsn: string;
  segment: string;
  timeline: number;
  /** Host clock: the writer was paused from pausedAtMs (no write in flight) to resumedAtMs. */
  pausedAtMs: number;
  resumedAtMs: number;
  digest: Record<string, string>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const withPg = <T,>(config: ConnectionConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> => withPgClient(config, fn, "homelab-drill-backup-restore");

/** `pgbackrest info` on the repository node: the parsed state and the raw entry (LSNs, archive ids). */
async function repositoryInfo(ctl: NodeControl, repository: TopologyNode, stanza: string): Promise<{ state: RepositoryState; raw: Record<string, unknown> }> {
  // repo1 only: its archive is what repo-ls lists and what the restore picks first; with repo2 (ADR 0013) a
  // merged info would pair repo2's backups (other retention, or older than a rebuilt repo1) with repo1's
  // archive and report gaps that are not there. repo2 is the site-loss drill's.
  const r = await ctl.exec(repository, ["pgbackrest", `--stanza=${stanza}`, "--repo=1", "--output=json", "info"], { allowFailure: true, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${repository.name}: pgbackrest info failed (exit ${r.code}): ${pgbackrestError(r.stderr + r.stdout)}`);
  const state = parsePgbackrestInfo(r.stdout, stanza);
  const raw = ((JSON.parse(r.stdout) as Record<string, unknown>[]).find((s) => s.name === stanza) ?? {}) as Record<string, unknown>;
  return { state, raw };
}

/** The archive id of the stanza's current database (`17-1`): the last entry of info's archive list. */
function currentArchiveId(raw: Record<string, unknown>): string | undefined {
  const archives = Array.isArray(raw.archive) ? (raw.archive as { id?: unknown }[]) : [];
  const id = archives[archives.length - 1]?.id;
  return typeof id === "string" ? id : undefined;
}

function backupLsns(raw: Record<string, unknown>, label: string): { start?: string; stop?: string } {
  const backups = Array.isArray(raw.backup) ? (raw.backup as { label?: unknown; lsn?: { start?: string; stop?: string } }[]) : [];
  const b = backups.find((x) => x.label === label);
  return { start: b?.lsn?.start, stop: b?.lsn?.stop };
}

type RestoreSource = RepositoryBackup & { archiveStart: string; lsn: { start?: string; stop?: string } };

/**
 * A full backup on the repository host with retention lifted for its own expire run: it must not push a
 * backup the user has out of retention.full (the drill expires it again once the stack is whole).
 */
async function takeFullBackup(ctl: NodeControl, repository: TopologyNode, stanza: string, previousNewest: string | null): Promise<RestoreSource> {
  const r = await ctl.exec(repository, ["pgbackrest", `--stanza=${stanza}`, "--type=full", "--repo1-retention-full=9999", "backup"], { allowFailure: true, timeoutMs: 3_600_000 });
  if (r.code !== 0) throw new Error(`pgbackrest backup failed (exit ${r.code}): ${pgbackrestError(r.stdout + r.stderr)}`);
  const after = await repositoryInfo(ctl, repository, stanza);
  if (!after.state.newestBackup || after.state.newestBackup.label === previousNewest) throw new Error(`pgbackrest backup exited 0 but info shows no new backup (newest: ${after.state.newestBackup?.label ?? "none"})`);
  return newestBackupOf(after);
}

/** The repository's newest backup as a restore needs it: its first WAL segment and LSNs. */
function newestBackupOf(info: { state: RepositoryState; raw: Record<string, unknown> }): RestoreSource {
  const newest = info.state.newestBackup;
  if (!newest) throw new Error("the repository holds no backup to restore");
  if (!newest.archiveStart) throw new Error(`backup ${newest.label} names no first WAL segment`);
  return { ...newest, archiveStart: newest.archiveStart, lsn: backupLsns(info.raw, newest.label) };
}

async function archiverState(ctl: NodeControl, primary: TopologyNode): Promise<ArchiverState | null> {
  try {
    return JSON.parse(await psqlOnNode(ctl, primary, ARCHIVER_STATE_SQL)) as ArchiverState;
  } catch {
    return null;
  }
}

/** Seconds since the epoch on the repository node: backup ages are measured on the clock that stamped them. */
async function repositoryNowMs(ctl: NodeControl, repository: TopologyNode): Promise<number> {
  const r = await ctl.exec(repository, ["date", "+%s%N"], { allowFailure: true, timeoutMs: 10_000 });
  const ns = r.code === 0 ? Number(r.stdout.trim()) : Number.NaN;
  return Number.isFinite(ns) ? Math.round(ns / 1e6) : Date.now();
}

async function archivedNames(ctl: NodeControl, repository: TopologyNode, stanza: string, archiveId: string | undefined): Promise<{ names: string[]; timelineHistories: number[] }> {
  const listing = await archivedSegmentsOnNode(ctl, repository, stanza);
  const names = listing.segments.filter((s) => archiveId === undefined || s.archiveId === archiveId).map((s) => s.segment);
  return { names, timelineHistories: listing.timelineHistories };
}

export async function runBackupRestoreDrill(opts: BackupRestoreDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const log = opts.log ?? new DrillLog();
  const ctl = opts.nodeControl ?? controlFor(t);
  const variant: BackupRestoreVariant = opts.variant ?? "both";
  if (!["pitr", "latest", "both"].includes(variant)) throw new Error(`variant: got ${JSON.stringify(variant)}; expected pitr, latest or both`);
  const variants: RestoreVariant[] = variant === "both" ? ["pitr", "latest"] : [variant];
  const startedAtMs = Date.now();
  const runId = `${new Date(startedAtMs).toISOString().replace(/[-:T]/g, "").slice(0, 14)}-${randomBytes(3).toString("hex")}`;
  const stanza = t.pgbackrest.stanza;
  const objective = t.objectives.backupRestore;
  const repository = nodeByName(t, t.pgbackrest.repositoryNode);
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = { variant, stanza, repository: repository.name };
  // Assigned inside step callbacks: typed by cast so control-flow narrowing does not pin them to their initial value.
  let rto = null as (RtoBreakdown & { redundancyRestoredSeconds?: number }) | null;
  let rpo = null as (RpoMeasurement & { walGapBytes?: number }) | null;

  let writer: AckWriter | undefined;
  let control: pg.Client | undefined;
  const copies: ControlledNode[] = [];
  let disaster = undefined as { atMs: number; primary: TopologyNode; snapshot: NodeSnapshot } | undefined;
  // The drill's own full backup, expired again at the end (nothing it finds may be lost because it ran).
  let ownBackup = undefined as string | undefined;
  let backupsBefore = undefined as string[] | undefined;

  try {
    // ------------------------------------------------------------------------------------------ preflight
    const primary = await log.step("find the primary", () => currentPrimary(t, ctl), (p) => `${p.name} (${p.hostname})`);
    evidence.primary = primary.name;
    const before = await log.step("preflight: repository state", () => repositoryInfo(ctl, repository, stanza), (r) => `${r.state.backups.length} backup(s), newest ${r.state.newestBackup?.label ?? "none"}, archive up to ${r.state.newestArchivedWal ?? "none"}`);
    const archiveId = currentArchiveId(before.raw);
    backupsBefore = before.state.backups.map((b) => b.label);
    let estate = before;
    if (before.state.backups.length === 0) {
      // Nothing a disaster could restore: the check fails, but the restore is still rehearsed on a backup of
      // its own (kept afterwards: it is the only one the stack has).
      const own = await log.step("no backup in the repository: a full backup to rehearse the restore on", () => takeFullBackup(ctl, repository, stanza, null));
      ownBackup = own.label;
      estate = await repositoryInfo(ctl, repository, stanza);
    }
    const existed = assertBackupExisted(before.state.newestBackup, await repositoryNowMs(ctl, repository), { freshLabel: ownBackup });
    checks.push(existed);
    const preflight: Check[] = [];
    await log.step("preflight: pgbackrest check", async (p) => {
      const r = await ctl.exec(repository, ["pgbackrest", `--stanza=${stanza}`, `--archive-timeout=${opts.archiveCheckTimeoutSeconds ?? 30}`, "check"], { allowFailure: true, timeoutMs: ((opts.archiveCheckTimeoutSeconds ?? 30) + 60) * 1000 });
      const c = assertArchivingWorks({ code: r.code, output: r.stdout + r.stderr }, await archiverState(ctl, primary));
      preflight.push(c);
      if (!c.ok) p.fail(c.detail);
    });
    await log.step("preflight: pgbackrest verify (every backup and the archive)", async (p) => {
      // A backup you have never checked is a wish: every retained backup and archived WAL file against its
      // checksum, not only the one this drill restores. verify exits 0 on damage; its report tells.
      const r = await ctl.exec(repository, ["pgbackrest", `--stanza=${stanza}`, "--repo=1", "--output=text", "--verbose", "--log-level-console=warn", "verify"], { allowFailure: true, timeoutMs: 6 * 3_600_000 });
      const c = assertEstateVerified(parseVerifyText(r.stdout), { code: r.code, output: r.stdout + r.stderr });
      preflight.push(c);
      if (!c.ok) p.fail(c.detail);
      return c.ok ? c.detail : undefined;
    }, (detail) => detail);
    await log.step("preflight: newest backup age", async (p) => {
      const c = assertBackupFresh(estate.state.newestBackup, t.pgbackrest.maxBackupAgeSeconds, await repositoryNowMs(ctl, repository));
      preflight.push(c);
      if (!c.ok) p.fail(c.detail);
    });
    await log.step("preflight: archive continuity", async (p) => {
      // From the oldest backup's first segment: a restore of any retained backup to any time after it
      // must find every segment on the way.
      const starts = estate.state.backups.map((b) => b.archiveStart).filter((s): s is string => s !== null).sort();
      const { names } = await archivedNames(ctl, repository, stanza, archiveId);
      const newest = names[names.length - 1] ?? null;
      const c = assertArchiveContinuous(starts[0] ? archiveGaps(names, starts[0]) : [], { fromSegment: starts[0] ?? null, newestArchived: newest });
      preflight.push(c);
      evidence.archiveBefore = { archiveId, segments: names.length, first: names[0] ?? null, newest };
      if (!c.ok) p.fail(c.detail);
    });
    checks.push(...preflight);
    if (preflight.some((c) => !c.ok)) {
      throw new PreDisasterStop(`preflight failed (${preflight.filter((c) => !c.ok).map((c) => c.name).join(", ")}): nothing destroyed, backups are not known to be restorable`);
    }

    // ------------------------------------------------------------------------------------------ workload
    const appUser = t.postgres.appUser;
    const passwordFile = t.postgres.passwordFiles[appUser];
    if (!passwordFile) throw new Error(`topology names no password file for the app role ${appUser}`);
    const appPassword = await readSecret(ctl, primary, passwordFile);
    const primaryConfig = pgClientConfig(t, primary, { user: appUser, password: appPassword });
    await withPg(primaryConfig, (c) => ensureWorkloadSchema(c));
    const w = new AckWriter({ connection: primaryConfig, runId, writesPerSecond: opts.writesPerSecond ?? 50 });
    writer = w;
    await log.step("start the writer", async () => {
      w.start();
      await waitFor("first acknowledged write", () => w.acknowledged().length > 0 || !w.isRunning(), { timeoutMs: 30_000 });
      if (w.acknowledged().length === 0) throw new Error(`the writer stopped before its first write: ${w.getStats().fatalError ?? w.getStats().lastError ?? "unknown"}`);
    }, () => `first seq ${w.firstSeq()} on ${primary.name}`);
    const firstSeq = w.firstSeq() ?? 1;
    control = new pg.Client({ ...primaryConfig, connectionTimeoutMillis: 10_000, application_name: "homelab-drill-backup-restore" });
    control.on("error", () => {});
    await control.connect();

    // ------------------------------------------------------------------------------------------ backup
    const fresh = Boolean(opts.freshBackup) && ownBackup === undefined;
    const backup = fresh
      ? await log.step("full backup on the repository host (--fresh-backup)", async () => {
          const b = await takeFullBackup(ctl, repository, stanza, estate.state.newestBackup?.label ?? null);
          ownBackup = b.label;
          return b;
        }, (b) => `${b.label}, WAL ${b.archiveStart}..${b.archiveStop}`)
      : await log.step("restore source: the newest backup the repository already holds", () => newestBackupOf(estate), (b) => `${b.label} (${b.type}${ownBackup ? ", the drill's own: there was none" : ""}), WAL from ${b.archiveStart}`);
    evidence.backup = { label: backup.label, type: backup.type, source: fresh ? "fresh (--fresh-backup)" : ownBackup ? "the drill's own (the repository held none)" : "newest existing", stopMs: backup.stopMs, archiveStart: backup.archiveStart, archiveStop: backup.archiveStop, lsnStart: backup.lsn.start, lsnStop: backup.lsn.stop };

    await log.step(fresh ? "writes continue after the backup" : "writes before T", () => sleep(WRITES_BEFORE_TARGET_MS), () => `${w.acknowledged().length} acknowledged so far`);

    // ------------------------------------------------------------------------------------------ target T
    const c = control;
    const target: TargetMark = await log.step("record target time T (writer paused) and table digests at T", async () => {
      // Paused, the writer has no transaction in flight: every acknowledged write committed before T (its
      // commit record is older than the clock_timestamp() read after it) and every later one starts after T.
      // No other session writes the workload, so the digest taken now is the database at T.
      await w.pause();
      const pausedAtMs = Date.now();
      try {
        const r = await c.query(
          "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS t, (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms, pg_current_wal_lsn()::text AS lsn, pg_walfile_name(pg_current_wal_lsn()) AS segment, (SELECT timeline_id FROM pg_control_checkpoint()) AS tli",
        );
        const row = r.rows[0] as { t: string; ms: number; lsn: string; segment: string; tli: number };
        const digest = await workloadDigest(c);
        return { time: row.t, serverMs: Number(row.ms), lsn: row.lsn, segment: row.segment, timeline: Number(row.tli), pausedAtMs, resumedAtMs: 0, digest };
      } finally {
        w.resume();
      }
    }, (m) => `T = ${m.time} (LSN ${m.lsn}, segment ${m.segment}), ${w.acknowledged().length} writes acknowledged before it`);
    target.resumedAtMs = Date.now();
    const backupAgeSeconds = Math.max(0, (target.serverMs - backup.stopMs) / 1000);
    const span = backup.lsn.start ? safeSpan({ segment: backup.archiveStart, lsn: backup.lsn.start }, { segment: walSegmentOfLsn(target.lsn, target.timeline), lsn: target.lsn }) : undefined;
    evidence.backupAgeAtTargetSeconds = Math.round(backupAgeSeconds * 10) / 10;
    evidence.walSpanToTarget = span ?? null;
    log.info(`restoring ${backup.label}: ${formatSeconds(backupAgeSeconds)} old at T; WAL to replay to T ${span ? `${span.segments} segment${span.segments === 1 ? "" : "s"} (${span.fromSegment} .. ${span.toSegment}), ${(span.bytes / 1048576).toFixed(1)} MiB` : "unknown (no start LSN in pgbackrest info)"}`);
    evidence.target = { time: target.time, lsn: target.lsn, segment: target.segment, timeline: target.timeline, digest: target.digest };

    const needed = await log.step("more writes, then archive the WAL past T", async () => {
      await sleep(WRITES_AFTER_TARGET_MS);
      // The segment just completed holds T and commits after it: recovery needs one past T to stop there.
      const segment = await psqlOnNode(ctl, primary, "SELECT pg_walfile_name(pg_switch_wal())");
      let newest = "";
      await waitFor(
        `WAL segment ${segment} in the repository`,
        async () => {
          newest = (await repositoryInfo(ctl, repository, stanza)).state.newestArchivedWal ?? "";
          return newest >= segment;
        },
        { timeoutMs: 120_000, intervalMs: 100, state: () => `newest archived: ${newest || "none"}` },
      );
      return segment;
    }, (s) => `repository holds ${s}`);

    if (opts.beforeDisaster) {
      await log.step("fault injection (test seam)", () => opts.beforeDisaster!({ topology: t, ctl, log, primary, repository, backupLabel: backup.label, backupStartSegment: backup.archiveStart, targetSegment: target.segment, neededSegment: needed }));
    }

    await log.step("the repository holds every WAL segment from the backup past T", async (p) => {
      const { names } = await archivedNames(ctl, repository, stanza, archiveId);
      const { missing, missingCount } = missingWalSegments(names, backup.archiveStart, needed);
      const c = missingCount === 0
        ? check("WAL from the backup to T archived", true, `every segment ${backup.archiveStart} .. ${needed} is in the repository`)
        : check("WAL from the backup to T archived", false, `WAL segment${missingCount === 1 ? "" : "s"} ${missing.join(", ")}${missingCount > missing.length ? `, … (${missingCount} in all)` : ""} missing from the repository: a restore of ${backup.label} cannot reach T (needs ${backup.archiveStart} .. ${needed})`, { objective: 0, measured: missingCount, unit: "missing segments" });
      checks.push(c);
      if (!c.ok) {
        p.fail(c.detail);
        throw new PreDisasterStop(`${c.detail}: nothing destroyed`);
      }
    });

    await log.step("writes continue until the disaster", () => sleep(WRITES_BEFORE_DISASTER_MS), () => `${w.acknowledged().length} acknowledged`);

    // ------------------------------------------------------------------------------------------ disaster
    const lastPrimaryLsn = (await c.query("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0]?.lsn as string;
    const snapshot = await snapshotDockerNode(primary);
    const faultAtMs = await log.step("disaster: kill the primary and destroy its data directory", async () => {
      const at = Date.now();
      await ctl.kill(primary);
      disaster = { atMs: at, primary, snapshot };
      // Its files (certificate, secrets, configs) were copied out of the container above, for the restore.
      const removed = await ctl.removeDataVolumes(primary);
      evidence.destroyedVolumes = removed;
      return at;
    }, () => `${primary.name} killed, volume${primary.dataVolumes.length === 1 ? "" : "s"} ${primary.dataVolumes.join(", ")} removed`);
    const stats = await w.stop();
    control.end().catch(() => {});
    control = undefined;
    const acknowledged: AckRecord[] = w.acknowledged();
    const uncertain = w.uncertain();
    evidence.writer = { runId, firstSeq, acknowledged: acknowledged.length, uncertain, lastAcknowledgedSeq: acknowledged[acknowledged.length - 1]?.seq ?? null, errors: stats.errors };
    evidence.lastPrimaryLsn = lastPrimaryLsn;
    const archiveAtFault = await archivedNames(ctl, repository, stanza, archiveId);
    evidence.archiveAtFault = { segments: archiveAtFault.names.length, newest: archiveAtFault.names[archiveAtFault.names.length - 1] ?? null, timelineHistories: archiveAtFault.timelineHistories };

    // ------------------------------------------------------------------------------------------ restores
    const restoreEvidence: Record<string, unknown> = {};
    evidence.restores = restoreEvidence;
    for (const [i, v] of variants.entries()) {
      const fromMs = i === 0 ? faultAtMs : Date.now();
      const outcome = await restoreToFreshNode({ t, ctl, log, snapshot, primary, variant: v, target, backupLabel: backup.label, fromMs, fromIsFault: i === 0, appUser, appPassword, copies, runId });
      const ev: Record<string, unknown> = {
        node: outcome.copy.handle.kind === "docker" ? outcome.copy.handle.container : outcome.copy.name,
        restoreSeconds: outcome.restoreCommandMs / 1000,
        restoreSize: outcome.restoreSize,
        rtoSeconds: outcome.rto.totalSeconds,
        phases: Object.fromEntries(outcome.rto.phases.map((p) => [p.name, p.durationMs / 1000])),
        rtoCountedFrom: i === 0 ? "fault (kill of the primary)" : "start of this restore (after the previous copy was verified and removed)",
        timeline: outcome.timeline,
        timelineSwitchLsn: outcome.switchLsn,
        recoveryStop: outcome.recoveryStop,
        // WAL replayed on top of the backup: to T (pitr), to the end of the archive (latest: the switch point).
        walReplayed: (() => {
          const to = v === "pitr" ? target.lsn : outcome.switchLsn;
          return to && backup.lsn.start ? (safeSpan({ segment: backup.archiveStart, lsn: backup.lsn.start }, { segment: walSegmentOfLsn(to, target.timeline), lsn: to }) ?? null) : null;
        })(),
      };
      restoreEvidence[v] = ev;
      if (i === 0) rto = outcome.rto;
      checks.push(assertRtoWithin(outcome.rto.totalSeconds, objective.rto, `${v}: RTO (${i === 0 ? "fault" : "start of this restore"} -> first read on the restored node)`));

      await log.step(`${v}: verify the restored copy`, async (p) => {
        const vchecks: Check[] = [];
        const present = await withPg(outcome.config, (client) => presentSeqs(client, { fromSeq: firstSeq }));
        if (v === "pitr") {
          // The writer was paused around T: pausedAtMs splits the log exactly (nothing straddles T).
          const split = splitAtTarget(acknowledged, target.pausedAtMs);
          const ambiguous = new Set(split.ambiguous);
          vchecks.push(check("pitr: target time separates the writes", split.ambiguous.length === 0, split.ambiguous.length === 0 ? `${split.mustBePresent.length} writes acknowledged before T, ${split.mustBeAbsent.length} started after it, none in flight at T` : `${split.ambiguous.length} writes were in flight at T (seqs ${split.ambiguous.slice(0, 10).join(", ")}): the writer was not paused`));
          vchecks.push(assertRowsEqualAtTarget(split.mustBePresent, present.filter((s) => !ambiguous.has(s)), "pitr: acknowledged writes at T"));
          const digest = await withPg(outcome.config, (client) => workloadDigest(client));
          vchecks.push(assertDigestsEqual(target.digest, digest, "pitr: table digests at T"));
          ev.rows = { expected: split.mustBePresent.length, present: present.length, mustBeAbsent: split.mustBeAbsent.length };
        } else {
          const measured = measureRpo({ acknowledged, presentSeqs: present, uncertain });
          const gap = outcome.switchLsn ? safeGap(lastPrimaryLsn, outcome.switchLsn) : undefined;
          rpo = { ...measured, ...(gap !== undefined ? { walGapBytes: gap } : {}) };
          const rpoCheck = assertRpoWithin(measured, objective.rpo);
          vchecks.push({ ...rpoCheck, name: `latest: ${rpoCheck.name}` });
          // Recovery replays WAL in order: what survives is a prefix of what was acknowledged.
          const holes = acknowledged.filter((a) => !present.includes(a.seq) && measured.lastPresentAcknowledgedSeq !== null && a.seq < measured.lastPresentAcknowledgedSeq).map((a) => a.seq);
          vchecks.push(check("latest: restored writes are a prefix of the acknowledged ones", holes.length === 0, holes.length === 0 ? `every acknowledged write up to seq ${measured.lastPresentAcknowledgedSeq ?? "none"} present, ${measured.lostWrites} later ones lost (not yet archived at the fault)` : `${holes.length} acknowledged writes missing BEFORE the last one present (seqs ${holes.slice(0, 10).join(", ")}): the restore skipped WAL`));
          ev.rpo = {
            lostWrites: measured.lostWrites,
            rpoSeconds: measured.rpoSeconds,
            walGapBytes: gap ?? null,
            ghostWrites: measured.ghostWrites,
            // The drill switched WAL (to archive T) WRITES_BEFORE_DISASTER_MS before the fault: a fault at any
            // other moment loses up to archive_timeout of writes, plus the async push.
            worstCaseSeconds: t.postgres.archiveTimeoutSeconds,
            note: `fault ${WRITES_BEFORE_DISASTER_MS / 1000} s after a forced WAL switch; worst case about archive_timeout (${t.postgres.archiveTimeoutSeconds} s) + archive push`,
          };
        }
        // A fetch that errored (rather than "not found") stalls recovery for archive-timeout and can end it
        // early: pgBackRest 2.55's async archive-get at a timeline switch did (pgbackrest#2423).
        vchecks.push(
          check(
            `${v}: recovery fetched every WAL segment it asked for`,
            outcome.fetchErrors.length === 0,
            outcome.fetchErrors.length === 0 ? "no archive-get call errored in the restored node's log" : `archive-get errored (PostgreSQL takes it as "not there"): ${outcome.fetchErrors.map((f) => `${f.file}: ${f.error}`).join("; ")}; recovery stalls on such an error and may end early (async archive-get at a timeline switch: pgbackrest#2423)`,
            { objective: 0, measured: outcome.fetchErrors.length, unit: "failed fetches" },
          ),
        );
        vchecks.push(await amcheck(ctl, outcome.copy, t.postgres.database, v));
        vchecks.push(...(await archiveIsolation(ctl, outcome, repository, stanza, archiveId, archiveAtFault.names)));
        checks.push(...vchecks);
        const bad = vchecks.filter((x) => !x.ok);
        if (bad.length > 0) p.fail(bad.map((x) => x.detail).join("; "));
      });

      if (i === 0) {
        const copyRun = await log.step(`${v}: plain copy of the restored data directory (same machine)`, () => timePlainCopy(ctl, outcome.copy, snapshot.node.container.labels), (r) => `${formatDuration(r.copyMs)} for ${(r.bytes / 1048576).toFixed(1)} MiB; restore took ${formatDuration(outcome.restoreCommandMs)}`);
        evidence.restoreVsCopy = {
          restoreSeconds: outcome.restoreCommandMs / 1000,
          copySeconds: copyRun.copyMs / 1000,
          copiedBytes: copyRun.bytes,
          ratio: copyRun.copyMs > 0 ? round2(outcome.restoreCommandMs / copyRun.copyMs) : null,
          restorePlusRecoverySeconds: ((outcome.rto.phases.find((p) => p.name === "restore")?.durationMs ?? 0) + (outcome.rto.phases.find((p) => p.name === "recovery")?.durationMs ?? 0)) / 1000,
          note: "restore = the `pgbackrest restore` command (fetch + decompress + write + sync); copy = tar pipe of the same data directory without pg_wal (what the restore writes) + sync, in a container on the same engine",
        };
      }
      await log.step(`${v}: remove the restored copy`, async () => {
        await removeNodeCopy(outcome.copy);
        const at = copies.indexOf(outcome.copy);
        if (at >= 0) copies.splice(at, 1);
      });
    }
  } catch (e) {
    if (e instanceof PreDisasterStop) {
      log.warn(e.message);
      evidence.stoppedBeforeDisaster = e.message;
    } else {
      const message = e instanceof Error ? e.message : String(e);
      log.warn(`drill failed: ${message}`);
      checks.push(check("drill ran to the end", false, message));
    }
  } finally {
    if (writer) await writer.stop().catch(() => {});
    control?.end().catch(() => {});
    for (const copy of copies.splice(0)) await removeNodeCopy(copy).catch((e: Error) => log.warn(`could not remove ${copy.name}: ${e.message}`));
  }

  // -------------------------------------------------------------------------------------------- rebuild
  let stackHealthy = disaster === undefined;
  if (disaster) {
    const d = disaster;
    try {
      const restoredAtMs = await rebuildStack({ t, ctl, log, lost: d.primary, snapshot: d.snapshot, evidence });
      const seconds = (restoredAtMs - d.atMs) / 1000;
      if (rto) rto = { ...rto, redundancyRestoredSeconds: seconds };
      checks.push(check("stack back to primary + streaming replica", true, `${d.primary.name} rebuilt from the repository, replica(s) re-cloned and streaming ${formatSeconds(seconds)} after the fault`, { measured: seconds, unit: "s" }));
      const archiving = await log.step("archiving works on the rebuilt primary", async () => {
        const r = await ctl.exec(repository, ["pgbackrest", `--stanza=${stanza}`, `--archive-timeout=${opts.archiveCheckTimeoutSeconds ?? 30}`, "check"], { allowFailure: true, timeoutMs: 120_000 });
        return assertArchivingWorks({ code: r.code, output: r.stdout + r.stderr }, await archiverState(ctl, d.primary));
      }, (c) => (c.ok ? "pgbackrest check passed" : c.detail));
      checks.push({ ...archiving, name: "WAL archiving works on the rebuilt primary" });
      stackHealthy = true;
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      log.warn(`rebuild failed: ${message}`);
      checks.push(check("stack back to primary + streaming replica", false, `after the drill the stack is NOT redundant: ${message}; follow runbooks/postgres-pitr-restore.md "Rollback"`));
    }
  }

  // ------------------------------------------------------------------------------- the recovery window
  if (backupsBefore) {
    const labelsBefore = backupsBefore;
    await log.step("the recovery window as before the drill", async (p) => {
      // Only once the stack is whole again: until then the drill's backup may be the newest good one.
      if (ownBackup && labelsBefore.length === 0) log.info(`the drill's own backup ${ownBackup} is kept: it is the only backup the stack has`);
      else if (ownBackup && stackHealthy) {
        const r = await ctl.exec(repository, ["pgbackrest", `--stanza=${stanza}`, `--set=${ownBackup}`, "expire"], { allowFailure: true, timeoutMs: 600_000 });
        if (r.code !== 0) log.warn(`could not expire the drill's own backup ${ownBackup}: ${pgbackrestError(r.stdout + r.stderr)}`);
      } else if (ownBackup) log.warn(`the drill's own backup ${ownBackup} is kept: the stack is not whole again`);
      const after = (await repositoryInfo(ctl, repository, stanza)).state.backups.map((b) => b.label);
      evidence.backupsBefore = labelsBefore;
      evidence.backupsAfter = after;
      const c = assertRecoveryWindowKept(labelsBefore, after);
      checks.push(c);
      if (!c.ok) p.fail(c.detail);
      return c.ok ? c.detail : undefined;
    }, (detail) => detail).catch((e: Error) => {
      checks.push(check("recovery window kept", false, `could not read the repository after the drill: ${e.message}`));
    });
  }

  return concludeDrill(
    {
      drill: DRILL,
      stack: t.stack,
      runId,
      startedAtMs,
      objectives: { rtoSeconds: objective.rto, rpoSeconds: objective.rpo, maxBackupAgeSeconds: t.pgbackrest.maxBackupAgeSeconds },
      phases: log.phases(),
      rpo,
      rto,
      checks,
      evidence,
    },
    { reportsDir: opts.reportsDir, log },
  );
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

function safeSpan(from: { segment: string; lsn: string }, to: { segment: string; lsn: string }): WalSpan | undefined {
  try {
    return walSpan(from, to);
  } catch {
    return undefined;
  }
}

function safeGap(a: string, b: string): number | undefined {
  try {
    return walGapBytes(a, b);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------- restore

interface RestoreArgs {
  t: Topology;
  ctl: NodeControl;
  log: DrillLog;
  snapshot: NodeSnapshot;
  primary: TopologyNode;
  variant: RestoreVariant;
  target: TargetMark;
  backupLabel: string;
  fromMs: number;
  /** fromMs is the fault itself (the first restore), not the start of a later one. */
  fromIsFault: boolean;
  appUser: string;
  appPassword: string;
  copies: ControlledNode[];
  runId: string;
}

/**
 * A fresh node with the lost primary's identity (its hostname, certificate and /etc/homelab: a CN the
 * repository's tls-server-auth lets in), HOMELAB_ROLE=restore on an empty volume; `pgbackrest restore`;
 * `homelab-start`; a probe from `fromMs` until the first read once recovery is over.
 */
async function restoreToFreshNode(a: RestoreArgs): Promise<RestoreOutcome> {
  const { ctl, log, snapshot, primary, variant } = a;
  const container = primary.handle.kind === "docker" ? primary.handle.container : primary.hostname;
  const name = `${container}-restore-${variant}`;
  let config: ConnectionConfig | undefined;
  const probe = new Probe(pgPromotedReadProbe(() => config)).start();
  try {
    let nodeReadyAtMs = 0;
    const copy = await log.step(`${variant}: fresh node with the lost primary's identity`, async () => {
      const node = await createNodeCopy(snapshot, { name, nodeLabel: `${primary.name}-restore-${variant}`, env: { HOMELAB_ROLE: "restore" }, timeoutSeconds: 120 });
      a.copies.push(node);
      // Idle and healthy once the entrypoint installed pgbackrest.conf, the certificate and .pgpass.
      await ctl.waitHealthy(node, 120_000);
      const address = await publishedAddress(node, 5432);
      config = { host: address.host, port: address.port, user: a.appUser, password: a.appPassword, database: a.t.postgres.database };
      nodeReadyAtMs = Date.now();
      return node;
    }, (n) => `${n.handle.kind === "docker" ? n.handle.container : n.name} at ${config?.host}:${config?.port}, HOMELAB_ROLE=restore`);

    const argv = pgbackrestRestoreArgs({ stanza: a.t.pgbackrest.stanza, variant, targetTime: a.target.time, set: a.backupLabel });
    const restore = await log.step(`${variant}: ${argv.slice(1).join(" ")}`, async () => {
      const t0 = Date.now();
      const r = await ctl.exec(copy, argv, { allowFailure: true, timeoutMs: 6 * 3_600_000 });
      const t1 = Date.now();
      if (r.code !== 0) throw new Error(`pgbackrest restore failed (exit ${r.code}): ${pgbackrestError(r.stdout + r.stderr)}`);
      const size = /restore size = ([^,]+), file total = (\d+)/.exec(r.stdout + r.stderr);
      return { ms: t1 - t0, doneAtMs: t1, size: size ? `${size[1]} in ${size[2]} files` : null };
    }, (r) => `${formatDuration(r.ms)}${r.size ? `, ${r.size}` : ""}`);

    const startedAtMs = await log.step(`${variant}: homelab-start (recovery${variant === "pitr" ? " to T" : " to the end of the archive"}, promotion)`, async () => {
      const r = await ctl.exec(copy, ["homelab-start", "3600"], { allowFailure: true, timeoutMs: 3_700_000 });
      if (r.code !== 0) {
        const logs = await dockerLogs(copy);
        const why = explainRecoveryFailure(logs);
        throw new Error(`the restored node did not start: ${why ?? (r.stderr.trim() || `homelab-start exit ${r.code}`)}`);
      }
      return Date.now();
    });

    const firstReadAtMs = await log.step(`${variant}: first read on the restored node`, async () => {
      try {
        return await probe.waitForSuccessAfter(a.fromMs, 3_600_000);
      } catch (e) {
        const why = explainRecoveryFailure(await dockerLogs(copy));
        throw new Error(`${(e as Error).message}${why ? `; ${why}` : ""}`, { cause: e });
      }
    }, (at) => `${formatDuration(at - a.fromMs)} after the ${a.fromIsFault ? "fault" : "start of this restore"}`);
    await probe.stop();
    // homelab-start returns once postgres accepts connections, which with hot_standby can be before recovery
    // ends: the recovery phase ends at whichever came first.
    const breakdown = rtoPhases(
      [
        { name: "fresh node", atMs: nodeReadyAtMs },
        { name: "restore", atMs: restore.doneAtMs },
        { name: "recovery", atMs: Math.max(restore.doneAtMs, Math.min(startedAtMs, firstReadAtMs)) },
        { name: "first read", atMs: firstReadAtMs },
      ],
      a.fromMs,
    );
    const history = await psqlOnNode(ctl, copy, "SELECT coalesce((SELECT name || E'\\n' || pg_read_file('pg_wal/' || name) FROM pg_ls_waldir() WHERE name LIKE '%.history' ORDER BY name DESC LIMIT 1), '')");
    const [historyName = "", ...historyBody] = history.split("\n");
    const sw = parseTimelineHistory(historyBody.join("\n"));
    const logs = await dockerLogs(copy);
    const fetchErrors = archiveGetFailures(logs);
    const recoveryStop = logs.split("\n").filter((l) => /recovery stopping|last completed transaction|selected new timeline|redo done at/.test(l)).map((l) => l.replace(/^.*?(LOG|INFO):\s+/, "").trim());
    log.info(`${variant}: RTO ${formatDuration(breakdown.totalMs)} (${breakdown.phases.map((p) => `${p.name} ${formatDuration(p.durationMs)}`).join(", ")}); ${recoveryStop.join("; ")}`);
    return {
      variant,
      copy,
      config: config!,
      fromMs: a.fromMs,
      restoreCommandMs: restore.ms,
      rto: breakdown,
      timeline: historyName ? parseInt(historyName.slice(0, 8), 16) : null,
      switchLsn: sw?.switchpoint ?? null,
      recoveryStop,
      restoreSize: restore.size,
      fetchErrors,
    };
  } finally {
    await probe.stop();
  }
}

async function dockerLogs(node: ControlledNode): Promise<string> {
  if (node.handle.kind !== "docker") return "";
  const env = dockerEnv(node.handle.dockerHost);
  const r = await docker(["logs", "--tail", "400", node.handle.container], { env, allowFailure: true });
  return `${r.stdout}\n${r.stderr}`;
}

/**
 * `<indexes checked> <their names, comma-separated>` after bt_index_check (heapallindexed) over every btree
 * index of `tables` in schema public. Runs through `psql -c` (no bind parameters): the names are quoted
 * by node-postgres' escapeLiteral.
 */
export function amcheckSql(tables: readonly string[]): string {
  const names = tables.map((t) => escapeLiteral(t)).join(", ");
  // The copy inherits synchronous_standby_names: a commit would wait for standbys it will never have.
  // count(x.checked) makes every bt_index_check run (void::text is ''); an index that fails raises an error.
  return `SET synchronous_commit = local; CREATE EXTENSION IF NOT EXISTS amcheck; SELECT count(x.checked) || ' ' || coalesce(string_agg(x.relname, ',' ORDER BY x.relname), '') FROM (SELECT c.relname, bt_index_check(c.oid, true)::text AS checked FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam JOIN pg_class tb ON tb.oid = i.indrelid WHERE am.amname = 'btree' AND tb.relname IN (${names}) AND tb.relnamespace = 'public'::regnamespace) x`;
}

/** amcheck (bt_index_check with heapallindexed) over every btree index of the workload tables. */
async function amcheck(ctl: NodeControl, copy: ControlledNode, database: string, variant: RestoreVariant): Promise<Check> {
  const name = `${variant}: amcheck on the workload's indexes`;
  try {
    const out = await psqlOnNode(ctl, copy, amcheckSql(WORKLOAD_TABLES), { database, timeoutMs: 600_000 });
    const [count = "0", list = ""] = out.trim().split(/\s+/, 2);
    const n = Number(count);
    return check(name, n > 0, n > 0 ? `${n} btree indexes clean (bt_index_check, heapallindexed): ${list}` : "no btree index of the workload tables found to check");
  } catch (e) {
    return check(name, false, `amcheck failed: ${(e as Error).message}`);
  }
}

/**
 * The copy must not archive into the live stanza: archive_mode off on it, and after a forced WAL switch on
 * the copy the repository holds exactly the segments it held at the fault (nobody else archives then: the
 * primary is gone, a standby with archive_mode=on does not archive) and no history file of its timeline.
 */
async function archiveIsolation(ctl: NodeControl, outcome: RestoreOutcome, repository: TopologyNode, stanza: string, archiveId: string | undefined, atFault: readonly string[]): Promise<Check[]> {
  const v = outcome.variant;
  const mode = (await psqlOnNode(ctl, outcome.copy, "SHOW archive_mode")).trim();
  const out: Check[] = [check(`${v}: archive_mode off on the restored copy`, mode === "off", `SHOW archive_mode = ${mode}${mode === "off" ? "" : ": the copy archives into the live stanza (restore without --archive-mode=off?)"}`)];
  const switched = (await psqlOnNode(ctl, outcome.copy, "SELECT pg_walfile_name(pg_switch_wal())")).trim();
  await sleep(1500);
  const now = await archivedNames(ctl, repository, stanza, archiveId);
  const before = new Set(atFault);
  const added = now.names.filter((n) => !before.has(n));
  const ownHistory = outcome.timeline !== null && now.timelineHistories.includes(outcome.timeline);
  const ok = added.length === 0 && !ownHistory;
  out.push(
    check(
      `${v}: restored copy archived nothing into the stanza`,
      ok,
      ok
        ? `after a WAL switch on the copy (timeline ${outcome.timeline ?? "?"}, segment ${switched}) the repository still holds the ${atFault.length} segments it held at the fault, newest ${atFault[atFault.length - 1] ?? "none"}`
        : `the repository changed while only the copy ran: ${added.length} new segment(s) ${added.slice(0, 5).join(", ")}${ownHistory ? `, history file of the copy's timeline ${outcome.timeline}` : ""}`,
    ),
  );
  return out;
}

/**
 * The same data directory copied on the same engine: tar of PGDATA without pg_wal (what `pgbackrest
 * restore` writes; recovery fills pg_wal afterwards) into a new volume, then sync. The restored copy is
 * stopped first so nothing changes under the copy.
 */
async function timePlainCopy(ctl: NodeControl, copy: ControlledNode, stackLabels: Record<string, string>): Promise<{ copyMs: number; bytes: number }> {
  if (copy.handle.kind !== "docker") throw new Error("plain copy timing needs a docker node");
  const env = dockerEnv(copy.handle.dockerHost);
  const source = copy.dataVolumes[0];
  if (!source) throw new Error(`${copy.name} has no data volume`);
  await ctl.stop(copy, 60);
  const target = `${copy.handle.container}-plaincopy`;
  const labels = Object.entries(stackLabels).filter(([k]) => k.startsWith("dev.homelab-data.") && k !== "dev.homelab-data.node");
  const labelArgs = [...labels, ["dev.homelab-data.drill-scratch", "true"], ["dev.homelab-data.retain-on-destroy", "false"]].flatMap(([k, v]) => ["--label", `${k}=${v}`]);
  await docker(["volume", "create", ...labelArgs, target], { env });
  try {
    const image = (await docker(["inspect", "--format", "{{.Config.Image}}", copy.handle.container], { env })).stdout.trim();
    // Timed inside the container (date +%s%N), so container start-up is not counted.
    const script = "set -e; s=$(date +%s%N); (cd /src && tar --exclude='./pg_wal/*' -cf - .) | (cd /dst && tar -xpf -); sync -f /dst; e=$(date +%s%N); echo \"$(( (e - s) / 1000000 )) $(du -sb /dst | cut -f1)\"";
    const r = await docker(["run", "--rm", ...labelArgs, "--network", "none", "--entrypoint", "sh", "-v", `${source}:/src:ro`, "-v", `${target}:/dst`, image, "-c", script], { env, timeoutMs: 6 * 3_600_000 });
    const [ms = "", bytes = ""] = r.stdout.trim().split(/\s+/);
    if (!/^\d+$/.test(ms) || !/^\d+$/.test(bytes)) throw new Error(`plain copy printed ${JSON.stringify(r.stdout.trim())}`);
    return { copyMs: Number(ms), bytes: Number(bytes) };
  } finally {
    await docker(["volume", "rm", "-f", target], { env, allowFailure: true });
  }
}

// ---------------------------------------------------------------------------------------------- rebuild

/**
 * Back to primary + streaming replica, roles as before: the lost primary rebuilt on its own (empty) volume
 * from the repository (HOMELAB_ROLE=primary-from-backup: latest backup + the whole archive, then promotion
 * on a new timeline that continues the archive), then put back on the env the stack gave it; every replica,
 * which streamed WAL past the end of the archive on the old timeline and so cannot follow the new one,
 * re-cloned from it. Returns when every replica streams.
 */
async function rebuildStack(a: { t: Topology; ctl: NodeControl; log: DrillLog; lost: TopologyNode; snapshot: NodeSnapshot; evidence: Record<string, unknown> }): Promise<number> {
  const { t, ctl, log, lost, snapshot } = a;
  await log.step(`rebuild ${lost.name} from the repository (primary-from-backup)`, async () => {
    await rebuildNode(snapshot, { env: { HOMELAB_ROLE: "primary-from-backup" }, timeoutSeconds: 3_600 });
  });
  // Back on exactly the container the stack made (a later `pulumi up` finds what it created); the
  // entrypoint runs an existing cluster by its data directory, whatever HOMELAB_ROLE says (ADR 0011).
  await log.step(`${lost.name} back on the stack's own container (a primary by its data directory)`, async () => {
    await recreateContainer(snapshot, { timeoutSeconds: 600 });
  });
  const replicas = pgNodes(t).filter((n) => n.name !== lost.name);
  for (const replica of replicas) {
    await log.step(`re-clone ${replica.name} from ${lost.name}`, async () => {
      const snap = await snapshotDockerNode(replica);
      await ctl.stop(replica, 60);
      await ctl.removeDataVolumes(replica);
      // Cloned from the rebuilt node; the clone's standby.signal then keeps it a standby on the stack's env.
      await rebuildNode(snap, { env: { HOMELAB_ROLE: "replica", HOMELAB_PRIMARY_HOST: lost.hostname }, timeoutSeconds: 3_600 });
      await recreateContainer(snap, { timeoutSeconds: 600 });
    });
  }
  return log.step("primary + streaming replica again", async () => {
    const want = replicas.map((r) => r.container.env.HOMELAB_APPLICATION_NAME ?? r.name.replace(/-/g, "_"));
    let rows = "";
    await waitFor(
      `replicas ${want.join(", ")} streaming from ${lost.name}`,
      async () => {
        rows = await psqlOnNode(ctl, lost, "SELECT coalesce(string_agg(application_name || ':' || state, ',' ORDER BY application_name), '') FROM pg_stat_replication");
        const streaming = new Set(rows.split(",").filter((r) => r.endsWith(":streaming")).map((r) => r.split(":")[0]));
        return want.every((n) => streaming.has(n));
      },
      { timeoutMs: 300_000, state: () => `pg_stat_replication: ${rows || "empty"}` },
    );
    const primary = await currentPrimary(t, ctl);
    if (primary.name !== lost.name) throw new Error(`${primary.name} answers as primary, expected the rebuilt ${lost.name}`);
    a.evidence.rebuilt = { primary: lost.name, streaming: rows, timeline: (await psqlOnNode(ctl, lost, "SELECT timeline_id FROM pg_control_checkpoint()")).trim() };
    return Date.now();
  }, () => `${lost.name} primary, streaming: ${String((a.evidence.rebuilt as { streaming?: string } | undefined)?.streaming ?? "")}`);
}

// ---------------------------------------------------------------------------------------------- main
// `npx tsx drills/backup-restore.mts --stack <stack> | --topology <file.json> [--variant ...] [--reports <dir>]`:
// the flags and the runner of `homelab drill backup-restore`, defined once in cli/drill-commands.ts.
runIfMain(import.meta.url, "backup-restore");
