// What the backup repository holds, as a drill needs it: the newest archived WAL segment and the newest
// backup, from `pgbackrest --output=json info` run on the repository node (pgBackRest user guide "Info").
// The parser is pure and unit-tested; pgbackrestInfoOnNode only runs the command.
import { formatLsn } from "./measure.ts";
import type { ControlledNode, NodeControl } from "./nodes.ts";

export interface RepositoryBackup {
  label: string;
  type: string;
  /** Backup stop time (ms since epoch). */
  stopMs: number;
  /** First and last WAL segment the backup needs. */
  archiveStart: string | null;
  archiveStop: string | null;
}

export interface RepositoryState {
  stanza: string;
  /** pgBackRest status code (0 ok, 1 missing stanza path, 2 no valid backups, 3 missing stanza data...). */
  statusCode: number;
  statusMessage: string;
  backups: RepositoryBackup[];
  /** Newest backup by stop time, or null. */
  newestBackup: RepositoryBackup | null;
  /** Highest archived segment over every database id of the stanza, or null. */
  newestArchivedWal: string | null;
}

const SEGMENT = /^[0-9A-F]{24}$/;

export function isWalSegment(name: string): boolean {
  return SEGMENT.test(name);
}

/**
 * Orders WAL segment names (TTTTTTTTLLLLLLLLSSSSSSSS: timeline, log, segment; fixed-width upper-case hex),
 * so plain string comparison is the order: a segment of a later timeline sorts after every segment of the
 * earlier one, which is right for "has the archive reached X" once the new timeline forked at or after X.
 */
export function compareWalSegments(a: string, b: string): number {
  for (const s of [a, b]) if (!isWalSegment(s)) throw new RangeError(`not a WAL segment name: ${JSON.stringify(s)} (24 upper-case hex digits)`);
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Timeline of a WAL segment name (its first 8 hex digits). */
export function walTimeline(segment: string): number {
  if (!isWalSegment(segment)) throw new RangeError(`not a WAL segment name: ${JSON.stringify(segment)}`);
  return parseInt(segment.slice(0, 8), 16);
}

/**
 * The LSN just past the end of a WAL segment (where the next segment starts): what an archive holding
 * `segment` covers. `segmentBytes` is wal_segment_size (16 MiB unless initdb said otherwise); the name's
 * middle part counts 4 GiB "log" units and its last part segments within one (PostgreSQL's XLogFileName).
 */
export function walSegmentEndLsn(segment: string, segmentBytes = 16 * 1024 ** 2): string {
  if (!isWalSegment(segment)) throw new RangeError(`not a WAL segment name: ${JSON.stringify(segment)}`);
  if (!(Number.isSafeInteger(segmentBytes) && segmentBytes > 0 && (segmentBytes & (segmentBytes - 1)) === 0)) throw new RangeError(`wal segment size ${segmentBytes} is not a power of two`);
  const log = BigInt(`0x${segment.slice(8, 16)}`);
  const seg = BigInt(`0x${segment.slice(16, 24)}`);
  return formatLsn(log * 0x100000000n + (seg + 1n) * BigInt(segmentBytes));
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | null => (typeof v === "string" && v !== "" ? v : null);

/** The state of `stanza` from `pgbackrest --output=json info` output. Throws when the text is not that JSON. */
export function parsePgbackrestInfo(text: string, stanza: string): RepositoryState {
  let value: unknown;
  try {
    // pgBackRest prints raw control characters inside a status message (an info file that does not decrypt:
    // its garbage is quoted); its JSON is one line, so they can only be inside strings.
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is removed
    value = JSON.parse(text.replace(/[\u0000-\u001f]/g, " "));
  } catch (e) {
    throw new Error(`pgbackrest info did not print JSON (${(e as Error).message}): ${text.slice(0, 200)}`, { cause: e });
  }
  if (!Array.isArray(value)) throw new Error(`pgbackrest info printed ${typeof value}, expected a list of stanzas`);
  const entry = obj(value.find((s) => obj(s).name === stanza));
  if (Object.keys(entry).length === 0) {
    return { stanza, statusCode: 1, statusMessage: `stanza ${stanza} not in pgbackrest info (stanzas: ${value.map((s) => String(obj(s).name)).join(", ") || "none"})`, backups: [], newestBackup: null, newestArchivedWal: null };
  }
  const status = obj(entry.status);
  // With several repositories the stanza's status only says they differ; each repo's own says why.
  const repoProblems = arr(entry.repo)
    .map((r) => obj(r))
    .filter((r) => Number(obj(r.status).code ?? 0) !== 0)
    // First line only: pgBackRest quotes an undecryptable file's bytes on the next ones.
    .map((r) => `repo${String(r.key)}: ${String(obj(r.status).message ?? "").split(/[\r\n]/)[0]?.replace(/[^\x20-\x7e]/g, "").slice(0, 200)}`);
  const backups: RepositoryBackup[] = arr(entry.backup).map((b) => {
    const o = obj(b);
    const archive = obj(o.archive);
    return {
      label: String(o.label ?? ""),
      type: String(o.type ?? ""),
      stopMs: Number(obj(o.timestamp).stop ?? 0) * 1000,
      archiveStart: str(archive.start),
      archiveStop: str(archive.stop),
    };
  });
  let newestBackup: RepositoryBackup | null = null;
  for (const b of backups) if (!newestBackup || b.stopMs > newestBackup.stopMs) newestBackup = b;
  let newestArchivedWal: string | null = null;
  for (const a of arr(entry.archive)) {
    const max = str(obj(a).max);
    if (max && isWalSegment(max) && (newestArchivedWal === null || max > newestArchivedWal)) newestArchivedWal = max;
  }
  return {
    stanza,
    statusCode: Number(status.code ?? -1),
    statusMessage: [String(status.message ?? ""), ...repoProblems].filter(Boolean).join("; "),
    backups,
    newestBackup,
    newestArchivedWal,
  };
}

/**
 * Runs `pgbackrest --stanza=<s> --output=json info` on the repository node (the image's wrapper drops to
 * postgres); `repo` limits it to one repository (--repo=N), else every configured one is merged.
 */
export async function pgbackrestInfoOnNode(ctl: NodeControl, repository: ControlledNode, stanza: string, opts: { timeoutMs?: number; repo?: number } = {}): Promise<RepositoryState> {
  const repoArg = opts.repo !== undefined ? [`--repo=${opts.repo}`] : [];
  const r = await ctl.exec(repository, ["pgbackrest", `--stanza=${stanza}`, ...repoArg, "--output=json", "info"], { allowFailure: true, timeoutMs: opts.timeoutMs ?? 30_000 });
  if (r.code !== 0) throw new Error(`${repository.name}: pgbackrest${repoArg.length ? ` ${repoArg[0]}` : ""} info failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`);
  return parsePgbackrestInfo(r.stdout, stanza);
}
