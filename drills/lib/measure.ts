// Measurement, pure: what a drill reports as RPO and RTO is computed here from recorded facts (the writer's
// acknowledged log, the ids present after recovery, timestamps of phase marks) and nothing else.
// Definitions are docs/drills.md "Definitions", used exactly; every function here is unit-tested exhaustively.

/** One acknowledged write: `seq` is its drill_seq id, `clientTimeMs` when its COMMIT returned. */
export interface AcknowledgedWrite {
  seq: number;
  clientTimeMs: number;
  /** When the transaction was started (BEGIN sent); lets a PITR drill tell writes straddling T apart. */
  startedAtMs?: number;
}

export interface RpoInput {
  /** The writer's log: only writes whose COMMIT returned. */
  acknowledged: readonly AcknowledgedWrite[];
  /** drill_seq ids present after recovery. Non-positive ids (probe rows) are ignored. */
  presentSeqs: ReadonlySet<number> | readonly number[];
  /** Seqs whose COMMIT was sent but never returned success: present or absent, neither is an anomaly. */
  uncertain?: readonly number[];
}

export interface RpoMeasurement {
  acknowledgedWrites: number;
  /** RPO (writes): acknowledged ids missing after recovery. */
  lostWrites: number;
  /** The first 20 lost seqs, ascending. */
  lostSeqs: number[];
  /** Present after recovery but never acknowledged and not uncertain (reported; not an error by itself). */
  ghostWrites: number;
  /** The first 20 ghost seqs, ascending. */
  ghostSeqs: number[];
  uncertainWrites: number;
  /** Uncertain writes that turned out to be present (committed although the client never heard so). */
  uncertainPresent: number;
  /**
   * RPO (time): client time of the last acknowledged write minus client time of the last acknowledged write
   * still present. 0 when none was lost; when no acknowledged write is present at all, the whole log's span.
   */
  rpoSeconds: number;
  lastAcknowledgedSeq: number | null;
  /** Highest positive seq present after recovery (acknowledged or not). */
  lastPresentSeq: number | null;
  /** Highest acknowledged seq still present. */
  lastPresentAcknowledgedSeq: number | null;
}

const FIRST_N = 20;

export function measureRpo(input: RpoInput): RpoMeasurement {
  const present = input.presentSeqs instanceof Set ? input.presentSeqs : new Set(input.presentSeqs as readonly number[]);
  const uncertain = new Set(input.uncertain ?? []);
  const acked = new Set<number>();
  let lastAck: AcknowledgedWrite | undefined;
  let firstAck: AcknowledgedWrite | undefined;
  let lastPresentAck: AcknowledgedWrite | undefined;
  const lost: number[] = [];
  for (const w of input.acknowledged) {
    acked.add(w.seq);
    if (!lastAck || w.clientTimeMs > lastAck.clientTimeMs || (w.clientTimeMs === lastAck.clientTimeMs && w.seq > lastAck.seq)) lastAck = w;
    if (!firstAck || w.clientTimeMs < firstAck.clientTimeMs) firstAck = w;
    if (present.has(w.seq)) {
      if (!lastPresentAck || w.clientTimeMs > lastPresentAck.clientTimeMs || (w.clientTimeMs === lastPresentAck.clientTimeMs && w.seq > lastPresentAck.seq)) lastPresentAck = w;
    } else lost.push(w.seq);
  }
  const ghosts: number[] = [];
  let lastPresentSeq: number | null = null;
  let uncertainPresent = 0;
  for (const seq of present) {
    if (seq <= 0) continue;
    if (lastPresentSeq === null || seq > lastPresentSeq) lastPresentSeq = seq;
    if (acked.has(seq)) continue;
    if (uncertain.has(seq)) uncertainPresent++;
    else ghosts.push(seq);
  }
  lost.sort((a, b) => a - b);
  ghosts.sort((a, b) => a - b);

  let rpoMs = 0;
  if (lost.length > 0 && lastAck) {
    rpoMs = lastPresentAck ? lastAck.clientTimeMs - lastPresentAck.clientTimeMs : lastAck.clientTimeMs - (firstAck?.clientTimeMs ?? lastAck.clientTimeMs);
  }
  let lastAcknowledgedSeq: number | null = null;
  for (const s of acked) if (lastAcknowledgedSeq === null || s > lastAcknowledgedSeq) lastAcknowledgedSeq = s;
  let lastPresentAcknowledgedSeq: number | null = null;
  for (const s of acked) if (present.has(s) && (lastPresentAcknowledgedSeq === null || s > lastPresentAcknowledgedSeq)) lastPresentAcknowledgedSeq = s;

  return {
    acknowledgedWrites: acked.size,
    lostWrites: lost.length,
    lostSeqs: lost.slice(0, FIRST_N),
    ghostWrites: ghosts.length,
    ghostSeqs: ghosts.slice(0, FIRST_N),
    uncertainWrites: [...uncertain].filter((s) => !acked.has(s)).length,
    uncertainPresent,
    rpoSeconds: Math.max(0, rpoMs) / 1000,
    lastAcknowledgedSeq,
    lastPresentSeq,
    lastPresentAcknowledgedSeq,
  };
}

/**
 * For a point-in-time restore to `targetMs`: writes acknowledged at or before T must be present; writes started
 * after T must be absent; a write that started before T and was acknowledged after it may be either (its commit
 * record's timestamp decides, and the client cannot know it).
 */
export function splitAtTarget(writes: readonly AcknowledgedWrite[], targetMs: number): { mustBePresent: number[]; mustBeAbsent: number[]; ambiguous: number[] } {
  const mustBePresent: number[] = [];
  const mustBeAbsent: number[] = [];
  const ambiguous: number[] = [];
  for (const w of writes) {
    const started = w.startedAtMs ?? w.clientTimeMs;
    if (w.clientTimeMs <= targetMs) mustBePresent.push(w.seq);
    else if (started > targetMs) mustBeAbsent.push(w.seq);
    else ambiguous.push(w.seq);
  }
  const asc = (a: number, b: number) => a - b;
  return { mustBePresent: mustBePresent.sort(asc), mustBeAbsent: mustBeAbsent.sort(asc), ambiguous: ambiguous.sort(asc) };
}

// ----------------------------------------------------------------------------------------------- WAL

const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** A pg_lsn ("16/B374D848": high 32 bits / low 32 bits, hex) as a 64-bit byte position. */
export function parseLsn(lsn: string): bigint {
  const m = LSN.exec(lsn.trim());
  if (!m) throw new RangeError(`not a PostgreSQL LSN: ${JSON.stringify(lsn)} (expected two hex numbers of up to 8 digits, e.g. "16/B374D848")`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(position: bigint): string {
  if (position < 0n || position > 0xffffffffffffffffn) throw new RangeError(`LSN out of range: ${position}`);
  return `${(position >> 32n).toString(16).toUpperCase()}/${(position & 0xffffffffn).toString(16).toUpperCase()}`;
}

/**
 * Bytes of WAL from lsnB to lsnA, as pg_wal_lsn_diff(lsnA, lsnB) computes it (negative when A is behind B).
 * Computed in BigInt (LSNs are 64-bit); returned as a number, exact below 2^53 bytes (8 PiB).
 */
export function walGapBytes(lsnA: string, lsnB: string): number {
  const diff = parseLsn(lsnA) - parseLsn(lsnB);
  const n = Number(diff);
  if (!Number.isSafeInteger(n)) throw new RangeError(`WAL gap ${diff} bytes is beyond what a number holds exactly`);
  return n;
}

/**
 * The last entry of a timeline history file (`pg_wal/0000000N.history`: `parentTLI<TAB>switchpoint<TAB>reason`
 * per line): the timeline the newest one branched from and the LSN where it did, i.e. the promote LSN.
 * Undefined for an empty file (timeline 1 has none).
 */
export function parseTimelineHistory(text: string): { parentTimeline: number; switchpoint: string } | undefined {
  const entries = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => l.split(/\s+/));
  const last = entries[entries.length - 1];
  if (!last || last.length < 2 || !/^\d+$/.test(last[0]!)) return undefined;
  parseLsn(last[1]!); // throws on a malformed line rather than reporting garbage as the promote LSN
  return { parentTimeline: Number(last[0]), switchpoint: last[1]! };
}

// ----------------------------------------------------------------------------------------------- RTO

/** A named instant: the END of the phase of that name (e.g. detection ends when the probe first fails). */
export interface PhaseMark {
  name: string;
  atMs: number;
}

export interface RtoPhase {
  name: string;
  startedAtMs: number;
  endedAtMs: number;
  durationMs: number;
}

export interface RtoBreakdown {
  faultAtMs: number;
  phases: RtoPhase[];
  /** Fault injection -> the last mark (first acknowledged write on the recovered primary). */
  totalMs: number;
  totalSeconds: number;
}

/**
 * Splits fault -> recovery into consecutive phases. Marks are the phases' end instants in order, e.g.
 * `[{name:"detection"}, {name:"promotion"}, {name:"reconnect"}]`; each phase starts where the previous ended
 * (the first at the fault). A mark before the fault or before its predecessor is a drill bug: RangeError.
 */
export function rtoPhases(marks: readonly PhaseMark[], faultAtMs: number): RtoBreakdown {
  const phases: RtoPhase[] = [];
  let start = faultAtMs;
  let previous = "fault";
  for (const mark of marks) {
    if (!Number.isFinite(mark.atMs)) throw new RangeError(`phase mark "${mark.name}" has no time (${mark.atMs})`);
    if (mark.atMs < start) {
      throw new RangeError(`phase mark "${mark.name}" at ${mark.atMs} is ${start - mark.atMs} ms before "${previous}" at ${start}: marks must be in order, after the fault`);
    }
    phases.push({ name: mark.name, startedAtMs: start, endedAtMs: mark.atMs, durationMs: mark.atMs - start });
    start = mark.atMs;
    previous = mark.name;
  }
  const totalMs = start - faultAtMs;
  return { faultAtMs, phases, totalMs, totalSeconds: totalMs / 1000 };
}

// ----------------------------------------------------------------------------------------------- format

function trimmed(value: number, digits: number): string {
  return value.toFixed(digits).replace(/\.?0+$/, "");
}

/** "850 ms", "1.23 s", "14.2 s", "2 min 05 s", "1 h 02 min". */
export function formatDuration(ms: number): string {
  if (Number.isNaN(ms)) return "n/a";
  if (!Number.isFinite(ms)) return ms > 0 ? "∞" : "-∞";
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms === 0) return "0 s";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  // Round first, so 9.996 s reads "10 s" rather than "10.00 s" or "9.99 s".
  if (Math.round(s * 100) / 100 < 10) return `${trimmed(s, 2)} s`;
  if (Math.round(s * 10) / 10 < 60) return `${trimmed(s, 1)} s`;
  const totalS = Math.round(s);
  if (totalS < 3600) {
    const m = Math.floor(totalS / 60);
    const rest = totalS % 60;
    return rest === 0 ? `${m} min` : `${m} min ${String(rest).padStart(2, "0")} s`;
  }
  const totalMin = Math.round(totalS / 60);
  const h = Math.floor(totalMin / 60);
  const rest = totalMin % 60;
  return rest === 0 ? `${h} h` : `${h} h ${String(rest).padStart(2, "0")} min`;
}

export const formatSeconds = (seconds: number): string => formatDuration(seconds * 1000);
