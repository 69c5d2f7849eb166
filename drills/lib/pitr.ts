// What a point-in-time-restore drill checks before it destroys anything and measures after it restored:
// WAL segment arithmetic, archive continuity from the repository's own listing (`pgbackrest repo-ls`), the
// preflight checks (archiving works, newest backup within policy, no segment missing), the restore command,
// why a recovery failed, and a read probe that only counts once the restored copy has left recovery.
// Pure functions are unit-tested (test/unit/drills-pitr.test.ts); the *OnNode helpers only run commands.
// WAL file naming: PostgreSQL src/include/access/xlog_internal.h (XLogFileName, XLByteToSeg).
import pg from "pg";
import { check, type Check } from "./assert.ts";
import { isWalSegment, type RepositoryBackup } from "./archive.ts";
import { formatSeconds, parseLsn } from "./measure.ts";
import type { ControlledNode, NodeControl } from "./nodes.ts";
import type { ConnectionConfig } from "./writer.ts";

/** initdb's default --wal-segsize (16 MiB); the stack never changes it. */
export const WAL_SEGMENT_BYTES = 16 * 1024 * 1024;

export interface WalSegment {
  timeline: number;
  /** Segment number: LSN / segment size. */
  segno: bigint;
}

function segmentsPerXLogId(segmentBytes: number): bigint {
  return 0x100000000n / BigInt(segmentBytes);
}

/** "000000010000000A000000FF" -> timeline 1, segno 0xA * 256 + 0xFF (16 MiB segments). */
export function parseWalSegmentName(name: string, segmentBytes = WAL_SEGMENT_BYTES): WalSegment {
  if (!isWalSegment(name)) throw new RangeError(`not a WAL segment name: ${JSON.stringify(name)} (24 upper-case hex digits)`);
  const log = BigInt(`0x${name.slice(8, 16)}`);
  const seg = BigInt(`0x${name.slice(16, 24)}`);
  const perId = segmentsPerXLogId(segmentBytes);
  if (seg >= perId) throw new RangeError(`not a WAL segment name for ${segmentBytes}-byte segments: ${name} (segment part ${name.slice(16)} >= ${perId.toString(16).toUpperCase()})`);
  return { timeline: parseInt(name.slice(0, 8), 16), segno: log * perId + seg };
}

export function walSegmentName(segment: WalSegment, segmentBytes = WAL_SEGMENT_BYTES): string {
  const perId = segmentsPerXLogId(segmentBytes);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, "0");
  return `${hex(segment.timeline)}${hex(segment.segno / perId)}${hex(segment.segno % perId)}`;
}

/** The segment holding the byte at `lsn` (XLByteToSeg; pg_walfile_name() answers the previous segment on a boundary). */
export function walSegmentOfLsn(lsn: string, timeline: number, segmentBytes = WAL_SEGMENT_BYTES): string {
  return walSegmentName({ timeline, segno: parseLsn(lsn) / BigInt(segmentBytes) }, segmentBytes);
}

// ----------------------------------------------------------------------------------------------- listing

/** An archived WAL file as `pgbackrest repo-ls` shows it: `<archiveId>/<TTTTTTTTLLLLLLLL>/<segment>-<sha1>[.<ext>]`. */
export interface ArchivedSegment {
  archiveId: string;
  segment: string;
  path: string;
}

const ARCHIVED_FILE = /^(?:(.+)\/)?[0-9A-F]{16}\/([0-9A-F]{24})-[0-9a-f]{40}(?:\.[a-z0-9]+)?$/;

/**
 * Whole WAL segments from `pgbackrest repo-ls --recurse --output=json archive/<stanza>` (paths relative to
 * that folder). Partial segments (`.partial`, pushed at a promotion), backup labels (`.backup`) and timeline
 * history files are not segments a recovery replays in order, and are left out.
 */
export function parseArchiveListing(text: string): ArchivedSegment[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`pgbackrest repo-ls did not print JSON (${(e as Error).message}): ${text.slice(0, 200)}`, { cause: e });
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error("pgbackrest repo-ls printed no JSON object");
  const out: ArchivedSegment[] = [];
  for (const [path, entry] of Object.entries(value as Record<string, { type?: string }>)) {
    if (entry?.type !== "file") continue;
    const m = ARCHIVED_FILE.exec(path);
    if (!m) continue;
    out.push({ archiveId: m[1] ?? "", segment: m[2]!, path });
  }
  return out.sort((a, b) => (a.segment < b.segment ? -1 : a.segment > b.segment ? 1 : a.archiveId.localeCompare(b.archiveId)));
}

/** Timeline history files (`00000002.history`) in the same listing: which timelines reached the archive. */
export function archivedTimelineHistories(text: string): number[] {
  const value = JSON.parse(text) as Record<string, { type?: string }>;
  const out = new Set<number>();
  for (const [path, entry] of Object.entries(value)) {
    const m = /(?:^|\/)([0-9A-F]{8})\.history$/.exec(path);
    if (entry?.type === "file" && m) out.add(parseInt(m[1]!, 16));
  }
  return [...out].sort((a, b) => a - b);
}

const FIRST_N = 10;

export interface WalGap {
  /** Last segment present before the gap, and the first one after it. */
  after: string;
  before: string;
  /** Missing segment names (the first 10), on the timeline of `after`. */
  missing: string[];
  missingCount: number;
}

/**
 * Holes in the archive from `fromSegment` (e.g. the oldest backup's first WAL) to the newest archived segment:
 * segment numbers no timeline holds. Timelines are merged (a new timeline starts inside the segment its parent
 * ended in), so a gap is a span of segment numbers missing on every timeline. `from` before the first
 * archived segment counts too: the segments a backup needs first are part of what must be there.
 */
export function archiveGaps(archived: readonly string[], fromSegment?: string, segmentBytes = WAL_SEGMENT_BYTES): WalGap[] {
  const parsed = [...new Set(archived)].map((name) => ({ name, ...parseWalSegmentName(name, segmentBytes) }));
  parsed.sort((a, b) => (a.segno < b.segno ? -1 : a.segno > b.segno ? 1 : a.timeline - b.timeline));
  const gaps: WalGap[] = [];
  const from = fromSegment ? parseWalSegmentName(fromSegment, segmentBytes) : undefined;
  const relevant = from ? parsed.filter((p) => p.segno >= from.segno) : parsed;
  const first = relevant[0];
  if (from && (!first || first.segno > from.segno)) {
    // Nothing at the start itself: the segments from `from` up to the first one present are missing.
    const end = first ? first.segno : from.segno + 1n;
    gaps.push(gapOf(from.timeline, from.segno, end, fromSegment!, first?.name ?? "(none)", segmentBytes, true));
  }
  for (let i = 1; i < relevant.length; i++) {
    const prev = relevant[i - 1]!;
    const next = relevant[i]!;
    if (next.segno > prev.segno + 1n) gaps.push(gapOf(prev.timeline, prev.segno + 1n, next.segno, prev.name, next.name, segmentBytes, false));
  }
  return gaps;
}

function gapOf(timeline: number, startSegno: bigint, endSegno: bigint, after: string, before: string, segmentBytes: number, includesStart: boolean): WalGap {
  const missing: string[] = [];
  for (let s = startSegno; s < endSegno && missing.length < FIRST_N; s++) missing.push(walSegmentName({ timeline, segno: s }, segmentBytes));
  // "after" names the last segment present before the hole; when the hole starts at `from` itself there is none.
  return { after: includesStart ? "(none before it)" : after, before, missing, missingCount: Number(endSegno - startSegno) };
}

/**
 * Segments a recovery from `from` to `to` replays that the archive lacks. A segment number counts as present
 * on `to`'s timeline or on any earlier one down to `from`'s (the WAL before a timeline switch lives on the
 * parent's segments). Names are on `to`'s timeline when missing.
 */
export function missingWalSegments(archived: readonly string[], from: string, to: string, segmentBytes = WAL_SEGMENT_BYTES): { missing: string[]; missingCount: number } {
  const a = parseWalSegmentName(from, segmentBytes);
  const b = parseWalSegmentName(to, segmentBytes);
  if (b.segno < a.segno) throw new RangeError(`WAL range ${from}..${to} runs backwards`);
  const present = new Set<bigint>();
  for (const name of archived) {
    const p = parseWalSegmentName(name, segmentBytes);
    if (p.timeline >= a.timeline && p.timeline <= b.timeline) present.add(p.segno);
  }
  const missing: string[] = [];
  let missingCount = 0;
  for (let s = a.segno; s <= b.segno; s++) {
    if (present.has(s)) continue;
    missingCount++;
    if (missing.length < FIRST_N) missing.push(walSegmentName({ timeline: b.timeline, segno: s }, segmentBytes));
  }
  return { missing, missingCount };
}

// ----------------------------------------------------------------------------------------------- checks

/** "newest backup within policy": fails naming "newest backup older than policy" and by how much. */
export function assertBackupFresh(newest: RepositoryBackup | null, maxAgeSeconds: number, nowMs: number): Check {
  const name = "newest backup within policy";
  if (!newest) return check(name, false, `no backup in the repository: nothing to restore (policy: newest backup at most ${formatSeconds(maxAgeSeconds)} old)`, { objective: maxAgeSeconds, measured: "none", unit: "s" });
  const ageSeconds = Math.max(0, (nowMs - newest.stopMs) / 1000);
  const ok = ageSeconds <= maxAgeSeconds;
  const detail = ok
    ? `newest backup ${newest.label} (${newest.type}) finished ${formatSeconds(ageSeconds)} ago, within the policy's ${formatSeconds(maxAgeSeconds)}`
    : `newest backup older than policy: ${newest.label} (${newest.type}) finished ${formatSeconds(ageSeconds)} ago, policy allows ${formatSeconds(maxAgeSeconds)} (exceeded by ${formatSeconds(ageSeconds - maxAgeSeconds)}); are the scheduled backups running (repository crontab, \`docker logs\` of the repository node)?`;
  return check(name, ok, detail, { objective: maxAgeSeconds, measured: Math.round(ageSeconds * 10) / 10, unit: "s" });
}

/**
 * "a backup existed before the drill": a disaster restores what the repository already holds, so the drill
 * restores the newest existing backup. With none (a stack that never backed up) the drill takes one to
 * rehearse the restore at all, and this check fails: a real disaster would have had nothing to restore.
 */
export function assertBackupExisted(newest: RepositoryBackup | null, nowMs: number, opts: { freshLabel?: string } = {}): Check {
  const name = "a backup existed before the drill";
  if (!newest) {
    return check(name, false, `the repository held no backup before the drill: a disaster would have had nothing to restore${opts.freshLabel ? ` (the drill took ${opts.freshLabel} to rehearse the restore)` : ""}; schedule backups (pgbackrest.schedules) or run \`pgbackrest backup\` on the repository node`, { objective: 1, measured: 0, unit: "backups" });
  }
  return check(name, true, `newest backup ${newest.label} (${newest.type}) finished ${formatSeconds(Math.max(0, (nowMs - newest.stopMs) / 1000))} before the drill`, { objective: 1, measured: 1, unit: "backups" });
}

/** The WAL a restore of a backup replays to reach `toLsn`: from the backup's start, segments and bytes. */
export interface WalSpan {
  fromSegment: string;
  toSegment: string;
  fromLsn: string;
  toLsn: string;
  /** Segment numbers from..to inclusive (a timeline switch on the way reuses the segment it forked in). */
  segments: number;
  bytes: number;
}

export function walSpan(from: { segment: string; lsn: string }, to: { segment: string; lsn: string }, segmentBytes = WAL_SEGMENT_BYTES): WalSpan {
  const a = parseWalSegmentName(from.segment, segmentBytes);
  const b = parseWalSegmentName(to.segment, segmentBytes);
  if (b.segno < a.segno) throw new RangeError(`WAL span ${from.segment}..${to.segment} runs backwards`);
  const bytes = Number(parseLsn(to.lsn) - parseLsn(from.lsn));
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`WAL span ${from.lsn}..${to.lsn}: end before start`);
  return { fromSegment: from.segment, toSegment: to.segment, fromLsn: from.lsn, toLsn: to.lsn, segments: Number(b.segno - a.segno) + 1, bytes };
}

/** One backup or archive id in `pgbackrest verify --output=text --verbose`, with its file counts. */
export interface VerifiedItem {
  kind: "backup" | "archive";
  /** Backup label, or archive id (`17-1`). */
  name: string;
  /** `valid`/`invalid` for a backup; archives carry none (their counts say it). */
  status: string | null;
  checked: number;
  valid: number;
  missing: number;
  checksumInvalid: number;
  sizeInvalid: number;
  other: number;
}

export interface VerifyResult {
  /** The stanza's overall status line (`ok`, `error`). */
  status: string | null;
  items: VerifiedItem[];
}

const count = (line: string, key: string): number => Number(new RegExp(`${key}: (\\d+)`).exec(line)?.[1] ?? 0);

/**
 * `pgbackrest --stanza=<s> --output=text --verbose verify` output (pgBackRest 2.55; the command exits 0 even
 * when it finds damage, so the text is what tells): every archive id and backup with its checked/valid file
 * counts and the kinds of damage on the line below it. Log lines (INFO/WARN ...) are ignored.
 */
export function parseVerifyText(text: string): VerifyResult {
  const lines = text.split("\n").filter((l) => !/^\d{4}-\d\d-\d\d /.test(l));
  let status: string | null = null;
  const items: VerifiedItem[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const overall = /^status: (\S+)/.exec(line);
    if (overall && status === null) status = overall[1]!;
    const backup = /^backup: (\S+), status: (\S+), total files checked: (\d+), total valid files: (\d+)/.exec(line);
    const archive = /^archiveId: (\S+), total WAL checked: (\d+), total valid WAL: (\d+)/.exec(line);
    if (!backup && !archive) continue;
    // With the console at info level the same report also appears inside a log line: count each item once.
    if (items.some((it) => it.kind === (backup ? "backup" : "archive") && it.name === (backup ?? archive)![1])) continue;
    const damage = (lines[i + 1] ?? "").trim().startsWith("missing:") ? lines[i + 1]!.trim() : "";
    items.push({
      kind: backup ? "backup" : "archive",
      name: (backup ?? archive)![1]!,
      status: backup ? backup[2]! : null,
      checked: Number(backup ? backup[3] : archive![2]),
      valid: Number(backup ? backup[4] : archive![3]),
      missing: count(damage, "missing"),
      checksumInvalid: count(damage, "checksum invalid"),
      sizeInvalid: count(damage, "size invalid"),
      other: count(damage, "other"),
    });
  }
  return { status, items };
}

/**
 * "every backup and the archive verify": `pgbackrest verify` over the whole estate found nothing damaged.
 * Fails naming each bad backup label or archive id, how many of its files are bad and how.
 */
export function assertEstateVerified(result: VerifyResult, run: { code: number; output: string }): Check {
  const name = "every backup and the archive verify";
  if (run.code !== 0) return check(name, false, `pgbackrest verify failed (exit ${run.code}): ${pgbackrestError(run.output)}`);
  const backups = result.items.filter((i) => i.kind === "backup");
  if (backups.length === 0) return check(name, false, `pgbackrest verify listed no backup (status ${result.status ?? "unknown"}): nothing to restore`);
  const bad = result.items.filter((i) => i.valid < i.checked || (i.status !== null && i.status !== "valid") || i.missing + i.checksumInvalid + i.sizeInvalid + i.other > 0);
  const describe = (i: VerifiedItem) => {
    const kinds = (["missing", "checksumInvalid", "sizeInvalid", "other"] as const).filter((k) => i[k] > 0).map((k) => `${k === "checksumInvalid" ? "checksum invalid" : k === "sizeInvalid" ? "size invalid" : k}: ${i[k]}`);
    const what = i.kind === "backup" ? `backup ${i.name} ${i.status ?? "invalid"}` : `WAL archive ${i.name}`;
    return `${what}: ${i.checked - i.valid} of ${i.checked} ${i.kind === "backup" ? "files" : "WAL files"} bad (${kinds.join(", ") || "not valid"})`;
  };
  const wal = result.items.filter((i) => i.kind === "archive").reduce((n, i) => n + i.checked, 0);
  if (bad.length === 0 && result.status === "ok") {
    return check(name, true, `${backups.length} backup${backups.length === 1 ? "" : "s"} (${backups.map((b) => b.name).join(", ")}) and ${wal} archived WAL files valid`, { objective: 0, measured: 0, unit: "bad files" });
  }
  const badFiles = bad.reduce((n, i) => n + (i.checked - i.valid), 0);
  return check(name, false, bad.length > 0 ? `pgbackrest verify found damage: ${bad.map(describe).join("; ")}` : `pgbackrest verify says status ${result.status ?? "unknown"}`, { objective: 0, measured: badFiles, unit: "bad files" });
}

/**
 * "recovery window kept": every backup the repository held before a drill is still there after it, so the
 * oldest point a restore can reach is unchanged (a drill that expires backups shrinks the very window it
 * claims to prove). Labels are pgBackRest's (`20261202-055118F`), which sort by time.
 */
export function assertRecoveryWindowKept(before: readonly string[], after: readonly string[]): Check {
  const name = "recovery window kept";
  const lost = before.filter((l) => !after.includes(l));
  const oldestBefore = [...before].sort()[0] ?? null;
  const oldestAfter = [...after].sort()[0] ?? null;
  // With nothing before the drill (its own backup kept: the only one there is), nothing can have shrunk.
  if (lost.length === 0 && (oldestBefore === oldestAfter || oldestBefore === null)) {
    return check(name, true, `every backup from before the drill is still there (${before.length}: ${before.join(", ") || "none"}); oldest restore point ${oldestBefore ?? "none"} unchanged`, { objective: 0, measured: 0, unit: "backups lost" });
  }
  return check(name, false, `the drill shrank the recovery window: backup${lost.length === 1 ? "" : "s"} ${lost.join(", ") || "none"} gone (oldest restore point was ${oldestBefore ?? "none"}, now ${oldestAfter ?? "none"})`, { objective: 0, measured: lost.length, unit: "backups lost" });
}

export function describeGaps(gaps: readonly WalGap[]): string {
  return gaps
    .map((g) => {
      const names = g.missingCount > g.missing.length ? `${g.missing.join(", ")}, … (${g.missingCount} in all)` : g.missing.join(", ");
      return `WAL segment${g.missingCount === 1 ? "" : "s"} ${names} missing from the repository (between ${g.after} and ${g.before})`;
    })
    .join("; ");
}

/** "WAL archive continuous": every segment from `fromSegment` (oldest backup's start) to the newest archived. */
export function assertArchiveContinuous(gaps: readonly WalGap[], range: { fromSegment: string | null; newestArchived: string | null }): Check {
  const name = "WAL archive continuous";
  const span = `${range.fromSegment ?? "?"} .. ${range.newestArchived ?? "?"}`;
  if (!range.fromSegment || !range.newestArchived) return check(name, false, `cannot check archive continuity: ${!range.fromSegment ? "no backup names its first WAL segment" : "the archive holds no WAL segment"}`);
  if (gaps.length === 0) return check(name, true, `no WAL segment missing from ${span}`, { objective: 0, measured: 0, unit: "missing segments" });
  const count = gaps.reduce((n, g) => n + g.missingCount, 0);
  return check(name, false, `${describeGaps(gaps)}: a restore cannot replay past it (checked ${span})`, { objective: 0, measured: count, unit: "missing segments" });
}

/** The primary's pg_stat_archiver and archive_command: what "archive_command failing" looks like from PostgreSQL. */
export interface ArchiverState {
  archiveMode: string;
  archiveCommand: string;
  archivedCount: number;
  lastArchivedWal: string | null;
  lastArchivedTime: string | null;
  failedCount: number;
  lastFailedWal: string | null;
  lastFailedTime: string | null;
}

export const ARCHIVER_STATE_SQL =
  "select json_build_object('archiveMode', current_setting('archive_mode'), 'archiveCommand', current_setting('archive_command'), 'archivedCount', archived_count, 'lastArchivedWal', last_archived_wal, 'lastArchivedTime', last_archived_time, 'failedCount', failed_count, 'lastFailedWal', last_failed_wal, 'lastFailedTime', last_failed_time) from pg_stat_archiver";

/** The archiver failed more recently than it succeeded: archive_command is failing now. */
export function archiverFailing(a: ArchiverState): boolean {
  if (!a.lastFailedTime) return false;
  if (!a.lastArchivedTime) return true;
  return Date.parse(a.lastFailedTime) > Date.parse(a.lastArchivedTime);
}

/** The `ERROR: [nnn]: ...` line of a pgBackRest run (with its continuation lines), or the last line of output. */
export function pgbackrestError(output: string): string {
  const lines = output.split("\n");
  const i = lines.findIndex((l) => /\bERROR: \[\d+\]:/.test(l));
  if (i < 0) return lines.map((l) => l.trim()).filter(Boolean).slice(-1)[0] ?? "(no output)";
  const parts = [lines[i]!.replace(/^.*?\bERROR: /, "ERROR: ").trim()];
  for (const l of lines.slice(i + 1)) {
    if (!/^\s{20,}\S/.test(l) || /HINT:/.test(l)) break;
    parts.push(l.trim());
  }
  return parts.join(" ");
}

/**
 * "WAL archiving works": `pgbackrest check` (from the repository node: forces a WAL switch on the primary and
 * waits for the segment in the repository) passed, and the primary's archiver is not failing right now.
 */
export function assertArchivingWorks(checkRun: { code: number; output: string }, archiver: ArchiverState | null): Check {
  const name = "WAL archiving works";
  const state = archiver
    ? `archive_mode=${archiver.archiveMode}, archive_command='${archiver.archiveCommand}', pg_stat_archiver: ${archiver.archivedCount} archived (last ${archiver.lastArchivedWal ?? "none"} at ${archiver.lastArchivedTime ?? "never"}), ${archiver.failedCount} failed (last ${archiver.lastFailedWal ?? "none"} at ${archiver.lastFailedTime ?? "never"})`
    : "primary's pg_stat_archiver not readable";
  if (checkRun.code !== 0) return check(name, false, `archive_command failing: pgbackrest check failed (exit ${checkRun.code}): ${pgbackrestError(checkRun.output)}; ${state}`);
  if (archiver && archiverFailing(archiver)) return check(name, false, `archive_command failing: the archiver's last attempt failed (${archiver.lastFailedWal} at ${archiver.lastFailedTime}) after its last success; ${state}`);
  if (archiver && archiver.archiveMode === "off") return check(name, false, `archive_mode is off on the primary: nothing reaches the repository; ${state}`);
  return check(name, true, `pgbackrest check passed (a forced WAL switch reached the repository); ${state}`);
}

// ----------------------------------------------------------------------------------------------- restore

export type RestoreVariant = "pitr" | "latest";

/**
 * `pgbackrest restore` for a fresh node (components/postgres/image/README.md "Drill recipes"). Both variants
 * keep the copy from archiving into the live stanza (--archive-mode=off: written to postgresql.auto.conf).
 * pitr: replay to `targetTime` and promote there (without --target-action=promote PostgreSQL pauses at the
 * target); latest: the whole archive, then promotion (recovery's end).
 */
export function pgbackrestRestoreArgs(o: { stanza: string; variant: RestoreVariant; targetTime?: string; set?: string }): string[] {
  const args = ["pgbackrest", `--stanza=${o.stanza}`, "restore"];
  if (o.set) args.push(`--set=${o.set}`);
  if (o.variant === "pitr") {
    if (!o.targetTime) throw new Error("a pitr restore needs a target time");
    args.push("--type=time", `--target=${o.targetTime}`, "--target-action=promote");
  } else args.push("--type=default");
  args.push("--archive-mode=off");
  return args;
}

/**
 * Why PostgreSQL on a restored node did not come up, from its log: the FATAL/PANIC lines, and the WAL
 * segments pgBackRest's archive-get could not find (a segment missing from the repository stops recovery
 * short of its target: "recovery ended before configured recovery target was reached").
 */
export function explainRecoveryFailure(log: string): string | undefined {
  const fatal = [...log.matchAll(/\b(?:FATAL|PANIC):\s+(.*)$/gm)].map((m) => m[1]!.trim());
  const notFound = [...new Set([...log.matchAll(/unable to find ([0-9A-F]{24}) in the archive/g)].map((m) => m[1]!))];
  const parts: string[] = [];
  if (fatal.length > 0) parts.push([...new Set(fatal)].slice(-3).join(" | "));
  // archive-get always ends by not finding the segment after the last one: only worth naming with a FATAL.
  if (fatal.length > 0 && notFound.length > 0) parts.push(`archive-get could not find WAL segment ${notFound.slice(-1)[0]} in the repository`);
  return parts.length > 0 ? parts.join("; ") : undefined;
}

/** One restore_command call that ERRORED (not "not found"): the WAL file it was asked for and pgBackRest's error. */
export interface ArchiveGetFailure {
  file: string;
  error: string;
}

/**
 * archive-get calls of a restored node's log that ended in an error rather than "unable to find": PostgreSQL
 * takes any failure as "not there", so a fetch that errored for a file the repository holds (pgBackRest
 * 2.55's async race at a timeline switch, pgbackrest#2423: `[082]` after archive-timeout) stalls recovery
 * and can end it early. restore_command runs serially, so each `command end` closes the last `begin`.
 */
export function archiveGetFailures(log: string): ArchiveGetFailure[] {
  const out: ArchiveGetFailure[] = [];
  let file: string | undefined;
  let error: string | undefined;
  for (const line of log.split("\n")) {
    const begin = /archive-get command begin [^:]*: \[([^,\]]+)/.exec(line);
    if (begin) {
      file = begin[1]!.trim();
      error = undefined;
      continue;
    }
    const err = /\bERROR: (\[\d+\]: .*)$/.exec(line);
    if (err && file) error = err[1]!.trim();
    const aborted = /archive-get command end: aborted with exception \[(\d+)\]/.exec(line);
    if (aborted && file) {
      out.push({ file, error: error ?? `[${aborted[1]}]` });
      file = undefined;
    }
  }
  return out;
}

// ----------------------------------------------------------------------------------------------- on nodes

/** Whole archived segments of `stanza` on the repository node (`pgbackrest repo-ls`), ascending. */
export async function archivedSegmentsOnNode(ctl: NodeControl, repository: ControlledNode, stanza: string): Promise<{ segments: ArchivedSegment[]; timelineHistories: number[] }> {
  const r = await ctl.exec(repository, ["pgbackrest", `--stanza=${stanza}`, "repo-ls", "--recurse", "--output=json", `archive/${stanza}`], { allowFailure: true, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${repository.name}: pgbackrest repo-ls archive/${stanza} failed (exit ${r.code}): ${pgbackrestError(r.stderr + r.stdout)}`);
  return { segments: parseArchiveListing(r.stdout), timelineHistories: archivedTimelineHistories(r.stdout) };
}

/**
 * A read on a restored copy that counts only once recovery is over (`pg_is_in_recovery()` false): with
 * hot_standby on, the copy answers reads while it still replays WAL, from a state before the target.
 * `config` undefined (the copy has no address yet) is a failed attempt.
 */
export function pgPromotedReadProbe(config: () => ConnectionConfig | undefined, opts: { timeoutMs?: number } = {}): () => Promise<boolean> {
  const timeoutMs = opts.timeoutMs ?? 1500;
  return async () => {
    const c = config();
    if (!c) throw new Error("restored node not reachable yet");
    const client = new pg.Client({ ...c, connectionTimeoutMillis: Math.min(timeoutMs, 1000), query_timeout: timeoutMs, application_name: "homelab-drill-probe" });
    client.on("error", () => {});
    try {
      await client.connect();
      const r = await client.query("SELECT pg_is_in_recovery() AS in_recovery");
      return r.rows[0]?.in_recovery === false;
    } finally {
      client.end().catch(() => {});
    }
  };
}
