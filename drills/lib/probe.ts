// Probes (docs/drills.md "RTO": measured by a probe at <= 100 ms intervals). A probe launches an attempt every
// interval whether or not the previous one finished: a connect to a dead address can hang for a second, and
// waiting for it would blur the measurement to that second.
import pg from "pg";
import { WaitTimeoutError } from "./wait.ts";
import type { ConnectionConfig } from "./writer.ts";

// Waiting (not measuring) lives in wait.ts; its timeout error is also what Probe.waitForSuccessAfter throws.
export { WaitTimeoutError };

export const MAX_PROBE_INTERVAL_MS = 100;

export interface ProbeAttempt {
  startedAtMs: number;
  endedAtMs: number;
  ok: boolean;
  error?: string;
}

export interface ProbeOptions {
  /** Default 100; more than 100 is refused. */
  intervalMs?: number;
  /** An attempt still running after this counts as failed (default 2000). */
  attemptTimeoutMs?: number;
  /** Attempts allowed in flight at once (default 20). */
  maxInFlight?: number;
  now?: () => number;
}

function checkInterval(intervalMs: number): void {
  if (!(intervalMs > 0) || intervalMs > MAX_PROBE_INTERVAL_MS) {
    throw new RangeError(`probe interval ${intervalMs} ms is not accepted: RTO is measured at <= ${MAX_PROBE_INTERVAL_MS} ms intervals (docs/drills.md)`);
  }
}

/**
 * Polls `attempt` continuously from start() to stop(), keeping every attempt's outcome, and answers
 * "when did it first succeed after instant X": an attempt counts only if it STARTED at or after X, so a
 * write begun before the fault never passes for recovery.
 */
export class Probe {
  private readonly intervalMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly maxInFlight: number;
  private readonly now: () => number;
  private timer: ReturnType<typeof setInterval> | undefined;
  private inFlight = new Set<Promise<void>>();
  private readonly attempts: ProbeAttempt[] = [];
  private waiters: { afterMs: number; resolve: (atMs: number) => void }[] = [];

  constructor(
    private readonly attempt: () => Promise<boolean>,
    opts: ProbeOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? MAX_PROBE_INTERVAL_MS;
    checkInterval(this.intervalMs);
    this.attemptTimeoutMs = opts.attemptTimeoutMs ?? 2000;
    this.maxInFlight = opts.maxInFlight ?? 20;
    this.now = opts.now ?? Date.now;
  }

  start(): this {
    if (this.timer) return this;
    this.launch();
    this.timer = setInterval(() => this.launch(), this.intervalMs);
    return this;
  }

  /** Stops launching and waits (at most one attempt timeout) for attempts in flight. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all([...this.inFlight]);
  }

  private launch(): void {
    if (this.inFlight.size >= this.maxInFlight) return;
    const startedAtMs = this.now();
    let timeout: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<{ ok: false; error: string }>((resolve) => {
      timeout = setTimeout(() => resolve({ ok: false, error: `attempt timed out after ${this.attemptTimeoutMs} ms` }), this.attemptTimeoutMs);
    });
    const run = Promise.resolve()
      .then(() => this.attempt())
      .then(
        (ok) => ({ ok: ok === true, error: ok === true ? undefined : "attempt answered false" }),
        (e: unknown) => ({ ok: false, error: e instanceof Error ? e.message : String(e) }),
      );
    const p: Promise<void> = Promise.race([run, timedOut]).then((r) => {
      clearTimeout(timeout);
      const endedAtMs = this.now();
      this.record({ startedAtMs, endedAtMs, ok: r.ok, ...(r.error ? { error: r.error } : {}) });
      this.inFlight.delete(p);
    });
    this.inFlight.add(p);
  }

  private record(a: ProbeAttempt): void {
    this.attempts.push(a);
    if (!a.ok) return;
    this.waiters = this.waiters.filter((w) => {
      if (a.startedAtMs < w.afterMs) return true;
      w.resolve(a.endedAtMs);
      return false;
    });
  }

  /** When the first attempt started at or after `instantMs` succeeded (its end time), if one has. */
  firstSuccessAfter(instantMs: number): number | undefined {
    let first: number | undefined;
    for (const a of this.attempts) if (a.ok && a.startedAtMs >= instantMs && (first === undefined || a.endedAtMs < first)) first = a.endedAtMs;
    return first;
  }

  /** When the first attempt started at or after `instantMs` failed: the "detection" instant after a fault. */
  firstFailureAfter(instantMs: number): number | undefined {
    let first: number | undefined;
    for (const a of this.attempts) if (!a.ok && a.startedAtMs >= instantMs && (first === undefined || a.endedAtMs < first)) first = a.endedAtMs;
    return first;
  }

  /** When `consecutive` attempts in a row (by start time, all started at or after `instantMs`) had failed. */
  failingSince(instantMs: number, consecutive: number): number | undefined {
    return consecutiveFailuresAfter(this.attempts, instantMs, consecutive);
  }

  /** Resolves with the end time of the first success after `instantMs`; WaitTimeoutError after `timeoutMs`. */
  waitForSuccessAfter(instantMs: number, timeoutMs: number): Promise<number> {
    const known = this.firstSuccessAfter(instantMs);
    if (known !== undefined) return Promise.resolve(known);
    if (!this.timer) return Promise.reject(new Error("probe not started: call start() first"));
    const t0 = this.now();
    return new Promise<number>((resolve, reject) => {
      const waiter = {
        afterMs: instantMs,
        resolve: (atMs: number) => {
          clearTimeout(timer);
          resolve(atMs);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new WaitTimeoutError("probe success", this.now() - t0, this.lastError()));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  lastError(): string | undefined {
    for (let i = this.attempts.length - 1; i >= 0; i--) if (this.attempts[i]!.error) return this.attempts[i]!.error;
    return undefined;
  }

  history(): ProbeAttempt[] {
    return this.attempts.map((a) => ({ ...a }));
  }
}

/**
 * The detection instant of a failure detector that declares a node down after `consecutive` failed attempts
 * in a row: among attempts started at or after `instantMs`, in start order, the first run of `consecutive`
 * failures with no success between them; returns when the last of them was known to fail (the latest end
 * time in the run). Undefined until such a run was recorded. One failure (consecutive = 1) is a hair trigger:
 * a single lost packet would promote a replica.
 */
export function consecutiveFailuresAfter(attempts: readonly ProbeAttempt[], instantMs: number, consecutive: number): number | undefined {
  if (!(Number.isInteger(consecutive) && consecutive >= 1)) throw new RangeError(`consecutive must be a whole number >= 1 (got ${consecutive})`);
  const after = attempts.filter((a) => a.startedAtMs >= instantMs).sort((a, b) => a.startedAtMs - b.startedAtMs || a.endedAtMs - b.endedAtMs);
  let run = 0;
  let knownAt = -Infinity;
  for (const a of after) {
    if (a.ok) {
      run = 0;
      knownAt = -Infinity;
      continue;
    }
    run++;
    knownAt = Math.max(knownAt, a.endedAtMs);
    if (run === consecutive) return knownAt;
  }
  return undefined;
}

function probeClientConfig(config: ConnectionConfig, timeoutMs: number): ConnectionConfig {
  return { ...config, connectionTimeoutMillis: Math.min(timeoutMs, 1000), query_timeout: timeoutMs, application_name: "homelab-drill-probe" };
}

async function withClient<T>(config: ConnectionConfig, timeoutMs: number, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(probeClientConfig(config, timeoutMs));
  client.on("error", () => {});
  try {
    await client.connect();
    return await fn(client);
  } finally {
    client.end().catch(() => {});
  }
}

/**
 * An acknowledged write on `config`'s server: INSERT into drill_seq with the next id of the descending
 * drill_probe_seq (negative: never collides with the writer's seqs). A fresh connection per attempt, so
 * attempts can overlap. True only when the INSERT committed (autocommit returned success).
 */
export function pgWriteProbe(config: ConnectionConfig | (() => ConnectionConfig), opts: { timeoutMs?: number } = {}): () => Promise<boolean> {
  const timeoutMs = opts.timeoutMs ?? 1500;
  return () =>
    withClient(typeof config === "function" ? config() : config, timeoutMs, async (c) => {
      const r = await c.query("INSERT INTO drill_seq (id) VALUES (nextval('drill_probe_seq'))");
      return r.rowCount === 1;
    });
}

/** A successful read (for read-only recovery): `SELECT 1` answered. */
export function pgReadProbe(config: ConnectionConfig | (() => ConnectionConfig), opts: { timeoutMs?: number } = {}): () => Promise<boolean> {
  const timeoutMs = opts.timeoutMs ?? 1500;
  return () =>
    withClient(typeof config === "function" ? config() : config, timeoutMs, async (c) => {
      const r = await c.query("SELECT 1 AS one");
      return r.rows[0]?.one === 1;
    });
}
