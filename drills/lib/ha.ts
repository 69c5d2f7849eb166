// HA mode (postgres.ha: patroni, ADR 0017) measurement: a writer through the stable primary endpoint and what
// a failover looks like from it. The writer knows nothing of nodes: it connects to HAProxy's primary port,
// inserts one row per write, and counts a write acknowledged only when COMMIT returned. Pure parts
// (failoverFromAcks, summarizeRuns, splitBrainEvidence) are unit-tested (test/unit/drills-ha.test.ts).
import pg from "pg";

export interface EndpointAck {
  seq: number;
  /** Host clock when COMMIT returned. */
  atMs: number;
  /** Server clock (clock_timestamp()) inside the transaction, ms since the epoch, and the server's address. */
  serverAtMs: number;
  server: string;
}

export const HA_PROBE_SQL = "create table if not exists ha_probe (run text not null, seq bigint not null, node text not null, at timestamptz not null default clock_timestamp(), primary key (run, seq))";

export interface EndpointWriterOptions {
  connection: pg.ClientConfig;
  run: string;
  /** Pause between writes. */
  intervalMs?: number;
  /** A connection attempt or a write that takes longer fails (and is retried). */
  timeoutMs?: number;
}

/** Writes through the endpoint until stopped, reconnecting after any error; every ack is recorded. */
export class EndpointWriter {
  readonly acks: EndpointAck[] = [];
  readonly errors: { atMs: number; message: string }[] = [];
  private stopped = false;
  private loop?: Promise<void>;
  private seq = 0;

  constructor(private readonly opts: EndpointWriterOptions) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async run(): Promise<void> {
    const timeoutMs = this.opts.timeoutMs ?? 2000;
    while (!this.stopped) {
      const client = new pg.Client({ ...this.opts.connection, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, application_name: `ha-writer-${this.opts.run}` });
      client.on("error", () => {});
      try {
        await client.connect();
        while (!this.stopped) {
          const seq = ++this.seq;
          const r = await client.query<{ at: string; node: string }>(
            "insert into ha_probe (seq, run, node) values ($1, $2, inet_server_addr()::text) returning (extract(epoch from at) * 1000)::float8::text as at, node",
            [seq, this.opts.run],
          );
          const row = r.rows[0];
          if (row) this.acks.push({ seq, atMs: Date.now(), serverAtMs: Number(row.at), server: row.node });
          await sleep(this.opts.intervalMs ?? 50);
        }
      } catch (e) {
        this.errors.push({ atMs: Date.now(), message: (e as Error).message });
        await sleep(100);
      } finally {
        await client.end().catch(() => {});
      }
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FailoverMeasurement {
  /** Fault -> first write acknowledged after it, seconds (what a client waits). */
  rtoSeconds: number;
  /** The server that acknowledged it (the new primary's address). */
  newPrimary: string;
  lastAckBeforeFault?: EndpointAck;
  firstAckAfterFault: EndpointAck;
}

/** RTO as the client saw it: from the fault to the first acknowledged write after it. */
export function failoverFromAcks(acks: readonly EndpointAck[], faultAtMs: number): FailoverMeasurement | { problem: string } {
  const before = acks.filter((a) => a.atMs <= faultAtMs);
  const after = acks.find((a) => a.atMs > faultAtMs && (before.length === 0 || a.server !== before.at(-1)?.server));
  if (!after) return { problem: `no write was acknowledged by another server after the fault (${acks.length} acks in all, last from ${acks.at(-1)?.server ?? "none"})` };
  return { rtoSeconds: (after.atMs - faultAtMs) / 1000, newPrimary: after.server, lastAckBeforeFault: before.at(-1), firstAckAfterFault: after };
}

/** Acknowledged writes missing from what the cluster holds now. */
export function lostAcks(acks: readonly EndpointAck[], presentSeqs: Iterable<number>): number[] {
  const present = new Set(presentSeqs);
  return acks.filter((a) => !present.has(a.seq)).map((a) => a.seq);
}

export interface RunSummary {
  runs: number;
  medianSeconds: number;
  worstSeconds: number;
  bestSeconds: number;
}

export function summarizeRuns(rtoSeconds: readonly number[]): RunSummary {
  if (rtoSeconds.length === 0) throw new Error("summarizeRuns: no runs");
  const sorted = [...rtoSeconds].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { runs: sorted.length, medianSeconds: median, worstSeconds: sorted.at(-1) as number, bestSeconds: sorted[0] as number };
}

/**
 * Split brain as acknowledged writes see it: two servers both acknowledging writes over an overlapping span
 * of (server) time. `oldAcks` are writes the old primary acknowledged after the partition, `newAcks` writes
 * the new primary acknowledged; server clocks are the same host clock in containers.
 */
export function splitBrainEvidence(oldAcks: readonly { serverAtMs: number }[], newAcks: readonly { serverAtMs: number }[]): { overlapMs: number; lastOldMs?: number; firstNewMs?: number } {
  const lastOld = oldAcks.length ? Math.max(...oldAcks.map((a) => a.serverAtMs)) : undefined;
  const firstNew = newAcks.length ? Math.min(...newAcks.map((a) => a.serverAtMs)) : undefined;
  const overlapMs = lastOld !== undefined && firstNew !== undefined ? Math.max(0, lastOld - firstNew) : 0;
  return { overlapMs, lastOldMs: lastOld, firstNewMs: firstNew };
}
