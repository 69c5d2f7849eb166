// The acknowledged-write writer on the `incidents` workload (docs/drills.md "Workload", "Definitions").
// A write is acknowledged only when its COMMIT returned success: only then does it enter the log that RPO
// is measured against. A COMMIT that errored or timed out is "uncertain": it may or may not have committed,
// so it is retried with the same idempotency key (ON CONFLICT DO NOTHING: a retry never double-creates).
import { randomUUID } from "node:crypto";
import pg, { escapeIdentifier } from "pg";
import type { AcknowledgedWrite } from "./measure.ts";

/** What the writer needs of a connection: pg.Client fits; tests pass a fake. */
export interface SqlClient {
  connect(): Promise<unknown>;
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null; command?: string }>;
  end(): Promise<void>;
  on(event: "error", listener: (err: Error) => void): unknown;
}

export type ConnectionConfig = pg.ClientConfig;

/** One short-lived connection for a drill step; closed whatever happens. application_name tells drills apart in pg_stat_activity. */
export async function withPg<T>(config: ConnectionConfig, fn: (c: pg.Client) => Promise<T>, applicationName = "homelab-drill"): Promise<T> {
  const client = new pg.Client({ ...config, connectionTimeoutMillis: 10_000, application_name: applicationName });
  client.on("error", () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

// ----------------------------------------------------------------------------------------------- schema

/**
 * The seeds' `incidents` schema (NOT NULL + FKs everywhere, idempotency_key UNIQUE) plus the drill_seq
 * heartbeat table and the descending sequence the probe uses (negative ids never collide with the writer's).
 */
export const WORKLOAD_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS incidents (
  id uuid PRIMARY KEY,
  title text NOT NULL,
  severity smallint NOT NULL CHECK (severity BETWEEN 1 AND 4),
  status text NOT NULL CHECK (status IN ('open', 'ack', 'resolved')),
  created_at timestamptz NOT NULL DEFAULT now(),
  resolved_at timestamptz,
  idempotency_key text UNIQUE
);
CREATE TABLE IF NOT EXISTS paging (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  incident_id uuid NOT NULL REFERENCES incidents (id),
  target text NOT NULL,
  channel text NOT NULL CHECK (channel IN ('push', 'sms', 'email')),
  sent_at timestamptz NOT NULL DEFAULT now(),
  acked_at timestamptz
);
CREATE INDEX IF NOT EXISTS paging_incident_id ON paging (incident_id);
CREATE TABLE IF NOT EXISTS escalation (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  incident_id uuid NOT NULL REFERENCES incidents (id),
  level smallint NOT NULL CHECK (level BETWEEN 1 AND 5),
  escalated_to text NOT NULL,
  escalated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS escalation_incident_id ON escalation (incident_id);
CREATE TABLE IF NOT EXISTS audit_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  incident_id uuid NOT NULL REFERENCES incidents (id),
  action text NOT NULL,
  actor text NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_incident_id ON audit_log (incident_id);
CREATE TABLE IF NOT EXISTS drill_seq (
  id bigint PRIMARY KEY,
  t timestamptz DEFAULT clock_timestamp()
);
CREATE SEQUENCE IF NOT EXISTS drill_probe_seq INCREMENT BY -1 MAXVALUE -1 START WITH -1;
`;

export const WORKLOAD_TABLES = ["incidents", "paging", "escalation", "audit_log", "drill_seq"] as const;

/** Runs fn inside BEGIN ... COMMIT on client; ROLLBACK (best effort) and rethrow when it throws. */
export async function inTransaction<T>(client: Pick<SqlClient, "query">, fn: () => Promise<T>): Promise<T> {
  await client.query("BEGIN");
  try {
    const result = await fn();
    await client.query("COMMIT");
    return result;
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  }
}

export async function ensureWorkloadSchema(client: Pick<SqlClient, "query">): Promise<void> {
  // One transaction: concurrent drills (or a retry) never see half a schema.
  await inTransaction(client, async () => {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('homelab-data drill workload schema'))");
    await client.query(WORKLOAD_SCHEMA_SQL);
  });
}

/**
 * One workload write: an incident (idempotency key `drill-<runId>-<seq>`), its audit_log row, a paging row
 * for severity 1, and drill_seq(seq), all in the one statement so they commit or vanish together. When the
 * key already exists (a retry of a write that did commit) nothing is inserted: "already-present".
 * Runs inside the caller's transaction.
 */
export async function writeIncident(client: Pick<SqlClient, "query">, runId: string, seq: number): Promise<"created" | "already-present"> {
  const severity = (seq % 4) + 1;
  const r = await client.query(
    `WITH created AS (
       INSERT INTO incidents (id, title, severity, status, idempotency_key)
       VALUES ($1::uuid, $2, $3::smallint, 'open', $4)
       ON CONFLICT (idempotency_key) DO NOTHING
       RETURNING id, severity
     ), audited AS (
       INSERT INTO audit_log (incident_id, action, actor, detail)
       SELECT id, 'incident.created', 'drill-writer', jsonb_build_object('run', $5::text, 'seq', $6::bigint) FROM created
       RETURNING id
     ), paged AS (
       INSERT INTO paging (incident_id, target, channel)
       SELECT id, 'oncall-primary', 'push' FROM created WHERE severity = 1
       RETURNING id
     ), heartbeat AS (
       INSERT INTO drill_seq (id) SELECT $6::bigint FROM created
       RETURNING id
     )
     SELECT (SELECT count(*) FROM created)::int AS created, (SELECT count(*) FROM heartbeat)::int AS heartbeat`,
    [randomUUID(), `drill ${runId} write ${seq}`, severity, idempotencyKey(runId, seq), runId, seq],
  );
  const row = r.rows[0] ?? {};
  return Number(row.created) === 1 && Number(row.heartbeat) === 1 ? "created" : "already-present";
}

export const idempotencyKey = (runId: string, seq: number) => `drill-${runId}-${seq}`;

/** drill_seq ids the writer made (positive) present on `client`'s server, ascending; optionally one run's range. */
export async function presentSeqs(client: Pick<SqlClient, "query">, range: { fromSeq?: number; toSeq?: number } = {}): Promise<number[]> {
  const r = await client.query("SELECT id::text AS id FROM drill_seq WHERE id >= $1::bigint AND id <= $2::bigint ORDER BY id", [Math.max(1, range.fromSeq ?? 1), range.toSeq ?? Number.MAX_SAFE_INTEGER]);
  return r.rows.map((row) => Number(row.id));
}

/** Highest writer seq present (null: none). */
export async function maxSeq(client: Pick<SqlClient, "query">): Promise<number | null> {
  const r = await client.query("SELECT max(id)::text AS max FROM drill_seq WHERE id > 0");
  const v = r.rows[0]?.max;
  return v === null || v === undefined ? null : Number(v);
}

/**
 * One md5 per workload table over its rows in key order: what a PITR drill compares between the source at
 * target time T and the restored copy. Take it while the writer is paused.
 */
export async function workloadDigest(client: Pick<SqlClient, "query">): Promise<Record<string, string>> {
  const digests: Record<string, string> = {};
  for (const table of WORKLOAD_TABLES) {
    // Every workload table has an `id` key; row text covers every column.
    // A table name cannot be a bind parameter: quoted by node-postgres instead.
    const r = await client.query(`SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.id), '')) AS digest, count(*)::text AS n FROM ${escapeIdentifier(table)} t`);
    digests[table] = `${r.rows[0]?.n ?? "?"}:${r.rows[0]?.digest ?? ""}`;
  }
  return digests;
}

// ----------------------------------------------------------------------------------------------- writer

export interface AckRecord extends AcknowledgedWrite {
  startedAtMs: number;
}

export type WriterEvent =
  | { type: "connected"; atMs: number; target: string }
  | { type: "error"; atMs: number; seq: number | null; phase: "connect" | "write" | "commit"; message: string; code?: string }
  | { type: "fatal"; atMs: number; seq: number | null; message: string; code?: string }
  | { type: "repointed"; atMs: number; target: string }
  | { type: "deduplicated"; atMs: number; seq: number };

export interface AckWriterOptions {
  connection: ConnectionConfig;
  /** Names this run's idempotency keys: `drill-<runId>-<seq>`. */
  runId: string;
  /** Target rate; the writer never bursts to catch up. Default 100. */
  writesPerSecond?: number;
  /** Default 1000: a dead primary is noticed in about a second. */
  connectTimeoutMs?: number;
  /** Client-side limit on each statement, COMMIT included (a sync commit waiting on a dead standby). Default 2000. */
  queryTimeoutMs?: number;
  /** Backoff after a failure: doubles from `backoffMs` up to `maxBackoffMs` (defaults 50 and 500). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /**
   * First seq. Default: one past the highest drill_seq id on the target at the first connect, so runs on a
   * long-lived stack never collide with an earlier run's rows (read this run's range with firstSeq()).
   */
  firstSeq?: number;
  onEvent?: (event: WriterEvent) => void;
  /** For tests: how a connection is made (default: new pg.Client). */
  clientFactory?: (config: ConnectionConfig) => SqlClient;
  now?: () => number;
}

export interface WriterStats {
  attempts: number;
  acknowledged: number;
  uncertain: number;
  errors: number;
  connects: number;
  deduplicatedRetries: number;
  lastError?: string;
  /** Set when the writer stopped itself on an error retrying cannot fix (missing table, bad password...). */
  fatalError?: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function describeTarget(c: ConnectionConfig): string {
  return `${c.host ?? "localhost"}:${c.port ?? 5432}/${c.database ?? ""}`;
}

/**
 * SQLSTATE classes no retry can fix: 28 (authentication), 42 (undefined table/column, syntax: the schema
 * is missing), 3D (no such database), 23 (a constraint the workload never violates: a bug). Anything else —
 * 08 connection, 57 shutdown/starting up, 25006 read-only standby, 40 serialization, timeouts — is what a
 * failover looks like from a client, and is retried. (PostgreSQL docs, Appendix A "Error Codes".)
 */
export function isPermanentSqlError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" && /^(28|42|3D|23)/.test(code);
}

/** Drops a connection without waiting for it: after a timeout it may be stuck mid-query. */
function discard(client: SqlClient): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream;
  try {
    stream?.destroy?.();
  } catch {
    // already gone
  }
  client.end().catch(() => {});
}

/**
 * Writes one incident per transaction at a steady rate and logs `(seq, clientTime)` only after COMMIT
 * returned. Sequential (one connection, one transaction at a time), so seq order is commit order.
 */
export class AckWriter {
  private config: ConnectionConfig;
  private readonly opts: Required<Pick<AckWriterOptions, "writesPerSecond" | "connectTimeoutMs" | "queryTimeoutMs" | "backoffMs" | "maxBackoffMs">> & AckWriterOptions;
  private readonly now: () => number;
  private client: SqlClient | undefined;
  private loop: Promise<void> | undefined;
  private running = false;
  private paused = false;
  private idlePaused = false;
  private pauseWaiters: (() => void)[] = [];
  private wake: (() => void) | undefined;
  private readonly log: AckRecord[] = [];
  private readonly uncertainSeqs = new Set<number>();
  /** Undefined until the first connect when not given: taken from the target's drill_seq. */
  private first: number | undefined;
  private nextSeq = 0;
  private highestAttempted = 0;
  private pendingRetry: number | undefined;
  private readonly stats: WriterStats = { attempts: 0, acknowledged: 0, uncertain: 0, errors: 0, connects: 0, deduplicatedRetries: 0 };

  constructor(opts: AckWriterOptions) {
    if (!opts.runId) throw new Error("AckWriter: runId is required (it names the idempotency keys)");
    const writesPerSecond = opts.writesPerSecond ?? 100;
    if (!(writesPerSecond > 0)) throw new RangeError(`AckWriter: writesPerSecond must be > 0 (got ${writesPerSecond})`);
    if (opts.firstSeq !== undefined && !(Number.isSafeInteger(opts.firstSeq) && opts.firstSeq >= 1)) throw new RangeError(`AckWriter: firstSeq must be a positive integer (got ${opts.firstSeq})`);
    this.opts = { connectTimeoutMs: 1000, queryTimeoutMs: 2000, backoffMs: 50, maxBackoffMs: 500, ...opts, writesPerSecond };
    this.config = opts.connection;
    this.now = opts.now ?? Date.now;
    if (opts.firstSeq !== undefined) this.setFirst(opts.firstSeq);
  }

  private setFirst(seq: number): void {
    this.first = seq;
    this.nextSeq = seq;
    this.highestAttempted = seq - 1;
  }

  start(): this {
    if (this.running) return this;
    this.running = true;
    this.loop = this.run();
    return this;
  }

  /** Stops after the write in flight (acknowledged or not) and closes the connection. */
  async stop(): Promise<WriterStats> {
    this.running = false;
    this.paused = false;
    this.wake?.();
    await this.loop;
    this.loop = undefined;
    if (this.client) {
      const c = this.client;
      this.client = undefined;
      await Promise.race([c.end().catch(() => {}), sleep(1000)]);
    }
    return this.getStats();
  }

  /** Resolves once the write in flight has finished and no new one will start until resume(). */
  pause(): Promise<void> {
    this.paused = true;
    if (!this.running || !this.loop || this.idlePaused) return Promise.resolve();
    return new Promise((resolve) => this.pauseWaiters.push(resolve));
  }

  resume(): void {
    this.paused = false;
    this.wake?.();
  }

  /** Switch to another server (after a failover). The current connection is dropped at once. */
  repoint(config: ConnectionConfig): void {
    this.config = config;
    if (this.client) {
      discard(this.client);
      this.client = undefined;
    }
    this.opts.onEvent?.({ type: "repointed", atMs: this.now(), target: describeTarget(config) });
  }

  /** False once stopped, or after a fatal error (see getStats().fatalError). */
  isRunning(): boolean {
    return this.running;
  }

  acknowledged(): AckRecord[] {
    return this.log.map((r) => ({ ...r }));
  }

  lastAcknowledged(): AckRecord | undefined {
    const last = this.log[this.log.length - 1];
    return last ? { ...last } : undefined;
  }

  /** The first write acknowledged after `instantMs` whose transaction also started after it. */
  firstAcknowledgedAfter(instantMs: number): AckRecord | undefined {
    const found = this.log.find((r) => r.startedAtMs >= instantMs);
    return found ? { ...found } : undefined;
  }

  /** Seqs whose COMMIT was sent but never acknowledged, ascending. */
  uncertain(): number[] {
    return [...this.uncertainSeqs].sort((a, b) => a - b);
  }

  /** This run's first seq (undefined until the first connect when it was not given). */
  firstSeq(): number | undefined {
    return this.first;
  }

  /** Highest seq any statement was sent for: the split-brain boundary when read at the fault. */
  highestAttemptedSeq(): number {
    return this.highestAttempted;
  }

  getStats(): WriterStats {
    return { ...this.stats, acknowledged: this.log.length, uncertain: this.uncertainSeqs.size };
  }

  private async connect(): Promise<SqlClient> {
    if (this.client) return this.client;
    const config: ConnectionConfig = {
      ...this.config,
      connectionTimeoutMillis: this.opts.connectTimeoutMs,
      query_timeout: this.opts.queryTimeoutMs,
      application_name: this.config.application_name ?? `homelab-drill-writer-${this.opts.runId}`.slice(0, 63),
      keepAlive: true,
    };
    const client = this.opts.clientFactory ? this.opts.clientFactory(config) : (new pg.Client(config) as unknown as SqlClient);
    // A server that dies under an idle connection emits 'error'; without a listener Node would crash.
    client.on("error", () => {
      if (this.client === client) this.client = undefined;
    });
    try {
      await client.connect();
      if (this.first === undefined) this.setFirst(((await maxSeq(client)) ?? 0) + 1);
    } catch (e) {
      discard(client);
      throw e;
    }
    this.client = client;
    this.stats.connects++;
    this.opts.onEvent?.({ type: "connected", atMs: this.now(), target: describeTarget(this.config) });
    return client;
  }

  private async idle(ms: number): Promise<void> {
    if (ms <= 0) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    const intervalMs = 1000 / this.opts.writesPerSecond;
    let nextAt = this.now();
    let failures = 0;
    while (this.running) {
      if (this.paused) {
        this.idlePaused = true;
        for (const w of this.pauseWaiters.splice(0)) w();
        while (this.paused && this.running) await this.idle(1000);
        this.idlePaused = false;
        nextAt = this.now();
        continue;
      }
      const wait = nextAt - this.now();
      if (wait > 0) {
        await this.idle(wait);
        continue; // re-check stop/pause after sleeping
      }
      // Never burst to catch up after a stall: the rate is a ceiling.
      nextAt = Math.max(nextAt + intervalMs, this.now() - intervalMs);
      const ok = await this.writeOne();
      if (ok) failures = 0;
      else if (this.running) {
        failures++;
        await this.idle(Math.min(this.opts.maxBackoffMs, this.opts.backoffMs * 2 ** (failures - 1)));
        nextAt = this.now();
      }
    }
    for (const w of this.pauseWaiters.splice(0)) w();
  }

  /** One write; true when acknowledged. */
  private async writeOne(): Promise<boolean> {
    let phase: "connect" | "write" | "commit" = "connect";
    let client: SqlClient | undefined;
    let seq: number | null = null;
    try {
      client = await this.connect();
      seq = this.pendingRetry ?? this.nextSeq++;
      this.pendingRetry = seq;
      phase = "write";
      this.stats.attempts++;
      if (seq > this.highestAttempted) this.highestAttempted = seq;
      const startedAtMs = this.now();
      await client.query("BEGIN");
      const outcome = await writeIncident(client, this.opts.runId, seq);
      phase = "commit";
      const commit = await client.query("COMMIT");
      // COMMIT of a transaction that failed earlier answers ROLLBACK without an error: not acknowledged.
      if (commit.command !== undefined && commit.command !== "COMMIT") throw new Error(`COMMIT answered ${commit.command}`);
      const clientTimeMs = this.now();
      this.log.push({ seq, clientTimeMs, startedAtMs });
      this.uncertainSeqs.delete(seq);
      this.pendingRetry = undefined;
      if (outcome === "already-present") {
        this.stats.deduplicatedRetries++;
        this.opts.onEvent?.({ type: "deduplicated", atMs: clientTimeMs, seq });
      }
      return true;
    } catch (e) {
      const message = (e as Error).message;
      const code = typeof (e as { code?: unknown }).code === "string" ? ((e as { code: string }).code as string) : undefined;
      // COMMIT sent, no success back: it may have committed (and replicated, or not). Not acknowledged.
      if (phase === "commit" && seq !== null) this.uncertainSeqs.add(seq);
      this.stats.errors++;
      this.stats.lastError = message;
      if (client && this.client === client) {
        discard(client);
        this.client = undefined;
      }
      this.opts.onEvent?.({ type: "error", atMs: this.now(), seq, phase, message, ...(code ? { code } : {}) });
      if (isPermanentSqlError(e)) {
        // Retrying would spin until the drill times out and hide the cause: stop and say why.
        this.stats.fatalError = `${message}${code ? ` (SQLSTATE ${code})` : ""}`;
        this.running = false;
        this.opts.onEvent?.({ type: "fatal", atMs: this.now(), seq, message, ...(code ? { code } : {}) });
      }
      // A stopped writer does not retry: the seq stays uncertain (if its COMMIT was sent) or was never written.
      if (!this.running) this.pendingRetry = undefined;
      return false;
    }
  }
}
