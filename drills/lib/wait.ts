// The one way a drill waits for something (a replica streaming, a segment archived, a container down):
// p-retry does the polling (a fixed pause between checks, no retry past the deadline); this adds what a
// drill's report needs when the wait fails: WHAT was awaited, for how long, the last error the check threw
// and, when the caller keeps one, the last state it saw.
// Not for measuring: RTO is measured by a Probe (probe.ts), whose attempts overlap and are timestamped.
import pRetry from "p-retry";

/** Polls are at most this far apart (docs/drills.md "RTO": <= 100 ms); where a wait ends is often a measured instant. */
export const MAX_WAIT_INTERVAL_MS = 100;

export class WaitTimeoutError extends Error {
  override name = "WaitTimeoutError";
  constructor(
    readonly label: string,
    /** The timeout that ran out (the Probe passes the time it waited). */
    readonly elapsedMs: number,
    readonly lastError?: string,
    readonly lastState?: string,
  ) {
    const details = [...(lastError ? [`last error: ${lastError}`] : []), ...(lastState ? [lastState] : [])];
    super(`${label}: not reached within ${elapsedMs} ms${details.length > 0 ? ` (${details.join("; ")})` : ""}`);
  }
}

export interface WaitOptions {
  timeoutMs: number;
  /** Pause between two checks, more than 0 and at most 100 (default 100). */
  intervalMs?: number;
  /** The last state the check saw, for the timeout message (e.g. `newest archived: 0000...`). */
  state?: () => string | undefined;
}

/** What a check answers while the condition does not hold yet. */
type NotYet = false | null | undefined;

/** Thrown inside the retry loop for "not yet" (never a TypeError: p-retry does not retry those). */
class NotYetError extends Error {}

/**
 * Calls `check` until it answers something other than false, null or undefined, and resolves with that
 * answer (`true` for a plain predicate). A check that throws counts as "not yet"; its message is kept as
 * the last error. After `timeoutMs` rejects with WaitTimeoutError:
 * `<what>: not reached within <timeoutMs> ms (last error: ...; <state>)`.
 * A check in flight when the time runs out is not cut off: the wait ends once it answers.
 */
/** `wait` as its value, or null when it timed out (a wait whose running out is an outcome, not an error). */
export async function nullOnTimeout<T>(wait: Promise<T>): Promise<T | null> {
  try {
    return await wait;
  } catch (e) {
    if (e instanceof WaitTimeoutError) return null;
    throw e;
  }
}

export async function waitFor<T>(what: string, check: () => T | NotYet | Promise<T | NotYet>, opts: WaitOptions): Promise<Exclude<T, NotYet>> {
  const intervalMs = opts.intervalMs ?? MAX_WAIT_INTERVAL_MS;
  if (!(intervalMs > 0) || intervalMs > MAX_WAIT_INTERVAL_MS) {
    throw new RangeError(`wait interval ${intervalMs} ms is not accepted: drills poll at <= ${MAX_WAIT_INTERVAL_MS} ms intervals (docs/drills.md)`);
  }
  if (!(opts.timeoutMs >= 0)) throw new RangeError(`wait timeout ${opts.timeoutMs} ms is not accepted: expected a number >= 0`);
  let lastError: string | undefined;
  try {
    return await pRetry(
      async () => {
        let value: T | NotYet;
        try {
          value = await check();
        } catch (e) {
          lastError = e instanceof Error ? e.message : String(e);
          throw new NotYetError();
        }
        if (value === false || value === null || value === undefined) throw new NotYetError();
        return value as Exclude<T, NotYet>;
      },
      // Retries until the deadline, a constant pause apart; the last pause is cut to what is left.
      { retries: Number.POSITIVE_INFINITY, factor: 1, minTimeout: intervalMs, maxTimeout: intervalMs, randomize: false, maxRetryTime: opts.timeoutMs },
    );
  } catch (e) {
    if (e instanceof NotYetError) throw new WaitTimeoutError(what, opts.timeoutMs, lastError, opts.state?.());
    throw e;
  }
}
