// Named assertions in the spirit of CloudNativePG's e2e asserts (tests/e2e/asserts_test.go,
// AssertWritesResumedTo...): each states what it checks, returns a Check with the evidence and never throws.
// The drill collects them; the report's verdict and the exit code follow from them (report.ts).
import { formatDuration, formatSeconds, type RpoMeasurement } from "./measure.ts";

export interface Check {
  name: string;
  ok: boolean;
  /** What was measured and, when it failed, which objective was missed and by how much. */
  detail: string;
  objective?: number | string;
  measured?: number | string;
  /** Unit of objective/measured ("s", "writes", "bytes"). */
  unit?: string;
}

const LIST = 10;

function listed(values: readonly (number | string)[], total = values.length): string {
  const shown = values.slice(0, LIST).join(", ");
  return total > LIST ? `${shown}, … (${total} in all)` : shown;
}

export function assertNoAcknowledgedWriteLost(rpo: RpoMeasurement, allowedLost = 0): Check {
  const name = "no acknowledged write lost";
  const ok = rpo.lostWrites <= allowedLost;
  const tail = `last acknowledged seq ${rpo.lastAcknowledgedSeq ?? "none"}, last acknowledged still present ${rpo.lastPresentAcknowledgedSeq ?? "none"}`;
  const detail = ok
    ? `${rpo.lostWrites} of ${rpo.acknowledgedWrites} acknowledged writes lost (objective: at most ${allowedLost}); ${tail}`
    : `${rpo.lostWrites} of ${rpo.acknowledgedWrites} acknowledged writes lost, objective allows ${allowedLost}: exceeds it by ${rpo.lostWrites - allowedLost}; lost seqs ${listed(rpo.lostSeqs, rpo.lostWrites)}; ${tail}`;
  return { name, ok, detail, objective: allowedLost, measured: rpo.lostWrites, unit: "writes" };
}

export function assertRpoWithin(rpo: RpoMeasurement, objectiveSeconds: number): Check {
  const name = "RPO within objective";
  const ok = rpo.rpoSeconds <= objectiveSeconds;
  const lost = `${rpo.lostWrites} acknowledged write${rpo.lostWrites === 1 ? "" : "s"} lost`;
  const detail = ok
    ? `RPO ${formatSeconds(rpo.rpoSeconds)} within objective ${formatSeconds(objectiveSeconds)} (${lost})`
    : `RPO ${formatSeconds(rpo.rpoSeconds)} exceeds objective ${formatSeconds(objectiveSeconds)} by ${formatSeconds(rpo.rpoSeconds - objectiveSeconds)} (${lost}; first lost seqs ${listed(rpo.lostSeqs, rpo.lostWrites)})`;
  return { name, ok, detail, objective: objectiveSeconds, measured: rpo.rpoSeconds, unit: "s" };
}

/** `rtoSeconds` undefined means the service never came back while the drill waited: a failure, not a crash. */
export function assertRtoWithin(rtoSeconds: number | undefined | null, objectiveSeconds: number, label = "RTO"): Check {
  const name = `${label} within objective`;
  if (rtoSeconds === undefined || rtoSeconds === null || !Number.isFinite(rtoSeconds)) {
    return { name, ok: false, detail: `${label} not measured: the service did not recover while the drill waited (objective ${formatSeconds(objectiveSeconds)})`, objective: objectiveSeconds, measured: "none", unit: "s" };
  }
  const ok = rtoSeconds <= objectiveSeconds;
  const detail = ok
    ? `${label} ${formatSeconds(rtoSeconds)} within objective ${formatSeconds(objectiveSeconds)}`
    : `${label} ${formatSeconds(rtoSeconds)} exceeds objective ${formatSeconds(objectiveSeconds)} by ${formatSeconds(rtoSeconds - objectiveSeconds)}`;
  return { name, ok, detail, objective: objectiveSeconds, measured: rtoSeconds, unit: "s" };
}

/**
 * The first acknowledged write (or, for read-only recovery, the first successful read) after the fault
 * came within the objective. `firstWriteAtMs` undefined: none came at all.
 */
export function assertWritesResumedWithin(faultAtMs: number, firstWriteAtMs: number | undefined | null, objectiveSeconds: number, what = "acknowledged write"): Check {
  const name = "writes resumed within objective";
  if (firstWriteAtMs === undefined || firstWriteAtMs === null) {
    return { name, ok: false, detail: `no ${what} after the fault; objective ${formatSeconds(objectiveSeconds)}`, objective: objectiveSeconds, measured: "none", unit: "s" };
  }
  const elapsedMs = firstWriteAtMs - faultAtMs;
  const seconds = elapsedMs / 1000;
  const ok = elapsedMs >= 0 && seconds <= objectiveSeconds;
  const detail =
    elapsedMs < 0
      ? `the first ${what} counted is ${formatDuration(-elapsedMs)} BEFORE the fault: the drill measured the wrong instant`
      : ok
        ? `first ${what} ${formatDuration(elapsedMs)} after the fault, within objective ${formatSeconds(objectiveSeconds)}`
        : `first ${what} ${formatDuration(elapsedMs)} after the fault exceeds objective ${formatSeconds(objectiveSeconds)} by ${formatSeconds(seconds - objectiveSeconds)}`;
  return { name, ok, detail, objective: objectiveSeconds, measured: seconds, unit: "s" };
}

/**
 * Split brain: the old primary must hold no write the writer started after the fault. `faultSeqBoundary` is
 * the highest seq the writer had sent when the fault was injected; `oldPrimaryMaxSeq` the highest drill_seq id
 * found on the old primary (null: it has none, or could not have any).
 */
export function assertNoWriteAfterFault(oldPrimaryMaxSeq: number | null | undefined, faultSeqBoundary: number): Check {
  const name = "old primary accepted no write after the fault";
  const measured = oldPrimaryMaxSeq ?? "none";
  if (oldPrimaryMaxSeq === null || oldPrimaryMaxSeq === undefined || oldPrimaryMaxSeq <= faultSeqBoundary) {
    return { name, ok: true, detail: `old primary's highest seq ${measured} <= seq at the fault ${faultSeqBoundary}`, objective: faultSeqBoundary, measured };
  }
  return {
    name,
    ok: false,
    detail: `split brain: the old primary holds seq ${oldPrimaryMaxSeq}, ${oldPrimaryMaxSeq - faultSeqBoundary} past the last seq sent before the fault (${faultSeqBoundary}): it accepted writes after it was failed over`,
    objective: faultSeqBoundary,
    measured: oldPrimaryMaxSeq,
  };
}

/** Set equality of ids at a recovery target: lists the first ids missing and the first unexpected ones. */
export function assertRowsEqualAtTarget(expected: Iterable<number>, actual: Iterable<number>, label = "rows at target"): Check {
  const name = `${label} equal`;
  const want = new Set(expected);
  const have = new Set(actual);
  const missing = [...want].filter((id) => !have.has(id)).sort((a, b) => a - b);
  const unexpected = [...have].filter((id) => !want.has(id)).sort((a, b) => a - b);
  const ok = missing.length === 0 && unexpected.length === 0;
  const parts: string[] = [];
  if (missing.length > 0) parts.push(`${missing.length} expected but absent: ${listed(missing)}`);
  if (unexpected.length > 0) parts.push(`${unexpected.length} present but not expected: ${listed(unexpected)}`);
  const detail = ok ? `all ${want.size} expected ids present, none other` : `${parts.join("; ")} (expected ${want.size}, found ${have.size})`;
  return { name, ok, detail, objective: want.size, measured: have.size, unit: "rows" };
}

/** Digests (one string, or one per table) equal; names each table that differs. */
export function assertDigestsEqual(a: string | Record<string, string>, b: string | Record<string, string>, label = "table digests"): Check {
  const name = `${label} equal`;
  if (typeof a === "string" || typeof b === "string") {
    const ok = a === b;
    const detail = ok ? `digest ${short(a)} matches` : `digest ${short(a)} differs from ${short(b)}`;
    return { name, ok, detail };
  }
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const differing = keys.filter((k) => a[k] !== b[k]);
  if (differing.length === 0) return { name, ok: true, detail: `${keys.length} table digest${keys.length === 1 ? "" : "s"} match (${keys.join(", ")})` };
  const detail = differing.map((k) => `${k}: ${a[k] === undefined ? "missing" : short(a[k])} vs ${b[k] === undefined ? "missing" : short(b[k])}`).join("; ");
  return { name, ok: false, detail: `${differing.length} of ${keys.length} tables differ: ${detail}` };
}

function short(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > 16 ? `${s.slice(0, 12)}…` : s;
}

/** A named check from a boolean, for one-off conditions (amcheck clean, archive-mode off...). */
export function check(name: string, ok: boolean, detail: string, extra: Pick<Check, "objective" | "measured" | "unit"> = {}): Check {
  return { name, ok, detail, ...extra };
}

/** How a drill that stopped early says so: a warning in its log and a failed "drill ran to completion" check. */
export function drillStopped(log: { warn(message: string): void }, e: unknown): Check {
  const message = e instanceof Error ? e.message : String(e);
  log.warn(`drill stopped: ${message}`);
  return check("drill ran to completion", false, message);
}
